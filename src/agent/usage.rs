//! Token usage and cost, from the JSON an agent CLI prints when it reports them (Claude Code's and
//! droid's `usage` and `total_cost_usd`, Codex's `turn.completed` events, Gemini CLI's
//! `stats.models.*.tokens`, opencode's `step_finish` parts), or estimated from sizes.

use serde::Serialize;
use serde_json::{Map, Value};

use super::json_scan;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct Usage {
    pub tokens: u64,
    pub estimated: bool,
    pub cost_usd: Option<f64>,
}

const TOKEN_FIELDS: &[&str] = &[
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
];

/// Reported usage summed over the top-level objects of `stdout`; else an estimate of one token per
/// four bytes of prompt and output.
pub fn measure(prompt_bytes: usize, stdout: &[u8]) -> Usage {
    let text = String::from_utf8_lossy(stdout);
    let mut tokens = 0u64;
    let mut reported = false;
    let mut cost = None;
    for obj in json_scan::objects(&text) {
        if let Some(Value::Object(u)) = obj.get("usage") {
            let n = sum_tokens(u);
            if n > 0 {
                tokens += n;
                reported = true;
            }
        }
        if let Some(Value::Object(models)) = obj.get("stats").and_then(|s| s.get("models")) {
            let n: u64 = models
                .values()
                .filter_map(|m| m.get("tokens")?.get("total")?.as_u64())
                .sum();
            if n > 0 {
                tokens += n;
                reported = true;
            }
        }
        // opencode reports each model step on its own: tokens and cost add up.
        if let Some(step) = obj
            .get("part")
            .filter(|p| p.get("type").and_then(Value::as_str) == Some("step-finish"))
        {
            let t = step.get("tokens");
            let n: u64 = ["input", "output", "reasoning"]
                .iter()
                .filter_map(|k| t?.get(*k)?.as_u64())
                .chain(
                    ["read", "write"]
                        .iter()
                        .filter_map(|k| t?.get("cache")?.get(*k)?.as_u64()),
                )
                .sum();
            if n > 0 {
                tokens += n;
                reported = true;
            }
            if let Some(c) = step.get("cost").and_then(Value::as_f64) {
                cost = Some(cost.unwrap_or(0.0) + c);
            }
        }
        if let Some(c) = ["total_cost_usd", "cost_usd"]
            .iter()
            .find_map(|k| obj.get(*k).and_then(Value::as_f64))
        {
            cost = Some(c);
        }
    }
    if reported {
        Usage {
            tokens,
            estimated: false,
            cost_usd: cost,
        }
    } else {
        Usage {
            tokens: ((prompt_bytes + stdout.len()) as u64).div_ceil(4),
            estimated: true,
            cost_usd: cost,
        }
    }
}

/// The models an agent CLI says it used, in order of first mention: Claude Code's `modelUsage`
/// keys, Gemini CLI's `stats.models` keys, and `model`/`modelID` fields of its events (Anthropic's
/// `message.model`, opencode's parts).
pub fn models(stdout: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(stdout);
    let mut found: Vec<String> = Vec::new();
    let mut add = |m: &str| {
        let m = m.trim();
        // A model name is a short token; anything else is not one.
        if !m.is_empty()
            && m.len() <= 100
            && !m.contains(char::is_whitespace)
            && !found.iter().any(|f| f == m)
        {
            found.push(m.to_owned());
        }
    };
    for obj in json_scan::objects(&text) {
        // Claude Code's main model first: side calls use a smaller one, with fewer tokens.
        if let Some(Value::Object(m)) = obj.get("modelUsage") {
            let mut by_use: Vec<(&String, u64)> = m
                .iter()
                .map(|(k, v)| {
                    let n = v.as_object().map_or(0, |o| {
                        o.iter()
                            .filter(|(f, _)| f.ends_with("Tokens"))
                            .filter_map(|(_, n)| n.as_u64())
                            .sum()
                    });
                    (k, n)
                })
                .collect();
            by_use.sort_by_key(|b| std::cmp::Reverse(b.1));
            by_use.iter().for_each(|(k, _)| add(k));
        }
        if let Some(Value::Object(m)) = obj.get("stats").and_then(|s| s.get("models")) {
            m.keys().for_each(|k| add(k));
        }
        for holder in [
            Some(&obj),
            obj.get("message").and_then(Value::as_object),
            obj.get("part").and_then(Value::as_object),
        ]
        .into_iter()
        .flatten()
        {
            for key in ["model", "modelID"] {
                if let Some(m) = holder.get(key).and_then(Value::as_str) {
                    add(m);
                }
            }
        }
    }
    found
}

fn sum_tokens(u: &Map<String, Value>) -> u64 {
    TOKEN_FIELDS
        .iter()
        .filter_map(|k| u.get(*k).and_then(Value::as_u64))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_claude_usage_and_cost() {
        let u = measure(
            10,
            br#"{"type":"result","usage":{"input_tokens":100,"output_tokens":20,"cache_read_input_tokens":5},"total_cost_usd":0.12}"#,
        );
        assert_eq!(u.tokens, 125);
        assert!(!u.estimated);
        assert_eq!(u.cost_usd, Some(0.12));
    }

    #[test]
    fn sums_jsonl_turns() {
        let u = measure(
            0,
            b"{\"type\":\"turn.completed\",\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}\n{\"type\":\"turn.completed\",\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}\n",
        );
        assert_eq!(u.tokens, 17);
    }

    #[test]
    fn estimates_otherwise() {
        let u = measure(40, b"done");
        assert_eq!(u.tokens, 11);
        assert!(u.estimated);
    }

    #[test]
    fn sums_opencode_steps() {
        let u = measure(
            0,
            b"{\"type\":\"step_finish\",\"part\":{\"type\":\"step-finish\",\"cost\":0.5,\"tokens\":{\"input\":10,\"output\":2,\"reasoning\":1,\"cache\":{\"read\":3,\"write\":0}}}}\n{\"type\":\"step_finish\",\"part\":{\"type\":\"step-finish\",\"cost\":0.25,\"tokens\":{\"input\":4,\"output\":1,\"reasoning\":0,\"cache\":{\"read\":0,\"write\":0}}}}\n",
        );
        assert_eq!(u.tokens, 21);
        assert!(!u.estimated);
        assert_eq!(u.cost_usd, Some(0.75));
    }

    #[test]
    fn names_the_models_a_cli_reports() {
        assert_eq!(
            models(br#"{"type":"result","modelUsage":{"claude-haiku-4-5":{"inputTokens":10},"claude-sonnet-4-5":{"inputTokens":900,"outputTokens":50}}}"#),
            ["claude-sonnet-4-5", "claude-haiku-4-5"]
        );
        assert_eq!(
            models(b"{\"type\":\"assistant\",\"message\":{\"model\":\"m1\"}}\n{\"part\":{\"modelID\":\"m1\"}}\n{\"model\":\"not a model name\"}"),
            ["m1"]
        );
        assert!(models(b"plain text").is_empty());
    }

    #[test]
    fn reads_gemini_stats() {
        let u = measure(
            0,
            br#"{"response":"ok","stats":{"models":{"gemini-x":{"tokens":{"prompt":90,"candidates":10,"total":100}},"gemini-y":{"tokens":{"total":5}}}}}"#,
        );
        assert_eq!(u.tokens, 105);
        assert!(!u.estimated);
    }
}
