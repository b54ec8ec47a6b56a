//! The router agent's answer: the last JSON object it said with a `risk` of `low`, `medium` or
//! `high` (and a `why`). Anything else is no answer, and the word rules stand.

use serde_json::{Map, Value};

/// Only the end of a long output is searched: the answer comes last.
const SCAN_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RiskAnswer {
    /// `"low"`, `"medium"` or `"high"` (the run's policy maps it to its risk).
    pub risk: &'static str,
    pub why: String,
}

/// The answer in an agent's stdout, if it gave one. As for verdicts, only what the agent said
/// counts, never its tools' output (a file it read could hold `{"risk": "low"}`).
pub fn parse(stdout: &[u8]) -> Option<RiskAnswer> {
    super::verdict::last_said(stdout, SCAN_BYTES, from_object)
}

fn from_object(obj: &Map<String, Value>) -> Option<RiskAnswer> {
    let risk = match obj
        .get("risk")?
        .as_str()?
        .trim()
        .to_ascii_lowercase()
        .as_str()
    {
        "low" => "low",
        "medium" => "medium",
        "high" => "high",
        _ => return None,
    };
    let why = obj
        .get("why")
        .and_then(Value::as_str)
        .map(|w| crate::text::one_line(w.trim(), 200))
        .unwrap_or_default();
    Some(RiskAnswer { risk, why })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_answer_with_a_known_risk_counts() {
        let out = b"thinking {\"risk\": \"low\"}\nthen {\"risk\": \"HIGH\", \"why\": \"drops\\nthe table\"}\n";
        let a = parse(out).expect("an answer");
        assert_eq!(a.risk, "high");
        assert!(!a.why.contains('\n'), "{}", a.why);
        assert_eq!(parse(b"{\"risk\": \"severe\"}"), None);
        assert_eq!(parse(b"no json at all"), None);
        assert_eq!(parse(b"{\"risk\": 3}"), None);
    }
}
