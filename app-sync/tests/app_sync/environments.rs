//! Promotion between environments: one repository, a staging and a production Dify (two fake
//! consoles with their own workspace, knowledge bases, workflow tools, tool credentials and
//! plugins), the tools run with each environment's credentials. An app goes staging → Git →
//! production with every reference resolved there, is refused by name while production lacks
//! a knowledge base or a plugin, comes back from production without a production value, and
//! nothing loops. The remapping itself is checked as a property: resolving a neutral file and
//! writing it back gives the file again.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::{json, Value};

use super::support::app_scenario::{failure, outputs, AppScenario};
use super::support::fake_console::{FakeApp, FakeConsole, EMAIL, PASSWORD};
use super::support::git_servers::git;
use app_git_sync::console::workspace::Named;
use app_git_sync::environment::catalog::Catalog;
use app_git_sync::environment::remap::{self, to_git, to_target};
use app_git_sync::environment::Environment;

const TAVILY: &str = "langgenius/tavily/tavily";
const TAVILY_PLUGIN: &str = "langgenius/tavily:0.0.6@2e3f4a";

const PRODUCTION: &str = "\
knowledge_bases:
  Product docs: Docs (prod)
tool_credentials:
  langgenius/tavily/tavily: Production key
models:
  - git: {provider: langgenius/openai/openai, name: gpt-4o-mini}
    here: {provider: langgenius/azure_openai/azure_openai, name: gpt-4o}
environment_variables:
  API_BASE: https://api.example.com
";

/// A workflow with a knowledge base, a workflow tool, a tool with a credential, a model and
/// a per-environment variable.
fn promoted_graph(kb: &str, tool: &str) -> Value {
    json!({
        "nodes": [
            {"id": "start", "data": {"type": "start", "title": "Start", "variables": []}},
            {"id": "kr", "data": {"type": "knowledge-retrieval", "title": "Search docs", "dataset_ids": [kb],
                "query_variable_selector": ["sys", "query"], "retrieval_mode": "multiple"}},
            {"id": "lookup", "data": {"type": "tool", "title": "Look up order", "provider_type": "workflow",
                "provider_id": tool, "provider_name": "lookup_orders", "tool_name": "lookup_orders", "tool_parameters": {}}},
            {"id": "search", "data": {"type": "tool", "title": "Web search", "provider_type": "builtin",
                "provider_id": TAVILY, "provider_name": TAVILY, "tool_name": "tavily_search", "tool_parameters": {}}},
            {"id": "llm", "data": {"type": "llm", "title": "Answer", "model": {"provider": "langgenius/openai/openai",
                "name": "gpt-4o-mini", "mode": "chat", "completion_params": {}}, "prompt_template": []}},
            {"id": "end", "data": {"type": "end", "title": "End", "outputs": []}},
        ],
        "edges": [
            {"id": "e1", "source": "start", "target": "kr"},
            {"id": "e2", "source": "kr", "target": "lookup"},
            {"id": "e3", "source": "lookup", "target": "search"},
            {"id": "e4", "source": "search", "target": "llm"},
            {"id": "e5", "source": "llm", "target": "end"},
        ],
    })
}

struct Promotion {
    scenario: AppScenario,
    production: FakeConsole,
    staging_kb: String,
    staging_tool: String,
    app_id: String,
}

impl Promotion {
    fn start() -> Promotion {
        let scenario = AppScenario::on("1.16.1");
        let staging = &scenario.console;
        let staging_kb = staging.add_knowledge_base("Product docs");
        let staging_tool = staging.add_workflow_tool("lookup_orders");
        staging.add_tool_credential(TAVILY, "Staging key");
        staging.state().installed_plugins.push(TAVILY_PLUGIN.into());
        let app_id = staging.add_app(
            "Order Assistant",
            "workflow",
            vec![json!({"id": "v-base", "name": "API_BASE", "value_type": "string", "value": "https://staging.example.com"})],
        );
        {
            let mut state = staging.state();
            let app = state.apps.get_mut(&app_id).unwrap();
            app.graph = promoted_graph(&staging_kb, &staging_tool);
            app.graph["nodes"][3]["data"]["credential_id"] = json!("staging-credential-id");
            app.dependencies = vec![
                json!({"type": "marketplace", "value": {"marketplace_plugin_unique_identifier": TAVILY_PLUGIN}}),
            ];
        }
        let production = FakeConsole::start("1.16.1");
        production.state().workspace = "prod-tenant-7f3a".into();
        scenario.pull();
        scenario.repo.commit(
            &[
                (
                    ".dify-sync/environments/staging.yaml",
                    b"# staging: the names are the files' own\n",
                ),
                (
                    ".dify-sync/environments/production.yaml",
                    PRODUCTION.as_bytes(),
                ),
            ],
            &[],
            "environments",
        );
        Promotion {
            scenario,
            production,
            staging_kb,
            staging_tool,
            app_id,
        }
    }

