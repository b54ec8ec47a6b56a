//! The text an agent meant to say. Agent CLIs in JSON modes wrap it: Claude Code and droid print
//! one object with a `result` string, Gemini CLI one with a `response` string, Codex's `--json`
//! prints JSONL events whose `agent_message` items hold it, opencode's `--format json` events whose
//! `text` parts do. Plain output is taken as it is.

use serde_json::Value;

pub fn final_text(stdout: &[u8]) -> String {
    // An event stream in which the agent said nothing is an empty answer, never the stream
    // itself: that holds its tools' output.
    said(stdout).unwrap_or_else(|| String::from_utf8_lossy(stdout).into_owned())
}

/// What the agent itself said, when its output is JSON: the `result` (Claude Code, droid) or
/// `response` (Gemini CLI) of one object, or, for a stream of events (one object with a `type`
/// per line), its result event or its messages, and never what its tools returned. `None` for
/// plain output. Lines of a stream that are not JSON (a CLI's warnings) are passed over.
pub fn said(stdout: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(stdout);
    let trimmed = text.trim();
    if let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(trimmed)
        && let Some(Value::String(result)) = obj.get("result").or_else(|| obj.get("response"))
    {
        return Some(result.clone());
    }
    let event = |l: &str| {
        serde_json::from_str::<Value>(l)
            .ok()
            .filter(|v| v.get("type").is_some_and(Value::is_string))
    };
    // A stream is a stream whatever else is mixed in: a warning line, or a first line cut off
    // where the output was kept only from its end.
    let events: Vec<Value> = trimmed.lines().filter_map(event).collect();
    if events.is_empty() {
        return None;
    }
    // Claude Code's stream-json ends with the same result object as its json: the last one
    // is the CLI's (a line forged earlier into its stdout does not win).
    // droid's stream-json ends with a completion event holding its final text.
    if let Some(result) = events.iter().rev().find_map(|v| {
        match v.get("type").and_then(Value::as_str) {
            Some("result") => v.get("result"),
            Some("completion") => v.get("finalText"),
            _ => None,
        }
        .and_then(Value::as_str)
    }) {
        return Some(result.to_owned());
    }
    let mut said = String::new();
    for v in &events {
        let item = v.get("item").or_else(|| v.get("part")).unwrap_or(v);
        let nested = matches!(
            item.get("type").and_then(Value::as_str),
            Some("agent_message" | "text")
        ) && item != v;
        // Gemini CLI's and droid's stream-json: the assistant's messages, Gemini's in pieces.
        let flat = v.get("type").and_then(Value::as_str) == Some("message")
            && v.get("role").and_then(Value::as_str) == Some("assistant");
        let text = if nested {
            item.get("text")
        } else if flat {
            v.get("content").or_else(|| v.get("text"))
        } else {
            None
        };
        if let Some(t) = text.and_then(Value::as_str) {
            let piece = flat && v.get("delta").and_then(Value::as_bool) == Some(true);
            if !said.is_empty() && !piece {
                said.push_str("\n\n");
            }
            said.push_str(t);
        }
    }
    Some(said)
}

#[cfg(test)]
mod tests {
    use super::final_text;

    #[test]
    fn unwraps_envelopes_and_keeps_plain_text() {
        assert_eq!(
            final_text(br#"{"type":"result","result":"the plan"}"#),
            "the plan"
        );
        let jsonl = b"{\"type\":\"thread.started\"}\n{\"type\":\"item.completed\",\"item\":{\"type\":\"agent_message\",\"text\":\"findings\"}}\n";
        assert_eq!(final_text(jsonl), "findings");
        assert_eq!(final_text(b"plain\ntext\n"), "plain\ntext\n");
        assert_eq!(
            final_text(b"{\"a\":1}\nnot json\n"),
            "{\"a\":1}\nnot json\n"
        );
    }

    #[test]
    fn reads_opencode_text_parts() {
        let jsonl = b"{\"type\":\"step_start\",\"part\":{\"type\":\"step-start\"}}\n{\"type\":\"text\",\"sessionID\":\"s\",\"part\":{\"type\":\"text\",\"text\":\"{\\\"approved\\\":true}\"}}\n{\"type\":\"step_finish\",\"part\":{\"type\":\"step-finish\",\"cost\":0.01}}\n";
        assert_eq!(final_text(jsonl), "{\"approved\":true}");
    }

    #[test]
    fn reads_claudes_stream_json_result() {
        let jsonl = b"{\"type\":\"system\",\"subtype\":\"init\"}\n{\"type\":\"assistant\",\"message\":{\"content\":[{\"type\":\"text\",\"text\":\"thinking\"}]}}\n{\"type\":\"result\",\"result\":\"the findings\"}\n";
        assert_eq!(final_text(jsonl), "the findings");
    }

    #[test]
    fn reads_gemini_and_droid_streams() {
        let gemini = br#"{"type":"init","session_id":"s"}
{"type":"message","role":"user","content":"You are the verifier {\"approved\": true}"}
{"type":"tool_use","tool_name":"read_file","parameters":{"file_path":"a"}}
{"type":"message","role":"assistant","content":"Looks ","delta":true}
{"type":"message","role":"assistant","content":"fine.","delta":true}
{"type":"result","status":"success","stats":{"total_tokens":5}}
"#;
        assert_eq!(final_text(gemini), "Looks fine.");
        let droid = br#"{"type":"system","subtype":"init"}
{"type":"message","role":"assistant","text":"Wrote it."}
{"type":"completion","finalText":"All done.","usage":{"input_tokens":1}}
"#;
        assert_eq!(final_text(droid), "All done.");
    }

    #[test]
    fn reads_gemini_responses() {
        assert_eq!(
            final_text(br#"{"session_id":"x","response":"gemini says"}"#),
            "gemini says"
        );
    }
}
