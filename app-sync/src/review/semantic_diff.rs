//! What changed between two versions of an app, as a reviewer reads it: nodes added, removed
//! and changed (by title and type, with the fields that changed; a prompt or code as a text
//! diff inside), edges added and removed, variables, features and the app's own settings. As
//! text for a terminal, or Markdown for a pull-request comment.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{Map, Value};

use super::graph::{AppGraph, Edge};

/// How deep a field is followed into a node's data (a hostile file cannot recurse forever).
const MAX_DEPTH: usize = 32;
/// What the rendering says when nothing but the canvas changed.
const NO_CHANGE: &str = "No change to the app (canvas moves aside).";
/// A value shown inline is cut here.
const INLINE_CHARS: usize = 160;

/// One field that changed: its path, and its value before and after (`None`: absent).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldChange {
    pub path: String,
    pub old: Option<Value>,
    pub new: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeChange {
    /// `"Title" (type)` after the change.
    pub node: String,
    /// The title before, when it changed.
    pub renamed_from: Option<String>,
    pub fields: Vec<FieldChange>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SemanticDiff {
    /// The app's own settings (name, mode, model settings of a chat app, …) and its DSL version.
    pub app: Vec<FieldChange>,
    pub nodes_added: Vec<String>,
    pub nodes_removed: Vec<String>,
    pub nodes_changed: Vec<NodeChange>,
    /// `source → target` (with the branch when it is not the plain one).
    pub edges_added: Vec<String>,
    pub edges_removed: Vec<String>,
    /// `env.NAME` and `conversation.NAME`.
    pub variables: Vec<FieldChange>,
    pub features: Vec<FieldChange>,
}

impl SemanticDiff {
    pub fn between(old: &AppGraph, new: &AppGraph) -> SemanticDiff {
        let mut diff = SemanticDiff::default();
        let mut app = Vec::new();
        compare_maps("", &old.app, &new.app, &mut app);
        compare_maps(
            "model_config.",
            &old.model_config,
            &new.model_config,
            &mut app,
        );
        if old.version != new.version {
            app.push(FieldChange {
                path: "version".into(),
                old: Some(Value::from(old.version.clone())),
                new: Some(Value::from(new.version.clone())),
            });
        }
        diff.app = app;
        for (id, node) in &new.nodes {
            match old.nodes.get(id) {
                None => diff.nodes_added.push(node.label()),
                Some(before) => {
                    let mut fields = Vec::new();
                    compare("", Some(&before.data), Some(&node.data), 0, &mut fields);
                    fields.retain(|f| f.path != "title");
                    let renamed = (before.title != node.title).then(|| before.label());
                    if !fields.is_empty() || renamed.is_some() {
                        diff.nodes_changed.push(NodeChange {
                            node: node.label(),
                            renamed_from: renamed,
                            fields,
                        });
                    }
                }
            }
        }
        for (id, node) in &old.nodes {
            if !new.nodes.contains_key(id) {
                diff.nodes_removed.push(node.label());
            }
        }
        let edge = |graph: &AppGraph, edge: &Edge| {
            let branch = match edge.handle.as_str() {
                "source" | "" => String::new(),
                handle => format!(" [{}]", handle.chars().take(40).collect::<String>()),
            };
            format!(
                "{} → {}{branch}",
                graph.label(&edge.source),
                graph.label(&edge.target)
            )
        };
        diff.edges_added = new
            .edges
            .difference(&old.edges)
            .map(|e| edge(new, e))
            .collect();
        diff.edges_removed = old
            .edges
            .difference(&new.edges)
            .map(|e| edge(old, e))
            .collect();
        for (scope, before, after) in [
            ("env", &old.environment, &new.environment),
            ("conversation", &old.conversation, &new.conversation),
        ] {
            let names: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
            for name in names {
                let path = format!("{scope}.{name}");
                compare(
                    &path,
                    before.get(name),
                    after.get(name),
                    0,
                    &mut diff.variables,
                );
            }
        }
        compare_maps("", &old.features, &new.features, &mut diff.features);
        diff
    }

    pub fn is_empty(&self) -> bool {
        self == &SemanticDiff::default()
    }

    /// The diff for a terminal (`markdown` false) or a pull-request comment, under `title`.
    pub fn render(&self, title: &str, markdown: bool) -> String {
        let mut out = Writer {
            markdown,
            text: String::new(),
        };
        out.heading(title);
        if self.is_empty() {
            out.line(NO_CHANGE);
            return out.text;
        }
        out.fields("App", &self.app);
        out.list("Nodes added", &self.nodes_added);
        out.list("Nodes removed", &self.nodes_removed);
        if !self.nodes_changed.is_empty() {
            out.section("Nodes changed");
            for change in &self.nodes_changed {
                let renamed = change
                    .renamed_from
                    .as_ref()
                    .map(|before| format!(", renamed from {before}"))
                    .unwrap_or_default();
                out.item(&format!("{}{renamed}", change.node));
                for field in &change.fields {
                    out.field(field, 1);
                }
            }
        }
        out.list("Edges added", &self.edges_added);
        out.list("Edges removed", &self.edges_removed);
        out.fields("Variables", &self.variables);
        out.fields("Features", &self.features);
        out.text
    }
}

fn compare_maps(
    prefix: &str,
    old: &Map<String, Value>,
    new: &Map<String, Value>,
    out: &mut Vec<FieldChange>,
) {
    let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for key in keys {
        compare(
            &format!("{prefix}{key}"),
            old.get(key),
            new.get(key),
            1,
            out,
        );
    }
}

/// Appends every leaf of `old` and `new` that differs. Objects are followed by key, lists of
/// objects with ids by id, other lists of one length by position; past `MAX_DEPTH` a value
/// is compared whole.
fn compare(
    path: &str,
    old: Option<&Value>,
    new: Option<&Value>,
    depth: usize,
    out: &mut Vec<FieldChange>,
) {
    if old == new {
        return;
    }
    let join = |key: &str| match path.is_empty() {
        true => key.to_string(),
        false => format!("{path}.{key}"),
    };
    if depth < MAX_DEPTH {
        match (old, new) {
            (Some(Value::Object(a)), Some(Value::Object(b))) => {
                let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
                for key in keys {
                    compare(&join(key), a.get(key), b.get(key), depth + 1, out);
                }
                return;
            }
            (Some(Value::Array(a)), Some(Value::Array(b))) => {
                if let (Some(a_ids), Some(b_ids)) = (ids(a), ids(b)) {
                    let keys: BTreeSet<&str> = a_ids.keys().chain(b_ids.keys()).copied().collect();
                    for key in keys {
                        let (before, after) = (a_ids.get(key).copied(), b_ids.get(key).copied());
                        compare(&format!("{path}[{key}]"), before, after, depth + 1, out);
                    }
                    return;
                }
                if a.len() == b.len() {
                    for (at, (before, after)) in a.iter().zip(b).enumerate() {
                        compare(
                            &format!("{path}[{at}]"),
                            Some(before),
                            Some(after),
                            depth + 1,
                            out,
                        );
                    }
                    return;
                }
            }
            _ => {}
        }
    }
    out.push(FieldChange {
        path: path.to_string(),
        old: old.cloned(),
        new: new.cloned(),
    });
}

/// Every item by its `id`, when each is an object with a distinct string `id`.
fn ids(items: &[Value]) -> Option<BTreeMap<&str, &Value>> {
    let mut found = BTreeMap::new();
    for item in items {
        let id = item.get("id").and_then(Value::as_str)?;
        if found.insert(id, item).is_some() {
            return None;
        }
    }
    (!found.is_empty()).then_some(found)
}

struct Writer {
    markdown: bool,
    text: String,
}

impl Writer {
    fn line(&mut self, line: &str) {
        self.text.push_str(line);
        self.text.push('\n');
    }

    fn heading(&mut self, title: &str) {
        match self.markdown {
            true => self.line(&format!("### {}", escape(title))),
            false => self.line(title),
        }
    }

    fn section(&mut self, name: &str) {
        match self.markdown {
            true => self.line(&format!("\n**{name}**\n")),
            false => self.line(&format!("{name}:")),
        }
    }

    fn item(&mut self, text: &str) {
        match self.markdown {
            true => self.line(&format!("- {}", escape(text))),
            false => self.line(&format!("  {text}")),
        }
    }

    fn list(&mut self, name: &str, items: &[String]) {
        if items.is_empty() {
            return;
        }
        self.section(name);
        for item in items {
            self.item(item);
        }
    }

    fn fields(&mut self, name: &str, fields: &[FieldChange]) {
        if fields.is_empty() {
            return;
        }
        self.section(name);
        for field in fields {
            self.field(field, 0);
        }
    }

    /// One changed field: inline, or a text with lines as a diff of its lines.
    fn field(&mut self, field: &FieldChange, level: usize) {
        let indent = match self.markdown {
            true => "  ".repeat(level),
            false => "  ".repeat(level + 1),
        };
        let bullet = if self.markdown { "- " } else { "" };
        let multiline = |v: &Option<Value>| {
            v.as_ref()
                .and_then(Value::as_str)
                .is_some_and(|s| s.contains('\n'))
        };
        if multiline(&field.old) || multiline(&field.new) {
            // Each side ends its last line, so the diff does not mark a missing newline.
            let text = |v: &Option<Value>| {
                let mut text = v.as_ref().and_then(Value::as_str).unwrap_or("").to_string();
                if !text.is_empty() && !text.ends_with('\n') {
                    text.push('\n');
                }
                text
            };
            let (old, new) = (text(&field.old), text(&field.new));
            let diff = similar::TextDiff::from_lines(&old, &new);
            let body = diff.unified_diff().context_radius(2).to_string();
            self.line(&format!("{indent}{bullet}{}:", self.code(&field.path)));
            match self.markdown {
                true => {
                    let fence = fence_for(&body);
                    self.line(&format!("{indent}  {fence}diff"));
                    for line in body.lines() {
                        self.line(&format!("{indent}  {line}"));
                    }
                    self.line(&format!("{indent}  {fence}"));
                }
                false => {
                    for line in body.lines() {
                        self.line(&format!("{indent}    {line}"));
                    }
                }
            }
            return;
        }
        let shown = |v: &Option<Value>| match v {
            None => "(none)".to_string(),
            Some(v) => {
                let text = v.to_string();
                match text.chars().count() > INLINE_CHARS {
                    true => format!("{}…", text.chars().take(INLINE_CHARS).collect::<String>()),
                    false => text,
                }
            }
        };
        let change = match (&field.old, &field.new) {
            (None, Some(_)) => format!("added {}", self.code(&shown(&field.new))),
            (Some(_), None) => format!("removed (was {})", self.code(&shown(&field.old))),
            _ => format!(
                "{} → {}",
                self.code(&shown(&field.old)),
                self.code(&shown(&field.new))
            ),
        };
        self.line(&format!(
            "{indent}{bullet}{}: {change}",
            self.code(&field.path)
        ));
    }

    fn code(&self, text: &str) -> String {
        match self.markdown {
            true => {
                let ticks = "`".repeat(longest_run(text, '`') + 1);
                format!("{ticks} {text} {ticks}")
            }
            false => text.to_string(),
        }
    }
}

/// A fence longer than any run of backticks in `body`, so a prompt cannot close it.
fn fence_for(body: &str) -> String {
    "`".repeat((longest_run(body, '`') + 1).max(3))
}

fn longest_run(text: &str, c: char) -> usize {
    let (mut longest, mut run) = (0, 0);
    for ch in text.chars() {
        run = if ch == c { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    longest
}

/// Markdown's own characters in a title or label, escaped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        if "\\`*_[]<>#|".contains(ch) {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}
