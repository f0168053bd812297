//! Kubernetes label selectors in their string form (`kubectl get -l ...`):
//! `app=web,tier!=db,env in (prod,staging),release notin (canary),owner,!legacy`.
//!
//! kube-rs has the selector type ([`Selector`]) but no parser; this is one.

use std::collections::BTreeSet;

use kube::core::{Expression, Selector};

/// Longest selector text accepted (config input; keeps parsing cheap and bounded).
const MAX_SELECTOR_LEN: usize = 4096;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "label selector {selector:?} is not valid: {reason} \
     (syntax: `key=value,key!=value,key in (a,b),key notin (a,b),key,!key`)"
)]
pub struct LabelSelectorError {
    pub selector: String,
    pub reason: String,
}

/// Parses a label selector. The empty string selects everything.
pub fn parse(text: &str) -> Result<Selector, LabelSelectorError> {
    let fail = |reason: String| LabelSelectorError {
        selector: text.chars().take(200).collect(),
        reason,
    };
    if text.len() > MAX_SELECTOR_LEN {
        return Err(fail(format!("longer than {MAX_SELECTOR_LEN} bytes")));
    }
    let mut expressions = Vec::new();
    for requirement in split_requirements(text).map_err(&fail)? {
        let requirement = requirement.trim();
        if requirement.is_empty() {
            if text.trim().is_empty() {
                continue;
            }
            return Err(fail("empty requirement (two commas in a row?)".into()));
        }
        expressions.push(parse_requirement(requirement).map_err(&fail)?);
    }
    Ok(expressions.into_iter().collect())
}

/// Splits on the commas that are not inside `( )`.
fn split_requirements(text: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let mut depth = 0u32;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' if depth > 0 => return Err("nested parentheses".into()),
            '(' => depth = 1,
            ')' if depth == 0 => return Err("`)` without `(`".into()),
            ')' => depth = 0,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth > 0 {
        return Err("`(` is never closed".into());
    }
    parts.push(&text[start..]);
    Ok(parts)
}

fn parse_requirement(req: &str) -> Result<Expression, String> {
    if let Some(key) = req.strip_prefix('!') {
        return Ok(Expression::DoesNotExist(key_checked(key.trim())?));
    }
    if let Some((key, value)) = req.split_once("!=") {
        return Ok(Expression::NotEqual(
            key_checked(key.trim())?,
            value_checked(value.trim())?,
        ));
    }
    if let Some((key, value)) = req.split_once('=') {
        // `==` is a synonym of `=`.
        let value = value.strip_prefix('=').unwrap_or(value);
        return Ok(Expression::Equal(
            key_checked(key.trim())?,
            value_checked(value.trim())?,
        ));
    }
    let mut words = req.splitn(2, char::is_whitespace);
    let key = words.next().unwrap_or_default();
    let Some(rest) = words.next().map(str::trim_start) else {
        return Ok(Expression::Exists(key_checked(key)?));
    };
    let (negated, set) = if let Some(set) = rest.strip_prefix("notin") {
        (true, set)
    } else if let Some(set) = rest.strip_prefix("in") {
        (false, set)
    } else {
        return Err(format!(
            "{req:?}: expected `=`, `!=`, `in (...)` or `notin (...)` after the key"
        ));
    };
    let set = set.trim();
    let inner = set
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| format!("{req:?}: the values of `in`/`notin` go in parentheses"))?;
    let values = inner
        .split(',')
        .map(|v| value_checked(v.trim()))
        .collect::<Result<BTreeSet<_>, _>>()?;
    if values.iter().all(String::is_empty) {
        return Err(format!("{req:?}: `in`/`notin` needs at least one value"));
    }
    let key = key_checked(key)?;
    Ok(if negated {
        Expression::NotIn(key, values)
    } else {
        Expression::In(key, values)
    })
}

/// A label key: optional DNS-subdomain prefix and `/`, then a name of at most 63 characters.
fn key_checked(key: &str) -> Result<String, String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix
        && (prefix.is_empty()
            || prefix.len() > 253
            || !prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'))
    {
        return Err(format!(
            "label key {key:?}: the prefix must be a DNS subdomain"
        ));
    }
    if name.is_empty() || !is_label_word(name) {
        return Err(format!(
            "label key {key:?}: the name must be 1-63 characters of [A-Za-z0-9._-], \
             starting and ending alphanumeric"
        ));
    }
    Ok(key.to_owned())
}

/// A label value: empty, or at most 63 characters of `[A-Za-z0-9._-]`, alphanumeric at both ends.
fn value_checked(value: &str) -> Result<String, String> {
    if value.is_empty() || is_label_word(value) {
        Ok(value.to_owned())
    } else {
        Err(format!(
            "label value {value:?}: at most 63 characters of [A-Za-z0-9._-], \
             starting and ending alphanumeric"
        ))
    }
}

fn is_label_word(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use kube::core::SelectorExt;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_every_operator() {
        let sel = parse(
            "app=web, tier != db,env in (prod, staging),release notin (canary),owner,!legacy,x==y",
        )
        .unwrap();
        assert_eq!(
            sel.to_string(),
            "app=web,tier!=db,env in (prod,staging),release notin (canary),owner,!legacy,x=y"
        );
        let good = labels(&[("app", "web"), ("env", "prod"), ("owner", "me"), ("x", "y")]);
        assert!(sel.matches(&good));
        let mut bad = good.clone();
        bad.insert("legacy".into(), "1".into());
        assert!(!sel.matches(&bad));
    }

    #[test]
    fn empty_selects_everything() {
        assert!(parse("").unwrap().selects_all());
        assert!(parse("  ").unwrap().selects_all());
    }

    #[test]
    fn prefixed_keys_are_accepted() {
        let sel = parse("app.kubernetes.io/name=juice-shop").unwrap();
        assert!(sel.matches(&labels(&[("app.kubernetes.io/name", "juice-shop")])));
    }

    #[test]
    fn errors_name_the_selector_and_the_problem() {
        for (bad, hint) in [
            ("app=", ""),
            ("a,,b", "empty requirement"),
            ("env in prod", "parentheses"),
            ("env in (prod", "never closed"),
            ("env oops (a)", "expected"),
            ("bad key=1", "label key"),
            ("-x=1", "label key"),
            ("a=b c", "label value"),
            ("env in ()", "at least one value"),
        ] {
            match parse(bad) {
                Ok(sel) => assert!(hint.is_empty(), "{bad:?} parsed as {sel}"),
                Err(err) => {
                    let msg = err.to_string();
                    assert!(msg.contains(bad) && msg.contains(hint), "{bad:?}: {msg}");
                }
            }
        }
    }
}
