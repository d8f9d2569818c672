//! App DSL as Git keeps it: file names, the normalized form whose hash says whether an app
//! changed (UI-only keys such as node positions dropped), and the secret check that stops an
//! export before a secret reaches a commit.

use std::collections::BTreeMap;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::secrets;

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
    #[error("Dify's export of {app} holds the value of the secret environment variable {name}, which Dify normally exports empty; nothing of this app was committed. Export again; if it persists, report it")]
    SecretVariable { app: String, name: String },
    #[error("the export of {app} holds a credential id in {field}; nothing of this app was committed. Remove the credential from that node in Dify (pick it again after an import) and export again")]
    CredentialId { app: String, field: String },
    #[error("{app} holds secrets in {places}; it was not exported because secrets_in_git is refuse. Move each into a secret environment variable and use {{{{#env.NAME#}}}} in its place, or set secrets_in_git to placeholder")]
    SecretsRefused { app: String, places: String },
    #[error("{app} was not imported: the file has secret placeholders for {places}, and the app in Dify has no value there to put back (a new node, or another workspace). Put each secret in a secret environment variable and use {{{{#env.NAME#}}}} in that field, or set the value in Dify and export again")]
    SecretMissing { app: String, places: String },
}

/// An app as Git keeps it, from Dify's export: every secret found in it replaced by a
/// placeholder ([`secrets`]), and the hash of that form.
#[derive(Debug, Clone)]
pub struct Exported {
    /// The text for Git: Dify's own when nothing was replaced, else the redacted DSL.
    pub text: String,
    pub hash: String,
    /// The secrets replaced (their values stay in memory, to put back on import).
    pub secrets: Vec<secrets::Found>,
    /// What writing it in an environment's neutral form noticed.
    pub notes: Vec<String>,
}

impl Exported {
    pub fn from_dify(app: &str, text: &str) -> Result<Exported, DslError> {
        let mut yaml = parse_yaml(app, text)?;
        let found = secrets::redact(&mut yaml);
        let text = match found.is_empty() {
            true => text.to_string(),
            false => serde_yaml::to_string(&yaml).map_err(|e| not_yaml(app, e))?,
        };
        let json = serde_json::to_value(&yaml).map_err(|e| not_yaml(app, e))?;
        Ok(Exported {
            text,
            hash: content_hash(&json),
            secrets: found,
            notes: Vec::new(),
        })
    }

    /// The places of its secrets, for a message: `node "Call API" (17…), field url`, … .
    pub fn places(&self) -> String {
        let keys: Vec<String> = self.secrets.iter().map(|f| f.key.clone()).collect();
        let dsl = serde_yaml::from_str(&self.text).ok();
        secrets::describe_keys(&keys, dsl.as_ref())
    }
}

/// The DSL to import from a Git file: every secret placeholder filled with the value the app
/// in Dify has now (`current`, from its export), and, over an existing app (`overwrite`),
/// every empty secret environment variable `[__HIDDEN__]` so Dify keeps the secret it has.
/// The text is returned unchanged when there is nothing to do.
pub fn for_import(
    app: &str,
    text: &str,
    current: &BTreeMap<String, String>,
    overwrite: bool,
) -> Result<String, DslError> {
    let has_placeholder = text.contains(secrets::PLACEHOLDER_START);
    let mut yaml = parse_yaml(app, text)?;
    let kept = overwrite && keep_hidden(&mut yaml);
    if has_placeholder {
        let missing = secrets::restore(&mut yaml, current);
        if !missing.is_empty() {
            return Err(DslError::SecretMissing {
                app: app.to_string(),
                places: secrets::describe_keys(&missing, Some(&yaml)),
            });
        }
    }
    match kept || has_placeholder {
        false => Ok(text.to_string()),
        true => serde_yaml::to_string(&yaml).map_err(|e| not_yaml(app, e)),
    }
}

fn not_yaml(app: &str, why: impl std::fmt::Display) -> DslError {
    DslError::NotYaml {
        app: app.to_string(),
        why: why.to_string(),
    }
}

fn parse_yaml(app: &str, text: &str) -> Result<serde_yaml::Value, DslError> {
    serde_yaml::from_str(text).map_err(|e| not_yaml(app, e))
}

/// The parsed DSL as JSON (YAML's data model, which Dify's DSL stays within).
pub fn parse(app: &str, text: &str) -> Result<Value, DslError> {
    serde_json::to_value(parse_yaml(app, text)?).map_err(|e| not_yaml(app, e))
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

/// Refuses a DSL that carries what Dify should have left out: a secret environment variable
/// with a value, or a leftover non-empty `credential_id`. Names the first one found.
pub fn check_secrets(app: &str, dsl: &Value) -> Result<(), DslError> {
    let variables = dsl
        .pointer("/workflow/environment_variables")
        .and_then(Value::as_array);
    for (i, variable) in variables.into_iter().flatten().enumerate() {
        let is_secret = variable["value_type"] == "secret";
        let value = &variable["value"];
        let empty = value.is_null() || value.as_str().is_some_and(str::is_empty);
        if is_secret && !empty {
            let name = variable["name"].as_str().unwrap_or("?");
            return Err(DslError::SecretVariable {
                app: app.to_string(),
                name: format!("{name} (workflow.environment_variables[{i}])"),
            });
        }
    }
    match find_credential_id(dsl, String::new(), 0) {
        Some(field) => Err(DslError::CredentialId {
            app: app.to_string(),
            field,
        }),
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

/// Every empty secret environment variable becomes `[__HIDDEN__]`, so Dify keeps the secret
/// it has instead of wiping it. Whether there was one.
fn keep_hidden(yaml: &mut serde_yaml::Value) -> bool {
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
    changed
}

/// [`app_path`], unless `index` gives that path to another app (two ids that start alike):
/// then the whole id names the file.
pub fn free_app_path(
    index: &BTreeMap<String, crate::repository::IndexEntry>,
    directory: &str,
    name: &str,
    app_id: &str,
) -> String {
    let path = app_path(directory, name, app_id);
    match index.get(&path) {
        Some(entry) if entry.app_id != app_id => {
            let whole = app_path(directory, name, "");
            let id: String = app_id
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
                .take(40)
                .collect();
            whole.replace("--.yml", &format!("--{id}.yml"))
        }
        _ => path,
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
        assert!(for_import("bomb", &bomb, &BTreeMap::new(), true).is_err());
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn empty_secrets_are_kept_on_overwrite() {
        let text = "kind: app\nworkflow:\n  environment_variables:\n  - id: v1\n    name: KEY\n    value_type: secret\n    value: ''\n  - id: v2\n    name: URL\n    value_type: string\n    value: ''\n";
        let kept = parse("a", &for_import("a", text, &BTreeMap::new(), true).unwrap()).unwrap();
        let variables = &kept["workflow"]["environment_variables"];
        assert_eq!(variables[0]["value"], HIDDEN_VALUE);
        assert_eq!(variables[1]["value"], "");
        let plain = "kind: app\n";
        assert_eq!(
            for_import("a", plain, &BTreeMap::new(), true).unwrap(),
            plain
        );
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
