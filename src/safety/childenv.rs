//! The environment of agents and gates (SPEC section 5): `PIPELINE_*` variables, the step's own
//! `env` table, and none of the variables that would point git at another repository, so that an
//! agent's `git` commands act on its worktree even when git-pipeline itself runs inside a hook.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;

use crate::git::LOCAL_ENV_VARS;

pub struct StepEnv<'a> {
    pub run_id: &'a str,
    /// The run's folder: with the id, what tells this run's processes from any other's (two
    /// repositories can start runs with the same id in the same millisecond).
    pub run_dir: &'a Path,
    pub stage: &'a str,
    pub role: &'a str,
    pub session: &'a str,
    pub worktree: &'a Path,
    pub prompt_file: Option<&'a Path>,
    pub base: &'a str,
    pub attempt: u32,
    pub slot: u32,
    /// The bundle workstream the run is.
    pub workstream: Option<&'a str>,
    /// Which candidate of a best-of-N run this run is (1, 2, ...).
    pub candidate: Option<u32>,
    /// The committer name marked with the run (see `containment.rs`); `None` leaves git's own.
    pub committer_name: Option<&'a str>,
    /// Settings for the step's git commands, besides `core.logAllRefUpdates=always` (every ref a
    /// step's git moves gets a reflog entry that names the run).
    pub git_config: &'a [(&'a str, &'a str)],
}

impl StepEnv<'_> {
    /// Variables to set, and variables to remove, for the child.
    pub fn build(
        &self,
        extra: &BTreeMap<String, String>,
    ) -> (Vec<(String, OsString)>, Vec<String>) {
        let mut set: Vec<(String, OsString)> = vec![
            ("PIPELINE_RUN_ID".into(), self.run_id.into()),
            (
                "PIPELINE_RUN_DIR".into(),
                self.run_dir.as_os_str().to_owned(),
            ),
            ("PIPELINE_STAGE".into(), self.stage.into()),
            ("PIPELINE_ROLE".into(), self.role.into()),
            ("PIPELINE_SESSION_ID".into(), self.session.into()),
            (
                "PIPELINE_WORKTREE".into(),
                self.worktree.as_os_str().to_owned(),
            ),
            ("PIPELINE_BASE".into(), self.base.into()),
            ("PIPELINE_ATTEMPT".into(), self.attempt.to_string().into()),
            ("PIPELINE_SLOT".into(), self.slot.to_string().into()),
        ];
        if let Some(p) = self.prompt_file {
            set.push(("PIPELINE_PROMPT_FILE".into(), p.as_os_str().to_owned()));
        }
        if let Some(w) = self.workstream {
            set.push(("PIPELINE_WORKSTREAM".into(), w.into()));
        }
        if let Some(c) = self.candidate {
            set.push(("PIPELINE_CANDIDATE".into(), c.to_string().into()));
        }
        // Programs that take their folder from $PWD (opencode) must see the worktree, not the
        // folder of the shell that started git-pipeline.
        set.push(("PWD".into(), self.worktree.as_os_str().to_owned()));
        if let Some(name) = self.committer_name {
            set.push(("GIT_COMMITTER_NAME".into(), name.into()));
        }
        let config: Vec<(&str, &str)> = std::iter::once(("core.logAllRefUpdates", "always"))
            .chain(self.git_config.iter().copied())
            .collect();
        set.push(("GIT_CONFIG_COUNT".into(), config.len().to_string().into()));
        for (i, (k, v)) in config.iter().enumerate() {
            set.push((format!("GIT_CONFIG_KEY_{i}"), (*k).into()));
            set.push((format!("GIT_CONFIG_VALUE_{i}"), (*v).into()));
        }
        for (k, v) in extra {
            set.push((k.clone(), v.into()));
        }
        let mut remove: Vec<String> = LOCAL_ENV_VARS.iter().map(|s| (*s).to_owned()).collect();
        remove.push("PIPELINE_PROMPT_FILE".to_owned());
        remove.push("PIPELINE_WORKSTREAM".to_owned());
        remove.push("PIPELINE_CANDIDATE".to_owned());
        remove.push("OLDPWD".to_owned());
        (set, remove)
    }
}
