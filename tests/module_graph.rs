//! No import circle: no files of `src/` import each other through a loop.
//!
//! Each file is a module; it imports another when it names a path into it
//! (`crate::http::body::X`, `super::conn::Next`, a child module's `name::`,
//! a `use` group `{a, b::c}`), through the crate root's re-exports too
//! (`crate::WireError` is `http/wire_error.rs`). A path is charged to the
//! deepest file it reaches: `crate::http::Request` reaches `http/mod.rs`,
//! which re-exports (and so imports) its children. Unit-test modules
//! (`#[cfg(test)] mod tests`) are left out: they may use anything.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

/// Every `.rs` file of the library under `src/`, by module path
/// (`http/mod.rs` and `lib.rs` are their directories' modules); the
/// binary's files (`main.rs` and the modules it declares) are another
/// crate and left out.
fn modules(root: &Path) -> BTreeMap<Module, PathBuf> {
    let binary: BTreeSet<String> = tokens(&code_of(&root.join("main.rs")))
        .windows(3)
        .filter(|window| window[0] == "mod" && window[2] == ";")
        .map(|window| format!("{}.rs", window[1]))
        .chain(["main.rs".to_owned()])
        .collect();
    let mut found = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read a source dir") {
            let path = entry.expect("a dir entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs")
                && !(dir == root
                    && binary.contains(
                        &path
                            .file_name()
                            .unwrap_or_default()
                            .to_string_lossy()
                            .into_owned(),
                    ))
            {
                let relative = path.strip_prefix(root).expect("under src");
                let mut module: Module = relative
                    .with_extension("")
                    .components()
                    .map(|part| part.as_os_str().to_string_lossy().into_owned())
                    .collect();
                if matches!(module.last().map(String::as_str), Some("mod" | "lib")) {
                    module.pop();
                }
                found.insert(module, path);
            }
        }
    }
    found
}

/// The source without comments and without its unit-test module.
fn code_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("read a source file");
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => &text,
    };
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Tokens: identifiers, `::`, and single punctuation characters.
fn tokens(code: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut chars = code.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_alphanumeric() || c == '_' {
            let mut word = c.to_string();
            while let Some(&next) = chars.peek() {
                if !(next.is_alphanumeric() || next == '_') {
                    break;
                }
                word.push(next);
                chars.next();
            }
            tokens.push(word);
        } else if c == ':' && chars.peek() == Some(&':') {
            chars.next();
            tokens.push("::".into());
        } else if c == '"' {
            // Skip string literals: their words are not paths.
            let mut escaped = false;
            for next in chars.by_ref() {
                if next == '"' && !escaped {
                    break;
                }
                escaped = next == '\\' && !escaped;
            }
        } else if !c.is_whitespace() {
            tokens.push(c.to_string());
        }
    }
    tokens
}

/// Every path the tokens name from `start` on: segments joined by `::`,
/// with `{..}` groups expanded. Returns the paths and where they end.
fn paths_at(tokens: &[String], start: usize) -> (Vec<Vec<String>>, usize) {
    let mut prefix = Vec::new();
    let mut at = start;
    while at < tokens.len() {
        let token = &tokens[at];
        if token == "{" {
            let mut paths = Vec::new();
            at += 1;
            while at < tokens.len() && tokens[at] != "}" {
                if tokens[at] == "," {
                    at += 1;
                    continue;
                }
                let (inner, end) = paths_at(tokens, at);
                paths.extend(
                    inner
                        .into_iter()
                        .map(|path| [prefix.clone(), path].concat()),
                );
                at = end.max(at + 1);
            }
            return (paths, at + 1);
        }
        if !(token.chars().all(|c| c.is_alphanumeric() || c == '_')) {
            break;
        }
        prefix.push(token.clone());
        if tokens.get(at + 1).map(String::as_str) == Some("::") {
            at += 2;
        } else {
            at += 1;
            break;
        }
    }
    (vec![prefix], at)
}

