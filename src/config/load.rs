//! Reading and validating configuration. Every error names the file, line and column, and the key
//! or value at fault.

use std::ops::Range;
use std::path::{Path, PathBuf};

use super::{AgentEntry, Config, PROJECT_FILE, PersonalConfig};
use crate::error::Error;
use crate::error::Result;
use crate::git::Repo;
use crate::git::objects;

/// One configuration text and the name we show for it.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub text: String,
}

impl Source {
    /// `name:line:column` of a byte offset.
    pub fn location(&self, span: &Range<usize>) -> String {
        let upto = &self.text[..span.start.min(self.text.len())];
        let line = upto.matches('\n').count() + 1;
        let col = upto.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        format!("{}:{line}:{col}", self.name)
    }

    fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        toml::from_str(&self.text).map_err(|e| {
            let at = match e.span() {
                Some(span) => self.location(&span),
                None => self.name.clone(),
            };
            Error::usage_hint(
                format!("{at}: {}", e.message().trim()),
                format!("fix {} (keys are listed in docs/config.md)", self.name),
            )
        })
    }
}

/// Where an agent definition came from, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Project,
    Personal,
}

#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: Config,
    pub project: Option<Source>,
    pub personal: Option<Source>,
    /// Which file each `[agents.<name>]` entry came from (personal entries override).
    pub agent_origin: std::collections::BTreeMap<String, Origin>,
}

impl LoadedConfig {
    pub fn source(&self, origin: Origin) -> Option<&Source> {
        match origin {
            Origin::Project => self.project.as_ref(),
            Origin::Personal => self.personal.as_ref(),
        }
    }

    /// `file:line:col` for a span in the project file.
    pub fn project_location(&self, span: &Range<usize>) -> String {
        self.project
            .as_ref()
            .map_or_else(|| PROJECT_FILE.to_owned(), |s| s.location(span))
    }

    pub fn agent_location(&self, name: &str, span: &Range<usize>) -> String {
        let origin = self
            .agent_origin
            .get(name)
            .copied()
            .unwrap_or(Origin::Project);
        self.source(origin)
            .map_or_else(|| format!("[agents.{name}]"), |s| s.location(span))
    }
}

pub fn personal_config_path() -> Option<PathBuf> {
    let base = match std::env::var_os("XDG_CONFIG_HOME") {
        Some(x) if !x.is_empty() && Path::new(&x).is_absolute() => PathBuf::from(x),
        _ => PathBuf::from(std::env::var_os("HOME")?).join(".config"),
    };
    Some(base.join("git-pipeline").join("config.toml"))
}

