//! Checks an app's DSL before it reaches a Dify: variable references that name a node, an
//! output or a variable that does not exist, nodes no start reaches, nodes without a model or
//! a field they cannot run without, secrets in the graph (the export guard's detector), and a
//! DSL newer than the Dify this was built against. Offline, on files.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use regex::Regex;
use serde::Serialize;
use serde_json::Value;

use super::graph::{AppGraph, Node};
use crate::secrets;

/// The DSL version Dify 1.16 exports (`CURRENT_APP_DSL_VERSION`); a newer file needs a newer
/// Dify, or `--confirm-newer-dsl`.
pub const KNOWN_DSL_VERSION: (u64, u64, u64) = (0, 7, 0);
/// How deep a node's data is searched for references.
const MAX_DEPTH: usize = 32;
/// Node types a workflow starts at.
const STARTS: [&str; 5] = [
    "start",
    "trigger-webhook",
    "trigger-schedule",
    "trigger-plugin",
    "datasource",
];
/// Selector roots that name no node.
const SYSTEM_ROOTS: [&str; 3] = ["sys", "rag", "#"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// The rule: `broken-reference`, `unreachable`, `missing-model`, `missing-field`,
    /// `secret`, `newer-dsl`, `no-start`, `unreadable`.
    pub rule: &'static str,
    /// The node it is about, as `"Title" (type)`.
    pub node: Option<String>,
    pub message: String,
}

/// Every finding of one app's DSL text, errors first.
pub fn lint(text: &str) -> Vec<Finding> {
    let yaml: serde_yaml::Value = match serde_yaml::from_str(text) {
        Ok(yaml) => yaml,
        Err(e) => return vec![unreadable(format!("the file is not valid YAML: {e}"))],
    };
    let dsl: Value = match serde_json::to_value(&yaml) {
        Ok(dsl) => dsl,
        Err(e) => return vec![unreadable(format!("the file is not an app's DSL: {e}"))],
    };
    let graph = AppGraph::from_dsl(&dsl);
    let mut findings = Vec::new();
    newer_dsl(&graph, &mut findings);
    secrets_in(&yaml, &mut findings);
    if !graph.nodes.is_empty() {
        references(&graph, &mut findings);
        reachability(&graph, &mut findings);
        for node in graph.nodes.values() {
            required(node, &mut findings);
        }
    }
    findings.sort();
    findings.dedup();
    findings
}

fn finding(
    severity: Severity,
    rule: &'static str,
    node: Option<&Node>,
    message: String,
) -> Finding {
    Finding {
        severity,
        rule,
        node: node.map(Node::label),
        message,
    }
}

fn newer_dsl(graph: &AppGraph, out: &mut Vec<Finding>) {
    let parts: Vec<u64> = graph
        .version
        .split('.')
        .map(|p| p.trim().parse().unwrap_or(0))
        .collect();
    let version = (
        parts.first().copied().unwrap_or(0),
        parts.get(1).copied().unwrap_or(0),
        parts.get(2).copied().unwrap_or(0),
    );
    if version > KNOWN_DSL_VERSION {
        let (a, b, c) = KNOWN_DSL_VERSION;
        out.push(finding(
            Severity::Warning,
            "newer-dsl",
            None,
            format!(
                "the DSL is version {}, newer than {a}.{b}.{c} (Dify 1.16): an older Dify asks to \
                 confirm the import (import --confirm-newer-dsl) and may drop what it does not know",
                graph.version.chars().take(20).collect::<String>()
            ),
        ));
    }
}

/// A file that cannot be checked at all.
pub fn unreadable(message: String) -> Finding {
    finding(Severity::Error, "unreadable", None, message)
}

fn secrets_in(dsl: &serde_yaml::Value, out: &mut Vec<Finding>) {
    let mut copy = dsl.clone();
    let keys: Vec<String> = secrets::redact(&mut copy)
        .into_iter()
        .map(|f| f.key)
        .collect();
    if !keys.is_empty() {
        out.push(finding(
            Severity::Error,
            "secret",
            None,
            format!(
                "secrets in {}: move each into a secret environment variable and use \
                 {{{{#env.NAME#}}}} in its place",
                secrets::describe_keys(&keys, Some(dsl))
            ),
        ));
    }
}

