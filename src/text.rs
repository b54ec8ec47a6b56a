//! Text helpers shared by the run driver and the commands that print runs.

/// The first line of a task, cut to `width` characters.
pub fn short_task(task: &str, width: usize) -> String {
    let line = task.trim().lines().next().unwrap_or("");
    if line.chars().count() <= width {
        line.to_owned()
    } else {
        let cut: String = line.chars().take(width.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}
