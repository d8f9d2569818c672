//! The console client and the command line against the real Dify API (1.16.1 by default,
//! `DIFY_VERSION=1.13.2` for the older one)
//! (`../shared/dify`, started by this test on loopback): cookie + CSRF sign-in with a base64
//! password and with a pasted session, apps created by import, exported, edited in Git,
//! imported over in place with their secret kept, published, a pending import above the
//! server's DSL version confirmed, and the refusal to overwrite a chat app. Skipped, saying
//! so, where `../shared/dify` is absent; the fake console covers the other versions.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::app_scenario::objects_containing;
use crate::support::git_servers::{git, TestRepo};
use crate::support::plugin_under_test::BINARY;
use crate::support::real_dify::RealDifyProcess;
use app_git_sync::console::apps::Version;
use app_git_sync::console::sign_in::{DifyVersion, SignIn};
use app_git_sync::console::Console;

const PORT: &str = "5302";
const SECRET: &str = "s3cr3t-real-value";
/// An HTTP Request node's API-key auth and a key header: Dify exports them verbatim.
const HTTP_KEYS: [&str; 2] = ["real-http-key-4242", "real-header-key-0123456789abcdef"];

const WORKFLOW_DSL: &str = r#"app:
  description: ''
  icon: "\U0001F916"
  icon_background: '#FFEAD5'
  mode: workflow
  name: Real Flow
  use_icon_as_answer_icon: false
dependencies: []
kind: app
version: 0.6.0
workflow:
  conversation_variables: []
  environment_variables:
  - description: ''
    id: 5b1f0b2e-8f5c-4d5e-9a51-4c7f1e2d3a01
    name: API_KEY
    selector: [env, API_KEY]
    value: s3cr3t-real-value
    value_type: secret
  features: {}
  graph:
    edges:
    - data: {sourceType: start, targetType: http-request}
      id: 1750000000100-source-1750000000300-target
      source: '1750000000100'
      sourceHandle: source
      target: '1750000000300'
      targetHandle: target
      type: custom
    - data: {sourceType: http-request, targetType: end}
      id: 1750000000300-source-1750000000200-target
      source: '1750000000300'
      sourceHandle: source
      target: '1750000000200'
      targetHandle: target
      type: custom
    nodes:
    - data:
        authorization:
          config: {api_key: real-http-key-4242, header: '', type: bearer}
          type: api-key
        body: {data: [], type: none}
        desc: ''
        headers: 'X-Api-Key: real-header-key-0123456789abcdef'
        method: get
        params: ''
        timeout: {max_connect_timeout: 0, max_read_timeout: 0, max_write_timeout: 0}
        title: Call API
        type: http-request
        url: https://api.example.com/items
        variables: []
      id: '1750000000300'
      position: {x: 230, y: 280}
      type: custom
    - data: {desc: '', title: Start, type: start, variables: []}
      id: '1750000000100'
      position: {x: 80, y: 280}
      type: custom
    - data: {desc: '', outputs: [], title: End, type: end}
      id: '1750000000200'
      position: {x: 380, y: 280}
      type: custom
    viewport: {x: 0, y: 0, zoom: 1}
  rag_pipeline_variables: []
"#;

const CHAT_DSL: &str = r#"app:
  description: ''
  icon: "\U0001F916"
  icon_background: '#FFEAD5'
  mode: chat
  name: Real Chat
dependencies: []
kind: app
model_config:
  pre_prompt: You are helpful.
  prompt_type: simple
version: 0.6.0
"#;

struct RealDify {
    process: RealDifyProcess,
    email: String,
    password: String,
}

impl RealDify {
    fn start() -> Option<RealDify> {
        let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/dify");
        let process = RealDifyProcess::start(&scripts, PORT, "the fake console tests still ran")?;
        Some(RealDify {
            email: process.text("email"),
            password: process.text("password"),
            process,
        })
    }

    fn console(&self) -> Console {
        Console::new(
            &self.process.url,
            SignIn::Password {
                email: self.email.clone(),
                password: self.password.clone(),
            },
        )
        .unwrap()
    }

    fn cli(&self, home: &Path, repo: &Path, args: &[&str]) -> Output {
        Command::new(BINARY)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap())
            .env("HOME", home)
            .env("APP_GIT_SYNC_CONSOLE_URL", &self.process.url)
            .env("APP_GIT_SYNC_EMAIL", &self.email)
            .env("APP_GIT_SYNC_PASSWORD", &self.password)
            .env("APP_GIT_SYNC_REPOSITORY_URL", repo)
            .output()
            .unwrap()
    }
}

