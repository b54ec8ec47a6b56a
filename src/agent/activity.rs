//! What an agent is doing now, read from the events a CLI streams on stdout, one JSON object per
//! line: Claude Code's `stream-json`, Codex's `--json`, opencode's `--format json`, Gemini CLI's
//! `stream-json`, droid's `stream-json`. A line that is not such an event says nothing.
//!
//! Two things are read: the agent's last tool call or message (the live progress line and the
//! `agent_activity` events), and its tool calls that failed (what a run reports when a builder
//! changed nothing, instead of only saying so).

use serde_json::Value;

/// One thing an event line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// A tool call or a message: `Write src/a.txt`, `Bash cargo test`, `says: Looking at ...`.
    Doing(String),
    /// A tool call that failed, with the CLI's own words.
    Failed(String),
}

/// What one stdout line says, in order. Paths under `worktree` are shown relative to it.
pub fn read(line: &[u8], worktree: &str) -> Vec<Seen> {
    let Ok(v) = serde_json::from_slice::<Value>(line) else {
        return Vec::new();
    };
    let mut seen = Vec::new();
    let kind = v.get("type").and_then(Value::as_str).unwrap_or("");
    // Claude Code (and droid's Claude-shaped events): a message whose content holds tool calls,
    // text, and the results of earlier tool calls.
    if let Some(content) = v
        .get("message")
        .and_then(|m| m.get("content"))
        .and_then(Value::as_array)
    {
        for c in content {
            match c.get("type").and_then(Value::as_str) {
                Some("tool_use") => {
                    if let Some(name) = c.get("name").and_then(Value::as_str) {
                        seen.push(Seen::Doing(tool(name, c.get("input"), worktree)));
                    }
                }
                Some("text") => seen.extend(said(c.get("text"))),
                Some("tool_result") if c.get("is_error").and_then(Value::as_bool) == Some(true) => {
                    seen.push(Seen::Failed(text_of(c.get("content"))));
                }
                _ => {}
            }
        }
        return seen;
    }
    // Codex: items started and completed.
    if let Some(item) = v.get("item").filter(|_| kind.starts_with("item.")) {
        let status = item.get("status").and_then(Value::as_str);
        match item.get("type").and_then(Value::as_str) {
            Some("command_execution") => {
                if kind == "item.started"
                    && let Some(cmd) = item.get("command").and_then(Value::as_str)
                {
                    seen.push(Seen::Doing(format!("run {}", short(cmd))));
                }
            }
            Some("file_change") => {
                let paths: Vec<String> = item
                    .get("changes")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c.get("path").and_then(Value::as_str))
                    .map(|p| relative(p, worktree))
                    .collect();
                if status == Some("failed") {
                    seen.push(Seen::Failed(format!("editing {} failed", paths.join(", "))));
                } else {
                    seen.push(Seen::Doing(format!("edit {}", paths.join(", "))));
                }
            }
            Some("agent_message") | Some("reasoning") if kind == "item.completed" => {
                seen.extend(said(item.get("text")));
            }
            Some("error") => seen.push(Seen::Failed(text_of(item.get("message")))),
            _ => {}
        }
        return seen;
    }
    // opencode: parts.
    if let Some(part) = v.get("part") {
        match part.get("type").and_then(Value::as_str) {
            Some("tool") => {
                let state = part.get("state");
                let name = part.get("tool").and_then(Value::as_str).unwrap_or("tool");
                if state.and_then(|s| s.get("status")).and_then(Value::as_str) == Some("error") {
                    seen.push(Seen::Failed(format!(
                        "{name}: {}",
                        text_of(state.and_then(|s| s.get("error")))
                    )));
                } else {
                    seen.push(Seen::Doing(tool(
                        name,
                        state.and_then(|s| s.get("input")),
                        worktree,
                    )));
                }
            }
            Some("text") => seen.extend(said(part.get("text"))),
            _ => {}
        }
        return seen;
    }
    // Gemini CLI and droid: flat events.
    match kind {
        "tool_use" | "tool_call" => {
            if let Some(name) = v
                .get("tool_name")
                .or_else(|| v.get("toolName"))
                .and_then(Value::as_str)
            {
                seen.push(Seen::Doing(tool(name, v.get("parameters"), worktree)));
            }
        }
        "tool_result" if v.get("isError").and_then(Value::as_bool) == Some(true) => {
            seen.push(Seen::Failed(text_of(v.get("error"))));
        }
        "tool_result" if v.get("status").and_then(Value::as_str) == Some("error") => {
            let why = v
                .get("error")
                .and_then(|e| e.get("message"))
                .or_else(|| v.get("output"));
            seen.push(Seen::Failed(text_of(why)));
        }
        // A piece of a streamed message is not worth showing on its own.
        "message"
            if v.get("role").and_then(Value::as_str) == Some("assistant")
                && v.get("delta").and_then(Value::as_bool) != Some(true) =>
        {
            seen.extend(said(v.get("content").or_else(|| v.get("text"))));
        }
        "error" => seen.push(Seen::Failed(text_of(v.get("message")))),
        _ => {}
    }
    seen
}

