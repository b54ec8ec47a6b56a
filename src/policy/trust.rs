//! Trusting a repository's configuration. `.pipeline.toml` names commands (agents, gates) that
//! git-pipeline will run with the user's rights; a cloned repository's config is someone else's
//! text. Like direnv and mise, the first time a config is used on a machine `run` refuses until
//! the user has looked at it and said `git pipeline trust`. Trust is by content (the config's
//! blob id): any change to the file needs trusting again.
//!
//! A config needs no trust when it runs nothing of its own: no gates, and only agents whose
//! commands the user configured in their personal config.

use std::path::PathBuf;

use crate::config::AgentEntry;

use crate::config::LoadedConfig;

use crate::config::load::Origin;
use crate::error::Error;
use crate::error::Result;

/// `$XDG_DATA_HOME/git-pipeline/trusted` (default `~/.local/share/git-pipeline/trusted`): one
/// line per trusted config, `<blob id> <repository> <time>`.
pub fn store_path() -> Option<PathBuf> {
    let base = match std::env::var_os("XDG_DATA_HOME") {
        Some(x) if !x.is_empty() && std::path::Path::new(&x).is_absolute() => PathBuf::from(x),
        _ => PathBuf::from(std::env::var_os("HOME")?).join(".local/share"),
    };
    Some(base.join("git-pipeline").join("trusted"))
}

/// What trust is given to at `commit`: the config's blob id, joined by the tree id of
/// `.pipeline/` (the prompt templates the agents are told with) when the commit has one. A change
/// to either needs trusting again; a repository without `.pipeline/` keeps its old trust.
pub fn key(git: &crate::git::Git, commit: &str) -> Result<Option<String>> {
    let mut ids = crate::git::objects::ids_at(
        git,
        commit,
        &[
            crate::config::PROJECT_FILE,
            crate::policy::scope::POLICY_DIR,
        ],
    )?
    .into_iter();
    let (Some(Some(blob)), tree) = (ids.next(), ids.next().flatten()) else {
        return Ok(None);
    };
    Ok(Some(match tree {
        Some(tree) => format!("{blob}+{tree}"),
        None => blob.to_string(),
    }))
}

pub fn is_trusted(blob: &str) -> bool {
    store_path()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .is_some_and(|text| text.lines().any(|l| l.split(' ').next() == Some(blob)))
}

pub fn record(blob: &str, repo: &std::path::Path) -> Result<PathBuf> {
    use std::io::Write;
    let path = store_path()
        .ok_or_else(|| Error::usage("cannot find a home folder to keep the trusted configs in"))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io_path("create", dir, e))?;
    }
    if is_trusted(blob) {
        return Ok(path);
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| Error::io_path("open", &path, e))?;
    writeln!(f, "{blob} {} {}", repo.display(), crate::ids::now_rfc3339())
        .map_err(|e| Error::io_path("write", &path, e))?;
    Ok(path)
}

/// The commands the project's config would run: `(what, argv)`.
pub fn project_commands(loaded: &LoadedConfig) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, AgentEntry(list)) in &loaded.config.agents {
        if loaded.agent_origin.get(name) == Some(&Origin::Project) {
            for spec in list {
                out.push((format!("agent {name}"), spec.command.get_ref().describe()));
            }
        }
    }
    for g in loaded.config.gates.iter().filter(|g| g.builtin.is_none()) {
        out.push((format!("gate {}", g.name.get_ref()), g.describe()));
    }
    out
}

/// Whether the config runs anything the user has not configured personally.
pub fn needs_trust(loaded: &LoadedConfig) -> bool {
    if loaded.project.is_none() {
        return false;
    }
    // A builtin gate runs no program of the repository's.
    if loaded.config.gates.iter().any(|g| g.builtin.is_none()) {
        return true;
    }
    let personal: Vec<&crate::config::CommandSpec> = loaded
        .config
        .agents
        .iter()
        .filter(|(n, _)| loaded.agent_origin.get(*n) == Some(&Origin::Personal))
        .flat_map(|(_, AgentEntry(list))| list.iter().map(|s| s.command.get_ref()))
        .collect();
    loaded.config.agents.iter().any(|(name, AgentEntry(list))| {
        loaded.agent_origin.get(name) == Some(&Origin::Project)
            && list
                .iter()
                .any(|s| !personal.contains(&s.command.get_ref()))
    })
}