    fn credentials(&self, environment: &str) -> Value {
        let mut credentials = self.scenario.credentials();
        credentials["environment"] = json!(environment);
        if environment == "production" {
            credentials["console_url"] = json!(self.production.url);
        }
        credentials
    }

    fn run(&self, environment: &str, tool: &str, parameters: Value) -> (String, Value) {
        outputs(
            &self
                .scenario
                .tool_with(tool, parameters, self.credentials(environment)),
        )
    }

    fn file(&self, path: &str) -> String {
        self.scenario.pull();
        std::fs::read_to_string(self.scenario.repo.work.join(path)).unwrap_or_default()
    }

    fn production_app(&self) -> Option<FakeApp> {
        let state = self.production.state();
        state
            .apps
            .values()
            .find(|a| a.name == "Order Assistant")
            .cloned()
    }
}

fn node<'a>(graph: &'a Value, id: &str) -> &'a Value {
    graph["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == id)
        .map(|n| &n["data"])
        .unwrap()
}

#[test]
fn an_app_goes_to_production_with_its_references_and_comes_back_without_them() {
    let p = Promotion::start();
    // Staging writes the files in the neutral form.
    let (text, _) = p.run("staging", "export_apps", json!({}));
    assert!(text.contains("Exported 4 app(s)"), "{text}");
    let shared: Value = serde_json::from_str(&p.file(".dify-sync/index.json")).unwrap();
    let (path, _) = shared
        .as_object()
        .unwrap()
        .iter()
        .find(|(_, entry)| entry["app_id"] == p.app_id.as_str())
        .unwrap();
    let path = path.as_str();
    let file = p.file(path);
    assert!(file.contains("knowledge-base:Product docs"), "{file}");
    assert!(file.contains("workflow-tool:lookup_orders"), "{file}");
    for staging_only in [
        p.staging_kb.as_str(),
        &p.staging_tool,
        "staging-credential-id",
    ] {
        assert!(!file.contains(staging_only), "{staging_only} in {file}");
    }
    let staging_index: Value =
        serde_json::from_str(&p.file(".dify-sync/environments/staging.index.json")).unwrap();
    assert_eq!(staging_index[path]["app_id"], p.app_id.as_str());

    // Production lacks the knowledge base and the plugin: refused by name, nothing created.
    p.production.add_workflow_tool("lookup_orders");
    p.production.add_tool_credential(TAVILY, "Production key");
    let (text, report) = p.run(
        "production",
        "import_apps",
        json!({"apps": "Order Assistant"}),
    );
    let failed = report["failed"][0]["reason"].as_str().unwrap_or_default();
    assert!(
        failed.contains("\"Docs (prod)\"") && failed.contains("langgenius/tavily"),
        "{text}"
    );
    assert!(p.production_app().is_none());

    // With both there, a dry run says what it would do, and changes nothing.
    let production_kb = p.production.add_knowledge_base("Docs (prod)");
    p.production
        .state()
        .installed_plugins
        .push(TAVILY_PLUGIN.into());
    let (text, report) = p.run(
        "production",
        "import_apps",
        json!({"apps": "Order Assistant", "dry_run": true}),
    );
    let planned = report["planned"][0]["action"].as_str().unwrap_or_default();
    for line in [
        "create a new app",
        "knowledge base \"Product docs\" → \"Docs (prod)\"",
        "Production key",
        "gpt-4o-mini",
        "environment variable API_BASE",
    ] {
        assert!(planned.contains(line), "{line:?} not in {text}");
    }
    assert!(p.production_app().is_none());

    // The import creates production's copy with production's references.
    let (text, report) = p.run("production", "import_apps", json!({}));
    assert_eq!(
        report["imported"].as_array().map(Vec::len),
        Some(4),
        "{text}"
    );
    let app = p.production_app().expect("created in production");
    let tool_id = p.production.state().workflow_tools[0].0.clone();
    let credential_id = p.production.state().tool_credentials[TAVILY][0].0.clone();
    assert_eq!(
        node(&app.graph, "kr")["dataset_ids"],
        json!([production_kb])
    );
    assert_eq!(node(&app.graph, "lookup")["provider_id"], tool_id.as_str());
    assert_eq!(
        node(&app.graph, "search")["credential_id"],
        credential_id.as_str()
    );
    assert_eq!(node(&app.graph, "llm")["model"]["name"], "gpt-4o");
    assert_eq!(
        app.environment_variables[0]["value"],
        "https://api.example.com"
    );
    let production_index: Value =
        serde_json::from_str(&p.file(".dify-sync/environments/production.index.json")).unwrap();
    assert_eq!(production_index[path]["app_id"], app.id.as_str());
    let shared_after: Value = serde_json::from_str(&p.file(".dify-sync/index.json")).unwrap();
    assert_eq!(
        shared_after, shared,
        "production's ids stay out of the shared index"
    );
    assert_eq!(p.file(path), file, "the files did not move or change");

    // Again: nothing to do, and never a second copy.
    let (text, report) = p.run("production", "import_apps", json!({}));
    assert!(report["imported"].as_array().unwrap().is_empty(), "{text}");
    assert_eq!(p.production.state().apps.len(), 4);
    let (_, status) = p.run("production", "sync_status", json!({}));
    assert!(
        status["apps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["state"] == "in_sync"),
        "{status:#}"
    );

    // An edit in production comes back in the neutral form: no production value in Git.
    p.production.retitle("Order Assistant", "Reply");
    let (text, _) = p.run("production", "export_apps", json!({}));
    assert!(text.contains("Exported 1 app(s)"), "{text}");
    let back = p.file(path);
    assert!(back.contains("title: Reply"), "{back}");
    let history = git(&p.scenario.repo.work, &["log", "-p", "--", "apps/"]);
    for production_only in [
        production_kb.as_str(),
        tool_id.as_str(),
        credential_id.as_str(),
        "Docs (prod)",
        "api.example.com",
        "azure_openai",
    ] {
        assert!(
            !history.contains(production_only),
            "{production_only} reached the app files"
        );
    }
    assert!(back.contains("https://staging.example.com"), "{back}");

    // Staging takes the edit with its own references; then nothing moves either way.
    let (text, report) = p.run("staging", "import_apps", json!({}));
    assert_eq!(
        report["imported"].as_array().map(Vec::len),
        Some(1),
        "{text}"
    );
    let staging_app = p.scenario.console.state().apps[&p.app_id].clone();
    // (`retitle` renames the second node.)
    assert_eq!(node(&staging_app.graph, "kr")["title"], "Reply");
    assert_eq!(
        node(&staging_app.graph, "kr")["dataset_ids"],
        json!([p.staging_kb])
    );
    assert_eq!(
        node(&staging_app.graph, "lookup")["provider_id"],
        p.staging_tool.as_str()
    );
    assert_eq!(
        staging_app.environment_variables[0]["value"],
        "https://staging.example.com"
    );
    for environment in ["staging", "production"] {
        let (text, report) = p.run(environment, "export_apps", json!({}));
        assert!(
            report["commit"].is_null(),
            "{environment} exported again: {text}"
        );
    }
}

#[test]
fn a_file_of_an_environment_is_not_imported_without_one_and_a_missing_environment_is_named() {
    let p = Promotion::start();
    p.run("staging", "export_apps", json!({}));
    // Without an environment Dify would drop the references the file names.
    let (text, report) = outputs(&p.scenario.tool(
        "import_apps",
        json!({"apps": "Order Assistant", "create_new": true}),
    ));
    let reason = report["failed"][0]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("--target"), "{text}");
    // An environment the branch does not define.
    let messages = p
        .scenario
        .tool_with("sync_status", json!({}), p.credentials("qa"));
    let error = failure(&messages).to_string();
    assert!(error.contains(".dify-sync/environments/qa.yaml"), "{error}");
    assert!(!error.contains(PASSWORD) && !error.contains(EMAIL.split('@').next().unwrap()));
    // Authorizing such a credential names the field, and an environment that is no name.
    for (environment, says) in [("qa", "qa.yaml"), ("../prod", "letters, digits")] {
        let session = p.scenario.daemon.request(
            "validate_tool_credentials",
            json!({"type": "tool", "provider": "app_git_sync", "credentials": p.credentials(environment)}),
        );
        let error = failure(&p.scenario.daemon.finish(&session));
        let field = error["args"]["environment"].as_str().unwrap_or_default();
        assert!(field.contains(says), "{error}");
    }
}

