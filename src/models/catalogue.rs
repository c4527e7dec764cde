//! Model lists as served: the upstream's list, filtered to what the identity may use, with
//! the relays' models added in the path's own shape, each id once.

use crate::identity::Identity;
use bytes::Bytes;
use serde_json::{json, Map, Value};
use std::collections::HashSet;

/// A model a relay serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayModel {
    pub id: String,
    pub created: i64,
    pub owned_by: String,
}

/// The entry shape relay models are added in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// Open WebUI's `/api/models`: `{"data":[{"id","name","object","owned_by",...}]}`.
    WebUi,
    /// OpenAI's `/v1/models`: `{"object":"list","data":[{"id","object","created","owned_by"}]}`.
    OpenAi,
}

/// The paths that get relay models added; other list paths are only filtered.
pub fn merge_style(path: &str) -> Option<Style> {
    match path {
        "/api/models" | "/api/v1/models" => Some(Style::WebUi),
        "/v1/models" => Some(Style::OpenAi),
        _ => None,
    }
}

/// The list to serve, or `None` when the body is not a model list this code understands
/// (then it is passed on as it is and never cached).
pub fn build(
    body: &[u8],
    style: Option<Style>,
    relays: &[&[RelayModel]],
    identity: Option<&Identity>,
) -> Option<Bytes> {
    let mut doc: Value = serde_json::from_slice(body).ok()?;
    let obj = doc.as_object_mut()?;
    let (array_key, id_keys): (&str, &[&str]) = if obj.get("data").is_some_and(Value::is_array) {
        ("data", &["id"])
    } else if obj.get("models").is_some_and(Value::is_array) {
        ("models", &["name", "model"])
    } else {
        return None;
    };
    let may_use = |id: &str| identity.is_none_or(|i| i.may_use(id));
    let entries = obj
        .get_mut(array_key)
        .and_then(Value::as_array_mut)
        .expect("checked above");
    let mut seen = HashSet::with_capacity(entries.len());
    entries.retain(|e| {
        let id = id_keys
            .iter()
            .find_map(|k| e.get(*k).and_then(Value::as_str));
        match id {
            Some(id) => may_use(id) && seen.insert(id.to_string()),
            // Without an id the entry cannot be checked: keep it only when nothing is filtered.
            None => identity.is_none_or(|i| i.models.is_none()),
        }
    });
    if let Some(style) = style.filter(|_| array_key == "data") {
        for m in relays.iter().flat_map(|r| r.iter()) {
            if may_use(&m.id) && seen.insert(m.id.clone()) {
                entries.push(entry(style, m));
            }
        }
        if style == Style::OpenAi {
            obj.entry("object").or_insert_with(|| json!("list"));
        }
    }
    serde_json::to_vec(&doc).ok().map(Bytes::from)
}

fn entry(style: Style, m: &RelayModel) -> Value {
    match style {
        Style::OpenAi => json!({
            "id": m.id, "object": "model", "created": m.created, "owned_by": m.owned_by,
        }),
        Style::WebUi => json!({
            "id": m.id, "name": m.id, "object": "model", "created": m.created,
            "owned_by": m.owned_by, "connection_type": "external",
            "tags": [], "actions": [], "filters": [],
        }),
    }
}

/// A relay's `/models` answer (OpenAI's shape, or Ollama's `models`), as relay models.
pub fn parse_relay_list(body: &[u8], relay: &str) -> Option<Vec<RelayModel>> {
    let doc: Map<String, Value> = serde_json::from_slice(body).ok()?;
    let (entries, id_keys): (&Vec<Value>, &[&str]) =
        if let Some(d) = doc.get("data").and_then(Value::as_array) {
            (d, &["id"])
        } else {
            (doc.get("models")?.as_array()?, &["name", "model"])
        };
    Some(
        entries
            .iter()
            .filter_map(|e| {
                let id = id_keys
                    .iter()
                    .find_map(|k| e.get(*k).and_then(Value::as_str))?;
                Some(RelayModel {
                    id: id.to_string(),
                    created: e.get("created").and_then(Value::as_i64).unwrap_or(0),
                    owned_by: e
                        .get("owned_by")
                        .and_then(Value::as_str)
                        .unwrap_or(relay)
                        .to_string(),
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Source;
    use std::sync::Arc;

    fn relay(ids: &[&str]) -> Vec<RelayModel> {
        ids.iter()
            .map(|id| RelayModel {
                id: id.to_string(),
                created: 1,
                owned_by: "relay".into(),
            })
            .collect()
    }

    fn ids(body: &Bytes, key: &str, id: &str) -> Vec<String> {
        let v: Value = serde_json::from_slice(body).unwrap();
        v[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e[id].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn merges_in_each_shape_without_duplicates() {
        let upstream =
            br#"{"data":[{"id":"llama3","object":"model"},{"id":"gpt-4o"},{"id":"llama3"}]}"#;
        let r = relay(&["gpt-4o", "gpt-4o-mini"]);
        let out = build(upstream, Some(Style::OpenAi), &[&r], None).unwrap();
        assert_eq!(ids(&out, "data", "id"), ["llama3", "gpt-4o", "gpt-4o-mini"]);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["object"], "list");
        assert_eq!(v["data"][2]["owned_by"], "relay");
        let out = build(upstream, Some(Style::WebUi), &[&r], None).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["data"][2]["name"], "gpt-4o-mini");
        assert_eq!(v["data"][2]["connection_type"], "external");
        assert!(v.get("object").is_none());
    }

    #[test]
    fn filters_by_allowlist_in_every_shape() {
        let id = Identity {
            id: "k".into(),
            source: Source::Key,
            role: None,
            models: Some(Arc::new(crate::config::globs(&["gpt-*".into()]).unwrap())),
            limits: None,
        };
        let tags = br#"{"models":[{"name":"llama3:latest"},{"name":"gpt-oss:20b"},{"x":1}]}"#;
        let out = build(tags, None, &[], Some(&id)).unwrap();
        assert_eq!(ids(&out, "models", "name"), ["gpt-oss:20b"]);
        let r = relay(&["gpt-4o", "claude-3"]);
        let list = br#"{"data":[{"id":"llama3"}]}"#;
        let out = build(list, Some(Style::WebUi), &[&r], Some(&id)).unwrap();
        assert_eq!(ids(&out, "data", "id"), ["gpt-4o"]);
    }

    #[test]
    fn other_bodies_are_not_lists() {
        assert!(build(b"<html>", None, &[], None).is_none());
        assert!(build(br#"{"detail":"Not authenticated"}"#, None, &[], None).is_none());
        assert!(build(br#"[{"id":"x"}]"#, None, &[], None).is_none());
    }

    #[test]
    fn relay_lists_in_both_shapes() {
        let openai =
            br#"{"object":"list","data":[{"id":"gpt-4o","created":5,"owned_by":"openai"}]}"#;
        assert_eq!(
            parse_relay_list(openai, "r").unwrap(),
            vec![RelayModel {
                id: "gpt-4o".into(),
                created: 5,
                owned_by: "openai".into()
            }]
        );
        let tags = br#"{"models":[{"name":"qwen:7b"}]}"#;
        assert_eq!(parse_relay_list(tags, "r").unwrap()[0].owned_by, "r");
        assert!(parse_relay_list(b"oops", "r").is_none());
    }
}
