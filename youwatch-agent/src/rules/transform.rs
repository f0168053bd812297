//! What Falco's value transformers compute (libsinsp `sinsp_filter_transformers/` and
//! `sinsp_filtercheck_multivalue_transformer.cpp`): base64 decoding, basename, and
//! `getopt(args, optstring)[option]`.

use base64::Engine as _;

/// `b64()`: base64 decoding, padding optional; `None` when the text is not base64 (Falco's
/// extraction then fails and the check is false). Decoded bytes that are not UTF-8 become
/// U+FFFD, since the values rules compare with are text.
pub fn b64_decode(s: &str) -> Option<String> {
    const ENGINE: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    let bytes = ENGINE.decode(s).ok()?;
    Some(match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// `basename()`: what follows the last `/` (empty for a path ending in `/`).
pub fn basename(s: &str) -> &str {
    s.rsplit('/').next().unwrap_or(s)
}

/// `getopt(args, optstring)`: the options (and their arguments) `getopt(3)` would read from
/// `args`, in order, with `?` for an unknown option and an empty value for a missing
/// argument; long options are skipped, `--` and the first operand end the scan. With
/// `select`, only the value of the last occurrence of that option (the option itself for one
/// without argument); `None` when it does not occur.
pub fn getopt(args: &[&str], optstring: &str, select: Option<u8>) -> Option<Vec<String>> {
    let spec = Optstring::parse(optstring.as_bytes());
    let mut out = Vec::new();
    let mut selected: Option<String> = None;
    // Records an option (and its value) that is wanted.
    let mut emit = |out: &mut Vec<String>, name: &str, value: Option<&str>| match select {
        Some(_) => selected = Some(value.unwrap_or(name).to_owned()),
        None => {
            out.push(name.to_owned());
            out.extend(value.map(str::to_owned));
        }
    };
    let mut idx = 0;
    'args: while idx < args.len() {
        let arg = args[idx].as_bytes();
        if arg == b"--" {
            break;
        }
        if arg.len() > 2 && arg.starts_with(b"--") {
            idx += 1;
            continue;
        }
        if arg.len() < 2 || arg[0] != b'-' {
            break;
        }
        let mut i = 1;
        while i < arg.len() {
            let opt = arg[i];
            let wanted = select.is_none_or(|s| s == opt);
            if opt == b':' || !spec.valid[usize::from(opt)] {
                if select.is_none() {
                    out.push("?".to_owned());
                }
                i += 1;
                continue;
            }
            // Option characters are bytes; a non-ASCII one has no text of its own.
            let name = args[idx].get(i..i + 1).unwrap_or("?");
            if !spec.with_arg[usize::from(opt)] {
                if wanted {
                    emit(&mut out, name, None);
                }
                i += 1;
                continue;
            }
            // The rest of this argument, or the next one.
            let value = if i + 1 < arg.len() {
                Some(args[idx].get(i + 1..).unwrap_or_default())
            } else if idx + 1 < args.len() {
                idx += 1;
                Some(args[idx])
            } else {
                None
            };
            if wanted {
                match value {
                    Some(v) => emit(&mut out, name, Some(v)),
                    // A missing argument is an empty value.
                    None => emit(&mut out, "", None),
                }
            }
            idx += 1;
            continue 'args;
        }
        idx += 1;
    }
    match select {
        Some(_) => selected.map(|s| vec![s]),
        None => Some(out),
    }
}

struct Optstring {
    valid: [bool; 256],
    with_arg: [bool; 256],
}

impl Optstring {
    fn parse(s: &[u8]) -> Self {
        let mut o = Optstring {
            valid: [false; 256],
            with_arg: [false; 256],
        };
        // A leading ':' only changes getopt's error reporting.
        let mut i = usize::from(s.first() == Some(&b':'));
        while i < s.len() {
            let c = s[i];
            if c != b':' {
                o.valid[usize::from(c)] = true;
                if s.get(i + 1) == Some(&b':') {
                    o.with_arg[usize::from(c)] = true;
                    i += 1;
                }
            }
            i += 1;
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(args: &[&str], optstring: &str) -> Vec<String> {
        getopt(args, optstring, None).unwrap()
    }

    #[test]
    fn getopt_reads_like_getopt3() {
        assert_eq!(opts(&["-nt", "hello"], "nt:"), ["n", "t", "hello"]);
        assert_eq!(opts(&["-thello"], "t:"), ["t", "hello"]);
        assert_eq!(opts(&["-n", "--", "-t"], "nt:"), ["n"]);
        assert_eq!(opts(&["-x", "-n"], "n"), ["?", "n"]);
        assert_eq!(opts(&["-t"], "t:"), [""]);
        assert_eq!(opts(&["--exec", "-n"], "n"), ["n"]);
        assert_eq!(opts(&["arg1", "-n"], "n"), Vec::<String>::new());
        assert_eq!(opts(&["-lpe", "/bin/sh"], "lp:e:"), ["l", "p", "e"]);
        assert_eq!(
            getopt(&["-t", "v1", "-t", "v2"], "t:", Some(b't')).unwrap(),
            ["v2"]
        );
        assert_eq!(
            getopt(&["-n", "-t", "x"], "nt:", Some(b'n')).unwrap(),
            ["n"]
        );
        assert_eq!(getopt(&["-n"], "nt:", Some(b't')), None);
        assert_eq!(getopt(&["-t", "v1", "-t"], "t:", Some(b't')).unwrap(), [""]);
    }

    #[test]
    fn base64_and_basename() {
        assert_eq!(b64_decode("aGVsbG8=").as_deref(), Some("hello"));
        assert_eq!(b64_decode("aGVsbG8").as_deref(), Some("hello"));
        assert_eq!(b64_decode("").as_deref(), Some(""));
        assert_eq!(b64_decode("!!"), None);
        assert_eq!(basename("/usr/local/bin/cat"), "cat");
        assert_eq!(basename("/hello/"), "");
        assert_eq!(basename("hello"), "hello");
    }
}
