//! Uniquely numbered attack entries: one real ModSecurity 3.0.9 + CRS 3.3.4 JSON audit-log
//! line (an SQL injection caught by 942100, from `tests/data/`), with its `unique_id` set to
//! `yw-<number>` and its client port varied, so every alert names the entry it came from
//! (`output_fields["waf.unique_id"]`).

use std::path::Path;

/// The captured log the template is taken from.
pub const SEED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/modsecurity-3.0.9-crs-3.3.4-audit.jsonl"
);

const ID_PREFIX: &str = "yw-";

pub struct Entries {
    /// The line up to the client port's digits, between them and the unique id's value, and
    /// after it (newline included).
    head: String,
    middle: String,
    tail: String,
}

impl Entries {
    /// The first SQL injection entry of `seed` as the template.
    pub fn from_seed(seed: &Path) -> Entries {
        let text = std::fs::read_to_string(seed).expect("reading the seed audit log");
        let line = text
            .lines()
            .find(|l| l.contains("\"ruleId\":\"942100\""))
            .expect("the seed holds an SQL injection entry");
        let field = |name: &str| {
            let key = format!("\"{name}\":");
            let at = line.find(&key).expect("field in the seed") + key.len();
            let end = at + line[at..].find([',', '}']).expect("the field's value ends");
            (at, end)
        };
        let (port_at, port_end) = field("client_port");
        let (id_at, id_end) = field("unique_id");
        assert!(port_end < id_at, "client_port comes before unique_id");
        Entries {
            head: line[..port_at].to_owned(),
            middle: line[port_end..id_at].to_owned(),
            tail: format!("{}\n", &line[id_end..]),
        }
    }

    pub fn default_seed() -> Entries {
        Entries::from_seed(Path::new(SEED))
    }

    /// Entry `n`, newline-terminated, appended to `out`.
    pub fn write(&self, n: u64, out: &mut Vec<u8>) {
        use std::io::Write;
        let port = 1024 + n % 64_000;
        write!(
            out,
            "{}{port}{}\"{}\"{}",
            self.head,
            self.middle,
            unique_id(n),
            self.tail
        )
        .expect("writing to a Vec");
    }

    /// The length of entry `n` in bytes (about 1.9 KB).
    pub fn len(&self, n: u64) -> usize {
        let mut v = Vec::new();
        self.write(n, &mut v);
        v.len()
    }
}

pub fn unique_id(n: u64) -> String {
    format!("{ID_PREFIX}{n:012}")
}

/// The entry number a `unique_id` names, if it is one of ours.
pub fn number(unique_id: &str) -> Option<u64> {
    unique_id.strip_prefix(ID_PREFIX)?.parse().ok()
}

/// The entry number of an audit-log line, if it is a complete one of ours.
pub fn number_of_line(line: &[u8]) -> Option<u64> {
    let key = b"\"unique_id\":\"";
    let at = memchr::memmem::find(line, key)? + key.len();
    let end = at + memchr::memchr(b'"', &line[at..])?;
    let id = std::str::from_utf8(&line[at..end]).ok()?;
    line.ends_with(b"}}").then_some(())?;
    number(id)
}
