//! A [`Suspicion`]: one request the WAF flagged (any CRS hit, detection-only or blocked), cut
//! to what a correlation needs; the [`Workload`] it reached; and the request path as nginx
//! matches it against Ingress paths.

use std::{fmt, net::IpAddr};

use crate::waf::classify::{Class, ClassSet};

/// Longest URI kept (for people: the payload is often in the query).
pub const MAX_URI: usize = 200;
/// Longest normalised path kept (for routing).
pub const MAX_PATH: usize = 512;
/// Rule ids kept per request.
pub const MAX_RULES: usize = 8;
/// Longest method and unique id kept.
pub const MAX_METHOD: usize = 16;
pub const MAX_ID: usize = 64;
/// Longest host kept (a DNS name).
pub const MAX_HOST: usize = 253;

/// One flagged request. Every string is bounded (see the `MAX_*` constants).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Suspicion {
    /// The client, as the WAF's client-IP policy resolved it.
    pub ip: IpAddr,
    /// The WAF's policy never bans this client (allowlisted, trusted proxy, loopback...).
    pub protected: bool,
    /// When the request was made (the audit log's time, Unix seconds).
    pub time: u64,
    /// The `Host` header as a DNS name (lowercase, no port), when it is one.
    pub host: Option<String>,
    pub method: String,
    /// The request target for people (escapes decoded, control characters dropped, cut).
    pub uri: String,
    /// The path as nginx matches locations ([`request_path`]); empty once routed.
    pub path: String,
    /// The CRS rules it matched (anomaly evaluation rules left out), at most [`MAX_RULES`].
    pub rule_ids: Vec<u32>,
    pub classes: ClassSet,
    /// The classes shown by rules that rarely misfire (weight ≥ 1 in `waf.scoring`).
    pub strong: ClassSet,
    /// The WAF blocked it (else detection-only, or below the threshold).
    pub blocked: bool,
    /// Inbound anomaly score.
    pub score: u32,
    /// ModSecurity's `unique_id` (joins the same request seen by two agents).
    pub unique_id: String,
}

/// A Service: what the WAF's request reached (the Ingress backend) and what selects a pod.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Workload {
    pub namespace: String,
    pub service: String,
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.service)
    }
}

/// How much a request's classes say about a shell that followed it; lower ranks first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tier {
    /// Code execution: RCE, LFI, RFI, PHP, Java, and Node.js/generic injection (934: how a
    /// Node.js app such as Juice Shop is made to run a command).
    CodeExecution,
    /// Other attacks (SQLi, XSS, session fixation, scanners).
    Attack,
    /// Anomalies (protocol, generic, dos, reputation, leakage, other).
    Anomaly,
}

impl Tier {
    pub fn of(classes: ClassSet) -> Tier {
        const CODE: [Class; 6] = [
            Class::Rce,
            Class::Lfi,
            Class::Rfi,
            Class::Php,
            Class::Java,
            Class::Injection,
        ];
        if CODE.iter().any(|c| classes.contains(*c)) {
            Tier::CodeExecution
        } else if classes.iter().any(Class::bans_by_default) {
            Tier::Attack
        } else {
            Tier::Anomaly
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::CodeExecution => "code-execution",
            Tier::Attack => "attack",
            Tier::Anomaly => "anomaly",
        }
    }
}

impl Suspicion {
    pub fn tier(&self) -> Tier {
        Tier::of(self.classes)
    }

    /// Shows an attack class through a rule that rarely misfires.
    pub fn strong_attack(&self) -> bool {
        Tier::of(self.strong) != Tier::Anomaly
    }

    /// The same request (two agents may report one): by unique id, else by client, time
    /// and target.
    pub fn same_request(&self, other: &Suspicion) -> bool {
        if !self.unique_id.is_empty() || !other.unique_id.is_empty() {
            return self.unique_id == other.unique_id;
        }
        self.ip == other.ip && self.time == other.time && self.uri == other.uri
    }