/// What a node of a known type outputs; `None` for a type whose outputs this cannot know
/// (a tool's, an agent's, a plugin's), whose references are not checked past the node.
fn outputs(node: &Node) -> Option<BTreeSet<String>> {
    let names = |key: &str, field: &str| -> BTreeSet<String> {
        node.data
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|v| v.get(field).and_then(Value::as_str).map(str::to_owned))
            .collect()
    };
    let fixed = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    let mut found = match node.kind.as_str() {
        "start" => names("variables", "variable"),
        "llm" => fixed(&[
            "text",
            "reasoning_content",
            "usage",
            "structured_output",
            "files",
        ]),
        "knowledge-retrieval" => fixed(&["result"]),
        "code" => node
            .data
            .get("outputs")
            .and_then(Value::as_object)
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default(),
        "template-transform" => fixed(&["output"]),
        "http-request" => fixed(&["body", "status_code", "headers", "files"]),
        "question-classifier" => fixed(&["class_name", "class_id", "usage"]),
        "parameter-extractor" => {
            let mut out = names("parameters", "name");
            out.extend(fixed(&["__is_success", "__reason", "__usage"]));
            out
        }
        "iteration" => fixed(&["output", "item", "index"]),
        "document-extractor" => fixed(&["text"]),
        "list-operator" => fixed(&["result", "first_record", "last_record"]),
        "if-else" | "answer" | "end" | "assigner" => BTreeSet::new(),
        _ => return None,
    };
    if node.kind == "start" {
        // Files uploaded to a chat arrive as sys.files; the start node also carries them.
        found.insert("files".into());
    }
    Some(found)
}

fn references(graph: &AppGraph, out: &mut Vec<Finding>) {
    let pattern = Regex::new(r"\{\{#([^#{}]{1,200})#\}\}").expect("a valid pattern");
    for node in graph.nodes.values() {
        let mut selectors = Vec::new();
        collect(&node.data, "", 0, &pattern, &mut selectors);
        for selector in selectors {
            if let Some(problem) = broken(graph, &selector) {
                out.push(finding(
                    Severity::Error,
                    "broken-reference",
                    Some(node),
                    problem,
                ));
            }
        }
    }
}

/// Every variable selector in `value`: `{{#a.b#}}` in text, and lists of strings under a key
/// ending in `selector`.
fn collect(value: &Value, key: &str, depth: usize, pattern: &Regex, out: &mut Vec<Vec<String>>) {
    if depth > MAX_DEPTH {
        return;
    }
    match value {
        Value::String(text) => {
            for captured in pattern.captures_iter(text) {
                out.push(captured[1].split('.').map(str::to_owned).collect());
            }
        }
        Value::Array(items) if key.ends_with("selector") => {
            let parts: Vec<String> = items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect();
            if parts.len() == items.len() && parts.len() >= 2 {
                out.push(parts);
            }
        }
        Value::Array(items) => {
            for item in items {
                collect(item, key, depth + 1, pattern, out);
            }
        }
        Value::Object(fields) => {
            for (name, item) in fields {
                collect(item, name, depth + 1, pattern, out);
            }
        }
        _ => {}
    }
}

/// Why `selector` names nothing, if it does not.
fn broken(graph: &AppGraph, selector: &[String]) -> Option<String> {
    let (root, name) = (selector.first()?.as_str(), selector.get(1)?.as_str());
    // From a file anyone who can push may write: cut, and no control character shown.
    let cut = |text: &str, most: usize| -> String {
        text.chars()
            .filter(|c| !c.is_control())
            .take(most)
            .collect()
    };
    let shown = || cut(&selector.join("."), 120);
    let (id, name_shown) = (cut(root, 80), cut(name, 80));
    match root {
        _ if SYSTEM_ROOTS.contains(&root) => None,
        "env" => (!graph.environment.contains_key(name)).then(|| {
            format!(
                "{{{{#{}#}}}} names the environment variable \"{name_shown}\", which the app does not have",
                shown()
            )
        }),
        "conversation" => (!graph.conversation.contains_key(name)).then(|| {
            format!(
                "{{{{#{}#}}}} names the conversation variable \"{name_shown}\", which the app does not have",
                shown()
            )
        }),
        _ => match graph.nodes.get(root) {
            None => Some(format!(
                "{{{{#{}#}}}} names node \"{id}\", which the graph does not have (deleted, or from another app)",
                shown()
            )),
            Some(target) => match outputs(target) {
                Some(known) if !known.contains(name) => Some(format!(
                    "{{{{#{}#}}}} names the output \"{name_shown}\" of {}, which has {}",
                    shown(),
                    target.label(),
                    match known.is_empty() {
                        true => "no outputs".to_string(),
                        false => {
                            let names: Vec<String> =
                                known.iter().take(20).map(|n| cut(n, 40)).collect();
                            let more = known.len().saturating_sub(20);
                            match more {
                                0 => names.join(", "),
                                more => format!("{} and {more} more", names.join(", ")),
                            }
                        }
                    }
                )),
                _ => None,
            },
        },
    }
}

