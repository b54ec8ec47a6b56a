//! Finding JSON objects inside free text. Agent CLIs mix prose and JSON, and several wrap the
//! model's answer in a JSON envelope whose string fields hold more JSON (Claude Code's `result`,
//! Codex's JSONL `item.text`); we look inside those too, a bounded number of levels deep.

use serde_json::{Map, Value};

/// How deep we look into string fields that themselves hold JSON.
const MAX_DEPTH: u8 = 3;

/// Top-level JSON objects in `text`, in order of appearance.
pub fn objects(text: &str) -> Vec<Map<String, Value>> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(rel) = text[from..].find('{') {
        let start = from + rel;
        let mut stream = serde_json::Deserializer::from_str(&text[start..]).into_iter::<Value>();
        match stream.next() {
            Some(Ok(Value::Object(map))) => {
                found.push(map);
                from = start + stream.byte_offset().max(1);
            }
            _ => from = start + 1,
        }
    }
    found
}

/// Walk `text` and every JSON-holding string inside its objects, calling `visit` on each object in
/// document order (an envelope before the objects inside its strings).
pub fn visit_nested(text: &str, visit: &mut dyn FnMut(&Map<String, Value>)) {
    walk_text(text, 0, visit);
}

fn walk_text(text: &str, depth: u8, visit: &mut dyn FnMut(&Map<String, Value>)) {
    for obj in objects(text) {
        visit(&obj);
        if depth < MAX_DEPTH {
            for v in obj.values() {
                walk_value(v, depth + 1, visit);
            }
        }
    }
}

fn walk_value(v: &Value, depth: u8, visit: &mut dyn FnMut(&Map<String, Value>)) {
    match v {
        Value::String(s) if s.contains('{') => walk_text(s, depth, visit),
        Value::Array(items) => items.iter().for_each(|i| walk_value(i, depth, visit)),
        Value::Object(map) => map.values().for_each(|i| walk_value(i, depth, visit)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_objects_between_prose() {
        let found = objects("hello {\"a\":1} and {broken and {\"b\":{\"c\":2}} end");
        assert_eq!(found.len(), 2);
        assert!(found[0].contains_key("a"));
        assert!(found[1].contains_key("b"));
    }

    #[test]
    fn looks_inside_envelopes() {
        let text = r#"{"type":"result","result":"Done.\n{\"approved\": true}"}"#;
        let mut seen = Vec::new();
        visit_nested(text, &mut |o| {
            seen.push(o.keys().cloned().collect::<Vec<_>>())
        });
        assert_eq!(seen, vec![vec!["result", "type"], vec!["approved"]]);
    }
}
