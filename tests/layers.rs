//! The layers hold: no file under `src/` names a module of a higher layer,
//! and the layer list in `docs/design.md` ("Layers") matches the tree.
//!
//! The list is read from the design document itself, so the document and
//! this check cannot drift apart: every line of its first code block that
//! starts with a layer number (or `top`) names a file or a directory of
//! `src/`, and a directory's line (with its continuation lines) names every
//! file in it. Then, for every file, each `crate::…` and `super::…` path in
//! its code (comments are skipped: a doc link is not a dependency) is
//! resolved to the top-level module it names — through the crate root's
//! re-exports for items named at the root — and that module's layer must
//! not be higher than the file's own. `top` files (the crate root and the
//! hidden `__internal`) may name anything, and nothing may name them.
//!
//! `src/bin/` is the command-line tool, another crate: not checked.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Paths that may name a higher layer: (file, module it may name, why).
/// Empty: keep it so.
const EXCEPTIONS: &[(&str, &str, &str)] = &[];

const TOP: u32 = u32::MAX;

struct Entry {
    layer: u32,
    /// Relative to the repository root, e.g. `src/shm/` or `src/error.rs`.
    path: String,
    /// The rest of the line and its continuation lines.
    what: String,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The entries of the first code block of the "## Layers" section.
fn layer_list() -> Vec<Entry> {
    let doc = std::fs::read_to_string(root().join("docs/design.md")).expect("docs/design.md");
    let section = doc
        .split("\n## ")
        .find(|s| s.starts_with("Layers"))
        .expect("docs/design.md has a \"## Layers\" section");
    let block = section
        .split("```")
        .nth(1)
        .expect("the Layers section starts with a code block");
    let mut entries: Vec<Entry> = Vec::new();
    for line in block.lines() {
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else { continue };
        let layer = if first == "top" {
            Some(TOP)
        } else {
            first.parse::<u32>().ok()
        };
        match layer {
            Some(layer) => {
                let path = words.next().expect("a layer line names a path").to_string();
                entries.push(Entry {
                    layer,
                    path,
                    what: words.collect::<Vec<_>>().join(" "),
                });
            }
            // A continuation line (indented), or the heading line.
            None if line.starts_with(' ') => {
                if let Some(e) = entries.last_mut() {
                    e.what.push(' ');
                    e.what.push_str(line.trim());
                }
            }
            None => {}
        }
    }
    assert!(!entries.is_empty(), "no layer lines in docs/design.md");
    entries
}

/// Every `.rs` file under `src/`, but the command-line tool's.
fn sources() -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(&root().join("src"), &mut files);
    let mut out: Vec<String> = files
        .iter()
        .map(|p| {
            p.strip_prefix(root())
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|p| !p.starts_with("src/bin/"))
        .collect();
    out.sort();
    out
}

/// The entry a file belongs to: its own line, or its directory's.
fn entry_of<'a>(entries: &'a [Entry], file: &str) -> Option<&'a Entry> {
    entries.iter().find(|e| e.path == file).or_else(|| {
        entries
            .iter()
            .find(|e| e.path.ends_with('/') && file.starts_with(&e.path))
    })
}

/// The top-level module an entry is: `src/shm/` → `shm`, `src/error.rs` → `error`.
fn module_of(entry: &Entry) -> String {
    let rest = entry.path.trim_start_matches("src/").trim_end_matches('/');
    rest.trim_end_matches(".rs").to_string()
}

