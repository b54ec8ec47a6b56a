//! Everything wrong with a bundle, at once: ids, tasks, globs, gates, the graph (duplicates,
//! unknown dependencies, cycles), and scopes that overlap.
//!
//! Two workstreams overlap when both may modify the same existing file of the base commit: run
//! in parallel, they would edit it independently and their results would conflict. A workstream
//! that depends on another (directly or not) never runs beside it, so that pair never overlaps. The check is
//! one pass over the base's files with one combined glob set, so its cost grows with the number
//! of files, not with files × workstreams.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use globset::GlobSetBuilder;

use super::Problem;
use super::dag::Graph;
use super::spec::{Bundle, Workstream};
use crate::config::LoadedConfig;
use crate::error::{Error, Result};
use crate::git::{Repo, objects};
use crate::globs::Globs;
use crate::globs::compile_glob;

/// What the bundle is checked against: the project's config and the base commit's files.
#[derive(Debug, Default)]
pub struct Context {
    /// Names of the configured gates; `None` leaves `gates` unchecked.
    pub gates: Option<Vec<String>>,
    /// The config's `scope.allow`, for workstreams that give no scope of their own.
    pub config_allow: Option<Vec<String>>,
    pub deny: Vec<String>,
    /// The existing files at the base; `None` leaves overlaps unchecked.
    pub files: Option<Vec<PathBuf>>,
}

const MAX_ID: usize = 64;

pub fn validate(bundle: &Bundle, ctx: &Context) -> (Graph, Vec<Problem>) {
    let mut problems = Vec::new();
    for w in &bundle.workstreams {
        check_fields(w, ctx, &mut problems);
    }
    let (graph, graph_problems) = Graph::new(&bundle.workstreams);
    problems.extend(graph_problems);
    for cycle in graph.cycles() {
        problems.push(Problem {
            workstream: cycle.first().cloned(),
            message: format!(
                "dependency cycle: {} (each depends on the next)",
                cycle.join(" → ")
            ),
        });
    }
    if !bundle.allow_overlap
        && let Some(files) = &ctx.files
    {
        problems.extend(overlaps(bundle, ctx, files, &graph));
    }
    (graph, problems)
}

fn check_fields(w: &Workstream, ctx: &Context, problems: &mut Vec<Problem>) {
    let id_ok = !w.id.is_empty()
        && w.id.len() <= MAX_ID
        && !w.id.starts_with(['.', '-'])
        && w.id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !id_ok {
        problems.push(Problem::of(
            &w.id,
            format!(
                "invalid id {:?}: use 1 to {MAX_ID} letters, digits, '.', '_' or '-', not starting with '.' or '-'",
                w.id
            ),
        ));
    }
    if w.task.trim().is_empty() {
        problems.push(Problem::of(&w.id, "the task is empty".to_owned()));
    } else if w.task.contains('\0') {
        problems.push(Problem::of(
            &w.id,
            "the task contains a NUL byte".to_owned(),
        ));
    }
    for (key, globs) in [("scope", &w.scope), ("create", &w.create)] {
        for g in globs {
            if let Err(e) = compile_glob(g) {
                problems.push(Problem::of(&w.id, format!("{key}: {e}")));
            }
        }
    }
    if let (Some(names), Some(known)) = (&w.gates, &ctx.gates) {
        for n in names {
            if !known.contains(n) {
                problems.push(Problem::of(
                    &w.id,
                    format!(
                        "gate {n:?} is not configured (gates in .pipeline.toml: {})",
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ),
                ));
            }
        }
    }
}

/// The globs a workstream may modify existing files with, the way a run builds its scope:
/// its own `scope`, else the config's `scope.allow`; `create` alone lets nothing existing
/// change; neither makes it unrestricted (`None`).
fn modify_globs(w: &Workstream, ctx: &Context) -> Option<Vec<String>> {
    if !w.scope.is_empty() {
        return Some(w.scope.clone());
    }
    match &ctx.config_allow {
        Some(a) => Some(a.clone()),
        None if !w.create.is_empty() => Some(Vec::new()),
        None => None,
    }
}

const EXAMPLES: usize = 3;
/// Pairs reported at most: a bundle where everything overlaps needs one line, not millions.
const MAX_PAIRS: usize = 50;