fn shown(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn the_console_client_against_the_real_dify() {
    let Some(dify) = RealDify::start() else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let console = dify.console();
    let (flow, chat) = runtime.block_on(async {
        let (major, minor, patch) = dify.process.version();
        assert_eq!(
            console.check().await.unwrap(),
            Some(DifyVersion(major, minor, patch))
        );
        let flow = console.import_dsl(WORKFLOW_DSL, None).await.unwrap();
        assert!(flow.status.starts_with("completed"), "{flow:?}");
        let chat = console.import_dsl(CHAT_DSL, None).await.unwrap();
        assert!(chat.status.starts_with("completed"), "{chat:?}");
        // Dify refuses to overwrite a chat app in place.
        let over = console
            .import_dsl(CHAT_DSL, Some(&chat.app_id))
            .await
            .unwrap();
        assert_eq!(over.status, "failed");
        assert!(over.error.contains("overwritten"), "{over:?}");
        // A DSL newer than the server's waits for a confirmation.
        let newer = WORKFLOW_DSL.replace("version: 0.6.0", "version: 9.0.0");
        let pending = console
            .import_dsl(&newer, Some(&flow.app_id))
            .await
            .unwrap();
        assert_eq!(pending.status, "pending", "{pending:?}");
        let confirmed = console.confirm_import(&pending.import_id).await.unwrap();
        assert!(confirmed.status.starts_with("completed"), "{confirmed:?}");
        // A pasted browser session works too.
        let cookies = dify.process.boot["cookies"].as_object().unwrap();
        let cookie = |suffix: &str| {
            cookies
                .iter()
                .find(|(name, _)| name.ends_with(suffix))
                .map(|(_, v)| v.as_str().unwrap().to_string())
                .unwrap_or_default()
        };
        let pasted = Console::new(
            &dify.process.url,
            SignIn::Session {
                access_token: cookie("access_token"),
                refresh_token: cookie("refresh_token"),
                csrf_token: cookie("csrf_token"),
            },
        )
        .unwrap();
        assert!(pasted.list_apps().await.unwrap().len() >= 2);
        (flow.app_id, chat.app_id)
    });

    // The command line: export, edit in Git, import, export again.
    let dir = tempfile::tempdir().unwrap();
    let repo = TestRepo::create(dir.path(), "apps", &[("README.md", b"# apps\n")]);
    let export = dify.cli(dir.path(), &repo.bare, &["export"]);
    assert_eq!(export.status.code(), Some(0), "{}", shown(&export));
    assert!(
        shown(&export).contains("Exported 2 app(s)"),
        "{}",
        shown(&export)
    );
    git(&repo.work, &["pull", "-q", "origin", "main"]);
    let files = git(&repo.work, &["ls-files", "apps"]);
    let flow_file = files
        .lines()
        .find(|f| f.starts_with("apps/real-flow--"))
        .unwrap()
        .to_string();
    let text = std::fs::read_to_string(repo.work.join(&flow_file)).unwrap();
    assert!(!text.contains(SECRET), "the secret reached Git:\n{text}");
    // The HTTP node's own keys, which Dify exports verbatim, are in no object of the
    // repository: placeholders stand in their place.
    assert!(
        objects_containing(&repo.bare, &HTTP_KEYS).is_empty(),
        "an HTTP node key reached Git"
    );
    assert!(
        text.contains("[__SECRET__:1750000000300/authorization.config.api_key]"),
        "{text}"
    );
    repo.commit(
        &[(
            flow_file.as_str(),
            text.replace("title: End", "title: Answer").as_bytes(),
        )],
        &[],
        "rename the end node",
    );
    let status = dify.cli(dir.path(), &repo.bare, &["status"]);
    assert!(
        shown(&status).contains("Real Flow (workflow): changed in Git"),
        "{}",
        shown(&status)
    );
    let import = dify.cli(dir.path(), &repo.bare, &["import", "--publish"]);
    assert_eq!(import.status.code(), Some(0), "{}", shown(&import));
    assert!(
        shown(&import).contains("Real Flow from apps/real-flow--"),
        "{}",
        shown(&import)
    );
    let again = dify.cli(dir.path(), &repo.bare, &["export"]);
    assert!(
        shown(&again).contains("Nothing to commit"),
        "{}",
        shown(&again)
    );

    runtime.block_on(async {
        let with_secret = console
            .get(&format!("/apps/{flow}/export?include_secret=true"))
            .await
            .unwrap();
        let dsl = with_secret["data"].as_str().unwrap();
        assert!(dsl.contains("title: Answer"), "{dsl}");
        assert!(dsl.contains(SECRET), "the import wiped the secret:\n{dsl}");
        for key in HTTP_KEYS {
            assert!(dsl.contains(key), "the import lost {key}:\n{dsl}");
        }
        let versions = console.published_versions(&flow).await.unwrap();
        assert_eq!(versions.len(), 1, "{versions:?}");
        let published = console.export_dsl(&flow, Version::Published).await.unwrap();
        assert!(published.contains("title: Answer"));
        assert!(console
            .export_dsl(&chat, Version::Draft)
            .await
            .unwrap()
            .contains("Real Chat"));
    });
}
