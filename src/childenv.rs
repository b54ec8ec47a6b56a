//! The environment of agents and gates (SPEC section 5): `PIPELINE_*` variables, the step's own
//! `env` table, and none of the variables that would point git at another repository, so that an
//! agent's `git` commands act on its worktree even when git-pipeline itself runs inside a hook.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;

use crate::git::LOCAL_ENV_VARS;

pub struct StepEnv<'a> {
    pub run_id: &'a str,
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
}

impl StepEnv<'_> {
    /// Variables to set, and variables to remove, for the child.
    pub fn build(
        &self,
        extra: &BTreeMap<String, String>,
    ) -> (Vec<(String, OsString)>, Vec<String>) {
        let mut set: Vec<(String, OsString)> = vec![
            ("PIPELINE_RUN_ID".into(), self.run_id.into()),
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
        for (k, v) in extra {
            set.push((k.clone(), v.into()));
        }
        let mut remove: Vec<String> = LOCAL_ENV_VARS.iter().map(|s| (*s).to_owned()).collect();
        remove.push("PIPELINE_PROMPT_FILE".to_owned());
        remove.push("PIPELINE_WORKSTREAM".to_owned());
        remove.push("PIPELINE_CANDIDATE".to_owned());
        (set, remove)
    }
}
