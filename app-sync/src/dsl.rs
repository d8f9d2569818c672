//! App DSL as Git keeps it: file names, the normalized form whose hash says whether an app
//! changed (UI-only keys such as node positions dropped), and the secret check that stops an
//! export before a secret reaches a commit.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Keys of a graph node that only the editor's canvas uses.
const UI_NODE_KEYS: [&str; 8] = [
    "position",
    "positionAbsolute",
    "selected",
    "width",
    "height",
    "dragging",
    "sourcePosition",
    "targetPosition",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DslError {
    #[error("the DSL of {app} is not valid YAML: {why}")]
    NotYaml { app: String, why: String },
    #[error("the export of {app} holds a secret in {field}; nothing was committed. Dify exports secret variables empty, so this app's DSL carries a secret elsewhere: remove it from the app (use a secret environment variable) and export again")]
    Secret { app: String, field: String },
}

/// The parsed DSL as JSON (YAML's data model, which Dify's DSL stays within).
pub fn parse(app: &str, text: &str) -> Result<Value, DslError> {
    let yaml: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| DslError::NotYaml {
        app: app.to_string(),
        why: e.to_string(),
    })?;
    serde_json::to_value(yaml).map_err(|e| DslError::NotYaml {
        app: app.to_string(),
        why: e.to_string(),
    })
}

/// The DSL without what only the canvas uses: node positions, sizes and selection, and the
/// viewport. Two DSLs with the same normalized form are the same app.
pub fn normalize(mut dsl: Value) -> Value {
    if let Some(graph) = dsl
        .pointer_mut("/workflow/graph")
        .and_then(Value::as_object_mut)
    {
        graph.remove("viewport");
        for list in ["nodes", "edges"] {
            for item in graph
                .get_mut(list)
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                if let Some(item) = item.as_object_mut() {
                    for key in UI_NODE_KEYS {
                        item.remove(key);
                    }
                }
            }
        }
    }
    dsl
}

/// The sha256 of the normalized DSL (JSON with sorted keys), hex.
pub fn content_hash(dsl: &Value) -> String {
    let normalized = normalize(dsl.clone());
    hex::encode(Sha256::digest(normalized.to_string().as_bytes()))
}

/// The hash of a text that is not a DSL (kept apart from every normalized hash).
pub fn text_hash(text: &str) -> String {
    format!("text:{}", hex::encode(Sha256::digest(text.as_bytes())))
}

/// Refuses a DSL that carries a secret: a secret environment variable with a value, or a
/// leftover non-empty `credential_id`. Names the first field found.
pub fn check_secrets(app: &str, dsl: &Value) -> Result<(), DslError> {
    let secret = |field: String| DslError::Secret {
        app: app.to_string(),
        field,
    };
    let variables = dsl
        .pointer("/workflow/environment_variables")
        .and_then(Value::as_array);
    for (i, variable) in variables.into_iter().flatten().enumerate() {
        let is_secret = variable["value_type"] == "secret";
        let value = &variable["value"];
        let empty = value.is_null() || value.as_str().is_some_and(str::is_empty);
        if is_secret && !empty {
            let name = variable["name"].as_str().unwrap_or("?");
            return Err(secret(format!(
                "workflow.environment_variables[{i}] ({name})"
            )));
        }
    }
    match find_credential_id(dsl, String::new(), 0) {
        Some(path) => Err(secret(path)),
        None => Ok(()),
    }
}

/// The path of the first non-empty `credential_id`, searching at most 64 levels deep.
fn find_credential_id(value: &Value, path: String, depth: usize) -> Option<String> {
    if depth > 64 {
        return None;
    }
    match value {
        Value::Object(map) => map.iter().find_map(|(key, child)| {
            let here = match path.is_empty() {
                true => key.clone(),
                false => format!("{path}.{key}"),
            };
            let filled = child.as_str().is_some_and(|s| !s.is_empty());
            match key == "credential_id" && filled {
                true => Some(here),
                false => find_credential_id(child, here, depth + 1),
            }
        }),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, child)| find_credential_id(child, format!("{path}[{i}]"), depth + 1)),
        _ => None,
    }
}

/// What Dify keeps a stored secret for on import (`constants.HIDDEN_VALUE`).
pub const HIDDEN_VALUE: &str = "[__HIDDEN__]";

/// The DSL to import over an existing app: every empty secret environment variable becomes
/// `[__HIDDEN__]`, so Dify keeps the secret it has instead of wiping it. Returns the text
/// unchanged when there is none.
pub fn keep_secrets(app: &str, text: &str) -> Result<String, DslError> {
    let mut yaml: serde_yaml::Value =
        serde_yaml::from_str(text).map_err(|e| DslError::NotYaml {
            app: app.to_string(),
            why: e.to_string(),
        })?;
    let mut changed = false;
    let variables = yaml
        .get_mut("workflow")
        .and_then(|w| w.get_mut("environment_variables"))
        .and_then(serde_yaml::Value::as_sequence_mut);
    for variable in variables.into_iter().flatten() {
        let secret = variable
            .get("value_type")
            .and_then(serde_yaml::Value::as_str)
            == Some("secret");
        let empty = match variable.get("value") {
            None | Some(serde_yaml::Value::Null) => true,
            Some(value) => value.as_str() == Some(""),
        };
        if secret && empty {
            if let Some(map) = variable.as_mapping_mut() {
                map.insert("value".into(), HIDDEN_VALUE.into());
                changed = true;
            }
        }
    }
    match changed {
        false => Ok(text.to_string()),
        true => serde_yaml::to_string(&yaml).map_err(|e| DslError::NotYaml {
            app: app.to_string(),
            why: e.to_string(),
        }),
    }
}

