//! Staging to production on two real Difys (`../shared/dify` for staging and, beside it,
//! `crates/test-support/dify/start-beside` for production; both 1.16.1 by default, our package
//! behind each relay), driven by the command line as a deploy job would: an app with a
//! knowledge base, a workflow tool, a tool node with a credential (our own provider's), a model
//! and a per-environment variable is exported from staging in the neutral form, refused by
//! production while it lacks the knowledge base (named), promoted with every reference
//! resolved to production's, edited in production, exported back without a production value
//! and taken by staging with its own references; then nothing moves either way. Skipped,
//! saying so, where `../shared/dify` is absent; the fake consoles cover the rest.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{json, Value};

use crate::console_real_dify::{relayed_package, shown};
use crate::support::git_servers::{git, TestRepo};
use crate::support::plugin_under_test::BINARY;
use crate::support::real_dify::RealDifyProcess;
use crate::support::start_end_workflow;
use app_git_sync::console::sign_in::SignIn;
use app_git_sync::console::Console;

const STAGING_PORT: &str = "5304";
const PRODUCTION_PORT: &str = "5306";
const OUR_TOOL: &str = "dify-community/app_git_sync/app_git_sync";

const PRODUCTION: &str = "\
knowledge_bases:
  Product docs: Docs (prod)
tool_credentials:
  dify-community/app_git_sync/app_git_sync: Production key
models:
  - git: {provider: langgenius/openai/openai, name: gpt-4o-mini}
    here: {provider: langgenius/azure_openai/azure_openai, name: gpt-4o}
environment_variables:
  API_BASE: https://api.example.com
";

/// The promoted app: `{KB}`, `{TOOL}` and `{CREDENTIAL}` are staging's.
const ORDER_DSL: &str = r#"app: {description: '', icon: "\U0001F916", icon_background: '#FFEAD5', mode: workflow, name: Order Assistant}
dependencies: []
kind: app
version: 0.6.0
workflow:
  conversation_variables: []
  environment_variables:
  - {description: '', id: 7d2c1a38-2f0e-4c55-9f3a-2b9e6d0c1a01, name: API_BASE, selector: [env, API_BASE], value: 'https://staging.example.com', value_type: string}
  features: {}
  graph:
    edges:
    - {data: {sourceType: start, targetType: knowledge-retrieval}, id: e1, source: '1', sourceHandle: source, target: '2', targetHandle: target, type: custom}
    - {data: {sourceType: knowledge-retrieval, targetType: tool}, id: e2, source: '2', sourceHandle: source, target: '3', targetHandle: target, type: custom}
    - {data: {sourceType: tool, targetType: tool}, id: e3, source: '3', sourceHandle: source, target: '4', targetHandle: target, type: custom}
    - {data: {sourceType: tool, targetType: llm}, id: e4, source: '4', sourceHandle: source, target: '5', targetHandle: target, type: custom}
    - {data: {sourceType: llm, targetType: end}, id: e5, source: '5', sourceHandle: source, target: '6', targetHandle: target, type: custom}
    nodes:
    - data: {desc: '', title: Start, type: start, variables: [{label: query, max_length: 256, options: [], required: true, type: text-input, variable: query}]}
      id: '1'
      position: {x: 80, y: 280}
      type: custom
    - data:
        dataset_ids: ['{KB}']
        desc: ''
        multiple_retrieval_config: {reranking_enable: false, top_k: 4}
        query_variable_selector: ['1', query]
        retrieval_mode: multiple
        title: Search docs
        type: knowledge-retrieval
      id: '2'
      position: {x: 380, y: 280}
      type: custom
    - data: {desc: '', provider_id: '{TOOL}', provider_name: lookup_orders, provider_type: workflow, title: Look up order, tool_configurations: {}, tool_label: lookup_orders, tool_name: lookup_orders, tool_parameters: {}, type: tool}
      id: '3'
      position: {x: 680, y: 280}
      type: custom
    - data: {credential_id: '{CREDENTIAL}', desc: '', provider_id: dify-community/app_git_sync/app_git_sync, provider_name: dify-community/app_git_sync/app_git_sync, provider_type: builtin, title: Sync status, tool_configurations: {}, tool_label: Sync status, tool_name: sync_status, tool_parameters: {}, type: tool}
      id: '4'
      position: {x: 980, y: 280}
      type: custom
    - data:
        context: {enabled: false, variable_selector: []}
        desc: ''
        model: {completion_params: {temperature: 0.2}, mode: chat, name: gpt-4o-mini, provider: langgenius/openai/openai}
        prompt_template: [{role: system, text: 'Answer about orders at {{#env.API_BASE#}}.'}]
        title: Answer
        type: llm
        vision: {enabled: false}
      id: '5'
      position: {x: 1280, y: 280}
      type: custom
    - {data: {desc: '', outputs: [], title: End, type: end}, id: '6', position: {x: 1580, y: 280}, type: custom}
  rag_pipeline_variables: []
