//! Deploy on push through the real Dify: our package behind the relay (this project's copy,
//! which relays endpoints as the daemon does), the push endpoint created through Dify's console
//! API with a production environment's settings, and a GitHub-signed push POSTed to its hook URL:
//! answered 202, and the app of the pushed file appears in Dify with its id recorded in the
//! environment's index; a forged push is refused with 401. Skipped, saying so, where
//! `../shared/dify` is absent; the fake daemon covers every host's signature.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::console_real_dify::relayed_package;
use crate::support::git_servers::{git, TestRepo};
use crate::support::real_dify::{http_client, RealDifyProcess};
use crate::support::start_end_workflow;
use app_git_sync::console::sign_in::SignIn;
use app_git_sync::console::Console;
use app_git_sync::webhook::signature::sign;

const PORT: &str = "5308";
const SECRET: &str = "real-webhook-secret-0123456789";

#[test]
fn a_signed_push_deploys_the_app_through_the_real_dify() {
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/dify");
    if !scripts.join("start").exists() {
        eprintln!("SKIPPED: ../shared/dify is absent; the fake daemon's webhook tests still ran");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let plugins = relayed_package(dir.path());
    let cache = dir.path().join("cache");
    let env = [
        ("DIFY_DAEMON", "relay"),
        ("DIFY_RELAY_PLUGINS", plugins.as_str()),
        ("APP_GIT_SYNC_ALLOW_LOCAL", "1"),
        ("APP_GIT_SYNC_CACHE_DIR", cache.to_str().unwrap()),
    ];
    let Some(dify) = RealDifyProcess::start_with(&scripts, PORT, &env, "") else {
        return;
    };
    let index = json!({"apps/pushed-flow.yml": {"app_id": "0b0c0d0e-0000-4000-8000-000000000001",
                                                 "mode": "workflow", "name": "Pushed Flow"}});
    let flow = start_end_workflow("Pushed Flow", "Deployed", "0.7.0");
    let repo = TestRepo::create(
        dir.path(),
        "apps",
        &[
            (".dify-sync/environments/production.yaml", b"{}\n"),
            (".dify-sync/index.json", index.to_string().as_bytes()),
            ("apps/pushed-flow.yml", flow.as_bytes()),
        ],
    );
    let head = git(&repo.bare, &["rev-parse", "main"]);
    let (email, password) = (dify.text("email"), dify.text("password"));
    let console = Console::new(
        &dify.url,
        SignIn::Password {
            email: email.clone(),
            password: password.clone(),
        },
    )
    .unwrap();
    let relay = format!("http://127.0.0.1:{}", PORT.parse::<u16>().unwrap() + 1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let stats = http_client()
            .get(format!("{relay}/relay/stats"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let stats: Value = serde_json::from_str(&stats).unwrap();
        let identifier = stats["dify-community/app_git_sync"]["unique_identifier"]
            .as_str()
            .unwrap()
            .to_string();
        let settings = json!({"webhook_secret": SECRET, "publish": false, "console_url": dify.url,
            "sign_in": "password", "email": email, "password": password,
            "repository_url": repo.bare.to_str().unwrap(), "branch": "main", "environment": "production"});
        console
            .post(
                "/workspaces/current/endpoints/create",
                &json!({"plugin_unique_identifier": identifier, "settings": settings, "name": "deploy"}),
            )
            .await
            .unwrap();
        let listed = console
            .get("/workspaces/current/endpoints/list?page=1&page_size=10")
            .await
            .unwrap();
        let hook = listed["endpoints"][0]["hook_id"]
            .as_str()
            .unwrap_or_else(|| panic!("{listed}"))
            .to_string();
        let url = format!("{relay}/e/{hook}/push");
        let body = json!({"ref": "refs/heads/main", "before": "0".repeat(40), "after": head,
            "repository": {"full_name": "team/apps"},
            "commits": [{"id": head, "added": ["apps/pushed-flow.yml"], "modified": [], "removed": []}]})
        .to_string();
        let post = |signature: String, delivery: &str| {
            http_client()
                .post(&url)
                .header("Content-Type", "application/json")
                .header("X-GitHub-Event", "push")
                .header("X-GitHub-Delivery", delivery)
                .header("X-Hub-Signature-256", format!("sha256={signature}"))
                .body(body.clone())
                .send()
        };
        let forged = post(sign("not-the-secret-at-all", body.as_bytes()), "r-1")
            .await
            .unwrap();
        assert_eq!(forged.status().as_u16(), 401, "{:?}", forged.text().await);
        let answer = post(sign(SECRET, body.as_bytes()), "r-2").await.unwrap();
        let status = answer.status().as_u16();
        let text = answer.text().await.unwrap();
        assert_eq!(status, 202, "{text}");
        let deadline = Instant::now() + Duration::from_secs(90);
        let created = loop {
            let apps = console.list_apps().await.unwrap();
            if let Some(app) = apps.into_iter().find(|a| a.name == "Pushed Flow") {
                break app;
            }
            assert!(Instant::now() < deadline, "the push was not deployed");
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let exported = console
            .export_dsl(&created.id, app_git_sync::console::apps::Version::Draft)
            .await
            .unwrap();
        assert!(exported.contains("title: Deployed"), "{exported}");
        // The id of production's app goes to the environment's index, in the same run.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // Absent until the run's commit lands.
            let shown = std::process::Command::new("git")
                .arg("-C")
                .arg(&repo.bare)
                .args(["show", "main:.dify-sync/environments/production.index.json"])
                .output()
                .unwrap();
            let shown = String::from_utf8_lossy(&shown.stdout).into_owned();
            if shown.contains(&created.id) {
                break;
            }
            assert!(Instant::now() < deadline, "{shown}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
}
