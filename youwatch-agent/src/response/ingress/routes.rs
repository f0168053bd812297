//! Which Service a request reaches, as ingress-nginx routes it: the server for its host
//! ([`hosts`]: exact, else `*.wildcard`, else catch-all), then the location
//! for its path among the rules of every Ingress serving that host:
//!
//! - `Exact`: `location = /path`, which wins over everything else;
//! - `Prefix` `/foo`: element-wise as the Ingress spec says (`/foo`, `/foo/`, `/foo/bar`, never
//!   `/foobar`), which ingress-nginx renders as `location = /foo` and `location /foo/`;
//! - `ImplementationSpecific`: a plain nginx prefix (`/foo` matches `/foobar` too);
//! - the longest matching prefix wins;
//! - when any Ingress of the host sets `use-regex` (or `rewrite-target`, which implies it),
//!   every non-Exact path of the host is a case-insensitive regex anchored at the start,
//!   tried longest path first, the first match winning (nginx regex locations in the order
//!   ingress-nginx writes them);
//! - no path matches: the `defaultBackend` of an Ingress serving the host, else the
//!   controller's own default backend (no workload).
//!
//! Canary Ingresses (`canary: "true"`) share a main Ingress's traffic at random and are left
//! out. The request path is normalised as nginx does before matching
//! ([`request_path`](crate::correlate::suspicion::request_path)).

use std::collections::HashMap;

use k8s_openapi::api::networking::v1::{HTTPIngressPath, Ingress};
use regex::Regex;

use super::hosts::{self, Match};
use crate::correlate::suspicion::Workload;

const ANNOTATIONS: &str = "nginx.ingress.kubernetes.io/";
/// Compiled path regexes kept (they come from Ingresses, not requests: a handful).
const REGEX_CACHE: usize = 256;

/// Compiled regex paths, reused across requests.
#[derive(Default)]
pub struct RegexCache {
    compiled: HashMap<String, Option<Regex>>,
}

impl RegexCache {
    /// `path` as ingress-nginx writes a regex location (`~* ^path`); `None` when the regex
    /// engine cannot compile it (nginx's PCRE accepts more), so the path never matches.
    fn get(&mut self, path: &str) -> Option<&Regex> {
        if self.compiled.len() >= REGEX_CACHE && !self.compiled.contains_key(path) {
            self.compiled.clear();
        }
        self.compiled
            .entry(path.to_owned())
            .or_insert_with(|| {
                regex::RegexBuilder::new(&format!("^(?:{path})"))
                    .case_insensitive(true)
                    .size_limit(1 << 20)
                    .build()
                    .ok()
            })
            .as_ref()
    }
}

/// One `path` of a rule of the server.
struct Location<'a> {
    ingress: &'a Ingress,
    path: &'a str,
    kind: &'a str,
    service: &'a str,
}

/// The Service of `ingresses` a request for `host` (`None`: no Host header) and `path` (as
/// [`request_path`](crate::correlate::suspicion::request_path) normalised it) reaches.
pub fn route<'a>(
    ingresses: impl IntoIterator<Item = &'a Ingress>,
    host: Option<&str>,
    path: &str,
    regexes: &mut RegexCache,
) -> Option<Workload> {
    let host = hosts::normalise(host.unwrap_or_default());
    let mut server: Vec<(&Ingress, Match)> = ingresses
        .into_iter()
        .filter(|i| annotation(i, "canary") != Some("true"))
        .map(|i| (i, hosts::match_host(i, &host)))
        .filter(|(_, m)| *m != Match::No)
        .collect();
    let best = server.iter().map(|(_, m)| *m).min()?;
    server.retain(|(_, m)| *m == best);
    server.sort_by_key(|(i, _)| (i.metadata.namespace.clone(), i.metadata.name.clone()));
    let locations: Vec<Location> = server
        .iter()
        .flat_map(|(i, _)| rules_for(i, &host, best))
        .collect();
    let regex = server.iter().any(|(i, _)| {
        annotation(i, "use-regex") == Some("true") || annotation(i, "rewrite-target").is_some()
    });
    let chosen = locations
        .iter()
        .find(|l| l.kind == "Exact" && l.path == path)
        .or_else(|| {
            if regex {
                by_regex(&locations, path, regexes)
            } else {
                longest_prefix(&locations, path)
            }
        });
    match chosen {
        Some(l) => Some(workload(l.ingress, l.service)),
        None => server.iter().find_map(|(i, _)| {
            let service = i
                .spec
                .as_ref()?
                .default_backend
                .as_ref()?
                .service
                .as_ref()?;
            Some(workload(i, &service.name))
        }),
    }
}