/// A file's module path: `src/channel/queue.rs` → [channel, queue];
/// `src/channel/mod.rs` → [channel]; `src/lib.rs` → [].
fn module_path(file: &str) -> Vec<String> {
    let rest = file.trim_start_matches("src/").trim_end_matches(".rs");
    let mut parts: Vec<String> = rest.split('/').map(str::to_string).collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

/// The code of a file, without comments (line comments, doc comments and
/// block comments).
fn code_of(text: &str) -> String {
    let mut out = String::new();
    let mut in_block = 0;
    for line in text.lines() {
        let mut rest = line;
        let mut kept = String::new();
        loop {
            if in_block > 0 {
                match rest.find("*/") {
                    Some(i) => {
                        in_block -= 1;
                        rest = &rest[i + 2..];
                    }
                    None => break,
                }
            } else {
                let line_c = rest.find("//");
                let block_c = rest.find("/*");
                match (line_c, block_c) {
                    (Some(l), Some(b)) if b < l => {
                        kept.push_str(&rest[..b]);
                        in_block += 1;
                        rest = &rest[b + 2..];
                    }
                    (Some(l), _) => {
                        kept.push_str(&rest[..l]);
                        break;
                    }
                    (None, Some(b)) => {
                        kept.push_str(&rest[..b]);
                        in_block += 1;
                        rest = &rest[b + 2..];
                    }
                    (None, None) => {
                        kept.push_str(rest);
                        break;
                    }
                }
            }
        }
        out.push_str(&kept);
        out.push('\n');
    }
    out
}

fn ident_at(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// The first path segments of the items in a `{…}` group that starts at
/// `s` (just after the `{`): `a, b::c, d::{e, f}` → [a, b, d].
fn group_heads(s: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut at_item_start = true;
    let mut i = 0;
    let bytes = s.as_bytes();
    while i < bytes.len() {
        let c = bytes[i] as char;
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => at_item_start = true,
            c if at_item_start && (c.is_alphanumeric() || c == '_') => {
                let id = ident_at(&s[i..]);
                i += id.len();
                heads.push(id);
                at_item_start = false;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    heads
}

/// Every path that starts with `crate::` or `super::` in `code`, as the
/// crate-root-relative first segment it names (`None` for the root's own
/// items), with the segment after it.
fn references(code: &str, file_module: &[String]) -> Vec<(Option<String>, String)> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    for start in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(i) = code[from..].find(start) {
            let at = from + i;
            from = at + start.len();
            // Whole words only (`mycrate::` is not `crate::`).
            if at > 0 {
                let prev = bytes[at - 1] as char;
                if prev.is_alphanumeric() || prev == '_' || prev == ':' {
                    continue;
                }
            }
            // Resolve to a path from the crate root.
            let mut base: Vec<String> = if start == "crate::" {
                Vec::new()
            } else {
                let mut b = file_module.to_vec();
                b.pop();
                b
            };
            let mut rest = &code[at + start.len()..];
            while let Some(r) = rest.strip_prefix("super::") {
                base.pop();
                rest = r;
            }
            let heads = if let Some(group) = rest.strip_prefix('{') {
                group_heads(group)
            } else {
                vec![ident_at(rest)]
            };
            for head in heads {
                if head.is_empty() {
                    continue;
                }
                match base.first() {
                    Some(top) => out.push((Some(top.clone()), head)),
                    None => out.push((None, head)),
                }
            }
        }
    }
    out
}

/// What each name at the crate root is: a module, or an item re-exported
/// from one (`pub use channel::{Queue, …}` → Queue ↦ channel).
fn root_names(modules: &[String]) -> BTreeMap<String, String> {
    let lib = code_of(&std::fs::read_to_string(root().join("src/lib.rs")).unwrap());
    let mut names = BTreeMap::new();
    for m in modules {
        names.insert(m.clone(), m.clone());
    }
    for stmt in lib.split(';') {
        let stmt = stmt.trim();
        let Some(i) = stmt.find("pub use ") else {
            continue;
        };
        let path = stmt[i + "pub use ".len()..].trim();
        let from = ident_at(path);
        if !modules.contains(&from) {
            continue; // an external crate (bytemuck)
        }
        let after = &path[from.len()..];
        let after = after.trim_start_matches("::");
        if let Some(group) = after.strip_prefix('{') {
            for item in group.trim_end_matches('}').split(',') {
                let last = item.trim().rsplit("::").next().unwrap_or("").trim();
                if !last.is_empty() {
                    names.insert(last.to_string(), from.clone());
                }
            }
        } else if let Some(last) = after.rsplit("::").next() {
            names.insert(last.trim().to_string(), from.clone());
        }
    }
    names
}

#[test]
fn the_layer_list_matches_the_tree() {
    let entries = layer_list();
    let files = sources();
    let mut problems = Vec::new();
    for e in &entries {
        if !root().join(&e.path).exists() {
            problems.push(format!(
                "docs/design.md lists {}, which does not exist",
                e.path
            ));
        }
    }
    for f in &files {
        match entry_of(&entries, f) {
            None => problems.push(format!("{f} is in no layer of docs/design.md")),
            Some(e) if e.path.ends_with('/') => {
                let name = f.rsplit('/').next().unwrap();
                let named = e
                    .what
                    .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'))
                    .any(|w| w == name);
                if !named {
                    problems.push(format!(
                        "docs/design.md's line for {} does not name {name}",
                        e.path
                    ));
                }
            }
            Some(_) => {}
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn no_file_names_a_higher_layer() {
    let entries = layer_list();
    let files = sources();
    let layer_of_module: BTreeMap<String, u32> = entries
        .iter()
        .filter(|e| e.layer != TOP)
        .map(|e| (module_of(e), e.layer))
        .collect();
    let modules: Vec<String> = layer_of_module.keys().cloned().collect();
    let root_names = root_names(&modules);
    let mut problems = Vec::new();
    let mut checked = 0;
    for f in &files {
        let Some(entry) = entry_of(&entries, f) else {
            continue; // reported by the_layer_list_matches_the_tree
        };
        let text = std::fs::read_to_string(root().join(f)).unwrap();
        let code = code_of(&text);
        let me = module_path(f);
        for (top, head) in references(&code, &me) {
            // The top-level module the path lands in.
            let target = match top {
                Some(t) => t,
                None => match root_names.get(&head) {
                    Some(m) => m.clone(),
                    None if head == "__internal" => "__internal".to_string(),
                    None => continue, // bytemuck, or a name local to a test module
                },
            };
            let target_layer = match layer_of_module.get(&target) {
                Some(&l) => l,
                None if target == "__internal" => TOP,
                None => continue,
            };
            checked += 1;
            if target_layer == TOP && entry.layer != TOP {
                problems.push(format!("{f} (layer {}) names `{target}`", entry.layer));
            } else if entry.layer != TOP && target_layer > entry.layer {
                let excused = EXCEPTIONS
                    .iter()
                    .any(|(file, module, _)| file == f && *module == target);
                if !excused {
                    problems.push(format!(
                        "{f} (layer {}) names `{target}` (layer {target_layer}, via `{head}`)",
                        entry.layer
                    ));
                }
            }
        }
    }
    assert!(
        checked > 100,
        "the check found only {checked} paths: is it reading the sources?"
    );
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// The checker itself: a higher layer is found, in every form of path.
#[test]
fn the_check_sees_every_form_of_path() {
    let code = code_of(
        "use crate::ring::mpmc::Intent;\n\
         use crate::{error::SegmentError, wait};\n\
         use super::super::inspect; // crate::transport in a comment\n\
         /// [`Queue`](crate::Queue)\n\
         fn f() { crate::Queue::<u8>::open(\"x\"); }\n",
    );
    let refs = references(&code, &["shm".to_string(), "header".to_string()]);
    let heads: Vec<String> = refs.iter().map(|(t, h)| format!("{t:?}/{h}")).collect();
    assert_eq!(
        heads,
        [
            "None/ring",
            "None/error",
            "None/wait",
            "None/Queue",
            "None/inspect",
        ],
        "{refs:?}"
    );
}