/// Load `.pipeline.toml` from `base` (a commit id; the worktree is the agent's and is not
/// trusted) and the personal config. `None` when neither exists.
pub fn load(repo: &Repo, base: &str, base_label: &str) -> Result<Option<LoadedConfig>> {
    if let Some(target) = objects::symlink_target(&repo.git(), base, PROJECT_FILE)? {
        return Err(Error::usage_hint(
            format!(
                "{PROJECT_FILE} at {base_label} is a symlink (to {target:?}); git-pipeline reads the config as committed, and a link is not a config"
            ),
            format!("commit {PROJECT_FILE} as a regular file"),
        ));
    }
    let project = objects::read_blob(&repo.git(), base, PROJECT_FILE)?
        .map(|bytes| {
            String::from_utf8(bytes).map_err(|_| {
                Error::usage(format!(
                    "{PROJECT_FILE} at {base_label} is not valid UTF-8 text"
                ))
            })
        })
        .transpose()?
        .map(|text| Source {
            name: format!("{PROJECT_FILE} (at {base_label})"),
            text,
        });
    let personal = match personal_config_path() {
        Some(path) => match std::fs::read_to_string(&path) {
            Ok(text) => Some(Source {
                name: path.display().to_string(),
                text,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                let why = if e.kind() == std::io::ErrorKind::InvalidData {
                    "it is not UTF-8 text".to_owned()
                } else {
                    e.to_string()
                };
                return Err(Error::usage_hint(
                    format!("cannot read your personal config {}: {why}", path.display()),
                    "fix it or move it away (it may hold only version, [agents] and [sandbox] writable)",
                ));
            }
        },
        None => None,
    };
    if project.is_none() && personal.is_none() {
        return Ok(None);
    }
    let mut config: Config = match &project {
        Some(src) => src.parse()?,
        None => toml::from_str("").map_err(|e| Error::other(e.to_string()))?,
    };
    if let Some(src) = &project {
        check_version(src, config.version.as_ref())?;
    }
    let mut agent_origin: std::collections::BTreeMap<String, Origin> = config
        .agents
        .keys()
        .map(|k| (k.clone(), Origin::Project))
        .collect();
    if let Some(src) = &personal {
        let mine: PersonalConfig = src.parse()?;
        check_version(src, mine.version.as_ref())?;
        for (name, entry) in mine.agents {
            agent_origin.insert(name.clone(), Origin::Personal);
            config.agents.insert(name, entry);
        }
        config.sandbox.writable.extend(mine.sandbox.writable);
    }
    let loaded = LoadedConfig {
        config,
        project,
        personal,
        agent_origin,
    };
    validate(&loaded)?;
    Ok(Some(loaded))
}

fn check_version(src: &Source, version: Option<&toml::Spanned<i64>>) -> Result<()> {
    match version {
        None => Ok(()),
        Some(v) if *v.get_ref() == 1 => Ok(()),
        Some(v) => Err(Error::usage_hint(
            format!(
                "{}: unsupported config version {}; this git-pipeline reads version 1",
                src.location(&v.span()),
                v.get_ref()
            ),
            "set `version = 1`, or upgrade git-pipeline",
        )),
    }
}

/// Checks that need more than the TOML shape: placeholders, globs, names, limits.
fn validate(loaded: &LoadedConfig) -> Result<()> {
    let c = &loaded.config;
    for (name, AgentEntry(list)) in &c.agents {
        for spec in list {
            let at = loaded.agent_location(name, &spec.command.span());
            match spec.command.get_ref() {
                super::CommandSpec::Argv(argv) if argv.is_empty() => {
                    return Err(Error::usage(format!(
                        "{at}: agents.{name}.command is empty; give the program and its arguments"
                    )));
                }
                super::CommandSpec::Argv(argv) => crate::preset::argv::check(argv)
                    .map_err(|e| Error::usage(format!("{at}: agents.{name}.command: {e}")))?,
                super::CommandSpec::Preset(p) if crate::preset::find(p).is_none() => {
                    return Err(Error::usage_hint(
                        format!("{at}: agents.{name}.command: unknown preset {p:?}"),
                        format!(
                            "presets: {}; or give an argv list",
                            crate::preset::names().join(", ")
                        ),
                    ));
                }
                super::CommandSpec::Preset(_) => {}
            }
            for extra in [&spec.session_start, &spec.session_resume]
                .into_iter()
                .flatten()
            {
                crate::preset::argv::check(extra)
                    .map_err(|e| Error::usage(format!("{at}: agents.{name}: {e}")))?;
            }
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for gate in &c.gates {
        let at = loaded.project_location(&gate.name.span());
        let name = gate.name.get_ref();
        if name.trim().is_empty() {
            return Err(Error::usage(format!("{at}: a gate needs a name")));
        }
        if !seen.insert(name.clone()) {
            return Err(Error::usage(format!("{at}: two gates are named {name:?}")));
        }
        match &gate.builtin {
            Some(b) => {
                let at = loaded.project_location(&b.span());
                if !gate.command.get_ref().is_empty() {
                    return Err(Error::usage(format!(
                        "{at}: gate {name:?} has both a command and a builtin; give one"
                    )));
                }
                super::gates::builtin(gate).map_err(|e| Error::usage(format!("{at}: {e}")))?;
            }
            None if gate.command.get_ref().is_empty() => {
                let at = loaded.project_location(&gate.name.span());
                return Err(Error::usage(format!(
                    "{at}: gate {name:?} has no command; give `command = [...]` or `builtin = \"duplicates\"`"
                )));
            }
            None => {
                if gate.min_tokens.is_some()
                    || gate.engine.is_some()
                    || gate.min_lines.is_some()
                    || !gate.languages.is_empty()
                    || !gate.ignore.is_empty()
                {
                    return Err(Error::usage(format!(
                        "{at}: gate {name:?}: min_tokens, min_lines, languages, ignore and engine are settings of `builtin = \"duplicates\"`"
                    )));
                }
            }
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for step in &c.setup {
        let at = loaded.project_location(&step.name.span());
        let name = step.name.get_ref();
        if name.trim().is_empty() {
            return Err(Error::usage(format!("{at}: a setup step needs a name")));
        }
        if !seen.insert(name.clone()) {
            return Err(Error::usage(format!(
                "{at}: two setup steps are named {name:?}"
            )));
        }
        if step.command.get_ref().is_empty() {
            return Err(Error::usage(format!(
                "{at}: setup step {name:?} has no command; give `command = [...]`"
            )));
        }
        for glob in &step.when_changed {
            if glob.starts_with('/') || glob.split('/').any(|part| part == "..") {
                return Err(Error::usage(format!(
                    "{at}: setup step {name:?}: when_changed {glob:?} must be a path in the repository (no leading / or ..)"
                )));
            }
            crate::globs::compile_glob(glob).map_err(|e| {
                Error::usage(format!("{at}: setup step {name:?}: when_changed: {e}"))
            })?;
        }
    }
    for pattern in c.run.caches.iter().flatten() {
        if pattern.trim().is_empty() || pattern.starts_with('!') || pattern.contains("..") {
            return Err(Error::usage(format!(
                "run.caches: {pattern:?} is not a folder pattern (e.g. \"/target/\" or \"node_modules/\")"
            )));
        }
    }
    let docs_when = Some(c.docs.when.clone());
    let docs_paths = Some(c.docs.paths.clone());
    for (key, list) in [
        ("scope.allow", &c.scope.allow),
        ("scope.create", &c.scope.create),
        ("scope.deny", &c.scope.deny),
        ("docs.when", &docs_when),
        ("docs.paths", &docs_paths),
    ] {
        for glob in list.iter().flatten() {
            crate::globs::compile_glob(glob.get_ref()).map_err(|e| {
                Error::usage(format!(
                    "{}: {key}: {e}",
                    loaded.project_location(&glob.span())
                ))
            })?;
        }
    }
    if c.plan.max_rounds == 0 {
        return Err(Error::usage(
            "plan.max_rounds must be at least 1: the plan has to be reviewed",
        ));
    }
    if c.verify.max_rounds == 0 {
        return Err(Error::usage(
            "verify.max_rounds must be at least 1: the verifier has to run",
        ));
    }
    if !c.run.branch_prefix.is_empty() && !c.run.branch_prefix.ends_with('/') {
        return Err(Error::usage_hint(
            format!(
                "run.branch_prefix {:?} must end with '/'",
                c.run.branch_prefix
            ),
            "use a folder-like prefix such as \"pipeline/\"",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn source(text: &str) -> Source {
        Source {
            name: ".pipeline.toml".to_owned(),
            text: text.to_owned(),
        }
    }

    proptest! {
        /// Any text parses or fails with a usage error that names the file; never a panic.
        #[test]
        fn arbitrary_text_never_panics(text in ".{0,300}") {
            if let Err(e) = source(&text).parse::<Config>() {
                prop_assert!(e.to_string().starts_with(".pipeline.toml"), "{e}");
                let is_usage = matches!(e, Error::Usage { .. });
                prop_assert!(is_usage, "not a usage error: {e}");
            }
        }

        /// Config-shaped text with random keys and values: same promise.
        #[test]
        fn config_shaped_text_never_panics(
            table in "(run|scope|limits|verify|risk|push|plan|docs|containment|agents\\.[a-z]{1,6}|\\[gates\\]|nope)",
            key in "[a-z_]{1,16}",
            value in "(\"[^\"\\\\]{0,10}\"|[0-9]{1,5}|true|false|\\[\\]|\\[\"a\"\\]|\\{\\})",
        ) {
            let text = format!("version = 1\n[{table}]\n{key} = {value}\n");
            if let Err(e) = source(&text).parse::<Config>() {
                prop_assert!(e.to_string().contains(":"), "{e}");
            }
        }
    }
}
