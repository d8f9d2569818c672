//! The offline review on hand-made DSL of every node type Dify 1.16 exports: the semantic
//! diff (nodes, fields, prompts, edges, variables, features; text and Markdown), the lint
//! rules, and the two commands a pull-request job runs (`diff --base`, `lint`).

use std::process::Command;

use app_git_sync::review::graph::AppGraph;
use app_git_sync::review::lint::{lint, Severity};
use app_git_sync::review::semantic_diff::SemanticDiff;
use proptest::prelude::*;
use serde_json::{json, Value};

use crate::support::git_servers::git;
use crate::support::plugin_under_test::BINARY;

fn node(id: &str, kind: &str, title: &str, data: Value) -> Value {
    let mut data = data;
    data["type"] = json!(kind);
    data["title"] = json!(title);
    json!({"id": id, "type": "custom", "data": data, "position": {"x": 0, "y": 0}})
}

fn edge(source: &str, target: &str, handle: &str) -> Value {
    json!({"id": format!("{source}-{handle}-{target}"), "source": source, "target": target,
           "sourceHandle": handle, "targetHandle": "target", "data": {}})
}

fn model() -> Value {
    json!({"provider": "langgenius/openai/openai", "name": "gpt-4o", "mode": "chat", "completion_params": {}})
}

