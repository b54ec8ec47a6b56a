//! The architecture as the code has it, checked: modules depend on lower layers only, no two
//! modules import each other in a circle, and only `src/git/` starts git. The picture these
//! tests hold is the one in docs/architecture.md.
//!
//! Imports are read as text (`use` statements and `crate::` paths outside test modules), which
//! is what a reader sees; a module may always use its own submodules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules by layer, lowest first. A module may use modules of lower layers only.
const LAYERS: &[&[&str]] = &[
    &["text"],
    &[
        "error",
        "ids",
        "process_end",
        "redact",
        "ui",
        "globs",
        "files",
    ],
    &["git", "sandbox", "preset"],
    &["platform", "gates"],
    &["config"],
    &["agent"],
    &["policy", "attest"],
    &["store"],
    &["safety"],
    &["bundle"],
    &["plan"],
    &["run"],
    &["fanout", "cleanup"],
    &["cli"],
    &["commands"],
];

type Module = Vec<String>;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every module of the crate (its path below `crate`) and its file.
fn modules() -> BTreeMap<Module, PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).expect("src is readable").flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(&src(), &mut files);
    let mut mods = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(src()).expect("below src").with_extension("");
        let mut parts: Module = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if parts.last().is_some_and(|l| l == "mod") {
            parts.pop();
        }
        if parts == ["main"] || parts == ["lib"] {
            continue;
        }
        mods.insert(parts, f);
    }
    mods
}

/// The code of a file without its test module and comments.
fn code_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("source is readable");
    let text = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => &text[..],
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `a::{b, c::{d, e}}` → `a::b`, `a::c::d`, `a::c::e`.
fn expand(prefix: &str, tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        return vec![format!("{prefix}{tree}")];
    };
    let head = format!("{prefix}{}", &tree[..open]);
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let (mut parts, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, ch) in inner.char_indices() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .flat_map(|p| expand(&head, p))
        .collect()
}

/// The paths a file names: from `use` statements and from `crate::`/`super::` paths in code.
fn named_paths(code: &str, children: &BTreeSet<String>) -> Vec<String> {
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("use ") {
        let before = rest[..i].chars().last();
        let after = &rest[i + 4..];
        rest = after;
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let Some(end) = after.find(';') else { break };
        let stmt: String = after[..end].split_whitespace().collect();
        let stmt = stmt.split(" as ").next().unwrap_or(&stmt).to_owned();
        let first = stmt.split("::").next().unwrap_or("");
        if ["crate", "super", "self"].contains(&first) || children.contains(first) {
            paths.extend(expand("", &stmt));
        }
    }
    for start in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(i) = code[from..].find(start) {
            let at = from + i;
            from = at + start.len();
            if code[..at]
                .chars()
                .last()
                .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
            {
                continue;
            }
            let path: String = code[at..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            paths.push(path.trim_end_matches(':').to_owned());
        }
    }
    paths
}

/// Which module a path names from module `here`: the longest module prefix of it.
fn resolve(here: &Module, path: &str, mods: &BTreeMap<Module, PathBuf>) -> Option<Module> {
    let mut segs = path.split("::").filter(|s| !s.is_empty()).peekable();
    let mut cur = here.clone();
    match segs.peek().copied() {
        Some("crate") => {
            cur.clear();
            segs.next();
        }
        Some("super" | "self") => {
            while let Some(s @ ("super" | "self")) = segs.peek().copied() {
                if s == "super" {
                    cur.pop();
                }
                segs.next();
            }
        }
        _ => {}
    }
    let mut best = None;
    for s in segs {
        cur.push(s.to_owned());
        if mods.contains_key(&cur) {
            best = Some(cur.clone());
        } else {
            break;
        }
    }
    best
}