fn catalog(kbs: &[(&str, &str)], tools: &[(&str, &str)]) -> Catalog {
    let named = |list: &[(&str, &str)]| {
        list.iter()
            .map(|(id, name)| Named {
                id: id.to_string(),
                name: name.to_string(),
            })
            .collect()
    };
    Catalog {
        knowledge_bases: named(kbs),
        workflow_tools: named(tools),
        credentials: BTreeMap::from([(
            TAVILY.to_string(),
            Ok(named(&[("cred-1", "Production key")])),
        )]),
        plugins: Ok(Default::default()),
    }
}

/// A neutral workflow whose knowledge bases and tools are `names`.
fn neutral(kbs: &[String], tool: &str, api_base: &str) -> Value {
    let mut graph = promoted_graph("", &format!("{}{tool}", remap::WORKFLOW_TOOL));
    graph["nodes"][1]["data"]["dataset_ids"] = kbs
        .iter()
        .map(|n| json!(format!("{}{n}", remap::KNOWLEDGE_BASE)))
        .collect();
    graph["nodes"][2]["data"]["provider_name"] = json!(tool);
    graph["nodes"][2]["data"]["tool_name"] = json!(tool);
    json!({"version": "0.7.0", "kind": "app", "app": {"name": "A", "mode": "workflow"},
           "workflow": {"graph": graph, "environment_variables": [
               {"id": "v", "name": "API_BASE", "value_type": "string", "value": api_base}]}})
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the names and mappings: resolving a neutral file for a Dify that has every
    /// reference and writing Dify's copy back gives the same file, and no id, credential or
    /// value of that Dify stays in it.
    #[test]
    fn resolving_and_writing_back_is_the_identity(
        kbs in proptest::collection::btree_set("[A-Za-z][A-Za-z ()-]{0,12}", 1..4),
        renamed in proptest::collection::vec(any::<bool>(), 4),
        tool in "[a-z_]{1,12}",
        api_base in "https://[a-z]{1,8}\\.example",
        here_value in "https://[a-z]{1,8}\\.internal",
    ) {
        let kbs: Vec<String> = kbs.into_iter().collect();
        let mut environment = Environment::parse("production", PRODUCTION).unwrap();
        environment.knowledge_bases.clear();
        environment.environment_variables = BTreeMap::from([("API_BASE".to_string(), json!(here_value))]);
        let mut listed = Vec::new();
        for (i, kb) in kbs.iter().enumerate() {
            let here = match renamed[i % renamed.len()] {
                true => {
                    environment.knowledge_bases.insert(kb.clone(), format!("{kb} (prod)"));
                    format!("{kb} (prod)")
                }
                false => kb.clone(),
            };
            listed.push((format!("00000000-0000-4000-8000-{i:012}"), here));
        }
        let kb_refs: Vec<(&str, &str)> = listed.iter().map(|(i, n)| (i.as_str(), n.as_str())).collect();
        let tool_id = "11111111-0000-4000-8000-000000000001";
        let catalog = catalog(&kb_refs, &[(tool_id, &tool)]);
        let file = neutral(&kbs, &tool, &api_base);
        let mut here = file.clone();
        let resolved = to_target(&mut here, &environment, &catalog);
        prop_assert!(resolved.unresolved.is_empty(), "{:?}", resolved.unresolved);
        prop_assert!(!remap::is_neutral(&here));
        let text = here.to_string();
        prop_assert!(text.contains(tool_id) && text.contains("cred-1") && text.contains(&here_value));
        // Dify exports without the credential.
        here["workflow"]["graph"]["nodes"][3]["data"].as_object_mut().unwrap().remove("credential_id");
        let git_values = remap::mapped_values(&file, &environment);
        to_git(&mut here, &environment, &catalog, &BTreeMap::new(), &git_values);
        prop_assert_eq!(&here, &file);
    }
}