/// `apps/<slug>--<id8>.yml` under `directory`: readable, and unique by the id's start.
pub fn app_path(directory: &str, name: &str, app_id: &str) -> String {
    let mut slug = String::new();
    for c in name.chars() {
        match c {
            c if c.is_ascii_alphanumeric() => slug.push(c.to_ascii_lowercase()),
            _ if !slug.is_empty() && !slug.ends_with('-') => slug.push('-'),
            _ => {}
        }
        if slug.len() >= 40 {
            break;
        }
    }
    let slug = match slug.trim_matches('-') {
        "" => "app",
        slug => slug,
    };
    let id8: String = app_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect();
    join(directory, &format!("apps/{slug}--{id8}.yml"))
}

/// `path` under `directory` (which may be empty).
pub fn join(directory: &str, path: &str) -> String {
    match directory.trim_matches('/') {
        "" => path.to_string(),
        dir => format!("{dir}/{path}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn canvas_moves_do_not_change_the_hash() {
        let a = json!({"workflow": {"graph": {"nodes": [{"id": "1", "data": {"title": "Start"}, "position": {"x": 1}}], "viewport": {"zoom": 1}}}});
        let b = json!({"workflow": {"graph": {"nodes": [{"id": "1", "data": {"title": "Start"}, "position": {"x": 9}, "selected": true}], "viewport": {"zoom": 2}}}});
        let c =
            json!({"workflow": {"graph": {"nodes": [{"id": "1", "data": {"title": "Begin"}}]}}});
        assert_eq!(content_hash(&a), content_hash(&b));
        assert_ne!(content_hash(&a), content_hash(&c));
    }

    #[test]
    fn secrets_are_found_and_named() {
        let empty = json!({"workflow": {"environment_variables": [{"name": "KEY", "value_type": "secret", "value": ""}]}});
        assert!(check_secrets("a", &empty).is_ok());
        let filled = json!({"workflow": {"environment_variables": [{"name": "KEY", "value_type": "secret", "value": "sk-1"}]}});
        let error = check_secrets("a", &filled).unwrap_err().to_string();
        assert!(error.contains("KEY") && !error.contains("sk-1"), "{error}");
        let credential =
            json!({"workflow": {"graph": {"nodes": [{"data": {"credential_id": "c-1"}}]}}});
        let error = check_secrets("a", &credential).unwrap_err().to_string();
        assert!(
            error.contains("workflow.graph.nodes[0].data.credential_id"),
            "{error}"
        );
        let plain = json!({"workflow": {"environment_variables": [{"name": "URL", "value_type": "string", "value": "x"}]}});
        assert!(check_secrets("a", &plain).is_ok());
    }

    #[test]
    fn an_alias_bomb_is_refused_quickly() {
        let mut bomb = String::from(
            "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        let names: Vec<char> = "bcdefghij".chars().collect();
        for (i, name) in names.iter().enumerate() {
            let previous = if i == 0 { 'a' } else { names[i - 1] };
            let refs = vec![format!("*{previous}"); 9].join(",");
            bomb.push_str(&format!("{name}: &{name} [{refs}]\n"));
        }
        let started = std::time::Instant::now();
        assert!(parse("bomb", &bomb).is_err());
        assert!(keep_secrets("bomb", &bomb).is_err());
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn empty_secrets_are_kept_on_overwrite() {
        let text = "kind: app\nworkflow:\n  environment_variables:\n  - id: v1\n    name: KEY\n    value_type: secret\n    value: ''\n  - id: v2\n    name: URL\n    value_type: string\n    value: ''\n";
        let kept = parse("a", &keep_secrets("a", text).unwrap()).unwrap();
        let variables = &kept["workflow"]["environment_variables"];
        assert_eq!(variables[0]["value"], HIDDEN_VALUE);
        assert_eq!(variables[1]["value"], "");
        let plain = "kind: app\n";
        assert_eq!(keep_secrets("a", plain).unwrap(), plain);
    }

    #[test]
    fn paths_are_readable_and_unique_by_id() {
        assert_eq!(
            app_path("", "Customer Support Bot!", "5f3c9e2a-1111-2222"),
            "apps/customer-support-bot--5f3c9e2a.yml"
        );
        assert_eq!(app_path("dify/", "客服", "abc"), "dify/apps/app--abc.yml");
    }

    proptest! {
        #[test]
        fn any_name_gives_a_safe_path(name in "\\PC{0,100}", id in "[a-f0-9-]{0,36}") {
            let path = app_path("", &name, &id);
            prop_assert!(path.starts_with("apps/") && path.ends_with(".yml"));
            prop_assert!(!path.contains("..") && !path[5..].contains('/'));
            prop_assert!(path.len() <= 5 + 40 + 2 + 8 + 4);
        }

        #[test]
        fn normalizing_is_idempotent(x in -1000i64..1000, zoom in 0u8..5) {
            let dsl = json!({"workflow": {"graph": {"nodes": [{"id": "n", "position": {"x": x}}], "viewport": {"zoom": zoom}}}});
            let once = normalize(dsl);
            prop_assert_eq!(normalize(once.clone()), once);
        }
    }
}