/// The paths of `ingress`'s rules that serve `host` with the server's match kind.
fn rules_for<'a>(ingress: &'a Ingress, host: &str, best: Match) -> Vec<Location<'a>> {
    let rules = ingress.spec.iter().flat_map(|s| s.rules.iter().flatten());
    rules
        .filter(|r| hosts::match_rule_host(r.host.as_deref(), host) == best)
        .filter_map(|r| r.http.as_ref())
        .flat_map(|h| h.paths.iter())
        .filter_map(|p| location(ingress, p))
        .collect()
}

fn location<'a>(ingress: &'a Ingress, p: &'a HTTPIngressPath) -> Option<Location<'a>> {
    let service = p.backend.service.as_ref()?;
    Some(Location {
        ingress,
        path: p.path.as_deref().filter(|p| !p.is_empty()).unwrap_or("/"),
        kind: p.path_type.as_str(),
        service: &service.name,
    })
}

/// nginx's longest prefix among the non-Exact locations.
fn longest_prefix<'l, 'a>(locations: &'l [Location<'a>], path: &str) -> Option<&'l Location<'a>> {
    let mut best: Option<(usize, &Location)> = None;
    for l in locations {
        let len = match l.kind {
            "Exact" => None,
            "Prefix" => prefix_len(l.path, path),
            // ImplementationSpecific (and anything else): a plain nginx prefix location.
            _ => path.starts_with(l.path).then_some(l.path.len()),
        };
        if let Some(len) = len
            && best.is_none_or(|(b, _)| len > b)
        {
            best = Some((len, l));
        }
    }
    best.map(|(_, l)| l)
}

/// How long a match `Prefix` `rule` is for `path`: element-wise; `/foo` is rendered as
/// `location = /foo` (as long as an exact match can be: it wins) and `location /foo/`.
fn prefix_len(rule: &str, path: &str) -> Option<usize> {
    let rule = rule.trim_end_matches('/');
    if rule.is_empty() {
        return Some(1);
    }
    if path == rule {
        return Some(usize::MAX);
    }
    (path.starts_with(rule) && path.as_bytes().get(rule.len()) == Some(&b'/'))
        .then_some(rule.len() + 1)
}

/// The first regex location matching `path`, longest path first.
fn by_regex<'l, 'a>(
    locations: &'l [Location<'a>],
    path: &str,
    regexes: &mut RegexCache,
) -> Option<&'l Location<'a>> {
    let mut ordered: Vec<&Location> = locations.iter().filter(|l| l.kind != "Exact").collect();
    ordered.sort_by_key(|l| std::cmp::Reverse(l.path.len()));
    ordered
        .into_iter()
        .find(|l| regexes.get(l.path).is_some_and(|re| re.is_match(path)))
}

fn annotation<'a>(ingress: &'a Ingress, name: &str) -> Option<&'a str> {
    let annotations = ingress.metadata.annotations.as_ref()?;
    annotations
        .iter()
        .find(|(k, _)| k.strip_prefix(ANNOTATIONS) == Some(name))
        .map(|(_, v)| v.as_str())
}

