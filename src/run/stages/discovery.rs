//! Discovery: every `agents.discovery` entry looks at the task at the same time, read-only; their
//! findings are kept and merged into the spec in configured order, never in finishing order.

use crate::agent::text;
use crate::error::Result;
use crate::plan::prompts;
use crate::run::next::Next;
use crate::run::outcome::Ending;
use crate::run::state::Run;
use crate::run::step;
use crate::run::step::AgentCall;
use crate::run::step::AgentRun;
use crate::safety::process::Cancel;
use crate::store::record::Reason;
use crate::store::record::StageName;

impl Run<'_> {
    /// Discovery: `Continue` with its findings kept, `End` when the run stops here.
    pub(crate) async fn discovery(&mut self, cancel: &mut Cancel) -> Result<Next> {
        let Some(role) = self.plan.agents.discovery.clone() else {
            self.skip_stage(StageName::Discovery, "no [agents.discovery] configured");
            return Ok(Next::Continue(()));
        };
        let agents = role.each();
        let names: Vec<&str> = agents.iter().map(|a| a.name.as_str()).collect();
        self.begin(
            StageName::Discovery,
            format!(
                "discovery: {} agent(s) at once ({})",
                agents.len(),
                names.join(", ")
            ),
        )?;
        let scope = if self.plan.policy.user_scope {
            self.scope.describe()
        } else {
            Vec::new()
        };
        let mut prompts_by_agent = Vec::new();
        for (i, _) in agents.iter().enumerate() {
            prompts_by_agent.push(self.plan.agents.templates.render(
                "discovery",
                prompts::DiscoveryVars {
                    run_id: &self.log.dir.id,
                    base: &self.plan.target.base,
                    task: &self.plan.target.task,
                    scope: &scope,
                    index: i + 1,
                    count: agents.len(),
                },
            )?);
        }
        let session = self.plan_session.clone();
        let cli_sessions: Vec<_> = agents
            .iter()
            .zip(&prompts_by_agent)
            .map(|(agent, prompt)| self.cli_session(agent, &session, prompt.len()).1)
            .collect();
        self.save()?;
        let before = self.step_start().await?;
        self.before_read_only()?;
        let ctx = self.ctx().to_owned_ctx();
        let mut set = tokio::task::JoinSet::new();
        for (i, ((agent, prompt), cli_session)) in agents
            .iter()
            .zip(&prompts_by_agent)
            .zip(&cli_sessions)
            .enumerate()
        {
            let (ctx, agent, prompt) = (ctx.clone(), agent.clone(), prompt.clone());
            let (cli_session, session, mut cancel) =
                (cli_session.clone(), session.clone(), cancel.clone());
            let ui = self.ui.clone();
            set.spawn(async move {
                let call = AgentCall {
                    agent: &agent,
                    stage: StageName::Discovery,
                    attempt: (i + 1) as u32,
                    session: &session,
                    prompt: &prompt,
                    cli_session: &cli_session,
                    ui: &ui,
                };
                (i, step::run_agent(&ctx.borrow(), call, &mut cancel).await)
            });
        }
        // Kept in configured order, whatever order they finish in.
        let mut results: Vec<Option<Result<AgentRun>>> = agents.iter().map(|_| None).collect();
        // Every task is awaited, even after one failed: dropping the set would abort the others
        // mid-step, leaving their agents' processes running.
        let mut stopped = None;
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok((i, ran)) => results[i] = Some(ran),
                Err(e) => {
                    stopped.get_or_insert_with(|| {
                        crate::error::Error::other(format!("a discovery agent's task stopped: {e}"))
                    });
                }
            }
        }
        if let Some(e) = stopped {
            return Err(e);
        }
        self.after_step(before, "a discovery agent").await?;

        let mut findings = Vec::new();
        let mut failures = Vec::new();
        for (i, (agent, result)) in agents.iter().zip(results).enumerate() {
            let ran = result.ok_or_else(|| {
                crate::error::Error::other("a discovery agent's task never reported")
            })??;
            if let Some(ending) =
                self.record_agent(StageName::Discovery, (i + 1) as u32, &session, &ran, agent)
            {
                if matches!(ending, Ending::Interrupted) {
                    return Ok(Next::End(ending));
                }
                failures.push(ending);
                continue;
            }
            let found = text::final_text(&ran.outcome.stdout.bytes);
            findings.push(format!(
                "### Discovery {} ({})\n\n{}\n",
                i + 1,
                agent.name,
                prompts::bounded(found.trim(), prompts::TEXT_LIMIT)
            ));
        }
        // One discovery agent failing is survivable; all of them is not.
        if findings.is_empty() {
            return Ok(Next::End(failures.into_iter().next().unwrap_or_else(
                || Ending::failed(Reason::AgentError, "no discovery agent could run"),
            )));
        }
        for f in &failures {
            if let Ending::Failed { message, .. } = f {
                self.ui
                    .warn(format!("discovery: {message}; continuing without it"));
            }
        }
        if let Some(ending) = self.check_read_only("a discovery agent")? {
            return Ok(Next::End(ending));
        }
        let spec = findings.join("\n");
        self.log.dir.artifact("spec.md", spec.as_bytes())?;
        self.log
            .rec
            .artifacts
            .insert("spec".to_owned(), "spec.md".to_owned());
        self.spec = Some(spec);
        self.ui.step(format!(
            "discovery: {} finding(s) merged into the spec",
            agents.len() - failures.len()
        ));
        self.save()?;
        Ok(Next::Continue(()))
    }
}