/// Module → the modules it uses (never itself, its own submodules or the crate root).
fn edges() -> BTreeMap<Module, BTreeSet<Module>> {
    let mods = modules();
    let mut edges = BTreeMap::new();
    for (m, file) in &mods {
        let children: BTreeSet<String> = mods
            .keys()
            .filter(|k| k.len() == m.len() + 1 && k.starts_with(m))
            .map(|k| k[m.len()].clone())
            .collect();
        let code = code_of(file);
        let mut to = BTreeSet::new();
        for p in named_paths(&code, &children) {
            let first = p.split("::").next().unwrap_or("");
            let path = if children.contains(first) {
                format!("self::{p}")
            } else {
                p
            };
            if let Some(t) = resolve(m, &path, &mods)
                && !t.starts_with(m)
                && !t.is_empty()
            {
                to.insert(t);
            }
        }
        edges.insert(m.clone(), to);
    }
    edges
}

fn name(m: &Module) -> String {
    m.join("::")
}

#[test]
fn modules_depend_on_lower_layers_only() {
    let layer_of = |top: &str| LAYERS.iter().position(|l| l.contains(&top));
    let mut wrong = Vec::new();
    for (from, tos) in edges() {
        let Some(lf) = layer_of(&from[0]) else {
            wrong.push(format!("{} is in no layer of LAYERS", from[0]));
            continue;
        };
        for to in tos {
            if to[0] == from[0] {
                continue;
            }
            match layer_of(&to[0]) {
                Some(lt) if lt < lf => {}
                _ => wrong.push(format!(
                    "{} uses {}: {} is not below {}",
                    name(&from),
                    name(&to),
                    to[0],
                    from[0]
                )),
            }
        }
    }
    wrong.dedup();
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
}

#[test]
fn no_two_modules_import_each_other_in_a_circle() {
    let edges = edges();
    // Tarjan's strongly connected components: any with two modules or more is a circle.
    struct State<'a> {
        edges: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<&'a Module, usize>,
        low: BTreeMap<&'a Module, usize>,
        stack: Vec<&'a Module>,
        on: BTreeSet<&'a Module>,
        circles: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a Module) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on.insert(v);
        for w in s.edges.get(v).into_iter().flatten() {
            let Some((w, _)) = s.edges.get_key_value(w) else {
                continue;
            };
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if s.on.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on.remove(w);
                comp.push(name(w));
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                s.circles.push(comp);
            }
        }
    }
    let mut s = State {
        edges: &edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        circles: Vec::new(),
    };
    for v in edges.keys() {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    assert!(
        s.circles.is_empty(),
        "modules that import each other in a circle: {:?}",
        s.circles
    );
}

#[test]
fn the_reader_sees_imports_a_cycle_would_need() {
    // The checks above are only as good as the import reading: pin what it must see.
    let e = edges();
    let of = |m: &str| {
        e.get(&m.split("::").map(str::to_owned).collect::<Module>())
            .map(|s| s.iter().map(name).collect::<BTreeSet<_>>())
            .unwrap_or_default()
    };
    assert!(
        of("fanout::threads").contains("run::launch"),
        "{:?}",
        of("fanout::threads")
    );
    assert!(of("run::state").contains("plan"));
    assert!(of("policy::manifest").contains("policy::scope"));
    assert!(of("commands::status").contains("text"));
    assert!(!of("run").iter().any(|m| m.starts_with("fanout")));
    assert_eq!(
        expand("", "crate::a::{b, c::{d, e}, self}"),
        [
            "crate::a::b",
            "crate::a::c::d",
            "crate::a::c::e",
            "crate::a::self"
        ]
    );
}

#[test]
fn only_src_git_starts_git() {
    let mut found = Vec::new();
    for (m, file) in modules() {
        if m.first().is_some_and(|t| t == "git") {
            continue;
        }
        let code = code_of(&file);
        for needle in ["Command::new(\"git\")", "Command::new(GIT"] {
            if code.contains(needle) {
                found.push(format!("{}: {needle}", file.display()));
            }
        }
    }
    assert!(found.is_empty(), "git started outside src/git: {found:?}");
}