/// `Write src/a.txt`: a tool's name and its main argument.
fn tool(name: &str, input: Option<&Value>, worktree: &str) -> String {
    const MAIN: &[&str] = &[
        "file_path",
        "filePath",
        "path",
        "absolute_path",
        "command",
        "cmd",
        "pattern",
        "query",
        "url",
    ];
    let arg = input.and_then(|i| {
        MAIN.iter()
            .find_map(|k| i.get(*k).and_then(Value::as_str))
            .or_else(|| {
                // Codex-style argv arrays.
                i.get("command")
                    .and_then(Value::as_array)
                    .and_then(|a| a.last())
                    .and_then(Value::as_str)
            })
    });
    match arg {
        Some(a) => format!("{name} {}", short(&relative(a, worktree))),
        None => name.to_owned(),
    }
}

fn said(text: Option<&Value>) -> Option<Seen> {
    let first = text?
        .as_str()?
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())?;
    Some(Seen::Doing(format!("says: {}", short(first))))
}

/// A tool result's text: a string, or the text parts of a list.
fn text_of(v: Option<&Value>) -> String {
    let text = match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str).or_else(|| p.as_str()))
            .collect::<Vec<_>>()
            .join(" "),
        Some(Value::Object(o)) => o
            .get("message")
            .and_then(Value::as_str)
            .map_or_else(|| Value::Object(o.clone()).to_string(), str::to_owned),
        Some(other) => other.to_string(),
        None => "no reason given".to_owned(),
    };
    short(text.split_whitespace().collect::<Vec<_>>().join(" ").trim())
}

fn relative(path: &str, worktree: &str) -> String {
    let base = worktree.trim_end_matches('/');
    match path.strip_prefix(base).and_then(|p| p.strip_prefix('/')) {
        Some(rest) if !base.is_empty() => rest.to_owned(),
        _ => path.to_owned(),
    }
}

