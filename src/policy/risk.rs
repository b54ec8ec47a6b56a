//! The risk router: where a task starts. Keywords are matched as whole words (a plural `s`/`es`
//! counts: "migrations" matches "migration", "author" does not match "auth"); high beats medium
//! beats low; a task that matches nothing is HIGH, because unknown means risky.

use serde::{Deserialize, Serialize};

use crate::config::RiskConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Risk {
    Low,
    Medium,
    High,
}

impl Risk {
    pub fn name(self) -> &'static str {
        match self {
            Risk::Low => "low",
            Risk::Medium => "medium",
            Risk::High => "high",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    pub risk: Risk,
    pub reasons: Vec<String>,
}

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

fn word_matches(word: &str, keyword: &str) -> bool {
    word == keyword
        || word
            .strip_prefix(keyword)
            .is_some_and(|rest| rest == "s" || rest == "es")
}

/// Keywords (possibly of several words) found in the task, in configured order.
fn matches(task_words: &[String], keywords: &[String]) -> Vec<String> {
    keywords
        .iter()
        .filter(|kw| {
            let kw_words = words(kw);
            if kw_words.is_empty() {
                return false;
            }
            task_words.windows(kw_words.len()).any(|win| {
                win.iter().zip(&kw_words).enumerate().all(|(i, (w, k))| {
                    // Only the last word of a phrase may be plural.
                    if i + 1 == kw_words.len() {
                        word_matches(w, k)
                    } else {
                        w == k
                    }
                })
            })
        })
        .cloned()
        .collect()
}

fn quoted(list: &[String]) -> String {
    list.iter()
        .map(|w| format!("\"{w}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Assess a task. `covered` is the number of existing files the run's scope may modify, when a
/// scope was given: a small task with a wide scope is not small.
pub fn assess(task: &str, config: &RiskConfig, covered: Option<usize>) -> Assessment {
    let mut a = assess_words(task, config);
    let Some(n) = covered else {
        return a;
    };
    let bump = match a.risk {
        Risk::Low if n > config.max_files_low => {
            Some((Risk::Medium, "max_files_low", config.max_files_low))
        }
        Risk::Medium if n > config.max_files_medium => {
            Some((Risk::High, "max_files_medium", config.max_files_medium))
        }
        _ => None,
    };
    match bump {
        Some((risk, key, limit)) => {
            a.risk = risk;
            a.reasons.push(format!(
                "the scope covers {n} existing files (more than risk.{key} = {limit})"
            ));
        }
        None => a.reasons.push(format!(
            "the scope covers {n} existing file{}",
            if n == 1 { "" } else { "s" }
        )),
    }
    a
}

fn assess_words(task: &str, config: &RiskConfig) -> Assessment {
    let task_words = words(task);
    let high = matches(&task_words, &config.high);
    let medium = matches(&task_words, &config.medium);
    let low = matches(&task_words, &config.low);
    if !high.is_empty() {
        return Assessment {
            risk: Risk::High,
            reasons: vec![format!("high-risk words: {}", quoted(&high))],
        };
    }
    if !medium.is_empty() {
        return Assessment {
            risk: Risk::Medium,
            reasons: vec![format!("medium-risk words: {}", quoted(&medium))],
        };
    }
    if !low.is_empty() {
        return Assessment {
            risk: Risk::Low,
            reasons: vec![format!("only low-risk words: {}", quoted(&low))],
        };
    }
    Assessment {
        risk: Risk::High,
        reasons: vec!["no known words: an unknown task is treated as high risk".to_owned()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn risk(task: &str) -> Risk {
        assess(task, &RiskConfig::default(), None).risk
    }

    #[test]
    fn words_not_substrings() {
        assert_eq!(risk("Fix a typo by the author"), Risk::Low);
        assert_eq!(risk("Fix the auth flow typo"), Risk::High);
        assert_eq!(risk("typos in comments"), Risk::Low);
        assert_eq!(risk("add database migrations"), Risk::High);
    }

    #[test]
    fn high_beats_medium_beats_low() {
        assert_eq!(risk("refactor docs"), Risk::Medium);
        assert_eq!(risk("refactor password docs"), Risk::High);
    }

    #[test]
    fn unknown_is_high() {
        let a = assess("make it faster", &RiskConfig::default(), None);
        assert_eq!(a.risk, Risk::High);
        assert!(a.reasons[0].contains("unknown"));
    }

    #[test]
    fn a_wide_scope_raises_the_risk() {
        let cfg = RiskConfig::default();
        assert_eq!(assess("fix a typo", &cfg, Some(3)).risk, Risk::Low);
        let wide = assess("fix a typo", &cfg, Some(11));
        assert_eq!(wide.risk, Risk::Medium);
        assert!(wide.reasons[1].contains("11 existing files"), "{wide:?}");
        assert_eq!(assess("refactor the api", &cfg, Some(201)).risk, Risk::High);
        assert_eq!(
            assess("refactor the api", &cfg, Some(200)).risk,
            Risk::Medium
        );
    }

    #[test]
    fn phrases() {
        let cfg = RiskConfig {
            high: vec!["rate limit".to_owned()],
            ..RiskConfig::default()
        };
        assert_eq!(assess("tune the rate limits", &cfg, None).risk, Risk::High);
        let unordered = assess("limit the rate", &cfg, None);
        assert!(unordered.reasons[0].contains("unknown"), "{unordered:?}");
    }

    #[test]
    fn the_limits_are_exclusive_and_the_reasons_exact() {
        let cfg = RiskConfig::default();
        let at_limit = assess("fix a typo", &cfg, Some(cfg.max_files_low));
        assert_eq!(at_limit.risk, Risk::Low, "{at_limit:?}");
        assert_eq!(
            at_limit.reasons,
            [
                "only low-risk words: \"typo\"".to_owned(),
                format!("the scope covers {} existing files", cfg.max_files_low)
            ]
        );
        let two = RiskConfig {
            medium: vec!["refactor".to_owned(), "rename".to_owned()],
            ..RiskConfig::default()
        };
        assert_eq!(
            assess("rename and refactor docs", &two, None).reasons,
            ["medium-risk words: \"refactor\", \"rename\"".to_owned()]
        );
        let names: Vec<&str> = [Risk::Low, Risk::Medium, Risk::High]
            .into_iter()
            .map(Risk::name)
            .collect();
        assert_eq!(names, ["low", "medium", "high"]);
    }

    #[test]
    fn only_the_last_word_of_a_phrase_may_be_plural() {
        let cfg = RiskConfig {
            high: vec!["rate limit".to_owned()],
            low: vec!["tune".to_owned()],
            ..RiskConfig::default()
        };
        assert_eq!(assess("tune the rate limit", &cfg, None).risk, Risk::High);
        assert_eq!(assess("tune the rates limit", &cfg, None).risk, Risk::Low);
    }
}