/// A workflow with one node of every type Dify 1.16 exports, every reference resolving.
fn workflow() -> Value {
    let nodes = vec![
        node(
            "start",
            "start",
            "Start",
            json!({"variables": [{"variable": "question", "type": "text-input", "label": "Q", "required": true}]}),
        ),
        node(
            "kb",
            "knowledge-retrieval",
            "Retrieve",
            json!({"dataset_ids": ["6b1f0000-0000-4000-8000-000000000001"], "query_variable_selector": ["start", "question"], "retrieval_mode": "multiple"}),
        ),
        node(
            "llm",
            "llm",
            "Answer",
            json!({"model": model(), "prompt_template": [
            {"id": "sys-1", "role": "system", "text": "You answer from the context.\nBe brief.\n{{#kb.result#}}"},
            {"id": "user-1", "role": "user", "text": "{{#start.question#}} ({{#env.TONE#}})"}],
            "context": {"enabled": true, "variable_selector": ["kb", "result"]}}),
        ),
        node(
            "code",
            "code",
            "Count",
            json!({"code_language": "python3", "code": "def main(text):\n    return {'n': len(text)}\n",
            "variables": [{"variable": "text", "value_selector": ["llm", "text"]}], "outputs": {"n": {"type": "number"}}}),
        ),
        node(
            "tpl",
            "template-transform",
            "Format",
            json!({"template": "{{ n }}", "variables": [{"variable": "n", "value_selector": ["code", "n"]}]}),
        ),
        node(
            "http",
            "http-request",
            "Notify",
            json!({"method": "post", "url": "https://hooks.example/{{#tpl.output#}}",
            "authorization": {"type": "no-auth"}, "headers": "", "params": "", "body": {"type": "none", "data": []}}),
        ),
        node(
            "tool",
            "tool",
            "Search",
            json!({"provider_id": "langgenius/tavily/tavily", "provider_type": "builtin", "tool_name": "tavily_search",
            "tool_parameters": {"query": {"type": "mixed", "value": "{{#start.question#}}"}}}),
        ),
        node(
            "ifelse",
            "if-else",
            "Found?",
            json!({"cases": [{"case_id": "true", "logical_operator": "and",
            "conditions": [{"id": "c1", "variable_selector": ["http", "status_code"], "comparison_operator": "=", "value": "200"}]}]}),
        ),
        node(
            "classify",
            "question-classifier",
            "Topic",
            json!({"model": model(), "query_variable_selector": ["start", "question"],
            "classes": [{"id": "1", "name": "billing"}, {"id": "2", "name": "other"}]}),
        ),
        node(
            "extract",
            "parameter-extractor",
            "Extract",
            json!({"model": model(), "query": ["start", "question"],
            "parameters": [{"name": "amount", "type": "number", "description": "the amount", "required": true}]}),
        ),
        node(
            "agg",
            "variable-aggregator",
            "Merge",
            json!({"output_type": "string", "variables": [["llm", "text"], ["tool", "text"]]}),
        ),
        node(
            "iter",
            "iteration",
            "Each",
            json!({"iterator_selector": ["tool", "json"], "output_selector": ["inner", "output"], "start_node_id": "iter-start"}),
        ),
        json!({"id": "iter-start", "type": "custom-iteration-start", "parentId": "iter", "data": {"type": "iteration-start", "title": "", "isInIteration": true}}),
        json!({"id": "inner", "type": "custom", "parentId": "iter", "data": {"type": "template-transform", "title": "Item", "isInIteration": true,
            "template": "{{ x }}", "variables": [{"variable": "x", "value_selector": ["iter", "item"]}]}}),
        node(
            "loop",
            "loop",
            "Retry",
            json!({"loop_count": 3, "break_conditions": [], "start_node_id": "loop-start"}),
        ),
        json!({"id": "loop-start", "type": "custom-loop-start", "parentId": "loop", "data": {"type": "loop-start", "title": "", "isInLoop": true}}),
        node(
            "docs",
            "document-extractor",
            "Read files",
            json!({"variable_selector": ["start", "files"], "is_array_file": true}),
        ),
        node(
            "list",
            "list-operator",
            "First",
            json!({"variable": ["docs", "text"], "limit": {"enabled": true, "size": 1}}),
        ),
        node(
            "agent",
            "agent",
            "Agent",
            json!({"agent_strategy_provider_name": "langgenius/agent/agent", "agent_strategy_name": "function_calling",
            "agent_parameters": {"query": {"type": "constant", "value": "{{#start.question#}}"}}}),
        ),
        node(
            "assign",
            "assigner",
            "Remember",
            json!({"version": "2", "items": [{"variable_selector": ["conversation", "last"], "operation": "over-write", "value": ["llm", "text"]}]}),
        ),
        node(
            "end",
            "end",
            "End",
            json!({"outputs": [{"variable": "answer", "value_selector": ["agg", "output"]}]}),
        ),
        json!({"id": "note", "type": "custom-note", "data": {"type": "", "title": "", "text": "a note"}}),
    ];
    let chain = [
        "start", "kb", "llm", "code", "tpl", "http", "tool", "ifelse", "classify", "extract",
        "agg", "iter", "loop", "docs", "list", "agent", "assign", "end",
    ];
    let mut edges: Vec<Value> = chain
        .windows(2)
        .map(|w| edge(w[0], w[1], "source"))
        .collect();
    edges.push(edge("iter-start", "inner", "source"));
    json!({
        "app": {"name": "Support", "mode": "advanced-chat", "icon": "🤖", "description": "answers"},
        "kind": "app",
        "version": "0.7.0",
        "workflow": {
            "environment_variables": [{"name": "TONE", "value": "kind", "value_type": "string", "id": "e1"}],
            "conversation_variables": [{"name": "last", "value": "", "value_type": "string", "id": "v1"}],
            "features": {"opening_statement": "Hi", "file_upload": {"enabled": false}},
            "graph": {"nodes": nodes, "edges": edges, "viewport": {"x": 0, "y": 0, "zoom": 1}},
        },
    })
}

fn yaml(dsl: &Value) -> String {
    serde_yaml::to_string(dsl).unwrap()
}

fn node_mut<'a>(dsl: &'a mut Value, id: &str) -> &'a mut Value {
    let nodes = dsl["workflow"]["graph"]["nodes"].as_array_mut().unwrap();
    nodes.iter_mut().find(|n| n["id"] == id).unwrap()
}

fn remove_node(dsl: &mut Value, id: &str) {
    let nodes = dsl["workflow"]["graph"]["nodes"].as_array_mut().unwrap();
    nodes.retain(|n| n["id"] != id);
    let edges = dsl["workflow"]["graph"]["edges"].as_array_mut().unwrap();
    edges.retain(|e| e["source"] != id && e["target"] != id);
}

fn rules(text: &str) -> Vec<(Severity, &'static str, Option<String>)> {
    lint(text)
        .into_iter()
        .map(|f| (f.severity, f.rule, f.node))
        .collect()
}

