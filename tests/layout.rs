//! The crate's layout, as `src/lib.rs` states it: imports among the
//! top-level modules of `src/` run one way (each module uses only the
//! modules listed before it in the layout comment), and no source file is
//! too long to read (at most 900 lines; the builder, `config.rs`, under 750).
//!
//! It reads the source text: every `crate::name` (and `$crate::name`) in
//! code, not in comments, names a module, or an item that `lib.rs`
//! re-exports from one.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 900;
const MAX_CONFIG_LINES: usize = 749;
/// The module that may use any other: the non-stable hooks.
const EXEMPT: &str = "fuzzing";

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every `.rs` file below `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to (`None` for lib.rs).
fn module_of(path: &Path) -> Option<String> {
    let rel = path.strip_prefix(src()).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?.to_owned();
    match first.strip_suffix(".rs") {
        Some("lib") => None,
        Some(name) => Some(name.to_owned()),
        None => Some(first),
    }
}

/// The modules of the layout comment in lib.rs, in order: the lines
/// `//   name   what it owns` between `// Layout` and the first line that
/// is not a comment.
fn stated_order(lib: &str) -> Vec<String> {
    let mut order = Vec::new();
    let mut inside = false;
    for line in lib.lines() {
        if line.starts_with("// Layout") {
            inside = true;
            continue;
        }
        if !inside {
            continue;
        }
        let Some(rest) = line.strip_prefix("//") else {
            break;
        };
        // An entry starts three spaces in; its continuation lines further.
        if let Some(entry) = rest.strip_prefix("   ").filter(|e| !e.starts_with(' ')) {
            if let Some(name) = entry.split_whitespace().next() {
                if name.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                    order.push(name.to_owned());
                }
            }
        }
    }
    order
}

/// Names re-exported at the crate root: `pub use module::{A, B};` → A, B → module.
fn root_reexports(lib: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for line in lib.lines() {
        let Some(rest) = line.trim().strip_prefix("pub use ") else {
            continue;
        };
        let rest = rest.trim_end_matches(';');
        let Some((module, names)) = rest.split_once("::") else {
            continue;
        };
        let names = names.trim_start_matches('{').trim_end_matches('}');
        for name in names.split(',') {
            let name = name.trim().rsplit("::").next().unwrap().trim();
            if !name.is_empty() {
                map.insert(name.to_owned(), module.to_owned());
            }
        }
    }
    map
}

/// The code of a file without its comments (line comments, doc comments).
fn code_of(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            // A `//` inside a string literal ("http://") is rare in a path
            // line; a comment cut short only hides names, never adds one.
            Some(i) => &line[..i],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first path segment of every `crate::` reference in `code`,
/// including each member of a `crate::{a, b::c}` group.
fn crate_refs(code: &str) -> Vec<String> {
    let mut refs = Vec::new();
    let bytes = code.as_bytes();
    let mut at = 0;
    while let Some(i) = code[at..].find("crate::") {
        let start = at + i;
        at = start + "crate::".len();
        // `crate::` itself, not the tail of another identifier (`mycrate::`).
        if start > 0 {
            let before = bytes[start - 1];
            if before.is_ascii_alphanumeric() || before == b'_' {
                continue;
            }
        }
        if bytes.get(at) == Some(&b'{') {
            let mut depth = 0;
            let mut segment_start = at + 1;
            for (j, &b) in bytes.iter().enumerate().skip(at) {
                match b {
                    b'{' => depth += 1,
                    b'}' | b',' if depth == 1 => {
                        refs.push(first_ident(&code[segment_start..j]));
                        segment_start = j + 1;
                        if b == b'}' {
                            break;
                        }
                    }
                    b'}' => depth -= 1,
                    _ => {}
                }
            }
        } else {
            refs.push(first_ident(&code[at..]));
        }
    }
    refs.retain(|r| !r.is_empty());
    refs
}

fn first_ident(text: &str) -> String {
    text.trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

#[test]
fn imports_run_one_way_in_the_stated_order() {
    let lib = read(&src().join("lib.rs"));
    let order = stated_order(&lib);
    let reexports = root_reexports(&lib);
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(f)).collect();

    let listed: BTreeSet<String> = order.iter().cloned().collect();
    assert_eq!(
        listed, modules,
        "the layout comment of src/lib.rs must list every top-level module of src/ once"
    );
    assert_eq!(listed.len(), order.len(), "a module is listed twice");
    let rank = |m: &str| order.iter().position(|o| o == m).unwrap();

    let mut wrong = Vec::new();
    for file in &files {
        let Some(module) = module_of(file) else {
            continue;
        };
        if module == EXEMPT {
            continue;
        }
        for name in crate_refs(&code_of(&read(file))) {
            let target = if modules.contains(&name) {
                name.clone()
            } else if let Some(m) = reexports.get(&name) {
                m.clone()
            } else {
                panic!(
                    "{}: `crate::{name}` is neither a module nor a root re-export",
                    file.display()
                );
            };
            if target != module && rank(&target) > rank(&module) {
                wrong.push(format!(
                    "{} uses `crate::{name}` ({target}), which the layout puts after {module}",
                    file.strip_prefix(src()).unwrap().display()
                ));
            }
        }
    }
    wrong.sort();
    wrong.dedup();
    assert!(
        wrong.is_empty(),
        "imports against the layout of src/lib.rs:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_source_file_is_too_long() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut long = Vec::new();
    for file in &files {
        let lines = read(file).lines().count();
        let rel = file.strip_prefix(src()).unwrap();
        let max = if rel == Path::new("config.rs") {
            MAX_CONFIG_LINES
        } else {
            MAX_LINES
        };
        if lines > max {
            long.push(format!(
                "src/{}: {lines} lines (at most {max})",
                rel.display()
            ));
        }
    }
    assert!(long.is_empty(), "files too long:\n{}", long.join("\n"));
}

#[test]
fn the_checker_sees_references() {
    let refs = crate_refs("use crate::store::{A, B};\nuse crate::{error::X, token::{Y, Z}, Secret};\n$crate::error::Fixed; notcrate::x");
    assert_eq!(refs, ["store", "error", "token", "Secret", "error"]);
    let lib = "// Layout:\n//\n//   a       first\n//               more of it\n//   b_c     second\n\nmod a;";
    assert_eq!(stated_order(lib), ["a", "b_c"]);
}
