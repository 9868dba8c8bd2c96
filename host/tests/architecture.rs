//! The layout rules of `host/src`, checked from the source text
//! (docs/architecture.md explains them):
//!
//! - no import circle at any level of the module tree: among the children
//!   of any module, counting everything inside each child, the "uses"
//!   arrows form no cycle (a parent's own file may use its children and be
//!   used by them: that is containment, not a circle);
//! - every arrow between the top-level parts points down the layering below.
//!
//! Run it alone with `cargo test -p sluice-host --test architecture`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The top-level parts of the library, each with the parts it may use.
/// The order is the order of the layers, lowest first.
const LAYERS: &[(&str, &[&str])] = &[
    ("config", &[]),
    ("problem", &[]),
    ("metrics", &[]),
    ("telemetry", &[]),
    ("store", &["config"]),
    ("runtime", &["config", "store"]),
    ("catalog", &["config", "store", "runtime", "problem"]),
    (
        "pipeline",
        &[
            "config",
            "store",
            "runtime",
            "catalog",
            "problem",
            "metrics",
            "telemetry",
        ],
    ),
    (
        "delivery",
        &[
            "config",
            "store",
            "runtime",
            "catalog",
            "pipeline",
            "metrics",
            "telemetry",
        ],
    ),
    ("policy", &["config", "store", "catalog", "pipeline"]),
    (
        "admin",
        &[
            "config", "store", "runtime", "catalog", "pipeline", "policy", "problem", "metrics",
        ],
    ),
    (
        "app",
        &[
            "config", "store", "runtime", "catalog", "pipeline", "delivery", "policy", "admin",
            "metrics",
        ],
    ),
    (
        "server",
        &["config", "catalog", "pipeline", "delivery", "admin", "app"],
    ),
];

/// A module path inside one crate, e.g. `["store", "commit"]`; empty for the root.
type ModPath = Vec<String>;

/// One source file, as tokens.
struct Module {
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    Punct(char),
    /// `::`
    PathSep,
}

/// Splits Rust source into identifiers and punctuation, dropping comments,
/// string, char and byte literals, numbers and lifetimes.
fn tokenize(src: &str) -> Vec<Token> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < bytes.len() {
                    if bytes[i] == b'/' && bytes.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            b'"' => i = skip_string(bytes, i + 1),
            b'r' | b'b' if is_raw_string(bytes, i) => i = skip_raw_string(bytes, i),
            b'b' if bytes.get(i + 1) == Some(&b'"') => i = skip_string(bytes, i + 2),
            b'b' if bytes.get(i + 1) == Some(&b'\'') => i = skip_char(bytes, i + 1),
            b'\'' => i = skip_char(bytes, i),
            b':' if bytes.get(i + 1) == Some(&b':') => {
                out.push(Token::PathSep);
                i += 2;
            }
            c if c == b'_' || c.is_ascii_alphabetic() => {
                let start = i;
                while i < bytes.len() && (bytes[i] == b'_' || bytes[i].is_ascii_alphanumeric()) {
                    i += 1;
                }
                let word = &src[start..i];
                // `r#ident`
                let word = word.strip_prefix("r#").unwrap_or(word);
                out.push(Token::Ident(word.to_owned()));
            }
            c if c.is_ascii_digit() => {
                while i < bytes.len() && (bytes[i] == b'_' || bytes[i].is_ascii_alphanumeric()) {
                    i += 1;
                }
            }
            c if c.is_ascii_whitespace() => i += 1,
            c => {
                out.push(Token::Punct(c as char));
                i += 1;
            }
        }
    }
    out
}

fn skip_string(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    i
}

fn is_raw_string(bytes: &[u8], i: usize) -> bool {
    let mut j = i;
    if bytes[j] == b'b' {
        j += 1;
    }
    if bytes.get(j) != Some(&b'r') {
        return false;
    }
    j += 1;
    while bytes.get(j) == Some(&b'#') {
        j += 1;
    }
    // Not part of a longer identifier such as `br_x` or `attr`.
    let before_ok = i == 0 || !(bytes[i - 1] == b'_' || bytes[i - 1].is_ascii_alphanumeric());
    before_ok && bytes.get(j) == Some(&b'"')
}

fn skip_raw_string(bytes: &[u8], mut i: usize) -> usize {
    if bytes[i] == b'b' {
        i += 1;
    }
    i += 1; // r
    let mut hashes = 0;
    while bytes.get(i) == Some(&b'#') {
        hashes += 1;
        i += 1;
    }
    i += 1; // "
    while i < bytes.len() {
        if bytes[i] == b'"' && bytes[i + 1..].iter().take(hashes).all(|b| *b == b'#') {
            return i + 1 + hashes;
        }
        i += 1;
    }
    i
}