#[test]
fn a_sound_workflow_of_every_node_type_lints_clean() {
    let findings = lint(&yaml(&workflow()));
    assert!(findings.is_empty(), "{findings:#?}");
    let graph = AppGraph::parse(&yaml(&workflow())).unwrap();
    assert_eq!(graph.nodes.len(), 21, "the note is not a node");
    assert_eq!(graph.nodes["inner"].parent.as_deref(), Some("iter"));
}

#[test]
fn the_lint_rules_each_catch_their_fault() {
    // A deleted node still referenced downstream, and an output its node does not have.
    let mut dsl = workflow();
    remove_node(&mut dsl, "code");
    dsl["workflow"]["graph"]["edges"]
        .as_array_mut()
        .unwrap()
        .push(edge("llm", "tpl", "source"));
    node_mut(&mut dsl, "http")["data"]["url"] = json!("https://x/{{#tpl.result#}}");
    node_mut(&mut dsl, "llm")["data"]["prompt_template"][1]["text"] =
        json!("{{#env.MISSING#}} {{#conversation.nope#}} {{#sys.query#}}");
    let found = rules(&yaml(&dsl));
    let broken: Vec<_> = found.iter().filter(|f| f.1 == "broken-reference").collect();
    assert_eq!(broken.len(), 4, "{found:#?}");
    let messages: Vec<String> = lint(&yaml(&dsl)).into_iter().map(|f| f.message).collect();
    let all = messages.join("\n");
    assert!(
        all.contains("names node \"code\", which the graph does not have"),
        "{all}"
    );
    assert!(
        all.contains("the output \"result\" of \"Format\" (template-transform), which has output"),
        "{all}"
    );
    assert!(all.contains("environment variable \"MISSING\""), "{all}");
    assert!(all.contains("conversation variable \"nope\""), "{all}");

    // An unreachable node, a model not chosen, a knowledge base not chosen, a secret.
    let mut dsl = workflow();
    dsl["workflow"]["graph"]["nodes"]
        .as_array_mut()
        .unwrap()
        .push(node(
            "orphan",
            "template-transform",
            "Orphan",
            json!({"template": "x", "variables": []}),
        ));
    node_mut(&mut dsl, "classify")["data"]["model"]["name"] = json!("");
    node_mut(&mut dsl, "kb")["data"]["dataset_ids"] = json!([]);
    node_mut(&mut dsl, "http")["data"]["headers"] =
        json!("Authorization:Bearer sk-live-0123456789abcdef0123");
    let found = rules(&yaml(&dsl));
    let has = |severity: Severity, rule: &str, node: &str| {
        found.iter().any(|f| {
            f.0 == severity && f.1 == rule && f.2.as_deref().is_some_and(|n| n.contains(node))
        })
    };
    assert!(
        has(Severity::Warning, "unreachable", "\"Orphan\""),
        "{found:#?}"
    );
    let unreachable = found.iter().filter(|f| f.1 == "unreachable").count();
    assert_eq!(
        unreachable, 1,
        "inside an iteration and a loop is reached: {found:#?}"
    );
    assert!(has(Severity::Error, "missing-model", "Topic"), "{found:#?}");
    assert!(
        has(Severity::Error, "missing-field", "Retrieve"),
        "{found:#?}"
    );
    let secret = lint(&yaml(&dsl))
        .into_iter()
        .find(|f| f.rule == "secret")
        .unwrap();
    assert!(
        !secret.message.contains("sk-live"),
        "the secret is named, never shown"
    );
    assert!(secret.message.contains("Notify"), "{}", secret.message);

    // A newer DSL warns; no start at all is an error; a file that is not YAML says so.
    let mut dsl = workflow();
    dsl["version"] = json!("0.8.1");
    assert!(rules(&yaml(&dsl)).contains(&(Severity::Warning, "newer-dsl", None)));
    remove_node(&mut dsl, "start");
    assert!(rules(&yaml(&dsl)).iter().any(|f| f.1 == "no-start"));
    assert_eq!(rules("app: [unclosed")[0].1, "unreadable");
}