#[test]
fn no_files_import_each_other_through_a_loop() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules = modules(&root);
    let lib_tokens = tokens(&code_of(&root.join("lib.rs")));
    // The crate root's re-exports: name -> where it comes from.
    let mut reexports: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (at, window) in lib_tokens.windows(2).enumerate() {
        if window[0] == "pub" && window[1] == "use" {
            for path in paths_at(&lib_tokens, at + 2).0 {
                if let Some(name) = path.last() {
                    reexports.insert(name.clone(), path.clone());
                }
            }
        }
    }
    // The deepest file module a crate-absolute path reaches.
    let resolve = |mut path: Vec<String>| -> Option<Module> {
        if let Some(first) = path.first()
            && !modules.contains_key(&vec![first.clone()])
            && let Some(source) = reexports.get(first)
        {
            path = [source.clone(), path[1..].to_vec()].concat();
        }
        (0..=path.len())
            .rev()
            .map(|length| path[..length].to_vec())
            .find(|candidate| modules.contains_key(candidate))
    };
    let mut imports: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (module, path) in &modules {
        let code = code_of(path);
        let tokens = tokens(&code);
        let children: BTreeSet<String> = tokens
            .windows(3)
            .filter(|window| window[0] == "mod" && window[2] == ";")
            .map(|window| window[1].clone())
            .collect();
        let mut targets = BTreeSet::new();
        // Inline modules (`mod model { .. }`) open and where they close.
        let mut depth = 0usize;
        let mut inline: Vec<(String, usize)> = Vec::new();
        for at in 0..tokens.len() {
            match tokens[at].as_str() {
                "{" => {
                    depth += 1;
                    if at >= 2 && tokens[at - 2] == "mod" {
                        inline.push((tokens[at - 1].clone(), depth));
                    }
                }
                "}" => {
                    if inline.last().is_some_and(|(_, opened)| *opened == depth) {
                        inline.pop();
                    }
                    depth = depth.saturating_sub(1);
                }
                _ => {}
            }
            let scope: Module = module
                .iter()
                .cloned()
                .chain(inline.iter().map(|(name, _)| name.clone()))
                .collect();
            let previous = at.checked_sub(1).map(|before| tokens[before].as_str());
            if previous == Some("::") || previous == Some("mod") {
                continue;
            }
            let first = tokens[at].as_str();
            // `pub(crate)` and `pub(super)` name no module: a path goes on
            // with `::`.
            let is_path_start = (matches!(first, "crate" | "super" | "self")
                || children.contains(first))
                && tokens.get(at + 1).map(String::as_str) == Some("::");
            if !is_path_start {
                continue;
            }
            for mut segments in paths_at(&tokens, at).0 {
                let mut base = match segments.first().map(String::as_str) {
                    Some("crate") => {
                        segments.remove(0);
                        Vec::new()
                    }
                    Some("self") => {
                        segments.remove(0);
                        scope.clone()
                    }
                    // `super::` and a child module's `name::` start here.
                    _ => scope.clone(),
                };
                // `super` is the parent of this file's module.
                while segments.first().map(String::as_str) == Some("super") {
                    segments.remove(0);
                    base.pop();
                }
                if let Some(target) = resolve([base, segments].concat())
                    && &target != module
                {
                    targets.insert(target);
                }
            }
        }
        imports.insert(module.clone(), targets);
    }
    // A loop: a module that reaches itself.
    let name = |module: &Module| {
        if module.is_empty() {
            "lib".to_owned()
        } else {
            module.join("/")
        }
    };
    let mut loops = Vec::new();
    for start in imports.keys() {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<(Module, Vec<Module>)> = vec![(start.clone(), vec![start.clone()])];
        while let Some((module, trail)) = stack.pop() {
            for next in imports.get(&module).into_iter().flatten() {
                if next == start {
                    loops.push(trail.iter().map(name).collect::<Vec<_>>().join(" -> "));
                } else if seen.insert(next.clone()) {
                    stack.push((next.clone(), [trail.clone(), vec![next.clone()]].concat()));
                }
            }
        }
    }
    assert!(
        modules.len() > 30 && imports.values().map(BTreeSet::len).sum::<usize>() > 50,
        "too few modules or imports found to trust this check: {imports:?}"
    );
    assert!(loops.is_empty(), "import loops:\n{}", loops.join("\n"));
}