/// Nodes no start reaches along the edges (a container's own start counts as reached once
/// the container is).
fn reachability(graph: &AppGraph, out: &mut Vec<Finding>) {
    let starts: Vec<&str> = graph
        .nodes
        .values()
        .filter(|n| STARTS.contains(&n.kind.as_str()))
        .map(|n| n.id.as_str())
        .collect();
    if starts.is_empty() {
        let chat = graph.app.get("mode").and_then(Value::as_str);
        if matches!(chat, Some("workflow" | "advanced-chat") | None) {
            out.push(finding(
                Severity::Error,
                "no-start",
                None,
                "the workflow has no start node (Start, or a trigger)".into(),
            ));
        }
        return;
    }
    let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for edge in &graph.edges {
        next.entry(edge.source.as_str())
            .or_default()
            .push(edge.target.as_str());
    }
    for node in graph.nodes.values() {
        let inner_start = node.kind.ends_with("-start") && node.kind != "trigger-start";
        if let (Some(parent), true) = (&node.parent, inner_start) {
            next.entry(parent.as_str())
                .or_default()
                .push(node.id.as_str());
        }
    }
    let mut reached: BTreeSet<&str> = starts.iter().copied().collect();
    let mut queue: VecDeque<&str> = starts.into_iter().collect();
    while let Some(id) = queue.pop_front() {
        for target in next.get(id).into_iter().flatten() {
            if reached.insert(target) {
                queue.push_back(target);
            }
        }
    }
    for node in graph.nodes.values() {
        if !reached.contains(node.id.as_str()) {
            out.push(finding(
                Severity::Warning,
                "unreachable",
                Some(node),
                "no start reaches this node: it never runs (connect it, or delete it)".into(),
            ));
        }
    }
}

/// A model, or a field a node cannot run without.
fn required(node: &Node, out: &mut Vec<Finding>) {
    let text = |pointer: &str| {
        node.data
            .pointer(pointer)
            .and_then(Value::as_str)
            .is_some_and(|s| !s.trim().is_empty())
    };
    let list = |key: &str| {
        node.data
            .get(key)
            .and_then(Value::as_array)
            .is_some_and(|l| !l.is_empty())
    };
    let missing: &[&str] = match node.kind.as_str() {
        "llm" | "question-classifier" | "parameter-extractor"
            if !(text("/model/provider") && text("/model/name")) =>
        {
            out.push(finding(
                Severity::Error,
                "missing-model",
                Some(node),
                "no model is chosen (model.provider and model.name)".into(),
            ));
            return;
        }
        "knowledge-retrieval" if !list("dataset_ids") => &["dataset_ids (a knowledge base)"],
        "code" if !text("/code") => &["code"],
        "http-request" if !text("/url") => &["url"],
        "tool" if !(text("/provider_id") && text("/tool_name")) => &["provider_id and tool_name"],
        "agent" if !text("/agent_strategy_name") => &["agent_strategy_name (a strategy)"],
        _ => return,
    };
    out.push(finding(
        Severity::Error,
        "missing-field",
        Some(node),
        format!("{} is empty: the node cannot run", missing.join(", ")),
    ));
}

/// How many errors and warnings `findings` hold.
pub fn count(findings: &[Finding]) -> (usize, usize) {
    let errors = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count();
    (errors, findings.len() - errors)
}

/// The findings as lines for a terminal: `error [rule] node: message`.
pub fn describe(file: &str, findings: &[Finding]) -> String {
    let mut out = String::new();
    for finding in findings {
        let severity = match finding.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let node = finding
            .node
            .as_ref()
            .map(|n| format!(" {n}:"))
            .unwrap_or_default();
        out.push_str(&format!(
            "{file}: {severity} [{}]{node} {}\n",
            finding.rule, finding.message
        ));
    }
    out
}
