//! The crate's layering, checked on its source: every `crate::` path in `src/` (in `use` lines
//! and inline) points to a module of the same layer or a lower one, as ARCHITECTURE.md's "Design"
//! section lists them, and no two files import each other, directly or through others.
//!
//! The layers, lowest first (a module not listed here fails the test, so a new module must be
//! placed deliberately):

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

const LAYERS: &[(&str, &[&str])] = &[
    ("values", &["error", "name", "ip", "guard", "trace"]),
    ("system", &["sys", "owner"]),
    ("netlink", &["netlink"]),
    ("namespace", &["netns"]),
    (
        "objects",
        &[
            "link", "addr", "route", "firewall", "probe", "impair", "nat", "ipam",
        ],
    ),
    ("patterns", &["topology", "reap"]),
    ("tools", &["lab", "userns"]),
];

fn rank(module: &str) -> Option<usize> {
    LAYERS
        .iter()
        .position(|(_, modules)| modules.contains(&module))
}

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

/// `src/link/veth.rs` -> ("link", "link::veth"); `src/link/mod.rs` -> ("link", "link").
fn module_of(src: &Path, file: &Path) -> (String, String) {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    (parts[0].clone(), parts.join("::"))
}

/// Code with comments removed (line comments and doc comments; this crate has no block
/// comments in code).
fn code_of(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            // Keep `//` inside string literals such as "/proc/self/fd/...": only cut when the
            // part before has an even number of quotes.
            Some(at) if line[..at].matches('"').count() % 2 == 0 => &line[..at],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// Every module path a file names through `crate::` (and, for `super::`, through its parent
/// module `parent`), as `top` or `top::sub` (the first two segments, when the second is a
/// module file of its own).
fn imports(code: &str, parent: Option<&str>, files: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut add = |base: Option<&str>, path: &str| {
        let mut segments = path.split("::").map(ident);
        let Some(first) = segments.next().filter(|s| !s.is_empty()) else {
            return;
        };
        let second = segments.next();
        // `super::x`: the sibling file `parent::x` if there is one, else the parent itself.
        if let Some(base) = base {
            let sibling = format!("{base}::{first}");
            out.insert(if files.contains(&sibling) {
                sibling
            } else {
                base.to_owned()
            });
            return;
        }
        match second {
            Some(sub) if files.contains(&format!("{first}::{sub}")) => {
                out.insert(format!("{first}::{sub}"));
            }
            _ => {
                out.insert(first.to_owned());
            }
        }
    };
    for (prefix, base) in [("crate::", None), ("super::", parent)] {
        if prefix == "super::" && base.is_none() {
            continue;
        }
        let mut rest = code;
        while let Some(at) = rest.find(prefix) {
            let before = rest[..at].chars().last();
            rest = &rest[at + prefix.len()..];
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            for head in heads(rest) {
                add(base, &head);
            }
        }
    }
    out
}

/// The paths a `use` continues with after its prefix: `a::b` alone, or each path at depth one of
/// `{a::b, c, d::{e, f}}`.
fn heads(rest: &str) -> Vec<String> {
    let Some(group) = rest.strip_prefix('{') else {
        return vec![rest.chars().take_while(|c| !c.is_whitespace()).collect()];
    };
    let mut depth = 1;
    let mut start = 0;
    let chars: Vec<char> = group.chars().collect();
    let mut heads = Vec::new();
    for (i, &c) in chars.iter().enumerate() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    heads.push(chars[start..i].iter().collect::<String>());
                    break;
                }
            }
            ',' if depth == 1 => {
                heads.push(chars[start..i].iter().collect::<String>());
                start = i + 1;
            }
            _ => {}
        }
    }
    heads
        .into_iter()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .collect()
}

/// `code` without its re-exports (`pub use ...;`, `pub(crate) use ...;`): a parent module
/// re-exporting its children's items does not depend on them.
fn without_reexports(code: &str) -> String {
    let mut out = String::new();
    let mut rest = code;
    loop {
        let next = ["pub use ", "pub(crate) use "]
            .iter()
            .filter_map(|p| rest.find(p))
            .min();
        match next {
            Some(at) => {
                out.push_str(&rest[..at]);
                rest = rest[at..].find(';').map_or("", |end| &rest[at + end + 1..]);
            }
            None => {
                out.push_str(rest);
                return out;
            }
        }
    }
}