/// A char literal (`'a'`, `'\n'`, `'\u{..}'`) is skipped; a lifetime (`'a`)
/// is skipped up to its name.
fn skip_char(bytes: &[u8], i: usize) -> usize {
    // bytes[i] == '\''
    if bytes.get(i + 1) == Some(&b'\\') {
        let mut j = i + 2;
        while j < bytes.len() && bytes[j] != b'\'' {
            j += 1;
        }
        return j + 1;
    }
    // 'x' (any one UTF-8 character, then a quote)
    let mut j = i + 1;
    if j < bytes.len() {
        j += utf8_len(bytes[j]);
    }
    if bytes.get(j) == Some(&b'\'') {
        return j + 1;
    }
    // A lifetime or label: drop the quote and the name.
    let mut j = i + 1;
    while j < bytes.len() && (bytes[j] == b'_' || bytes[j].is_ascii_alphanumeric()) {
        j += 1;
    }
    j
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

/// Every module of the crate rooted at `root_file`, found through its
/// `mod name;` declarations (inline modules count as part of their file).
fn crate_modules(src: &Path, root_file: &Path) -> BTreeMap<ModPath, Module> {
    let mut modules = BTreeMap::new();
    let mut pending = vec![(Vec::new(), root_file.to_owned())];
    while let Some((path, file)) = pending.pop() {
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        let tokens = tokenize(&text);
        for name in declared_modules(&tokens) {
            let dir = if path.is_empty() {
                src.to_owned()
            } else {
                let is_mod_rs = file.file_name().is_some_and(|n| n == "mod.rs");
                if is_mod_rs {
                    file.parent().map(Path::to_owned).unwrap_or_default()
                } else {
                    file.with_extension("")
                }
            };
            let flat = dir.join(format!("{name}.rs"));
            let nested = dir.join(&name).join("mod.rs");
            let child_file = if flat.is_file() {
                flat
            } else if nested.is_file() {
                nested
            } else {
                continue; // e.g. a module generated by a macro
            };
            let mut child = path.clone();
            child.push(name);
            pending.push((child, child_file));
        }
        modules.insert(path, Module { tokens });
    }
    modules
}

/// The `mod name;` (not `mod name { … }`) declarations in a file.
fn declared_modules(tokens: &[Token]) -> Vec<String> {
    let mut names = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        if *t == Token::Ident("mod".into())
            && let (Some(Token::Ident(name)), Some(Token::Punct(';'))) =
                (tokens.get(i + 1), tokens.get(i + 2))
        {
            names.push(name.clone());
        }
    }
    names
}

/// A path as written: its segments (`crate`, `super`, `self` included),
/// and whether it comes from a `pub use` (a re-export) with the name it is
/// exported as.
struct Written {
    segments: Vec<String>,
    reexport: Option<String>,
}

/// Every path in a file: the leaves of each `use` tree, and each
/// `crate::…`, `super::…` or `self::…` path in the code.
fn written_paths(tokens: &[Token]) -> Vec<Written> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        if tokens[i] == Token::Ident("use".into()) {
            let public = i > 0
                && (tokens[i - 1] == Token::Ident("pub".into())
                    || (tokens[i - 1] == Token::Punct(')')
                        && tokens[..i].iter().rev().nth(3) == Some(&Token::Ident("pub".into()))));
            let end = tokens[i..]
                .iter()
                .position(|t| *t == Token::Punct(';'))
                .map_or(tokens.len(), |p| i + p);
            let mut leaves = Vec::new();
            use_tree(&tokens[i + 1..end], Vec::new(), &mut leaves);
            for (segments, alias) in leaves {
                out.push(Written {
                    segments,
                    reexport: public.then_some(alias),
                });
            }
            i = end + 1;
            continue;
        }
        let starts_path = matches!(&tokens[i], Token::Ident(w) if w == "crate" || w == "super" || w == "self")
            && tokens.get(i + 1) == Some(&Token::PathSep)
            && !(i > 0 && tokens[i - 1] == Token::PathSep);
        if starts_path {
            let mut segments = Vec::new();
            let mut j = i;
            while let Some(Token::Ident(w)) = tokens.get(j) {
                segments.push(w.clone());
                if tokens.get(j + 1) != Some(&Token::PathSep) {
                    break;
                }
                j += 2;
            }
            i = j + 1;
            out.push(Written {
                segments,
                reexport: None,
            });
            continue;
        }
        i += 1;
    }
    out
}

