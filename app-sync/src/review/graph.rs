//! An app's DSL as a reviewer sees it: the app's own fields, the nodes of its graph by id
//! (with their type, title and container), the edges, the environment and conversation
//! variables, and the features. Read from a file anyone who can push may write: nothing here
//! recurses without a bound, and every list is as long as the file.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

/// Keys of a graph node's `data` that only the editor's canvas uses.
const UI_DATA_KEYS: [&str; 3] = ["selected", "isInIteration", "isInLoop"];

/// One app, from its DSL.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AppGraph {
    /// The `app` section (name, mode, description, icon, …).
    pub app: Map<String, Value>,
    /// The DSL's `version` (`0.1.0` when absent, as Dify reads it).
    pub version: String,
    /// A chat or completion app's settings (`model_config`); empty for a workflow.
    pub model_config: Map<String, Value>,
    pub nodes: BTreeMap<String, Node>,
    pub edges: BTreeSet<Edge>,
    /// Environment and conversation variables by name (their declaration, value included).
    pub environment: BTreeMap<String, Value>,
    pub conversation: BTreeMap<String, Value>,
    pub features: Map<String, Value>,
}

/// One node of the graph.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub id: String,
    /// `data.type`: `llm`, `code`, `knowledge-retrieval`, …
    pub kind: String,
    pub title: String,
    /// The iteration or loop the node sits in.
    pub parent: Option<String>,
    /// `data`, less what only the canvas uses.
    pub data: Value,
}

/// An edge, by the ids of its ends and the source's handle (an if-else branch, a class).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Edge {
    pub source: String,
    pub target: String,
    pub handle: String,
}

impl Node {
    /// `"Title" (type)`, as a person reads it: titles cut at 80 characters, and no control
    /// character of a file reaches a terminal.
    pub fn label(&self) -> String {
        let (title, kind) = (shown(&self.title), shown(&self.kind));
        match title.is_empty() {
            true => format!("{} ({kind})", shown(&self.id)),
            false => format!("\"{title}\" ({kind})"),
        }
    }
}

impl AppGraph {
    /// The graph of a DSL text.
    /// The graph of a DSL text, every secret in it (the export guard's detector) replaced by
    /// its placeholder: what a review shows may go to a pull-request comment.
    pub fn parse(text: &str) -> Result<AppGraph, String> {
        let mut yaml: serde_yaml::Value =
            serde_yaml::from_str(text).map_err(|e| format!("the file is not valid YAML: {e}"))?;
        crate::secrets::redact(&mut yaml);
        let dsl = serde_json::to_value(&yaml).map_err(|e| format!("not an app's DSL: {e}"))?;
        Ok(AppGraph::from_dsl(&dsl))
    }

    /// The graph of a parsed DSL; what is missing or of another shape is left empty.
    pub fn from_dsl(dsl: &Value) -> AppGraph {
        let object = |pointer: &str| {
            dsl.pointer(pointer)
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default()
        };
        let list = |pointer: &str| {
            dsl.pointer(pointer)
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default()
                .to_vec()
        };
        let nodes = list("/workflow/graph/nodes")
            .iter()
            .filter_map(node)
            .map(|node| (node.id.clone(), node))
            .collect();
        let edges = list("/workflow/graph/edges")
            .iter()
            .filter_map(|edge| {
                let end = |key: &str| edge.get(key).and_then(Value::as_str).map(str::to_owned);
                Some(Edge {
                    source: end("source")?,
                    target: end("target")?,
                    handle: end("sourceHandle").unwrap_or_else(|| "source".into()),
                })
            })
            .collect();
        let by_name = |pointer: &str| {
            list(pointer)
                .into_iter()
                .filter_map(|v| Some((v.get("name")?.as_str()?.to_string(), v.clone())))
                .collect()
        };
        AppGraph {
            app: object("/app"),
            version: dsl
                .get("version")
                .and_then(Value::as_str)
                .unwrap_or("0.1.0")
                .to_string(),
            model_config: object("/model_config"),
            nodes,
            edges,
            environment: by_name("/workflow/environment_variables"),
            conversation: by_name("/workflow/conversation_variables"),
            features: object("/workflow/features"),
        }
    }

    /// The node's label, or its id when the graph has no such node.
    pub fn label(&self, id: &str) -> String {
        match self.nodes.get(id) {
            Some(node) => node.label(),
            None => format!("\"{}\"", shown(id)),
        }
    }
}

/// At most 80 characters of `text`, control characters left out.
fn shown(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(80).collect()
}

fn node(value: &Value) -> Option<Node> {
    // Notes on the canvas are nodes of their own type, not steps of the workflow.
    if value.get("type").and_then(Value::as_str) == Some("custom-note") {
        return None;
    }
    let id = value.get("id")?.as_str()?.to_string();
    let mut data = value.get("data").cloned().unwrap_or(Value::Null);
    if let Some(fields) = data.as_object_mut() {
        for key in UI_DATA_KEYS {
            fields.remove(key);
        }
    }
    let text = |key: &str| data.get(key).and_then(Value::as_str).map(str::to_owned);
    let parent = value
        .get("parentId")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| text("iteration_id"))
        .or_else(|| text("loop_id"));
    Some(Node {
        kind: text("type").unwrap_or_default(),
        title: text("title").unwrap_or_default(),
        parent,
        id,
        data,
    })
}
