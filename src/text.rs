//! Text helpers shared by the run driver and the commands that print runs.

/// The first line of `text` (a task, an agent's message), without control characters (an
/// escape sequence must not reach a terminal), cut to `width` characters, an ellipsis marking
/// a cut.
pub fn one_line(text: &str, width: usize) -> String {
    let first: String = text
        .trim()
        .lines()
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    let line = first.trim();
    if line.chars().count() <= width {
        line.to_owned()
    } else {
        let cut: String = line.chars().take(width.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}
