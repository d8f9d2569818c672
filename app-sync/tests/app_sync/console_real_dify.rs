//! The console client, the command line and the tool inside a real workflow, against the real
//! Dify API (1.16.1 by default, `DIFY_VERSION=1.13.2` for the older one; `../shared/dify`,
//! started by this test on loopback with our package behind its relay): cookie + CSRF sign-in
//! with a base64 password and with a pasted session, apps created by import, exported (an HTTP
//! node's keys as placeholders), edited in Git, imported over in place with their secrets
//! kept, published, a pending import above the server's DSL version confirmed, the refusal to
//! overwrite a chat app; then the tool provider authorized through the console and a published
//! workflow whose tool node exports the apps, run through the app's API, and its failure read
//! as text. Skipped, saying so, where `../shared/dify` is absent; the fake console covers the
//! other versions.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::app_scenario::objects_containing;
use crate::support::git_servers::{git, TestRepo};
use crate::support::package_files::{launcher_command, slim_binary, unpack_package};
use crate::support::plugin_under_test::{BINARY, REPO_DIR};
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
    /// The package the relay runs, and the plugin's cache.
    dir: tempfile::TempDir,
}

impl RealDify {
    /// The real Dify with our package behind it, unpacked as the daemon unpacks it and started
    /// through its launcher by the relay (`DIFY_DAEMON=relay`).
    fn start() -> Option<RealDify> {
        let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/dify");
        if !scripts.join("start").exists() {
            eprintln!("SKIPPED: ../shared/dify is absent; the fake console tests still ran");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let plugins = relayed_package(dir.path());
        let cache = dir.path().join("cache");
        let process = RealDifyProcess::start_with(
            &scripts,
            PORT,
            &[
                ("DIFY_DAEMON", "relay"),
                ("DIFY_RELAY_PLUGINS", &plugins),
                ("APP_GIT_SYNC_ALLOW_LOCAL", "1"),
                ("APP_GIT_SYNC_CACHE_DIR", cache.to_str().unwrap()),
                // Dify's OpenAPI (1.15+), with our device-flow client id known.
                ("OPENAPI_ENABLED", "true"),
                ("OPENAPI_KNOWN_CLIENT_IDS", "difyctl,app-git-sync"),
            ],
            "the fake console tests still ran",
        )?;
        Some(RealDify {
            email: process.text("email"),
            password: process.text("password"),
            process,
            dir,
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
        self.cli_with(home, repo, args, &[])
    }

    fn cli_with(&self, home: &Path, repo: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new(BINARY)
            .args(args)
            .env_clear()
            .envs(env.iter().copied())
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

/// Our package, built, unpacked as the daemon unpacks it under `dir`, and started through its
/// launcher: the `DIR:BINARY` of `DIFY_RELAY_PLUGINS`.
pub fn relayed_package(dir: &Path) -> String {
    let package = dir.join("app_git_sync.difypkg");
    let built = Command::new(BINARY)
        .args(["package", "--dir", REPO_DIR, "--no-aarch64", "--binary"])
        .arg(slim_binary(dir))
        .arg("--out")
        .arg(&package)
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", shown(&built));
    let plugin = dir.join("plugin");
    unpack_package(&package, &plugin);
    let launcher = launcher_command(&plugin, &dir.join("launch"));
    format!("{}:{}", plugin.display(), launcher.display())
}

pub fn shown(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A workflow whose tool node exports the workspace's apps with our tool.
const TOOL_FLOW_DSL: &str = r#"app:
  description: ''
  icon: "\U0001F916"
  icon_background: '#FFEAD5'
  mode: workflow
  name: Nightly Export
dependencies: []
kind: app
version: 0.6.0
workflow:
  conversation_variables: []
  environment_variables: []
  features: {}
  graph:
    edges:
    - data: {sourceType: start, targetType: tool}
      id: 1750000000500-source-1750000000600-target
      source: '1750000000500'
      sourceHandle: source
      target: '1750000000600'
      targetHandle: target
      type: custom
    - data: {sourceType: tool, targetType: end}
      id: 1750000000600-source-1750000000700-target
      source: '1750000000600'
      sourceHandle: source
      target: '1750000000700'
      targetHandle: target
      type: custom
    nodes:
    - data: {desc: '', title: Start, type: start, variables: []}
      id: '1750000000500'
      position: {x: 80, y: 280}
      type: custom
    - data:
        desc: ''
        provider_id: dify-community/app_git_sync/app_git_sync
        provider_name: dify-community/app_git_sync/app_git_sync
        provider_type: builtin
        title: Export apps
        tool_configurations: {}
        tool_label: Export apps to Git
        tool_name: export_apps
        tool_parameters:
          message: {type: mixed, value: Exported by a Dify workflow}
        type: tool
      id: '1750000000600'
      position: {x: 380, y: 280}
      type: custom
    - data:
        desc: ''
        outputs:
        - value_selector: ['1750000000600', text]
          value_type: string
          variable: result
        title: End
        type: end
      id: '1750000000700'
      position: {x: 680, y: 280}
      type: custom
    viewport: {x: 0, y: 0, zoom: 1}
  rag_pipeline_variables: []
"#;

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
    // A pull request's review of Dify's real exports, offline: the edit node by node, and
    // lint finds nothing wrong in either app (its secret placeholders are not secrets).
    let offline = |args: &[&str]| {
        Command::new(BINARY)
            .args(args)
            .current_dir(&repo.work)
            .output()
            .unwrap()
    };
    let review = offline(&["diff", "--base", "HEAD~1"]);
    assert!(
        shown(&review).contains("\"Answer\" (end), renamed from \"End\" (end)"),
        "{}",
        shown(&review)
    );
    let lint = offline(&["lint"]);
    assert_eq!(lint.status.code(), Some(0), "{}", shown(&lint));
    assert!(
        shown(&lint).contains("2 app files: 0 errors, 0 warnings"),
        "{}",
        shown(&lint)
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
        let versions = console.published_versions(&flow).await.unwrap().unwrap();
        assert_eq!(versions.len(), 1, "{versions:?}");
        let published = console.export_dsl(&flow, Version::Published).await.unwrap();
        assert!(published.contains("title: Answer"));
        assert!(console
            .export_dsl(&chat, Version::Draft)
            .await
            .unwrap()
            .contains("Real Chat"));
    });

    // The chat app's file removed in Git: the dry run lists its deletion, the import that
    // names it deletes it (`DELETE /console/api/apps/<id>`), and Dify no longer has it.
    git(&repo.work, &["pull", "-q", "origin", "main"]);
    let chat_file = git(&repo.work, &["ls-files", "apps"])
        .lines()
        .find(|f| f.starts_with("apps/real-chat--"))
        .unwrap()
        .to_string();
    repo.commit(&[], &[chat_file.as_str()], "retire the chat app");
    let allowed = [("APP_GIT_SYNC_DELETIONS", "remove_files_and_apps")];
    let dry = dify.cli_with(dir.path(), &repo.bare, &["import", "--dry-run"], &allowed);
    assert!(
        shown(&dry).contains("- would delete it in Dify once named in delete_apps")
            && shown(&dry).contains(&format!("Real Chat from {chat_file}")),
        "{}",
        shown(&dry)
    );
    let deleted = dify.cli_with(
        dir.path(),
        &repo.bare,
        &["import", "--delete-apps", "Real Chat"],
        &allowed,
    );
    assert_eq!(deleted.status.code(), Some(0), "{}", shown(&deleted));
    assert!(
        shown(&deleted).contains(&format!("Deleted in Dify: Real Chat ({chat})")),
        "{}",
        shown(&deleted)
    );
    runtime.block_on(async {
        let apps = console.list_apps().await.unwrap();
        assert!(apps.iter().all(|a| a.id != chat), "{apps:?}");
        assert!(apps.iter().any(|a| a.id == flow), "{apps:?}");
    });

    tool_inside_a_real_workflow(&dify, &console, &runtime);
    openapi_sign_in(&dify, &flow, &runtime);
}

/// The OpenAPI sign-in on the real Dify: a token from the device flow (approved through the
/// console's own approval route with the admin's browser session), then list, export, import
/// over and the dependency check through `/openapi/v1`, publishing refused before anything
/// changes, and the command line with the token saying which API it used. On a Dify without
/// an OpenAPI (1.13.2) the token's e-mail and password fallback signs in to the console API.
fn openapi_sign_in(dify: &RealDify, flow: &str, runtime: &tokio::runtime::Runtime) {
    let url = dify.process.url.clone();
    let fallback = SignIn::OpenApi {
        token: "dfoa_not-a-real-token".into(),
        workspace_id: String::new(),
        fallback: Some(Box::new(SignIn::Password {
            email: dify.email.clone(),
            password: dify.password.clone(),
        })),
    };
    let probe = Console::new(&url, fallback.clone()).unwrap();
    if !runtime.block_on(probe.has_open_api()).unwrap() {
        assert!(dify.process.version() < (1, 15, 0), "1.15+ has an OpenAPI");
        let through = runtime.block_on(async {
            assert!(probe.list_apps().await.unwrap().len() >= 2);
            probe.signed_in_through().await.unwrap()
        });
        assert!(through.contains("OPENAPI_ENABLED"), "{through}");
        return;
    }
    let cookies = dify.process.boot["cookies"].as_object().unwrap();
    let cookie_header = cookies
        .iter()
        .map(|(name, value)| format!("{name}={}", value.as_str().unwrap()))
        .collect::<Vec<_>>()
        .join("; ");
    let csrf = cookies
        .iter()
        .find(|(name, _)| name.ends_with("csrf_token"))
        .map(|(_, v)| v.as_str().unwrap().to_string())
        .unwrap();
    let token = runtime.block_on(async {
        let (code_tx, code_rx) = tokio::sync::oneshot::channel::<String>();
        let login = probe.device_login("app-git-sync real-Dify test", move |prompt| {
            let _ = code_tx.send(prompt.user_code.clone());
        });
        let approve = async {
            let user_code = code_rx.await.unwrap();
            let answer = crate::support::real_dify::http_client()
                .post(format!("{url}/openapi/v1/oauth/device/approve"))
                .header("Cookie", &cookie_header)
                .header("X-CSRF-Token", &csrf)
                .header("Content-Type", "application/json")
                .body(serde_json::json!({"user_code": user_code}).to_string())
                .send()
                .await
                .unwrap();
            let status = answer.status();
            assert!(
                status.is_success(),
                "{status}: {}",
                answer.text().await.unwrap()
            );
        };
        let (token, ()) = tokio::join!(login, approve);
        token.unwrap()
    });
    assert!(token.starts_with("dfoa_"));
    let console = Console::new(
        &url,
        SignIn::OpenApi {
            token: token.clone(),
            workspace_id: String::new(),
            fallback: None,
        },
    )
    .unwrap();
    runtime.block_on(async {
        // The workflow and the tool's workflow (the chat app was deleted before).
        let apps = console.list_apps().await.unwrap();
        assert!(
            apps.len() >= 2 && apps.iter().any(|a| a.id == flow),
            "{apps:?}"
        );
        let through = console.signed_in_through().await.unwrap();
        assert!(through.contains("OpenAPI"), "{through}");
        let dsl = console.export_dsl(flow, Version::Draft).await.unwrap();
        assert!(dsl.contains("title: Answer"), "{dsl}");
        let edited = dsl.replace("title: Answer", "title: Through OpenAPI");
        let outcome = console.import_dsl(&edited, Some(flow)).await.unwrap();
        assert!(outcome.status.starts_with("completed"), "{outcome:?}");
        assert_eq!(outcome.app_id, flow);
        assert!(console.missing_dependencies(flow).await.unwrap().is_empty());
        let again = console.export_dsl(flow, Version::Draft).await.unwrap();
        assert!(again.contains("title: Through OpenAPI"), "{again}");
        assert!(console.can_publish().await.is_err());
        assert_eq!(console.published_versions(flow).await.unwrap(), None);
    });
    // The command line with the token: it says it used the OpenAPI, and never shows the token.
    let dir = tempfile::tempdir().unwrap();
    let repo = TestRepo::create(dir.path(), "openapi-apps", &[("README.md", b"# apps\n")]);
    let output = Command::new(BINARY)
        .arg("export")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .env("HOME", dir.path())
        .env("APP_GIT_SYNC_CONSOLE_URL", &url)
        .env("APP_GIT_SYNC_SIGN_IN", "openapi_token")
        .env("APP_GIT_SYNC_OPENAPI_TOKEN", &token)
        .env("APP_GIT_SYNC_REPOSITORY_URL", &repo.bare)
        .output()
        .unwrap();
    let text = shown(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(
        text.contains("'s OpenAPI (/openapi/v1)") && text.contains("Exported"),
        "{text}"
    );
    assert!(!text.contains(&token));
}

/// The tool provider authorized through the console (Dify asks our binary, behind the relay,
/// to validate it), and a published workflow whose tool node calls `export_apps`, run through
/// the app's API: the tool works inside a real Dify workflow, and a failure reads as text.
fn tool_inside_a_real_workflow(
    dify: &RealDify,
    console: &Console,
    runtime: &tokio::runtime::Runtime,
) {
    let repo = TestRepo::create(dify.dir.path(), "tool-apps", &[("README.md", b"# apps\n")]);
    let provider =
        "/workspaces/current/tool-provider/builtin/dify-community/app_git_sync/app_git_sync/add";
    let credentials = |repository: &str| {
        serde_json::json!({"console_url": dify.process.url, "sign_in": "password",
                           "email": dify.email, "password": dify.password,
                           "repository_url": repository, "branch": "main"})
    };
    runtime.block_on(async {
        // A repository that does not exist: refused with our message.
        let refused = console
            .post(
                provider,
                &serde_json::json!({"credentials": credentials("/no/such/repository"),
                                    "type": "api-key", "name": "broken"}),
            )
            .await
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("repository") && !refused.contains("error_type"),
            "{refused}"
        );
        console
            .post(
                provider,
                &serde_json::json!({"credentials": credentials(repo.bare.to_str().unwrap()),
                                    "type": "api-key", "name": "git"}),
            )
            .await
            .unwrap();
        let flow = console.import_dsl(TOOL_FLOW_DSL, None).await.unwrap();
        assert!(flow.status.starts_with("completed"), "{flow:?}");
        console.publish(&flow.app_id, "nightly").await.unwrap();
        let key = console
            .post(
                &format!("/apps/{}/api-keys", flow.app_id),
                &serde_json::json!({}),
            )
            .await
            .unwrap();
        let token = key["token"].as_str().unwrap().to_string();
        let run = || async {
            let answer = reqwest::Client::new()
                .post(format!("{}/v1/workflows/run", dify.process.url))
                .bearer_auth(&token)
                .header("Content-Type", "application/json")
                .body(
                    serde_json::json!({"inputs": {}, "response_mode": "blocking", "user": "ci"})
                        .to_string(),
                )
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            serde_json::from_str::<serde_json::Value>(&answer).unwrap()
        };
        let answer = run().await;
        let data = &answer["data"];
        assert_eq!(data["status"], "succeeded", "{answer}");
        let result = data["outputs"]["result"].as_str().unwrap();
        assert!(
            result.contains("Exported") && result.contains("apps/nightly-export--"),
            "{result}"
        );
        let message = git(&repo.bare, &["log", "-1", "--format=%s", "main"]);
        assert_eq!(message, "Exported by a Dify workflow");
        // The repository gone: the run fails with our message as text, not an error's JSON.
        std::fs::remove_dir_all(&repo.bare).unwrap();
        let answer = run().await;
        let error = answer["data"]["error"].as_str().unwrap_or_default();
        assert_eq!(answer["data"]["status"], "failed", "{answer}");
        assert!(
            error.contains("tool-apps.git") && !error.contains("error_type"),
            "{error}"
        );
    });
}