#[test]
fn the_semantic_diff_names_nodes_fields_prompts_edges_and_variables() {
    let old = workflow();
    let mut new = workflow();
    node_mut(&mut new, "llm")["data"]["prompt_template"][0]["text"] =
        json!("You answer from the context.\nBe thorough.\n{{#kb.result#}}");
    node_mut(&mut new, "llm")["data"]["title"] = json!("Reply");
    node_mut(&mut new, "kb")["data"]["retrieval_mode"] = json!("single");
    node_mut(&mut new, "llm")["position"] = json!({"x": 500, "y": 9});
    remove_node(&mut new, "list");
    new["workflow"]["graph"]["nodes"]
        .as_array_mut()
        .unwrap()
        .push(node(
            "summary",
            "llm",
            "Summarize",
            json!({"model": model(), "prompt_template": []}),
        ));
    new["workflow"]["graph"]["edges"]
        .as_array_mut()
        .unwrap()
        .extend([
            edge("docs", "summary", "source"),
            edge("summary", "agent", "source"),
        ]);
    new["workflow"]["environment_variables"][0]["value"] = json!("formal");
    new["workflow"]["features"]["opening_statement"] = json!("Hello");

    let diff = SemanticDiff::between(
        &AppGraph::parse(&yaml(&old)).unwrap(),
        &AppGraph::parse(&yaml(&new)).unwrap(),
    );
    assert_eq!(diff.nodes_added, ["\"Summarize\" (llm)"]);
    assert_eq!(diff.nodes_removed, ["\"First\" (list-operator)"]);
    let changed: Vec<&str> = diff.nodes_changed.iter().map(|c| c.node.as_str()).collect();
    assert_eq!(
        changed,
        ["\"Retrieve\" (knowledge-retrieval)", "\"Reply\" (llm)"],
        "positions aside"
    );
    let llm = &diff.nodes_changed[1];
    assert_eq!(llm.renamed_from.as_deref(), Some("\"Answer\" (llm)"));
    assert_eq!(llm.fields.len(), 1, "{:?}", llm.fields);
    assert_eq!(llm.fields[0].path, "prompt_template[sys-1].text");
    assert!(diff
        .edges_added
        .contains(&"\"Read files\" (document-extractor) → \"Summarize\" (llm)".to_string()));
    assert_eq!(diff.edges_removed.len(), 2, "{:?}", diff.edges_removed);
    assert_eq!(diff.variables[0].path, "env.TONE.value");
    assert_eq!(diff.features[0].path, "opening_statement");

    let text = diff.render("apps/support.yml", false);
    assert!(
        text.contains("-Be brief.") && text.contains("+Be thorough."),
        "{text}"
    );
    let markdown = diff.render("apps/support.yml", true);
    assert!(markdown.starts_with("### apps/support.yml"), "{markdown}");
    assert!(markdown.contains("```diff"), "{markdown}");
    assert!(
        markdown.contains("- \"Retrieve\" (knowledge-retrieval)"),
        "{markdown}"
    );
}