#[test]
fn what_a_dify_lacks_is_named_with_the_fix() {
    let environment = Environment::parse("production", PRODUCTION).unwrap();
    let catalog = catalog(&[], &[]);
    let mut file = neutral(
        &["Product docs".into()],
        "lookup_orders",
        "https://a.example",
    );
    let resolved = to_target(&mut file, &environment, &catalog);
    let all = resolved.unresolved.join("\n");
    assert!(
        all.contains("knowledge base \"Docs (prod)\" (node \"Search docs\") is not in this Dify"),
        "{all}"
    );
    assert!(
        all.contains("under knowledge_bases in .dify-sync/environments/production.yaml"),
        "{all}"
    );
    assert!(all.contains("workflow tool \"lookup_orders\""), "{all}");
    // An id of another Dify, and a secret variable the environment tries to set.
    let mut file = neutral(&[], "lookup_orders", "x");
    file["workflow"]["graph"]["nodes"][1]["data"]["dataset_ids"] = json!(["c2VhbGVk"]);
    file["workflow"]["environment_variables"][0]["value_type"] = json!("secret");
    let resolved = to_target(&mut file, &environment, &catalog);
    let all = resolved.unresolved.join("\n");
    assert!(
        all.contains("an id of another Dify") && all.contains("API_BASE is a secret"),
        "{all}"
    );
    // Names from a file reach a terminal without their control characters.
    let mut file = neutral(&["Docs\u{1b}[2J\r".into()], "lookup_orders", "x");
    let resolved = to_target(&mut file, &environment, &catalog);
    assert!(resolved
        .unresolved
        .iter()
        .all(|m| !m.chars().any(char::is_control)));
    assert!(
        resolved.unresolved[0].contains("Docs[2J"),
        "{:?}",
        resolved.unresolved
    );
}

