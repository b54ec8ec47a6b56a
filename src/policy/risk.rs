//! The risk router: where a task starts. High beats medium beats low, and LOW is earned: a
//! task is low risk only when every word it says is a low-risk word or a neutral one (articles,
//! "fix", "file"...) and its scope is small. A task that says nothing the router knows is HIGH,
//! because unknown means risky; one with low-risk and unknown words is MEDIUM.
//!
//! Keywords match as stems: a keyword of five letters or more matches inside any word
//! (`crypt` in "encryption", `oauth` in "OAuthCallback"); a shorter one matches the word itself
//! and its inflections (`drop`, "drops", "dropped", "dropping"; `auth`, "auths", not "author").

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

/// Endings an inflected short keyword may take (`drop` → `drops`, `dropped`, `dropping`).
const INFLECTIONS: &[&str] = &["s", "es", "d", "ed", "ing", "er", "ers"];

/// Whether `word` says `keyword` (one word of a keyword; see the module comment).
fn word_matches(word: &str, keyword: &str) -> bool {
    if keyword.chars().count() >= 5 {
        return word.contains(keyword);
    }
    let Some(rest) = word.strip_prefix(keyword) else {
        return false;
    };
    // A doubled last consonant before an ending: "dropped", "wiping" has none.
    let rest = match (keyword.chars().last(), rest.chars().next()) {
        (Some(l), Some(f)) if l == f && rest.len() > 1 => &rest[1..],
        _ => rest,
    };
    rest.is_empty() || INFLECTIONS.contains(&rest)
}

/// The keywords (possibly of several words) the task says, each with the word that said it
/// when that word is not the keyword itself; and which task words they used.
fn matches(task_words: &[String], keywords: &[String], used: &mut [bool]) -> Vec<String> {
    let mut found = Vec::new();
    for kw in keywords {
        let kw_words = words(kw);
        if kw_words.is_empty() || kw_words.len() > task_words.len() {
            continue;
        }
        for start in 0..=task_words.len() - kw_words.len() {
            let window = &task_words[start..start + kw_words.len()];
            // Only the last word of a phrase is matched as a stem.
            let hit = window.iter().zip(&kw_words).enumerate().all(|(i, (w, k))| {
                if i + 1 == kw_words.len() {
                    word_matches(w, k)
                } else {
                    w == k
                }
            });
            if hit {
                for u in &mut used[start..start + kw_words.len()] {
                    *u = true;
                }
                let said = window.join(" ");
                let shown = if said == *kw {
                    format!("\"{kw}\"")
                } else {
                    format!("\"{kw}\" (in \"{said}\")")
                };
                if !found.contains(&shown) {
                    found.push(shown);
                }
            }
        }
    }
    found
}