fn workload(ingress: &Ingress, service: &str) -> Workload {
    Workload {
        namespace: ingress.metadata.namespace.clone().unwrap_or_default(),
        service: service.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ingress(name: &str, annotations: serde_json::Value, spec: serde_json::Value) -> Ingress {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "shop", "annotations": annotations},
            "spec": spec,
        }))
        .unwrap()
    }

    fn rule(host: Option<&str>, paths: &[(&str, &str, &str)]) -> serde_json::Value {
        let paths: Vec<serde_json::Value> = paths
            .iter()
            .map(|(path, kind, service)| {
                json!({"path": path, "pathType": kind,
                       "backend": {"service": {"name": service, "port": {"number": 80}}}})
            })
            .collect();
        match host {
            Some(h) => json!({"host": h, "http": {"paths": paths}}),
            None => json!({"http": {"paths": paths}}),
        }
    }

    fn service(all: &[Ingress], host: Option<&str>, path: &str) -> Option<String> {
        route(all, host, path, &mut RegexCache::default()).map(|w| w.service)
    }

    #[test]
    fn paths_as_ingress_nginx_matches_them() {
        let all = [
            ingress(
                "shop",
                json!({}),
                json!({"rules": [rule(Some("shop.example"), &[
                    ("/", "Prefix", "web"),
                    ("/api", "Prefix", "api"),
                    ("/api/admin", "Exact", "admin"),
                    ("/ftp", "ImplementationSpecific", "ftp"),
                    ("/rest/", "Prefix", "rest"),
                ])]}),
            ),
            ingress(
                "other",
                json!({}),
                json!({"rules": [rule(Some("other.example"), &[("/", "Prefix", "other")])]}),
            ),
        ];
        for (path, want) in [
            ("/", "web"),
            ("/api", "api"),
            ("/api/", "api"),
            ("/api/products", "api"),
            ("/apiary", "web"),
            ("/api/admin", "admin"),
            ("/api/admin/x", "api"),
            ("/ftp", "ftp"),
            ("/ftpx/y", "ftp"),
            ("/rest", "rest"),
            ("/rest/user", "rest"),
            ("/restx", "web"),
        ] {
            assert_eq!(
                service(&all, Some("SHOP.example:443"), path).as_deref(),
                Some(want),
                "{path}"
            );
        }
        assert_eq!(
            service(&all, Some("other.example"), "/api").as_deref(),
            Some("other")
        );
        assert_eq!(service(&all, Some("elsewhere.example"), "/"), None);
        assert_eq!(service(&all, None, "/"), None);
    }

    #[test]
    fn servers_merge_ingresses_and_fall_back_to_default_backends() {
        let all = [
            ingress(
                "a",
                json!({}),
                json!({"rules": [rule(Some("shop.example"), &[("/a", "Prefix", "a")])]}),
            ),
            ingress(
                "b",
                json!({}),
                json!({"defaultBackend": {"service": {"name": "fallback", "port": {"number": 80}}},
                       "rules": [rule(Some("shop.example"), &[("/b", "Prefix", "b")])]}),
            ),
            ingress(
                "canary",
                json!({"nginx.ingress.kubernetes.io/canary": "true"}),
                json!({"rules": [rule(Some("shop.example"), &[("/", "Prefix", "canary")])]}),
            ),
            ingress(
                "wild",
                json!({}),
                json!({"rules": [rule(Some("*.example"), &[("/", "Prefix", "wild")]), rule(None, &[("/", "Prefix", "catch-all")])]}),
            ),
        ];
        assert_eq!(
            service(&all, Some("shop.example"), "/a/1").as_deref(),
            Some("a")
        );
        assert_eq!(
            service(&all, Some("shop.example"), "/b").as_deref(),
            Some("b")
        );
        assert_eq!(
            service(&all, Some("shop.example"), "/c").as_deref(),
            Some("fallback"),
            "no path: the host's default backend, never the canary"
        );
        assert_eq!(
            service(&all, Some("blog.example"), "/").as_deref(),
            Some("wild")
        );
        assert_eq!(
            service(&all, Some("a.b.example"), "/").as_deref(),
            Some("catch-all")
        );
        assert_eq!(service(&all, None, "/x").as_deref(), Some("catch-all"));
    }

    #[test]
    fn use_regex_applies_to_every_path_of_the_host() {
        let all = [
            ingress(
                "regex",
                json!({"nginx.ingress.kubernetes.io/use-regex": "true"}),
                json!({"rules": [rule(Some("shop.example"), &[("/api/v[0-9]+", "ImplementationSpecific", "api")])]}),
            ),
            ingress(
                "plain",
                json!({}),
                json!({"rules": [rule(Some("shop.example"), &[
                    ("/", "Prefix", "web"),
                    ("/exact", "Exact", "exact"),
                    ("/bad(", "ImplementationSpecific", "never"),
                ])]}),
            ),
        ];
        assert_eq!(
            service(&all, Some("shop.example"), "/API/V2/x").as_deref(),
            Some("api")
        );
        assert_eq!(
            service(&all, Some("shop.example"), "/api/vx").as_deref(),
            Some("web")
        );
        assert_eq!(
            service(&all, Some("shop.example"), "/exact").as_deref(),
            Some("exact")
        );
        assert_eq!(
            service(&all, Some("shop.example"), "/bad(").as_deref(),
            Some("web")
        );
    }
}