/// Paths relative to the file: `child::x` in a parent module file (except in re-exports).
/// Children may use their parent; a parent's own code may not use its children's.
fn relative_imports(full: &str, code: &str, files: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let own_code = without_reexports(code);
    for file in files {
        if let Some(child) = file
            .strip_prefix(full)
            .and_then(|rest| rest.strip_prefix("::"))
        {
            let mut rest = own_code.as_str();
            while let Some(at) = rest.find(&format!("{child}::")) {
                let before = rest[..at].chars().last();
                rest = &rest[at + child.len() + 2..];
                if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
                    out.insert(file.clone());
                }
            }
        }
    }
    out
}

#[test]
fn every_import_points_down_and_there_is_no_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let problems = check(&src, &rank);
    assert!(
        problems.is_empty(),
        "layering broken:\n{}",
        problems.join("\n")
    );
}

/// The CNI plugin crate: one layer, no import circle between its files.
#[test]
fn the_plugin_has_no_import_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("netns-kit-cni/src");
    let problems = check(&src, &|_| Some(0));
    assert!(
        problems.is_empty(),
        "netns-kit-cni:\n{}",
        problems.join("\n")
    );
}

/// Every problem of the crate under `src`: an import of a higher layer (by `rank`), a module in
/// no layer, an import circle between top-level modules or between files.
fn check(src: &Path, rank: &dyn Fn(&str) -> Option<usize>) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeMap<String, (String, String)> = files
        .iter()
        .filter(|f| !f.ends_with("lib.rs") && !f.ends_with("main.rs"))
        .map(|f| {
            let (top, full) = module_of(src, f);
            (full, (top, fs::read_to_string(f).unwrap()))
        })
        .collect();
    let names: BTreeSet<String> = modules.keys().cloned().collect();
    let mut problems = Vec::new();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (full, (top, text)) in &modules {
        let Some(own) = rank(top) else {
            problems.push(format!(
                "module `{top}` is in no layer: add it to LAYERS here and to ARCHITECTURE.md"
            ));
            continue;
        };
        let code = code_of(text);
        let parent = full.rsplit_once("::").map(|(p, _)| p);
        let mut targets = imports(&code, parent, &names);
        targets.extend(relative_imports(full, &code, &names));
        for target in targets {
            let target_top = target.split("::").next().unwrap().to_owned();
            if target == *full || target_top.is_empty() {
                continue;
            }
            match rank(&target_top) {
                Some(theirs) if theirs > own => problems.push(format!(
                    "`{full}` (layer {own}) imports `{target}` (layer {theirs}), a higher layer"
                )),
                Some(_) => {}
                None if target_top == "ipnetwork" => {}
                None => problems.push(format!("`{full}` imports unknown `{target}`")),
            }
            graph.entry(full.clone()).or_default().insert(target);
        }
    }
    // Circles between top-level modules, then between files.
    let mut tops: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, targets) in &graph {
        let from = from.split("::").next().unwrap();
        for to in targets {
            let to = to.split("::").next().unwrap();
            if from != to {
                tops.entry(from.to_owned())
                    .or_default()
                    .insert(to.to_owned());
            }
        }
    }
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        problems: &mut Vec<String>,
    ) {
        if done.contains(node) {
            return;
        }
        if let Some(at) = stack.iter().position(|n| n == node) {
            problems.push(format!(
                "import circle: {} -> {node}",
                stack[at..].join(" -> ")
            ));
            return;
        }
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            visit(next, graph, stack, done, problems);
        }
        stack.pop();
        done.insert(node.to_owned());
    }
    for g in [&tops, &graph] {
        let mut done = BTreeSet::new();
        for node in g.keys() {
            visit(node, g, &mut Vec::new(), &mut done, &mut problems);
        }
    }
    problems
}

#[test]
fn the_architecture_map_lists_the_same_layers() {
    let lib =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("ARCHITECTURE.md")).unwrap();
    for (layer, modules) in LAYERS {
        for module in *modules {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
            let exists = path.join(format!("{module}.rs")).exists()
                || path.join(module).join("mod.rs").exists();
            assert!(
                exists,
                "LAYERS lists `{module}`, which is not a module any more"
            );
            assert!(
                lib.contains(&format!("`{module}`")),
                "ARCHITECTURE.md does not name module `{module}` (layer {layer})"
            );
        }
    }
}