#[test]
fn an_environment_adopts_the_app_its_file_names_and_never_exports_a_namesake() {
    let p = Promotion::start();
    p.run("staging", "export_apps", json!({}));
    let shared: Value = serde_json::from_str(&p.file(".dify-sync/index.json")).unwrap();
    let file_of = |name: &str| {
        shared
            .as_object()
            .unwrap()
            .iter()
            .find(|(_, entry)| entry["name"] == name)
            .map(|(path, _)| path.rsplit('/').next().unwrap().to_string())
            .unwrap()
    };
    // Production already has both apps, made by hand; its file adopts one.
    let adopted = p
        .production
        .add_app("Order Assistant", "workflow", Vec::new());
    let namesake = p
        .production
        .add_app("Report Workflow", "workflow", Vec::new());
    p.production.add_knowledge_base("Docs (prod)");
    p.production.add_workflow_tool("lookup_orders");
    p.production.add_tool_credential(TAVILY, "Production key");
    p.production
        .state()
        .installed_plugins
        .push(TAVILY_PLUGIN.into());
    let adopting = format!(
        "{PRODUCTION}apps:\n  {}: {adopted}\n",
        file_of("Order Assistant")
    );
    p.scenario.pull();
    p.scenario.repo.commit(
        &[(
            ".dify-sync/environments/production.yaml",
            adopting.as_bytes(),
        )],
        &[],
        "production adopts its Order Assistant",
    );
    let (text, report) = p.run(
        "production",
        "import_apps",
        json!({"apps": "Order Assistant", "dry_run": true}),
    );
    let planned = report["planned"][0]["action"].as_str().unwrap_or_default();
    assert!(
        planned.starts_with(&format!("overwrite app {adopted} in place")),
        "{text}"
    );
    let (text, report) = p.run(
        "production",
        "import_apps",
        json!({"apps": "Order Assistant"}),
    );
    assert_eq!(report["imported"][0]["app_id"], adopted.as_str(), "{text}");
    assert_eq!(report["imported"][0]["created"], false, "{text}");
    assert_eq!(p.production.state().apps.len(), 2, "no copy was made");
    // The namesake is not exported as a second file: the message names the fix.
    let (text, report) = p.run("production", "export_apps", json!({}));
    let skipped = report["skipped"].to_string();
    assert!(
        skipped.contains(&format!(
            "apps: {{{}: {namesake}}}",
            file_of("Report Workflow")
        )),
        "{text}"
    );
    let after: Value = serde_json::from_str(&p.file(".dify-sync/index.json")).unwrap();
    assert_eq!(after, shared, "{text}");
}