    /// One line for people: `203.0.113.9 GET /ping?host=;id (rce 932160, detection only)`.
    pub fn summary(&self) -> String {
        let rules: Vec<String> = self.rule_ids.iter().map(u32::to_string).collect();
        format!(
            "{} {} {} ({} {}, {})",
            self.ip,
            self.method,
            self.uri,
            self.classes.join(","),
            rules.join(","),
            if self.blocked {
                "blocked"
            } else {
                "not blocked"
            }
        )
    }
}

/// A string cut to `max` bytes on a character boundary.
pub fn bounded(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// The path of a request target as nginx matches locations: scheme and authority of an
/// absolute target dropped, query and fragment cut, `%XX` decoded, runs of `/` merged, `.`
/// and `..` segments resolved (never above the root); cut to [`MAX_PATH`] bytes.
pub fn request_path(target: &[u8]) -> String {
    let mut t = target;
    for scheme in [&b"http://"[..], b"https://"] {
        if t.len() >= scheme.len() && t[..scheme.len()].eq_ignore_ascii_case(scheme) {
            let rest = &t[scheme.len()..];
            t = memchr::memchr(b'/', rest).map_or(&b"/"[..], |i| &rest[i..]);
        }
    }
    let end = memchr::memchr2(b'?', b'#', t).unwrap_or(t.len());
    let decoded = percent_decode(&t[..end]);
    let mut segments: Vec<&[u8]> = Vec::new();
    for seg in decoded.split(|&c| c == b'/') {
        match seg {
            b"" | b"." => {}
            b".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut path = Vec::with_capacity(decoded.len() + 1);
    for s in &segments {
        path.push(b'/');
        path.extend_from_slice(s);
    }
    // A trailing slash is part of the path nginx matches ("/api/" is not "/api").
    let trailing = decoded.ends_with(b"/") || decoded.ends_with(b"/.") || decoded.ends_with(b"/..");
    if path.is_empty() || (trailing && !segments.is_empty()) {
        path.push(b'/');
    }
    bounded(&String::from_utf8_lossy(&path), MAX_PATH)
}

fn percent_decode(raw: &[u8]) -> Vec<u8> {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%'
            && let (Some(h), Some(l)) = (
                raw.get(i + 1).copied().and_then(hex),
                raw.get(i + 2).copied().and_then(hex),
            )
        {
            out.push(h << 4 | l);
            i += 3;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_as_nginx_matches_them() {
        for (target, path) in [
            (&b"/"[..], "/"),
            (b"", "/"),
            (b"/ping?host=;id", "/ping"),
            (b"/api//Products/../Users/./1#x", "/api/Users/1"),
            (b"/a/%2e%2e/%2E%2E/etc/passwd", "/etc/passwd"),
            (b"/rest/", "/rest/"),
            (b"/rest/x/..", "/rest/"),
            (b"http://shop.example/ftp/x?y", "/ftp/x"),
            (b"HTTPS://shop.example", "/"),
            (b"/%ff%00", "/\u{fffd}\u{0}"),
        ] {
            assert_eq!(request_path(target), path, "{target:?}");
        }
        assert!(request_path(&b"/a".repeat(1000)).len() <= MAX_PATH);
    }

    #[test]
    fn tiers() {
        let set = |c: &[Class]| c.iter().copied().collect::<ClassSet>();
        assert_eq!(
            Tier::of(set(&[Class::Protocol, Class::Rce])),
            Tier::CodeExecution
        );
        assert_eq!(Tier::of(set(&[Class::Injection])), Tier::CodeExecution);
        assert_eq!(Tier::of(set(&[Class::Sqli, Class::Xss])), Tier::Attack);
        assert_eq!(
            Tier::of(set(&[Class::Protocol, Class::Generic])),
            Tier::Anomaly
        );
        assert_eq!(Tier::of(ClassSet::EMPTY), Tier::Anomaly);
    }
}