/// Flattens a `use` tree into its leaves: (path, name it is bound to).
fn use_tree(tokens: &[Token], prefix: Vec<String>, out: &mut Vec<(Vec<String>, String)>) {
    // Split at top-level commas.
    let mut depth = 0;
    let mut start = 0;
    let mut parts = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        match t {
            Token::Punct('{') => depth += 1,
            Token::Punct('}') => depth -= 1,
            Token::Punct(',') if depth == 0 => {
                parts.push(&tokens[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&tokens[start..]);
    for part in parts {
        let mut path = prefix.clone();
        let mut i = 0;
        let mut alias = None;
        while i < part.len() {
            match &part[i] {
                Token::Ident(w) if w == "as" => {
                    if let Some(Token::Ident(a)) = part.get(i + 1) {
                        alias = Some(a.clone());
                    }
                    break;
                }
                Token::Ident(w) => path.push(w.clone()),
                Token::PathSep => {}
                Token::Punct('{') => {
                    let inner = &part[i + 1..part.len().saturating_sub(1)];
                    use_tree(inner, path.clone(), out);
                    path.clear();
                    break;
                }
                Token::Punct('*') => {
                    path.push("*".into());
                    break;
                }
                _ => {}
            }
            i += 1;
        }
        if path.is_empty() {
            continue;
        }
        // `use a::{self}` binds `a`.
        if path.last().is_some_and(|l| l == "self") && path.len() > 1 {
            path.pop();
        }
        let name = alias.unwrap_or_else(|| path.last().cloned().unwrap_or_default());
        out.push((path, name));
    }
}

/// The crate's modules and what each re-exports, for resolving paths.
struct Crate {
    modules: BTreeMap<ModPath, Module>,
    /// (module, exported name) → the path it re-exports, made absolute.
    reexports: BTreeMap<(ModPath, String), Vec<String>>,
}

impl Crate {
    fn load(src: &Path, root_file: &Path) -> Self {
        let modules = crate_modules(src, root_file);
        let mut reexports = BTreeMap::new();
        for (path, module) in &modules {
            for written in written_paths(&module.tokens) {
                if let Some(name) = written.reexport
                    && let Some(absolute) = absolute(&modules, path, &written.segments)
                {
                    reexports.insert((path.clone(), name), absolute);
                }
            }
        }
        Self { modules, reexports }
    }

    /// The deepest module of this crate that `segments`, written in module
    /// `from`, names; `None` for paths into other crates.
    fn resolve(&self, from: &ModPath, segments: &[String]) -> Option<ModPath> {
        let absolute = absolute(&self.modules, from, segments)?;
        Some(self.module_of(absolute, 0))
    }

    fn module_of(&self, absolute: Vec<String>, hops: usize) -> ModPath {
        let mut module: ModPath = Vec::new();
        for (i, segment) in absolute.iter().enumerate() {
            let mut child = module.clone();
            child.push(segment.clone());
            if self.modules.contains_key(&child) {
                module = child;
                continue;
            }
            // Not a module: a re-exported name leads on to its source.
            if hops < 8
                && let Some(target) = self.reexports.get(&(module.clone(), segment.clone()))
            {
                let mut next = target.clone();
                next.extend(absolute[i + 1..].iter().cloned());
                return self.module_of(next, hops + 1);
            }
            break;
        }
        module
    }
}

/// `segments` made relative to the crate root, or `None` when they start
/// outside this crate.
fn absolute(
    modules: &BTreeMap<ModPath, Module>,
    from: &ModPath,
    segments: &[String],
) -> Option<Vec<String>> {
    let mut base = from.clone();
    let mut rest = segments;
    match segments.first().map(String::as_str) {
        Some("crate") => {
            base.clear();
            rest = &segments[1..];
        }
        Some("super") | Some("self") => {
            while let Some(first) = rest.first() {
                match first.as_str() {
                    "super" => {
                        base.pop()?;
                    }
                    "self" => {}
                    _ => break,
                }
                rest = &rest[1..];
            }
        }
        Some(first) => {
            // Edition 2018+: a `use` may start at a child module.
            let mut child = from.clone();
            child.push(first.to_owned());
            if !modules.contains_key(&child) {
                return None;
            }
        }
        None => return None,
    }
    base.extend(rest.iter().cloned());
    Some(base)
}

/// Every "module `a` uses module `b`" arrow, between distinct modules.
fn arrows(krate: &Crate) -> BTreeSet<(ModPath, ModPath)> {
    let mut arrows = BTreeSet::new();
    for (path, module) in &krate.modules {
        for written in written_paths(&module.tokens) {
            if let Some(target) = krate.resolve(path, &written.segments)
                && target != *path
            {
                arrows.insert((path.clone(), target));
            }
        }
    }
    arrows
}

/// For each module with children: the arrows between its children (each
/// child standing for everything inside it), and the cycles among them.
fn sibling_cycles(krate: &Crate, arrows: &BTreeSet<(ModPath, ModPath)>) -> Vec<String> {
    let mut problems = Vec::new();
    for parent in krate.modules.keys() {
        let depth = parent.len();
        let child_of = |m: &ModPath| -> Option<String> {
            (m.len() > depth && m[..depth] == parent[..]).then(|| m[depth].clone())
        };
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut witness: BTreeMap<(String, String), (ModPath, ModPath)> = BTreeMap::new();
        for (from, to) in arrows {
            if let (Some(a), Some(b)) = (child_of(from), child_of(to))
                && a != b
            {
                graph.entry(a.clone()).or_default().insert(b.clone());
                witness
                    .entry((a, b))
                    .or_insert_with(|| (from.clone(), to.clone()));
            }
        }
        for cycle in cycles(&graph) {
            let shown: Vec<String> = cycle
                .windows(2)
                .map(|w| {
                    let (from, to) = &witness[&(w[0].clone(), w[1].clone())];
                    format!("{} → {}", show(from), show(to))
                })
                .collect();
            problems.push(format!(
                "circle among the children of `{}`: {} ({})",
                show(parent),
                cycle.join(" → "),
                shown.join(", ")
            ));
        }
    }
    problems
}

/// One cycle through each strongly connected component of two or more
/// nodes, as a closed walk (first node repeated at the end).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let mut done: BTreeSet<String> = BTreeSet::new();
    for start in graph.keys() {
        if done.contains(start) {
            continue;
        }
        // Breadth-first from `start` back to itself: the shortest cycle.
        let mut previous: BTreeMap<String, String> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start.clone()]);
        let mut closed = None;
        while let Some(node) = queue.pop_front() {
            for next in graph.get(&node).into_iter().flatten() {
                if next == start {
                    closed = Some(node.clone());
                    break;
                }
                if !previous.contains_key(next) {
                    previous.insert(next.clone(), node.clone());
                    queue.push_back(next.clone());
                }
            }
            if closed.is_some() {
                break;
            }
        }
        if let Some(last) = closed {
            let mut walk = vec![last.clone()];
            let mut at = last;
            while at != *start {
                at = previous[&at].clone();
                walk.push(at.clone());
            }
            walk.reverse();
            walk.push(start.clone());
            done.extend(walk.iter().cloned());
            found.push(walk);
        }
    }
    found
}

