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
    /// Factory credits, as droid reports them: not dollars, so never counted as cost.
    pub credits: Option<f64>,
}

const TOKEN_FIELDS: &[&str] = &[
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
];

const MODEL_USAGE_FIELDS: &[&str] = &[
    "inputTokens",
    "outputTokens",
    "cacheReadInputTokens",
    "cacheCreationInputTokens",
];

/// Reported usage summed over the top-level objects of `stdout`; else an estimate of one token per
/// four bytes of prompt and output.
pub fn measure(prompt_bytes: usize, stdout: &[u8]) -> Usage {
    let text = String::from_utf8_lossy(stdout);
    let mut tokens = 0u64;
    let mut reported = false;
    let mut cost = None;
    let mut credits = None;
    for obj in json_scan::objects(&text) {
        // Claude Code's `usage` leaves out its side calls (titles, summaries); `modelUsage` has
        // every model it called, and its cost is the sum of theirs.
        if let Some(Value::Object(by_model)) = obj.get("modelUsage") {
            let n: u64 = by_model
                .values()
                .filter_map(Value::as_object)
                .map(|m| {
                    MODEL_USAGE_FIELDS
                        .iter()
                        .filter_map(|k| m.get(*k).and_then(Value::as_u64))
                        .sum::<u64>()
                })
                .sum();
            if n > 0 {
                tokens = tokens.saturating_add(n);
                reported = true;
            }
        } else if let Some(Value::Object(u)) = obj.get("usage") {
            if let Some(c) = u.get("factory_credits").and_then(Value::as_f64) {
                credits = Some(credits.unwrap_or(0.0) + c);
            }
            let n = sum_tokens(u);
            if n > 0 {
                tokens = tokens.saturating_add(n);
                reported = true;
            }
        }
        if let Some(Value::Object(models)) = obj.get("stats").and_then(|s| s.get("models")) {
            // Its json has `tokens.total` per model; its stream-json `total_tokens`.
            let n: u64 = models
                .values()
                .filter_map(|m| {
                    m.get("tokens")
                        .and_then(|t| t.get("total"))
                        .or_else(|| m.get("total_tokens"))?
                        .as_u64()
                })
                .sum();
            if n > 0 {
                tokens = tokens.saturating_add(n);
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
                tokens = tokens.saturating_add(n);
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
    if let Some((n, c)) = aider_lines(&text) {
        tokens = tokens.saturating_add(n);
        reported = true;
        if let Some(c) = c {
            cost = Some(cost.unwrap_or(0.0) + c);
        }
    }
    if reported {
        Usage {
            tokens,
            estimated: false,
            cost_usd: cost,
            credits,
        }
    } else {
        Usage {
            tokens: ((prompt_bytes + stdout.len()) as u64).div_ceil(4),
            estimated: true,
            cost_usd: cost,
            credits,
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

/// aider's report, one line per model call: `Tokens: 1.0k sent, 50 received. Cost: $0.0030
/// message, $0.0030 session.` Its counts are rounded (`1.0k`, `12k`) from 1,000 on.
fn aider_lines(text: &str) -> Option<(u64, Option<f64>)> {
    let mut found = false;
    let (mut tokens, mut cost) = (0u64, None::<f64>);
    for line in text.lines().map(str::trim) {
        let Some(rest) = line.strip_prefix("Tokens: ") else {
            continue;
        };
        let (counts, costs) = rest.split_once(". Cost: ").unwrap_or((rest, ""));
        for part in counts.trim_end_matches('.').split(", ") {
            let mut words = part.split_whitespace();
            let (Some(n), Some(what)) = (words.next(), words.next()) else {
                continue;
            };
            if matches!(what, "sent" | "received")
                && let Some(n) = aider_count(n)
            {
                tokens = tokens.saturating_add(n);
                found = true;
            }
        }
        if let Some(message) = costs
            .split(", ")
            .find_map(|c| c.strip_suffix(" message"))
            .and_then(|c| c.trim_start_matches('$').parse::<f64>().ok())
        {
            cost = Some(cost.unwrap_or(0.0) + message);
        }
    }
    found.then_some((tokens, cost))
}

/// `950`, `1.0k`, `12k`, `1.2M`.
fn aider_count(s: &str) -> Option<u64> {
    let (num, scale) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 1_000.0),
        'M' => (&s[..s.len() - 1], 1_000_000.0),
        _ => (s, 1.0),
    };
    let v: f64 = num.replace(',', "").parse().ok()?;
    // The model's own text is on aider's stdout too: a "Tokens: 1e30 sent" is not a count.
    let n = v * scale;
    (n.is_finite() && (0.0..1e12).contains(&n)).then(|| n.round() as u64)
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
    fn claude_side_calls_count_through_model_usage() {
        let u = measure(
            0,
            br#"{"type":"result","usage":{"input_tokens":3000,"output_tokens":150},"modelUsage":{"claude-sonnet-4-5":{"inputTokens":3000,"outputTokens":150,"cacheReadInputTokens":0,"cacheCreationInputTokens":0,"costUSD":0.01},"claude-haiku-4-5":{"inputTokens":1000,"outputTokens":50,"costUSD":0.001}},"total_cost_usd":0.011}"#,
        );
        assert_eq!(u.tokens, 4200);
        assert_eq!(u.cost_usd, Some(0.011));
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
    fn reads_aiders_token_and_cost_lines() {
        let out = b"Applied edit to src/a.txt\nTokens: 1.0k sent, 50 received. Cost: $0.0030 message, $0.0030 session.\nTokens: 12k sent, 1.2k cache write, 950 received. Cost: $0.04 message, $0.0430 session.\n";
        let u = measure(10, out);
        assert_eq!(u.tokens, 1_000 + 50 + 12_000 + 950);
        assert!(!u.estimated);
        let cost = u.cost_usd.expect("cost");
        assert!((cost - 0.043).abs() < 1e-9, "{cost}");
        assert_eq!(aider_count("1.2M"), Some(1_200_000));
        assert_eq!(aider_count("k"), None);
        assert_eq!(aider_count("inf"), None);
        assert_eq!(aider_count("1e30"), None);
    }

    #[test]
    fn droid_credits_are_credits_not_dollars() {
        let u = measure(
            0,
            br#"{"type":"result","usage":{"input_tokens":3030,"output_tokens":153,"cache_read_input_tokens":0,"cache_creation_input_tokens":0,"factory_credits":2.5}}"#,
        );
        assert_eq!(u.tokens, 3183);
        assert_eq!(u.credits, Some(2.5));
        assert_eq!(u.cost_usd, None);
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
    fn reads_gemini_stream_stats() {
        let u = measure(
            0,
            b"{\"type\":\"message\",\"role\":\"assistant\",\"content\":\"ok\"}\n{\"type\":\"result\",\"stats\":{\"total_tokens\":2111,\"models\":{\"m\":{\"total_tokens\":2111,\"input_tokens\":2010}}}}\n",
        );
        assert_eq!(u.tokens, 2111);
        assert!(!u.estimated);
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