"#;

/// One Dify of the two, as the test reaches it.
struct Side {
    url: String,
    email: String,
    password: String,
}

impl Side {
    fn console(&self) -> Console {
        Console::new(
            &self.url,
            SignIn::Password {
                email: self.email.clone(),
                password: self.password.clone(),
            },
        )
        .unwrap()
    }

    /// The command line against this Dify, as `environment`.
    fn cli(&self, home: &Path, repo: &Path, environment: &str, args: &[&str]) -> Output {
        Command::new(BINARY)
            .args(args)
            .args(["--target", environment])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap())
            .env("HOME", home)
            .env("APP_GIT_SYNC_CONSOLE_URL", &self.url)
            .env("APP_GIT_SYNC_EMAIL", &self.email)
            .env("APP_GIT_SYNC_PASSWORD", &self.password)
            .env("APP_GIT_SYNC_REPOSITORY_URL", repo)
            .output()
            .unwrap()
    }
}

/// A knowledge base, the workflow tool `lookup_orders` and a credential of our provider
/// called `credential`; their ids.
async fn furnish(
    side: &Side,
    console: &Console,
    repo: &Path,
    credential: &str,
) -> (String, String, String) {
    let kb = console
        .post("/datasets", &json!({"name": if credential == "Production key" { "Docs (prod)" } else { "Product docs" }}))
        .await
        .unwrap();
    let lookup = console
        .import_dsl(&start_end_workflow("Lookup", "End", "0.6.0"), None)
        .await
        .unwrap();
    assert!(lookup.status.starts_with("completed"), "{lookup:?}");
    console.publish(&lookup.app_id, "tool").await.unwrap();
    console
        .post(
            "/workspaces/current/tool-provider/workflow/create",
            &json!({"workflow_app_id": lookup.app_id, "name": "lookup_orders", "label": "Look up orders",
                    "description": "Finds an order", "icon": {"content": "🔎", "background": "#FFEAD5"},
                    "parameters": [], "privacy_policy": "", "labels": []}),
        )
        .await
        .unwrap();
    let tools = console.workflow_tools().await.unwrap();
    let tool = tools
        .iter()
        .find(|t| t.name == "lookup_orders")
        .unwrap()
        .id
        .clone();
    console
        .post(
            &format!("/workspaces/current/tool-provider/builtin/{OUR_TOOL}/add"),
            &json!({"credentials": {"console_url": side.url, "sign_in": "password", "email": side.email,
                                    "password": side.password, "repository_url": repo.to_str().unwrap(),
                                    "branch": "main"},
                    "type": "api-key", "name": credential}),
        )
        .await
        .unwrap();
    let credentials = console.tool_credentials(OUR_TOOL).await.unwrap();
    let credential = credentials
        .iter()
        .find(|c| c.name == credential)
        .unwrap()
        .id
        .clone();
    (kb["id"].as_str().unwrap().to_string(), tool, credential)
}

async fn draft(console: &Console, app_id: &str) -> Value {
    console
        .get(&format!("/apps/{app_id}/workflows/draft"))
        .await
        .unwrap()
}

fn data<'a>(draft: &'a Value, id: &str) -> &'a Value {
    draft["graph"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == id)
        .map(|n| &n["data"])
        .unwrap()
}