/// One line of at most 200 characters, without control characters.
fn short(s: &str) -> String {
    crate::text::one_line(s, 200)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doing(s: &str) -> Seen {
        Seen::Doing(s.to_owned())
    }

    #[test]
    fn claude_tool_calls_text_and_failed_results() {
        let wt = "/w/run";
        assert_eq!(
            read(
                br#"{"type":"assistant","message":{"content":[{"type":"text","text":"\nI will write it.\nThen test."},{"type":"tool_use","name":"Write","input":{"file_path":"/w/run/src/a.txt","content":"x"}}]}}"#,
                wt
            ),
            [doing("says: I will write it."), doing("Write src/a.txt")]
        );
        assert_eq!(
            read(
                br#"{"type":"user","message":{"content":[{"type":"tool_result","is_error":true,"content":"File has not been read yet."}]}}"#,
                wt
            ),
            [Seen::Failed("File has not been read yet.".to_owned())]
        );
        assert!(
            read(
                br#"{"type":"user","message":{"content":[{"type":"tool_result","content":"ok"}]}}"#,
                wt
            )
            .is_empty()
        );
    }

    #[test]
    fn codex_items() {
        let wt = "/w/run";
        assert_eq!(
            read(
                br#"{"type":"item.started","item":{"type":"command_execution","command":"bash -lc 'cargo test'","status":"in_progress"}}"#,
                wt
            ),
            [doing("run bash -lc 'cargo test'")]
        );
        assert_eq!(
            read(
                br#"{"type":"item.completed","item":{"type":"file_change","changes":[{"path":"/w/run/src/a.txt","kind":"add"}],"status":"failed"}}"#,
                wt
            ),
            [Seen::Failed("editing src/a.txt failed".to_owned())]
        );
        assert_eq!(
            read(
                br#"{"type":"item.completed","item":{"type":"agent_message","text":"Done."}}"#,
                wt
            ),
            [doing("says: Done.")]
        );
    }

    #[test]
    fn opencode_and_gemini_events() {
        let wt = "/w/run";
        assert_eq!(
            read(
                br#"{"type":"tool_use","part":{"type":"tool","tool":"write","state":{"status":"completed","input":{"filePath":"/w/run/src/a.txt"}}}}"#,
                wt
            ),
            [doing("write src/a.txt")]
        );
        assert_eq!(
            read(
                br#"{"type":"tool_use","part":{"type":"tool","tool":"edit","state":{"status":"error","error":"permission denied"}}}"#,
                wt
            ),
            [Seen::Failed("edit: permission denied".to_owned())]
        );
        assert_eq!(
            read(
                br#"{"type":"tool_use","tool_name":"write_file","parameters":{"file_path":"src/a.txt"}}"#,
                wt
            ),
            [doing("write_file src/a.txt")]
        );
        assert_eq!(
            read(
                br#"{"type":"tool_result","status":"error","error":{"message":"Tool not allowed in plan mode"}}"#,
                wt
            ),
            [Seen::Failed("Tool not allowed in plan mode".to_owned())]
        );
        assert!(
            read(
                br#"{"type":"message","role":"assistant","content":"pie","delta":true}"#,
                wt
            )
            .is_empty()
        );
    }

    #[test]
    fn escape_sequences_never_reach_the_terminal() {
        let line = br#"{"type":"item.completed","item":{"type":"agent_message","text":"\u001b]52;c;ZXZpbA==\u0007hi \u001b[2Kthere"}}"#;
        assert_eq!(read(line, "/w"), [doing("says: ]52;c;ZXZpbA==hi [2Kthere")]);
    }

    #[test]
    fn droid_stream_events() {
        let wt = "/w/run";
        assert_eq!(
            read(
                br#"{"type":"tool_call","toolName":"Create","parameters":{"file_path":"/w/run/src/d.txt","content":"one"}}"#,
                wt
            ),
            [doing("Create src/d.txt")]
        );
        assert_eq!(
            read(
                br#"{"type":"tool_result","toolId":"Read","isError":true,"error":{"type":"tool_error","message":"Error reading file: ENOENT"}}"#,
                wt
            ),
            [Seen::Failed("Error reading file: ENOENT".to_owned())]
        );
        assert_eq!(
            read(
                br#"{"type":"message","role":"assistant","text":"Wrote it."}"#,
                wt
            ),
            [doing("says: Wrote it.")]
        );
    }

    #[test]
    fn plain_text_and_long_lines_say_little() {
        assert!(read(b"Tokens: 1k sent", "/w").is_empty());
        let long = format!(
            r#"{{"type":"item.completed","item":{{"type":"agent_message","text":"{}"}}}}"#,
            "y".repeat(500)
        );
        match &read(long.as_bytes(), "/w")[..] {
            [Seen::Doing(t)] => assert_eq!(t.chars().count(), "says: ".len() + 200),
            other => panic!("{other:?}"),
        }
    }
}