fn overlaps(bundle: &Bundle, ctx: &Context, files: &[PathBuf], graph: &Graph) -> Vec<Problem> {
    let ws = &bundle.workstreams;
    // Overlap matters only between workstreams that can run at once: one that depends on the
    // other (directly or not) starts from its result.
    let mut downstream: std::collections::HashMap<usize, std::collections::HashSet<usize>> =
        std::collections::HashMap::new();
    let mut ordered = |i: usize, j: usize| {
        let (Some(gi), Some(gj)) = (graph.index_of(&ws[i].id), graph.index_of(&ws[j].id)) else {
            return false;
        };
        let mut below = |g: usize| -> bool {
            let other = if g == gi { gj } else { gi };
            downstream
                .entry(g)
                .or_insert_with(|| graph.downstream(g).into_iter().collect())
                .contains(&other)
        };
        // Each below the other is a cycle (reported as such): no order to rely on.
        below(gi) != below(gj)
    };
    let mut builder = GlobSetBuilder::new();
    let mut owner = Vec::new();
    let mut unrestricted = Vec::new();
    for (i, w) in ws.iter().enumerate() {
        match modify_globs(w, ctx) {
            None => unrestricted.push(i),
            Some(globs) => {
                for g in globs {
                    // Invalid globs are reported by check_fields.
                    if let Ok(glob) = compile_glob(&g) {
                        builder.add(glob);
                        owner.push(i);
                    }
                }
            }
        }
    }
    let (Ok(set), Ok(deny)) = (builder.build(), Globs::new(&ctx.deny)) else {
        return Vec::new();
    };
    // (i, j) -> how many files, and the first few.
    let mut pairs: BTreeMap<(usize, usize), (usize, Vec<&Path>)> = BTreeMap::new();
    let mut more_pairs = 0usize;
    let mut who: Vec<usize> = Vec::new();
    for f in files {
        if crate::policy::scope::always_denied(f).is_some() || deny.is_match(f) {
            continue;
        }
        who.clear();
        who.extend(set.matches(f).into_iter().map(|g| owner[g]));
        who.extend(unrestricted.iter().copied());
        if who.len() < 2 {
            continue;
        }
        who.sort_unstable();
        who.dedup();
        for a in 0..who.len() {
            for b in a + 1..who.len() {
                let (i, j) = (who[a], who[b]);
                if ws[i].allow_overlap || ws[j].allow_overlap || ws[i].id == ws[j].id {
                    continue;
                }
                if !pairs.contains_key(&(i, j)) && ordered(i, j) {
                    continue;
                }
                if let Some((n, ex)) = pairs.get_mut(&(i, j)) {
                    *n += 1;
                    if ex.len() < EXAMPLES {
                        ex.push(f);
                    }
                } else if pairs.len() < MAX_PAIRS {
                    pairs.insert((i, j), (1, vec![f.as_path()]));
                } else {
                    more_pairs += 1;
                }
            }
        }
    }
    let mut out: Vec<Problem> = pairs
        .into_iter()
        .map(|((i, j), (n, examples))| {
            let names: Vec<String> = examples.iter().map(|p| p.display().to_string()).collect();
            let rest = if n > names.len() {
                format!(" and {} more", n - names.len())
            } else {
                String::new()
            };
            Problem::of(
                &ws[i].id,
                format!(
                    "overlaps with {:?}: both may modify {}{rest} (narrow their scopes, or set \"allow_overlap\": true)",
                    ws[j].id,
                    names.join(", ")
                ),
            )
        })
        .collect();
    if more_pairs > 0 {
        out.push(Problem {
            workstream: None,
            message: format!("... and more overlapping pairs of workstreams ({more_pairs} file matches not listed)"),
        });
    }
    out
}

/// A bundle read and validated against the repository: what `git pipeline plan` shows.
pub struct Checked {
    pub bundle: Bundle,
    pub graph: Graph,
    /// What could not be checked, and why (no repository, no config).
    pub notes: Vec<String>,
}

/// Read and validate a bundle. In a repository, against the config and the files of `base`.
pub fn check(path: &Path, repo: Option<(&Repo, &str, &LoadedConfig)>) -> Result<Checked> {
    let source = path.display().to_string();
    let bundle = super::spec::load(path).map_err(|p| invalid(&source, &p))?;
    check_bundle(bundle, &source, repo)
}

/// Validate a bundle already read (from a file, or from a planner's output).
pub fn check_bundle(
    bundle: Bundle,
    source: &str,
    repo: Option<(&Repo, &str, &LoadedConfig)>,
) -> Result<Checked> {
    let mut notes = Vec::new();
    let ctx = match repo {
        None => {
            notes.push(
                "not in a git repository: gates and overlapping scopes were not checked".to_owned(),
            );
            Context::default()
        }
        Some((repo, base, loaded)) => {
            let c = &loaded.config;
            let strings = |v: &[toml::Spanned<String>]| {
                v.iter().map(|s| s.get_ref().clone()).collect::<Vec<_>>()
            };
            let mut files = Vec::new();
            objects::for_each_file(&repo.git(), base, |p| files.push(p.to_owned()))?;
            Context {
                gates: Some(c.gates.iter().map(|g| g.name.get_ref().clone()).collect()),
                config_allow: c.scope.allow.as_deref().map(strings),
                deny: c.scope.deny.as_deref().map(strings).unwrap_or_default(),
                files: Some(files),
            }
        }
    };
    let (graph, problems) = validate(&bundle, &ctx);
    if !problems.is_empty() {
        return Err(invalid(source, &problems));
    }
    Ok(Checked {
        bundle,
        graph,
        notes,
    })
}

