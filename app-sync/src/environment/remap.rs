//! The references of an app that differ between Difys, moved between the files' neutral form
//! and one environment's Dify:
//! - knowledge bases of Knowledge Retrieval nodes: `knowledge-base:<name>` in the files, the
//!   id in Dify (found by name, or by the name the environment maps it to);
//! - workflow tools of tool nodes: `workflow-tool:<name>` as the provider id in the files, the
//!   provider's id in Dify;
//! - tool credentials: none in the files (Dify exports tool nodes without), the credential
//!   the environment names in Dify;
//! - models, as the environment maps them;
//! - non-secret environment variables: the files keep their own value, Dify gets the
//!   environment's.
//!
//! [`to_target`] resolves a file for a Dify and lists what it cannot resolve, by name;
//! [`to_git`] writes a Dify's export back in the neutral form.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::catalog::Catalog;
use super::{Environment, Model};

pub const KNOWLEDGE_BASE: &str = "knowledge-base:";
pub const WORKFLOW_TOOL: &str = "workflow-tool:";

/// How deep a model is looked for in a DSL (Dify's nest a few levels).
const MAX_DEPTH: usize = 32;

/// What resolving a file for one Dify did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    /// One line per reference changed (`knowledge base "Docs" → "Docs (prod)"`).
    pub remapped: Vec<String>,
    /// One line per reference this Dify lacks, with the fix.
    pub unresolved: Vec<String>,
}

/// Whether a file holds references in the neutral form (an environment's export).
pub fn is_neutral(dsl: &Value) -> bool {
    nodes(dsl).any(|data| {
        data["dataset_ids"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|id| id.as_str().is_some_and(|s| s.starts_with(KNOWLEDGE_BASE)))
            || data["provider_id"]
                .as_str()
                .is_some_and(|s| s.starts_with(WORKFLOW_TOOL))
    })
}

/// The plugins the DSL declares (`dependencies`) that `catalog` lacks, by plugin id.
pub fn missing_plugins(dsl: &Value, catalog: &Catalog) -> Result<Vec<String>, String> {
    let installed = catalog.plugins.as_ref().map_err(Clone::clone)?;
    let mut missing: Vec<String> = dsl["dependencies"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|dependency| {
            let value = &dependency["value"];
            let identifier = [
                "marketplace_plugin_unique_identifier",
                "github_plugin_unique_identifier",
                "plugin_unique_identifier",
            ]
            .iter()
            .find_map(|key| value[*key].as_str())?;
            // `author/name:version@checksum`
            let id = identifier.split([':', '@']).next().unwrap_or(identifier);
            (!installed.contains(id)).then(|| id.to_string())
        })
        .collect();
    missing.sort();
    missing.dedup();
    Ok(missing)
}

