//! Lists as Falco uses them: a list's items may name lists visible to it (expanded one
//! level), and every list name is then substituted by its items in the *text* of each macro
//! and rule condition before it is parsed (`rule_loader_compiler.cpp`, `resolve_list`). So a
//! list name may contain blanks, `in (a_list, x)` mixes a list and a value, and an item with
//! a blank is quoted, exactly as in Falco.

use std::collections::HashMap;

use memchr::memmem::Finder;

use super::{
    collector::{Indexed, ListDef},
    source::CondText,
};

/// The lists, expanded, in definition order (the order in which they are substituted).
#[derive(Debug, Default)]
pub struct Lists {
    lists: Vec<List>,
}

/// A list ready for substitution: its name's finder and its items as written into a
/// condition (`a, "b c", d`).
#[derive(Debug)]
struct List {
    name: Finder<'static>,
    items: String,
}

impl List {
    fn new(name: &str, items: &[String]) -> List {
        List {
            name: Finder::new(name.as_bytes()).into_owned(),
            items: items
                .iter()
                .map(|i| quote_item(i))
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

impl Lists {
    /// Expands items naming a list visible to theirs (defined at a lower index than the
    /// list's latest definition or append) into that list's items as written.
    pub fn compile(defs: &[Indexed<ListDef>]) -> Lists {
        let by_name: HashMap<&str, &Indexed<ListDef>> =
            defs.iter().map(|d| (d.def.name.as_str(), d)).collect();
        let lists = defs
            .iter()
            .map(|list| {
                let mut items = Vec::with_capacity(list.def.items.len());
                for item in &list.def.items {
                    match by_name.get(item.as_str()) {
                        Some(r) if r.index < list.visibility => {
                            items.extend(r.def.items.iter().cloned());
                        }
                        _ => items.push(item.clone()),
                    }
                }
                List::new(&list.def.name, &items)
            })
            .collect();
        Lists { lists }
    }

    /// Substitutes every list, in definition order, into `text`.
    pub fn substitute(&self, text: &mut CondText) -> Result<(), String> {
        for list in &self.lists {
            substitute_one(text, list)?;
        }
        Ok(())
    }
}

/// Falco's `resolve_list`, step for step: each occurrence of `name` delimited by blanks,
/// `(`, `)`, `,`, `=` or the ends, with the blanks around it, becomes ` item1, item2 `
/// (no leading blank at the start); an empty list also takes a neighbouring comma.
fn substitute_one(text: &mut CondText, list: &List) -> Result<(), String> {
    const BLANKS: &[u8] = b" \t\n\r";
    let is_delim = |b: u8| BLANKS.contains(&b) || b"(),=".contains(&b);
    let sub = &list.items;
    let name_len = list.name.needle().len();
    let mut from = 0;
    while let Some(found) = find(text.as_str(), &list.name, from) {
        let s = text.as_str().as_bytes();
        let mut start = found;
        let mut end = found + name_len;
        let delimited =
            (start == 0 || is_delim(s[start - 1])) && (end >= s.len() || is_delim(s[end]));
        if !delimited {
            from = found + 1;
            continue;
        }
        while start > 0 && BLANKS.contains(&s[start - 1]) {
            start -= 1;
        }
        while end < s.len() && BLANKS.contains(&s[end]) {
            end += 1;
        }
        if sub.is_empty() {
            if start > 0 && s[start - 1] == b',' {
                start -= 1;
            } else if end < s.len() && s[end] == b',' {
                end += 1;
            }
        }
        let lead = if start > 0 { " " } else { "" };
        text.replace_range(start, end, &format!("{lead}{sub} "), found)?;
        // Falco continues one byte past the blank that follows the items.
        from = start + sub.len() + 2;
    }
    Ok(())
}

fn find(haystack: &str, needle: &Finder<'_>, from: usize) -> Option<usize> {
    let rest = haystack.as_bytes().get(from..)?;
    needle.find(rest).map(|i| from + i)
}

/// Falco's `quote_item`: an item with a blank that does not start with a quote is written in
/// double quotes (as is: Falco does not escape it).
pub fn quote_item(item: &str) -> String {
    if item.contains(' ') && !item.starts_with(['"', '\'']) {
        format!("\"{item}\"")
    } else {
        item.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::source::SourceText;

    fn substituted(text: &str, lists: &[(&str, &[&str])]) -> String {
        let lists = Lists {
            lists: lists
                .iter()
                .map(|(n, i)| List::new(n, &i.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()))
                .collect(),
        };
        let mut t = CondText::new(&SourceText::literal(text));
        lists.substitute(&mut t).unwrap();
        t.as_str().to_owned()
    }

    #[test]
    fn names_are_replaced_between_delimiters() {
        assert_eq!(
            substituted("proc.name in (shells, zsh)", &[("shells", &["sh", "bash"])]),
            "proc.name in ( sh, bash , zsh)"
        );
        assert_eq!(
            substituted("proc.name in (my shells)", &[("my shells", &["a b", "c"])]),
            "proc.name in ( \"a b\", c )"
        );
        // Not a whole token: left alone.
        assert_eq!(
            substituted("proc.name = shellsx", &[("shells", &["sh"])]),
            "proc.name = shellsx"
        );
        // An empty list takes a comma with it.
        assert_eq!(
            substituted("x in (a, empty)", &[("empty", &[])]),
            "x in (a  )"
        );
    }

    #[test]
    fn one_level_of_list_references() {
        let def = |name: &str, items: &[&str], index: u32| Indexed {
            def: ListDef {
                name: name.into(),
                items: items.iter().map(|s| (*s).to_owned()).collect(),
                pos: crate::rules::source::Pos::unknown("t"),
            },
            index,
            visibility: index,
        };
        let lists = Lists::compile(&[
            def("a", &["x"], 0),
            def("b", &["a", "y"], 1),
            def("c", &["b", "d"], 2),
        ]);
        assert_eq!(lists.lists[1].items, "x, y");
        assert_eq!(lists.lists[2].items, "a, y, d", "b's items as written");
    }

    #[test]
    fn growth_is_bounded() {
        // Each list names the next one twice: the text doubles with every list.
        let lists = Lists {
            lists: (0..40)
                .map(|i| {
                    List::new(
                        &format!("l{i}"),
                        &[format!("l{}", i + 1), format!("l{}", i + 1)],
                    )
                })
                .collect(),
        };
        let mut t = CondText::new(&SourceText::literal("x in (l0)"));
        let e = lists.substitute(&mut t).unwrap_err();
        assert!(e.contains("longer than"), "{e}");
    }
}