fn invalid(source: &str, problems: &[crate::bundle::Problem]) -> Error {
    Error::Invalid {
        message: format!(
            "the bundle {source} is not valid ({} problem{})",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" }
        ),
        problems: problems.iter().map(ToString::to_string).collect(),
        hint: format!("fix them, then check again with: git pipeline plan {source}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::spec::parse;

    fn files(list: &[&str]) -> Option<Vec<PathBuf>> {
        Some(list.iter().map(PathBuf::from).collect())
    }

    #[test]
    fn overlapping_scopes_are_named_with_the_files() {
        let b = parse(
            br#"{"workstreams":[
              {"id":"api","task":"a","scope":["src/api/**","src/shared.rs"]},
              {"id":"cli","task":"b","scope":["src/cli/**","src/*.rs"]},
              {"id":"doc","task":"c","scope":["docs/**"]}]}"#,
            "b.json",
        )
        .expect("bundle");
        let ctx = Context {
            files: files(&[
                "src/api/a.rs",
                "src/cli/c.rs",
                "src/shared.rs",
                "docs/x.md",
                "Cargo.toml",
            ]),
            ..Context::default()
        };
        let (_, p) = validate(&b, &ctx);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].workstream.as_deref(), Some("api"));
        assert!(
            p[0].message.contains("\"cli\"") && p[0].message.contains("src/shared.rs"),
            "{}",
            p[0].message
        );
    }

    #[test]
    fn a_dependent_may_share_its_dependencys_scope_but_siblings_may_not() {
        let text = br#"{"workstreams":[
            {"id":"a","task":"a","scope":["x"]},
            {"id":"b","task":"b","scope":["x"],"depends_on":["a"]},
            {"id":"c","task":"c","scope":["x"],"depends_on":["b"]},
            {"id":"d","task":"d","scope":["x"],"depends_on":["a"]}]}"#;
        let b = parse(text, "b.json").expect("parses");
        let ctx = Context {
            files: Some(vec![PathBuf::from("x")]),
            ..Context::default()
        };
        let (_, problems) = validate(&b, &ctx);
        let msgs: Vec<String> = problems
            .iter()
            .map(|p| format!("{}: {}", p.workstream.as_deref().unwrap_or(""), p.message))
            .collect();
        // a < b < c is a chain; d runs beside b and c (both after a).
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        assert!(msgs[0].starts_with("b: overlaps with \"d\""), "{msgs:?}");
        assert!(msgs[1].starts_with("c: overlaps with \"d\""), "{msgs:?}");
    }

    #[test]
    fn deny_and_allow_overlap_remove_overlaps() {
        let text = br#"{"workstreams":[{"id":"a","task":"a"},{"id":"b","task":"b","allow_overlap":true},{"id":"c","task":"c","scope":["x"]}]}"#;
        let b = parse(text, "b.json").expect("bundle");
        // a is unrestricted: it overlaps c on x; b is allowed to overlap anything.
        let ctx = Context {
            files: files(&["x", "y"]),
            ..Context::default()
        };
        let (_, p) = validate(&b, &ctx);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].message.contains("\"c\""), "{p:?}");
        let ctx = Context {
            files: files(&["x", "y"]),
            deny: vec!["x".to_owned()],
            ..Context::default()
        };
        assert!(validate(&b, &ctx).1.is_empty());
    }

    #[test]
    fn every_problem_at_once() {
        let b = parse(
            br#"{"workstreams":[
              {"id":"a","task":"x","depends_on":["b"],"scope":["src/[oops"]},
              {"id":"b","task":"y","depends_on":["a","ghost"],"gates":["lint"]},
              {"id":"a","task":" "},
              {"id":"bad id","task":"z"}]}"#,
            "b.json",
        )
        .expect("bundle");
        let ctx = Context {
            gates: Some(vec!["test".to_owned()]),
            ..Context::default()
        };
        let (_, p) = validate(&b, &ctx);
        let text: Vec<&str> = p.iter().map(|p| p.message.as_str()).collect();
        let has = |s: &str| text.iter().any(|t| t.contains(s));
        assert!(has("invalid glob \"src/[oops\""), "{text:?}");
        assert!(has("gate \"lint\" is not configured"), "{text:?}");
        assert!(has("the task is empty"), "{text:?}");
        assert!(has("invalid id \"bad id\""), "{text:?}");
        assert!(has("duplicate id"), "{text:?}");
        assert!(has("\"ghost\", which is not a workstream"), "{text:?}");
        assert!(has("dependency cycle: a → b → a"), "{text:?}");
        assert_eq!(p.len(), 7, "{text:?}");
    }
}