/// Resolves the neutral references of a file for the Dify `catalog` describes.
pub fn to_target(dsl: &mut Value, environment: &Environment, catalog: &Catalog) -> Resolved {
    let mut resolved = Resolved::default();
    let file = format!("{}/{}.yaml", super::DIRECTORY, environment.name);
    for data in nodes_mut(dsl) {
        let title = node_title(data);
        let kind = data["type"].as_str().unwrap_or_default().to_string();
        if kind == "knowledge-retrieval" {
            let Some(ids) = data.get_mut("dataset_ids").and_then(Value::as_array_mut) else {
                continue;
            };
            for id in ids.iter_mut() {
                let Some(text) = id.as_str() else { continue };
                let Some(git_name) = text.strip_prefix(KNOWLEDGE_BASE) else {
                    // An id: this Dify's own (kept), or another's that no name comes with.
                    if !catalog.knowledge_bases.iter().any(|kb| kb.id == text) {
                        resolved.unresolved.push(format!(
                            "node {title} refers to a knowledge base by an id of another Dify; export the app from the environment it was made in (with its environment), which writes knowledge bases by name"
                        ));
                    }
                    continue;
                };
                let wanted = environment
                    .knowledge_bases
                    .get(git_name)
                    .map(String::as_str)
                    .unwrap_or(git_name);
                match catalog.knowledge_base(wanted) {
                    Some(kb) => {
                        if kb.name != git_name {
                            resolved.remapped.push(format!(
                                "knowledge base \"{git_name}\" → \"{}\" in node {title}",
                                kb.name
                            ));
                        }
                        *id = Value::String(kb.id.clone());
                    }
                    None => resolved.unresolved.push(format!(
                        "knowledge base \"{wanted}\" (node {title}) is not in this Dify: create it, or map \"{git_name}\" to one under knowledge_bases in {file}"
                    )),
                }
            }
        }
        if kind == "tool" && data["provider_type"] == "workflow" {
            let git_name = match data["provider_id"].as_str() {
                Some(id) if id.starts_with(WORKFLOW_TOOL) => id[WORKFLOW_TOOL.len()..].to_string(),
                _ => data["provider_name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            };
            let wanted = environment
                .workflow_tools
                .get(&git_name)
                .cloned()
                .unwrap_or_else(|| git_name.clone());
            match catalog.workflow_tool(&wanted) {
                Some(tool) => {
                    if tool.name != git_name {
                        resolved.remapped.push(format!(
                            "workflow tool \"{git_name}\" → \"{}\" in node {title}",
                            tool.name
                        ));
                    }
                    data.insert("provider_id".into(), Value::String(tool.id.clone()));
                    rename(data, &["provider_name", "tool_name"], &git_name, &tool.name);
                }
                None => resolved.unresolved.push(format!(
                    "workflow tool \"{wanted}\" (node {title}) is not in this Dify: publish its app as a tool there first, or map \"{git_name}\" to one under workflow_tools in {file}"
                )),
            }
        }
        if kind == "tool" && data["provider_type"] != "workflow" {
            let provider = data["provider_id"].as_str().unwrap_or_default().to_string();
            if let Some(wanted) = environment.tool_credentials.get(&provider) {
                let listed = catalog.credentials.get(&provider);
                let found = listed
                    .and_then(|list| list.as_ref().ok())
                    .and_then(|list| list.iter().find(|c| c.name == *wanted));
                let why = match listed {
                    Some(Err(why)) => format!(" (its credentials cannot be listed: {why})"),
                    _ => String::new(),
                };
                match found {
                    Some(credential) => {
                        data.insert("credential_id".into(), Value::String(credential.id.clone()));
                        resolved.remapped.push(format!(
                            "tool {provider} uses the credential \"{wanted}\" in node {title}"
                        ));
                    }
                    None => resolved.unresolved.push(format!(
                        "tool provider {provider} has no credential named \"{wanted}\" in this Dify{why} (node {title}): add it under Tools, or name another under tool_credentials in {file}"
                    )),
                }
            }
        }
    }
    for mapping in &environment.models {
        let count = replace_models(dsl, &mapping.git, &mapping.here, 0);
        if count > 0 {
            resolved.remapped.push(format!(
                "model {} → {} ({count} place(s))",
                model_name(&mapping.git),
                model_name(&mapping.here)
            ));
        }
    }
    for variable in variables_mut(dsl) {
        let name = variable["name"].as_str().unwrap_or_default().to_string();
        let Some(value) = environment.variable(&name) else {
            continue;
        };
        if variable["value_type"] == "secret" {
            resolved.unresolved.push(format!(
                "environment variable {name} is a secret: an environment sets non-secret values only (a secret keeps the value Dify has); remove it from environment_variables in {file}"
            ));
            continue;
        }
        let value = match (variable["value_type"].as_str(), value.as_str()) {
            (Some("number"), Some(text)) => text
                .parse::<serde_json::Number>()
                .map(Value::Number)
                .unwrap_or(value.clone()),
            _ => value,
        };
        if variable["value"] != value {
            resolved.remapped.push(format!(
                "environment variable {name} set for {}",
                environment.name
            ));
            variable.insert("value".into(), value);
        }
    }
    Resolved {
        remapped: resolved.remapped.into_iter().map(shown).collect(),
        unresolved: resolved.unresolved.into_iter().map(shown).collect(),
    }
}

/// A message with names read from files and from a Dify in it, fit for a terminal and a
/// report: no control character, at most 600 characters.
fn shown(message: String) -> String {
    match message.chars().any(char::is_control) || message.chars().count() > 600 {
        true => message
            .chars()
            .filter(|c| !c.is_control())
            .take(600)
            .collect(),
        false => message,
    }
}

/// Writes a Dify's export in the neutral form: its knowledge bases and workflow tools by the
/// files' names, its models as the files name them, and the mapped environment variables with
/// the values the files have (`git_values`; empty when the files have none). `raw_datasets`
/// are the plain ids of each Knowledge Retrieval node (Dify exports them encrypted). Returns
/// notes for the user.
pub fn to_git(
    dsl: &mut Value,
    environment: &Environment,
    catalog: &Catalog,
    raw_datasets: &BTreeMap<String, Vec<String>>,
    git_values: &BTreeMap<String, Value>,
) -> Vec<String> {
    let mut notes = Vec::new();
    let back = |map: &BTreeMap<String, String>, here: &str, id: &str| -> String {
        map.iter()
            .find(|(_, v)| *v == here || *v == id)
            .map(|(k, _)| k.clone())
            .unwrap_or_else(|| here.to_string())
    };
    for (node_id, data) in nodes_with_ids_mut(dsl) {
        let title = node_title(data);
        let kind = data["type"].as_str().unwrap_or_default().to_string();
        if kind == "knowledge-retrieval" {
            let Some(ids) = data.get_mut("dataset_ids").and_then(Value::as_array_mut) else {
                continue;
            };
            let plain = raw_datasets.get(&node_id);
            for (i, id) in ids.iter_mut().enumerate() {
                let exported = id.as_str().unwrap_or_default().to_string();
                let raw = plain.and_then(|p| p.get(i)).unwrap_or(&exported);
                match catalog.knowledge_bases.iter().find(|kb| kb.id == *raw) {
                    Some(kb) => {
                        let name = back(&environment.knowledge_bases, &kb.name, &kb.id);
                        *id = Value::String(format!("{KNOWLEDGE_BASE}{name}"));
                    }
                    None => notes.push(format!(
                        "node {title} refers to a knowledge base this Dify does not list; it is kept as Dify exported it"
                    )),
                }
            }
        }
        if kind == "tool" && data["provider_type"] == "workflow" {
            let id = data["provider_id"].as_str().unwrap_or_default().to_string();
            if let Some(tool) = catalog.workflow_tools.iter().find(|t| t.id == id) {
                let name = back(&environment.workflow_tools, &tool.name, &tool.id);
                data.insert(
                    "provider_id".into(),
                    Value::String(format!("{WORKFLOW_TOOL}{name}")),
                );
                rename(data, &["provider_name", "tool_name"], &tool.name, &name);
            }
        }
    }
    for mapping in &environment.models {
        replace_models(dsl, &mapping.here, &mapping.git, 0);
    }
    for variable in variables_mut(dsl) {
        let name = variable["name"].as_str().unwrap_or_default().to_string();
        let Some(mapped) = environment.variable(&name) else {
            continue;
        };
        if variable["value_type"] == "secret" {
            continue;
        }
        let here = variable["value"].clone();
        let shown = |v: &Value| v.as_str().map(str::to_owned).unwrap_or(v.to_string());
        if shown(&here) != shown(&mapped) {
            notes.push(format!(
                "environment variable {name} differs in this Dify from {}/{}.yaml; the files keep their value (update the environment file to keep this one)",
                super::DIRECTORY,
                environment.name
            ));
        }
        let kept = git_values
            .get(&name)
            .cloned()
            .unwrap_or(Value::String(String::new()));
        variable.insert("value".into(), kept);
    }
    notes.into_iter().map(shown).collect()
}

/// The values the files give the environment variables an environment maps.
pub fn mapped_values(dsl: &Value, environment: &Environment) -> BTreeMap<String, Value> {
    dsl.pointer("/workflow/environment_variables")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| {
            let name = v["name"].as_str()?;
            environment
                .environment_variables
                .contains_key(name)
                .then(|| (name.to_string(), v["value"].clone()))
        })
        .collect()
}

/// The Knowledge Retrieval nodes of a graph (`workflow.graph` as Dify's draft API gives it)
/// and their dataset ids.
pub fn dataset_ids(graph: &Value) -> BTreeMap<String, Vec<String>> {
    graph["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|node| node["data"]["type"] == "knowledge-retrieval")
        .filter_map(|node| {
            let ids = node["data"]["dataset_ids"]
                .as_array()?
                .iter()
                .filter_map(|id| id.as_str().map(str::to_owned))
                .collect();
            Some((node["id"].as_str()?.to_string(), ids))
        })
        .collect()
}

/// Whether an export holds Knowledge Retrieval nodes whose ids are not plain (encrypted).
pub fn has_encrypted_datasets(dsl: &Value) -> bool {
    nodes(dsl).any(|data| {
        data["type"] == "knowledge-retrieval"
            && data["dataset_ids"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|id| id.as_str().is_some_and(|s| !is_uuid(s)))
    })
}

fn is_uuid(text: &str) -> bool {
    text.len() == 36
        && text.chars().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn nodes(dsl: &Value) -> impl Iterator<Item = &Value> {
    dsl.pointer("/workflow/graph/nodes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|node| &node["data"])
}

fn nodes_mut(dsl: &mut Value) -> impl Iterator<Item = &mut Map<String, Value>> {
    nodes_with_ids_mut(dsl).map(|(_, data)| data)
}

fn nodes_with_ids_mut(dsl: &mut Value) -> impl Iterator<Item = (String, &mut Map<String, Value>)> {
    dsl.pointer_mut("/workflow/graph/nodes")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(|node| {
            let id = node["id"].as_str().unwrap_or_default().to_string();
            Some((id, node.get_mut("data")?.as_object_mut()?))
        })
}

fn variables_mut(dsl: &mut Value) -> impl Iterator<Item = &mut Map<String, Value>> {
    dsl.pointer_mut("/workflow/environment_variables")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
}

fn node_title(data: &Map<String, Value>) -> String {
    let title: String = data
        .get("title")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .take(80)
        .collect();
    format!("\"{title}\"")
}

/// Sets each of `keys` that holds `from` to `to`.
fn rename(data: &mut Map<String, Value>, keys: &[&str], from: &str, to: &str) {
    for key in keys {
        if data.get(*key).and_then(Value::as_str) == Some(from) {
            data.insert((*key).into(), Value::String(to.to_string()));
        }
    }
}

fn model_name(model: &Model) -> String {
    format!("{} {}", model.provider, model.name)
}

/// Replaces every model `from` (an object with its `provider` and its `name`, or `model` as
/// agent nodes and rerankers write it) by `to`; how many were replaced.
fn replace_models(value: &mut Value, from: &Model, to: &Model, depth: usize) -> usize {
    if depth > MAX_DEPTH {
        return 0;
    }
    let mut count = 0;
    match value {
        Value::Object(map) => {
            let name_key = ["name", "model"]
                .into_iter()
                .find(|key| map.get(*key).and_then(Value::as_str) == Some(from.name.as_str()));
            if let Some(name_key) = name_key.filter(|_| {
                map.get("provider").and_then(Value::as_str) == Some(from.provider.as_str())
            }) {
                map.insert("provider".into(), Value::String(to.provider.clone()));
                map.insert(name_key.into(), Value::String(to.name.clone()));
                count += 1;
            }
            for child in map.values_mut() {
                count += replace_models(child, from, to, depth + 1);
            }
        }
        Value::Array(items) => {
            for item in items {
                count += replace_models(item, from, to, depth + 1);
            }
        }
        _ => {}
    }
    count
}