fn show(path: &ModPath) -> String {
    if path.is_empty() {
        "crate".into()
    } else {
        path.join("::")
    }
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn no_import_circle_in_the_library() {
    let src = src();
    let krate = Crate::load(&src, &src.join("lib.rs"));
    let problems = sibling_cycles(&krate, &arrows(&krate));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn no_import_circle_in_the_binary() {
    let src = src();
    let krate = Crate::load(&src, &src.join("main.rs"));
    let problems = sibling_cycles(&krate, &arrows(&krate));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn top_level_parts_use_only_the_layers_below() {
    let src = src();
    let krate = Crate::load(&src, &src.join("lib.rs"));
    let allowed: BTreeMap<&str, &[&str]> = LAYERS.iter().copied().collect();
    let mut problems = Vec::new();
    for top in krate.modules.keys().filter(|p| p.len() == 1) {
        if !allowed.contains_key(top[0].as_str()) {
            problems.push(format!(
                "`{}` is not in this test's LAYERS: place it (and in docs/architecture.md)",
                top[0]
            ));
        }
    }
    for (from, to) in arrows(&krate) {
        let (Some(a), Some(b)) = (from.first(), to.first()) else {
            continue;
        };
        if a == b {
            continue;
        }
        if let Some(may) = allowed.get(a.as_str())
            && !may.contains(&b.as_str())
        {
            problems.push(format!(
                "`{}` uses `{}`, but {a} may use only {may:?}",
                show(&from),
                show(&to)
            ));
        }
    }
    problems.sort();
    problems.dedup();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_checker_sees_circles_and_reexports() {
    let tokens = tokenize(
        "use crate::store::{Store, files::{self, StagedFile as F}};\n\
         // use crate::ignored;\n\
         let s = \"crate::not_a_path\"; let c = '\"'; fn f<'a>() {}\n\
         pub use super::x::Y;\n\
         crate::runtime::call();",
    );
    let paths: Vec<(String, Option<String>)> = written_paths(&tokens)
        .into_iter()
        .map(|w| (w.segments.join("::"), w.reexport))
        .collect();
    assert_eq!(
        paths,
        [
            ("crate::store::Store".to_owned(), None),
            ("crate::store::files".to_owned(), None),
            ("crate::store::files::StagedFile".to_owned(), None),
            ("super::x::Y".to_owned(), Some("Y".to_owned())),
            ("crate::runtime::call".to_owned(), None),
        ]
    );
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a".to_owned(), BTreeSet::from(["b".to_owned()])),
        ("b".to_owned(), BTreeSet::from(["c".to_owned()])),
        ("c".to_owned(), BTreeSet::from(["a".to_owned()])),
        ("d".to_owned(), BTreeSet::from(["a".to_owned()])),
    ]
    .into_iter()
    .collect();
    assert_eq!(cycles(&graph), [["a", "b", "c", "a"]]);
}
