//! The text an agent meant to say. Agent CLIs in JSON modes wrap it: Claude Code and droid print
//! one object with a `result` string, Gemini CLI one with a `response` string, Codex's `--json`
//! prints JSONL events whose `agent_message` items hold it, opencode's `--format json` events whose
//! `text` parts do. Plain output is taken as it is.

use serde_json::Value;

pub fn final_text(stdout: &[u8]) -> String {
    let text = String::from_utf8_lossy(stdout);
    let trimmed = text.trim();
    if let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(trimmed)
        && let Some(Value::String(result)) = obj.get("result").or_else(|| obj.get("response"))
    {
        return result.clone();
    }
    let mut messages = Vec::new();
    let mut all_json = !trimmed.is_empty();
    for line in trimmed.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<Value>(line) {
            Ok(v) => {
                let item = v.get("item").or_else(|| v.get("part")).unwrap_or(&v);
                let is_message = matches!(
                    item.get("type").and_then(Value::as_str),
                    Some("agent_message" | "text")
                ) && item != &v;
                if let (true, Some(t)) = (is_message, item.get("text").and_then(Value::as_str)) {
                    messages.push(t.to_owned());
                }
            }
            Err(_) => {
                all_json = false;
                break;
            }
        }
    }
    if all_json && !messages.is_empty() {
        return messages.join("\n\n");
    }
    text.into_owned()
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
    fn reads_gemini_responses() {
        assert_eq!(
            final_text(br#"{"session_id":"x","response":"gemini says"}"#),
            "gemini says"
        );
    }
}