fn variable(draft: &Value, name: &str) -> Value {
    draft["environment_variables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .map(|v| v["value"].clone())
        .unwrap()
}

#[test]
fn staging_to_production_on_two_real_difys() {
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/dify");
    let dir = tempfile::tempdir().unwrap();
    if !scripts.join("start").exists() {
        eprintln!(
            "SKIPPED: ../shared/dify is absent; the fake consoles' promotion tests still ran"
        );
        return;
    }
    let plugins = relayed_package(dir.path());
    let cache = dir.path().join("cache");
    let relay = [
        ("DIFY_DAEMON", "relay"),
        ("DIFY_RELAY_PLUGINS", plugins.as_str()),
        ("APP_GIT_SYNC_ALLOW_LOCAL", "1"),
        ("APP_GIT_SYNC_CACHE_DIR", cache.to_str().unwrap()),
    ];
    let Some(staging_dify) = RealDifyProcess::start_with(&scripts, STAGING_PORT, &relay, "") else {
        return;
    };
    let production_dify =
        staging_dify.start_beside(PRODUCTION_PORT, &relay, &dir.path().join("production-dify"));
    let staging = Side {
        url: staging_dify.url.clone(),
        email: staging_dify.text("email"),
        password: staging_dify.text("password"),
    };
    let production = Side {
        url: production_dify.url.clone(),
        email: production_dify.text("email"),
        password: production_dify.text("password"),
    };
    let repo = TestRepo::create(
        dir.path(),
        "apps",
        &[
            (
                ".dify-sync/environments/staging.yaml",
                format!("tool_credentials:\n  {OUR_TOOL}: Staging key\n").as_bytes(),
            ),
            (
                ".dify-sync/environments/production.yaml",
                PRODUCTION.as_bytes(),
            ),
        ],
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (staging_console, production_console) = (staging.console(), production.console());
    let (staging_kb, staging_tool, staging_credential) = runtime.block_on(furnish(
        &staging,
        &staging_console,
        &repo.bare,
        "Staging key",
    ));
    let order = ORDER_DSL
        .replace("{KB}", &staging_kb)
        .replace("{TOOL}", &staging_tool)
        .replace("{CREDENTIAL}", &staging_credential);
    let staging_app = runtime.block_on(async {
        let app = staging_console.import_dsl(&order, None).await.unwrap();
        assert!(app.status.starts_with("completed"), "{app:?}");
        app.app_id
    });
    let home = dir.path();
    let run = |side: &Side, environment: &str, args: &[&str]| {
        let output = side.cli(home, &repo.bare, environment, args);
        assert_eq!(output.status.code(), Some(0), "{}", shown(&output));
        shown(&output)
    };

    // Staging writes the neutral form.
    let exported = run(
        &staging,
        "staging",
        &["export", "--apps", "Order Assistant"],
    );
    assert!(exported.contains("Exported 1 app(s)"), "{exported}");
    git(&repo.work, &["pull", "-q", "origin", "main"]);
    let path = git(&repo.work, &["ls-files", "apps"]).trim().to_string();
    let file = std::fs::read_to_string(repo.work.join(&path)).unwrap();
    assert!(file.contains("knowledge-base:Product docs"), "{file}");
    assert!(file.contains("workflow-tool:lookup_orders"), "{file}");
    for staging_only in [&staging_kb, &staging_tool, &staging_credential] {
        assert!(
            !file.contains(staging_only.as_str()),
            "{staging_only} in {file}"
        );
    }

    // Production without its knowledge base: refused by name, nothing created.
    let production_furnished = runtime.block_on(async {
        let (kb, tool, credential) = furnish(
            &production,
            &production_console,
            &repo.bare,
            "Production key",
        )
        .await;
        production_console
            .call(reqwest::Method::DELETE, &format!("/datasets/{kb}"), None)
            .await
            .unwrap();
        (tool, credential)
    });
    let refused = production.cli(home, &repo.bare, "production", &["import"]);
    assert!(
        shown(&refused)
            .contains("knowledge base \"Docs (prod)\" (node \"Search docs\") is not in this Dify"),
        "{}",
        shown(&refused)
    );
    let apps = runtime.block_on(production_console.list_apps()).unwrap();
    assert!(
        !apps.iter().any(|a| a.name == "Order Assistant"),
        "{apps:?}"
    );

    // With it: a dry run says what would happen, then the import does it.
    let production_kb = runtime.block_on(async {
        let kb = production_console
            .post("/datasets", &json!({"name": "Docs (prod)"}))
            .await
            .unwrap();
        kb["id"].as_str().unwrap().to_string()
    });
    let dry = run(&production, "production", &["import", "--dry-run"]);
    assert!(
        dry.contains(
            "would create a new app, with knowledge base \"Product docs\" → \"Docs (prod)\""
        ),
        "{dry}"
    );
    let imported = run(&production, "production", &["import"]);
    assert!(imported.contains("Order Assistant from"), "{imported}");
    let production_app = runtime
        .block_on(production_console.list_apps())
        .unwrap()
        .into_iter()
        .find(|a| a.name == "Order Assistant")
        .expect("created in production")
        .id;
    let (production_tool, production_credential) = production_furnished;
    runtime.block_on(async {
        let draft = draft(&production_console, &production_app).await;
        assert_eq!(data(&draft, "2")["dataset_ids"], json!([production_kb]));
        assert_eq!(data(&draft, "3")["provider_id"], production_tool.as_str());
        assert_eq!(
            data(&draft, "4")["credential_id"],
            production_credential.as_str()
        );
        assert_eq!(
            data(&draft, "5")["model"]["provider"],
            "langgenius/azure_openai/azure_openai"
        );
        assert_eq!(variable(&draft, "API_BASE"), "https://api.example.com");
    });
    let again = run(&production, "production", &["import"]);
    assert!(again.contains("Nothing imported"), "{again}");

    // An edit in production's editor comes back without a production value.
    runtime.block_on(async {
        let mut draft = draft(&production_console, &production_app).await;
        for node in draft["graph"]["nodes"].as_array_mut().unwrap() {
            if node["id"] == "5" {
                node["data"]["title"] = json!("Reply");
            }
        }
        production_console
            .post(
                &format!("/apps/{production_app}/workflows/draft"),
                &json!({"graph": draft["graph"], "features": draft["features"], "hash": draft["hash"]}),
            )
            .await
            .unwrap();
    });
    let back = run(
        &production,
        "production",
        &["export", "--apps", "Order Assistant"],
    );
    assert!(back.contains("Exported 1 app(s)"), "{back}");
    git(&repo.work, &["pull", "-q", "origin", "main"]);
    let history = git(&repo.work, &["log", "-p", "--", "apps/"]);
    assert!(history.contains("title: Reply"), "{history}");
    for production_only in [
        production_kb.as_str(),
        &production_tool,
        &production_credential,
        &production_app,
        "Docs (prod)",
        "api.example.com",
        "azure_openai",
    ] {
        assert!(
            !history.contains(production_only),
            "{production_only} reached the app files"
        );
    }

    // Staging takes the edit with its own references, and nothing moves any more.
    let taken = run(&staging, "staging", &["import"]);
    assert!(taken.contains("Order Assistant from"), "{taken}");
    runtime.block_on(async {
        let draft = draft(&staging_console, &staging_app).await;
        assert_eq!(data(&draft, "5")["title"], "Reply");
        assert_eq!(data(&draft, "2")["dataset_ids"], json!([staging_kb]));
        assert_eq!(data(&draft, "3")["provider_id"], staging_tool.as_str());
        assert_eq!(
            data(&draft, "4")["credential_id"],
            staging_credential.as_str()
        );
        assert_eq!(data(&draft, "5")["model"]["name"], "gpt-4o-mini");
        assert_eq!(variable(&draft, "API_BASE"), "https://staging.example.com");
    });
    for (side, environment) in [(&staging, "staging"), (&production, "production")] {
        let quiet = run(side, environment, &["export", "--apps", "Order Assistant"]);
        assert!(
            quiet.contains("Nothing to commit"),
            "{environment}: {quiet}"
        );
    }
    drop(production_dify);
}