/// Assess a task. `covered` is the number of existing files the run's scope may modify, when a
/// scope was given: a small task with a wide scope is not small.
pub fn assess(task: &str, config: &RiskConfig, covered: Option<usize>) -> Assessment {
    let mut a = assess_words(task, config);
    let Some(n) = covered else {
        return a;
    };
    let bump = if n > config.max_files_medium && a.risk < Risk::High {
        Some((Risk::High, "max_files_medium", config.max_files_medium))
    } else if n > config.max_files_low && a.risk == Risk::Low {
        Some((Risk::Medium, "max_files_low", config.max_files_low))
    } else {
        None
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
    let mut used = vec![false; task_words.len()];
    let high = matches(&task_words, &config.high, &mut used);
    let medium = matches(&task_words, &config.medium, &mut used);
    let low = matches(&task_words, &config.low, &mut used);
    let mut neutral_used = used.clone();
    matches(&task_words, &config.neutral, &mut neutral_used);
    let mut unknown: Vec<String> = Vec::new();
    for (w, known) in task_words.iter().zip(&neutral_used) {
        // Numbers (issue numbers, versions) say nothing about risk.
        if !known && !w.chars().all(|c| c.is_ascii_digit()) && !unknown.contains(w) {
            unknown.push(w.clone());
        }
    }
    let unknown_note = || {
        let list: Vec<String> = unknown.iter().map(|w| format!("\"{w}\"")).collect();
        format!("unknown words: {}", list.join(", "))
    };
    let with_unknown = |mut reasons: Vec<String>| {
        if !unknown.is_empty() {
            reasons.push(unknown_note());
        }
        reasons
    };
    if !high.is_empty() {
        return Assessment {
            risk: Risk::High,
            reasons: with_unknown(vec![format!("high-risk words: {}", high.join(", "))]),
        };
    }
    if !medium.is_empty() {
        return Assessment {
            risk: Risk::Medium,
            reasons: with_unknown(vec![format!("medium-risk words: {}", medium.join(", "))]),
        };
    }
    if !low.is_empty() && unknown.is_empty() {
        return Assessment {
            risk: Risk::Low,
            reasons: vec![format!("only low-risk words: {}", low.join(", "))],
        };
    }
    if !low.is_empty() {
        return Assessment {
            risk: Risk::Medium,
            reasons: vec![
                format!("low-risk words: {}", low.join(", ")),
                format!(
                    "{} (low risk needs every word to be low-risk or neutral)",
                    unknown_note()
                ),
            ],
        };
    }
    Assessment {
        risk: Risk::High,
        reasons: with_unknown(vec![
            "no known words: an unknown task is treated as high risk".to_owned(),
        ]),
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
        // "author" is not "auth": medium for the unknown word, never high.
        assert_eq!(risk("Fix a typo by the author"), Risk::Medium);
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
        // "rates limit" is not the phrase: two unknown words make it medium, not high.
        assert_eq!(
            assess("tune the rates limit", &cfg, None).risk,
            Risk::Medium
        );
    }

    /// Tasks as people write them, and where each must start with the default words.
    #[test]
    fn real_tasks_route_where_they_should() {
        use Risk::{High, Low, Medium};
        let table: &[(&str, Risk)] = &[
            // Low: only low-risk and neutral words.
            ("Fix typo in README", Low),
            ("fix the typo", Low),
            ("Fix a typo by the author", Medium),
            ("Fix typos in the docs", Low),
            ("Update the changelog", Low),
            ("fix spelling in comments", Low),
            ("Correct the wording of the title", Low),
            ("format the file", Low),
            ("Fix indentation and whitespace", Low),
            ("fix grammar in the docs", Low),
            ("Fix the lint warnings", Medium),
            ("Improve the docstring of parse", Medium),
            // Medium: medium-risk words, or low-risk words with unknown ones.
            ("Refactor the API client", Medium),
            ("fix the typo in the value", Medium),
            ("Fix typo in parser error message", Medium),
            ("Rename the config loader", Medium),
            ("Upgrade the dependencies", Medium),
            ("move the code", Medium),
            ("Replace the cache with an LRU", Medium),
            ("Speed up the build", Medium),
            ("Remove the unused endpoint", Medium),
            ("improve performance of the thread pool", Medium),
            ("Make the async handler cancel safe", Medium),
            ("Update CI to run clippy", Medium),
            ("Rewrite the release script", Medium),
            // High: any high-risk word, however small the rest.
            ("Format and drop all production data", High),
            ("Rename the oauth callback", High),
            ("Fix the authorization check comment", High),
            ("Rename encryption helper", High),
            ("Fix typo in passwd handling", High),
            ("fix typo in the login page", High),
            ("Fix the typo in the SQL query", High),
            ("add database migrations", High),
            ("Delete stale sessions", High),
            ("truncate the audit table", High),
            ("wipe the cache on deploy", High),
            ("Rotate the API token", High),
            ("Store credentials in the keychain", High),
            ("Update the TLS certificate check", High),
            ("Add a payment retry", High),
            ("Fix billing rounding", High),
            ("Sanitize user input in search", High),
            ("Harden the auth flow", High),
            ("Bump the schema version", High),
            ("purge old backups", High),
            ("Fix permission check in admin", High),
            ("migrate to the new storage", High),
            ("Dropping the legacy column", High),
            ("fix the prod outage", High),
            // High: nothing the router knows.
            ("add the helper", High),
            ("make it faster", High),
            ("Implement the new search ranking", High),
            ("do it", High),
            ("fix it", High),
        ];
        assert!(table.len() >= 50, "{} tasks", table.len());
        let cfg = RiskConfig::default();
        let wrong: Vec<String> = table
            .iter()
            .filter_map(|(task, want)| {
                let got = assess(task, &cfg, None);
                (got.risk != *want)
                    .then(|| format!("{task:?}: {} {:?}", got.risk.name(), got.reasons))
            })
            .collect();
        assert!(wrong.is_empty(), "misrouted:\n{}", wrong.join("\n"));
    }

    #[test]
    fn the_reason_names_the_deciding_words_and_the_unknown_ones() {
        let cfg = RiskConfig::default();
        let a = assess("Format and drop all production data", &cfg, None);
        assert!(a.reasons[0].contains("\"drop\""), "{a:?}");
        assert!(a.reasons[0].contains("\"data\""), "{a:?}");
        let a = assess("Rename the oauth callback", &cfg, None);
        assert!(a.reasons[0].contains("\"oauth\""), "{a:?}");
        assert_eq!(a.reasons[1], "unknown words: \"callback\"");
        let a = assess("Fix typo in parser error message", &cfg, None);
        assert_eq!(
            a.reasons,
            [
                "low-risk words: \"typo\"",
                "unknown words: \"parser\", \"error\" (low risk needs every word to be low-risk or neutral)"
            ]
        );
        let a = assess("Rename encryption helper", &cfg, None);
        assert!(
            a.reasons[0].contains("\"crypt\" (in \"encryption\")"),
            "{a:?}"
        );
    }

    #[test]
    fn a_phrase_longer_than_the_task_is_not_in_it() {
        let cfg = RiskConfig {
            high: vec!["rate limit".to_owned()],
            ..RiskConfig::default()
        };
        assert_eq!(assess("typo", &cfg, None).risk, Risk::Low);
    }

    #[test]
    fn a_wide_scope_takes_a_low_task_to_high() {
        let cfg = RiskConfig::default();
        let a = assess("fix the typo", &cfg, Some(501));
        assert_eq!(a.risk, Risk::High, "{a:?}");
        assert!(a.reasons[1].contains("max_files_medium"), "{a:?}");
        // Already high: the scope is only counted.
        let a = assess("drop the table", &cfg, Some(500));
        assert_eq!(
            a.reasons.last().map(String::as_str),
            Some("the scope covers 500 existing files")
        );
    }

    #[test]
    fn short_keywords_take_inflections_only() {
        for (w, k, yes) in [
            ("drops", "drop", true),
            ("dropped", "drop", true),
            ("dropping", "drop", true),
            ("dropbox", "drop", false),
            ("author", "auth", false),
            ("auths", "auth", true),
            ("certs", "cert", true),
            ("certain", "cert", false),
            ("encryption", "crypt", true),
            // A doubled letter only before an ending; nothing else is skipped.
            ("dropp", "drop", false),
            ("dropxed", "drop", false),
        ] {
            assert_eq!(word_matches(w, k), yes, "{w} / {k}");
        }
    }
}
