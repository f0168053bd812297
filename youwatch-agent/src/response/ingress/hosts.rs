//! Which Ingresses serve a host, as ingress-nginx routes a request: the server whose name
//! is the host exactly; else the wildcard server `*.example.com` (ingress-nginx renders it
//! as `~^(?<subdomain>[\w-]+)\.example\.com$`: exactly one label); else the catch-all
//! server `_`, made of the rules without a host and the Ingresses' default backends. nginx
//! compares lowercase hosts without port or trailing dot.

use k8s_openapi::api::networking::v1::Ingress;

/// How an Ingress serves a host; better first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Match {
    Exact,
    Wildcard,
    CatchAll,
    No,
}

/// `host` as nginx compares it: lowercase, without `:port` or a trailing dot.
pub fn normalise(host: &str) -> String {
    let host = host.trim();
    let host = if host.starts_with('[') {
        // [v6]:port
        host.split_inclusive(']').next().unwrap_or(host)
    } else {
        host.rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map_or(host, |(h, _)| h)
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// How well `ingress` serves the (normalised) `host`: its best rule.
pub fn match_host(ingress: &Ingress, host: &str) -> Match {
    let Some(spec) = &ingress.spec else {
        return Match::No;
    };
    let mut best = if spec.default_backend.is_some() {
        Match::CatchAll
    } else {
        Match::No
    };
    for rule in spec.rules.iter().flatten() {
        best = best.min(match_rule_host(rule.host.as_deref(), host));
    }
    best
}

/// How a rule's `host` (none: every host) serves the (normalised) `host`.
pub fn match_rule_host(rule_host: Option<&str>, host: &str) -> Match {
    match rule_host.map(str::to_ascii_lowercase) {
        None => Match::CatchAll,
        Some(h) if h.is_empty() => Match::CatchAll,
        Some(h) => match h.strip_prefix("*.") {
            Some(domain) if wildcard_matches(domain, host) => Match::Wildcard,
            Some(_) => Match::No,
            None if h == host => Match::Exact,
            None => Match::No,
        },
    }
}

/// `host` is one label (`[A-Za-z0-9_-]+`) followed by `.domain`.
fn wildcard_matches(domain: &str, host: &str) -> bool {
    host.strip_suffix(domain)
        .and_then(|rest| rest.strip_suffix('.'))
        .is_some_and(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
}

/// Of `ingresses`, those serving `host`: all of the best kind of match present.
pub fn serving<'a, I>(ingresses: I, host: &str) -> Vec<&'a Ingress>
where
    I: IntoIterator<Item = &'a Ingress>,
{
    let host = normalise(host);
    let matched: Vec<(Match, &Ingress)> = ingresses
        .into_iter()
        .map(|i| (match_host(i, &host), i))
        .filter(|(m, _)| *m != Match::No)
        .collect();
    let Some(best) = matched.iter().map(|(m, _)| *m).min() else {
        return Vec::new();
    };
    matched
        .into_iter()
        .filter(|(m, _)| *m == best)
        .map(|(_, i)| i)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ingress(name: &str, hosts: &[Option<&str>]) -> Ingress {
        let rules: Vec<serde_json::Value> = hosts
            .iter()
            .map(|h| match h {
                Some(h) => serde_json::json!({"host": h}),
                None => serde_json::json!({}),
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"rules": rules},
        }))
        .unwrap()
    }

    fn names(found: Vec<&Ingress>) -> Vec<String> {
        found
            .into_iter()
            .map(|i| i.metadata.name.clone().unwrap())
            .collect()
    }

    #[test]
    fn normalises_as_nginx() {
        assert_eq!(normalise("Shop.Example:8443"), "shop.example");
        assert_eq!(normalise("shop.example."), "shop.example");
        assert_eq!(normalise("[2001:db8::1]:443"), "[2001:db8::1]");
    }

    #[test]
    fn exact_beats_wildcard_beats_catch_all() {
        let all = [
            ingress("exact", &[Some("shop.example.com")]),
            ingress(
                "exact-api",
                &[Some("other.example"), Some("SHOP.example.com")],
            ),
            ingress("wild", &[Some("*.example.com")]),
            ingress("catch-all", &[None]),
        ];
        assert_eq!(
            names(serving(&all, "shop.example.com:80")),
            ["exact", "exact-api"]
        );
        assert_eq!(names(serving(&all, "blog.example.com")), ["wild"]);
        // One label only, as ingress-nginx's wildcard regex.
        assert_eq!(names(serving(&all, "a.b.example.com")), ["catch-all"]);
        assert_eq!(names(serving(&all, "example.com")), ["catch-all"]);
        assert!(serving(&all[..3], "elsewhere.test").is_empty());
    }
}