#[test]
fn a_prompt_cannot_break_out_of_its_markdown_fence() {
    let old = workflow();
    let mut new = workflow();
    node_mut(&mut new, "llm")["data"]["prompt_template"][0]["text"] =
        json!("text\n```\n# injected heading\n````\nmore");
    let diff = SemanticDiff::between(
        &AppGraph::parse(&yaml(&old)).unwrap(),
        &AppGraph::parse(&yaml(&new)).unwrap(),
    );
    let markdown = diff.render("t", true);
    assert!(
        markdown.contains("`````diff"),
        "a fence longer than any run inside: {markdown}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Removing any set of nodes: the diff names exactly those as removed, the reverse diff
    /// exactly those as added, and a graph against itself shows nothing.
    #[test]
    fn removed_and_added_mirror_each_other(drop in prop::collection::btree_set(0usize..21, 0..8)) {
        let old = workflow();
        let ids: Vec<String> = old["workflow"]["graph"]["nodes"].as_array().unwrap().iter()
            .map(|n| n["id"].as_str().unwrap().to_string()).filter(|id| id != "note").collect();
        let mut new = old.clone();
        for at in &drop {
            remove_node(&mut new, &ids[*at]);
        }
        let (a, b) = (AppGraph::parse(&yaml(&old)).unwrap(), AppGraph::parse(&yaml(&new)).unwrap());
        let forward = SemanticDiff::between(&a, &b);
        let back = SemanticDiff::between(&b, &a);
        prop_assert_eq!(forward.nodes_removed.len(), drop.len());
        prop_assert_eq!(&forward.nodes_removed, &back.nodes_added);
        prop_assert_eq!(&forward.edges_removed, &back.edges_added);
        prop_assert!(forward.nodes_changed.is_empty());
        prop_assert!(SemanticDiff::between(&b, &b).is_empty());
    }
}

#[test]
fn the_pull_request_commands_work_offline() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    git(repo, &["init", "-q", "-b", "main"]);
    std::fs::create_dir_all(repo.join("apps")).unwrap();
    std::fs::write(repo.join("apps/support--6b1f0000.yml"), yaml(&workflow())).unwrap();
    std::fs::write(repo.join("apps/old--00000000.yml"), yaml(&workflow())).unwrap();
    git(repo, &["add", "-A"]);
    git(
        repo,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-qm",
            "apps",
        ],
    );

    let mut changed = workflow();
    node_mut(&mut changed, "llm")["data"]["prompt_template"][1]["text"] = json!("{{#gone.text#}}");
    std::fs::write(repo.join("apps/support--6b1f0000.yml"), yaml(&changed)).unwrap();
    std::fs::remove_file(repo.join("apps/old--00000000.yml")).unwrap();
    std::fs::write(repo.join("README.md"), "not an app").unwrap();

    let run = |args: &[&str]| {
        let output = Command::new(BINARY)
            .args(args)
            .current_dir(repo)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout).to_string();
        (
            output.status.code(),
            text,
            String::from_utf8_lossy(&output.stderr).to_string(),
        )
    };
    let (code, text, errors) = run(&["diff", "--base", "main", "--format", "markdown"]);
    assert_eq!(code, Some(0), "{errors}");
    assert!(
        text.contains("### apps/old--00000000.yml (deleted)"),
        "{text}"
    );
    assert!(text.contains("prompt_template[user-1].text"), "{text}");
    assert!(!text.contains("README"), "{text}");

    let (code, text, _) = run(&["lint"]);
    assert_eq!(code, Some(1), "a broken reference fails the job: {text}");
    assert!(
        text.contains("apps/support--6b1f0000.yml: error [broken-reference]"),
        "{text}"
    );
    assert!(text.contains("1 app files: 1 errors, 0 warnings"), "{text}");

    // A secret a pull request adds reaches neither form of the diff (a PR comment).
    node_mut(&mut changed, "http")["data"]["headers"] =
        json!("Authorization:Bearer sk-live-0123456789abcdef0123");
    std::fs::write(repo.join("apps/support--6b1f0000.yml"), yaml(&changed)).unwrap();
    for format in ["markdown", "unified"] {
        let (code, text, _) = run(&["diff", "--base", "main", "--format", format]);
        assert_eq!(code, Some(0));
        assert!(!text.contains("sk-live"), "{format}: {text}");
        assert!(
            text.contains("[__SECRET__:http/headers"),
            "{format}: {text}"
        );
    }

    let (code, _, errors) = run(&["diff", "--base", "no-such-branch"]);
    assert_eq!(code, Some(1));
    assert!(errors.contains("names no commit or branch"), "{errors}");
}

/// Files anyone who can push may write: nesting past any bound reads as unreadable (and an
/// empty app for the diff), and a title's control characters and Markdown never reach the
/// terminal or the comment raw.
#[test]
fn hostile_files_are_bounded_and_shown_safely() {
    let deep = (0..5000).fold(String::from("x"), |inner, _| format!("[{inner}]"));
    let text = format!("app: {{name: deep}}\nworkflow: {deep}\n");
    assert_eq!(rules(&text)[0].1, "unreadable");
    let shown = app_git_sync::review::semantic("deep", &text, &yaml(&workflow()), false);
    assert!(shown.contains("Nodes added"), "{shown}");

    let mut dsl = workflow();
    node_mut(&mut dsl, "llm")["data"]["title"] = json!("\u{1b}[31mred\n# heading](http://x)");
    let diff = SemanticDiff::between(
        &AppGraph::parse(&yaml(&workflow())).unwrap(),
        &AppGraph::parse(&yaml(&dsl)).unwrap(),
    );
    let (text, markdown) = (diff.render("t", false), diff.render("t", true));
    assert!(
        !text.contains('\u{1b}') && !markdown.contains('\u{1b}'),
        "{text}"
    );
    assert!(
        markdown.contains("red\\# heading\\](http://x)"),
        "{markdown}"
    );
}
