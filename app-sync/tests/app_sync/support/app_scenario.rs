//! One App Git Sync setup: a fake console with three apps, a bare repository with a work tree
//! to edit "in Git", and the plugin served through the fake daemon.

use std::path::Path;

use serde_json::{json, Value};
use tempfile::TempDir;

use super::fake_console::{FakeConsole, EMAIL, PASSWORD};
use super::fake_daemon::FakeDaemon;
use super::git_servers::{git, TestRepo};

pub const SECRET: &str = "sk-live-0123456789";

pub struct AppScenario {
    pub dir: TempDir,
    pub console: FakeConsole,
    pub repo: TestRepo,
    pub daemon: FakeDaemon,
}

impl AppScenario {
    pub fn start() -> AppScenario {
        AppScenario::on("1.13.2")
    }

    /// The same setup on a console of Dify `version`.
    pub fn on(version: &str) -> AppScenario {
        let dir = tempfile::tempdir().unwrap();
        let console = FakeConsole::start(version);
        console.add_app(
            "Support Flow",
            "advanced-chat",
            vec![
                json!({"id": "v-key", "name": "API_KEY", "value_type": "secret", "value": SECRET}),
                json!({"id": "v-url", "name": "BASE_URL", "value_type": "string", "value": "https://example.com"}),
            ],
        );
        console.add_app("Report Workflow", "workflow", Vec::new());
        console.add_app("Simple Chat", "chat", Vec::new());
        let repo = TestRepo::create(dir.path(), "apps", &[("README.md", b"# Dify apps\n")]);
        let cache = dir.path().join("cache");
        let state = dir.path().join("plugin-state");
        let daemon = FakeDaemon::spawn(&[
            ("APP_GIT_SYNC_ALLOW_LOCAL", "1"),
            ("APP_GIT_SYNC_CACHE_DIR", cache.to_str().unwrap()),
            ("APP_GIT_SYNC_STATE_DIR", state.to_str().unwrap()),
        ]);
        AppScenario {
            dir,
            console,
            repo,
            daemon,
        }
    }

    pub fn credentials(&self) -> Value {
        json!({
            "console_url": self.console.url,
            "sign_in": "password",
            "email": EMAIL,
            "password": PASSWORD,
            "repository_url": self.repo.bare.to_str().unwrap(),
            "branch": "main",
        })
    }

    /// Invokes a tool; returns its messages (the streamed ones, then `end` or `error`).
    pub fn tool(&self, tool: &str, parameters: Value) -> Vec<Value> {
        self.tool_with(tool, parameters, self.credentials())
    }

    pub fn tool_with(&self, tool: &str, parameters: Value, credentials: Value) -> Vec<Value> {
        let session = self.daemon.request(
            "invoke_tool",
            json!({"type": "tool", "provider": "app_git_sync", "tool": tool,
                   "tool_parameters": parameters, "credentials": credentials}),
        );
        self.daemon.finish(&session)
    }

    /// The text and JSON messages of a successful tool run.
    pub fn run(&self, tool: &str, parameters: Value) -> (String, Value) {
        outputs(&self.tool(tool, parameters))
    }

    /// Brings the work tree up to the bare repository's `main`.
    pub fn pull(&self) {
        git(&self.repo.work, &["fetch", "-q", "origin"]);
        git(&self.repo.work, &["reset", "-q", "--hard", "origin/main"]);
    }

    /// The file of an app in the work tree (after a pull).
    pub fn file_of(&self, app_id: &str) -> String {
        self.pull();
        let index: Value = serde_json::from_slice(
            &std::fs::read(self.repo.work.join(".dify-sync/index.json")).unwrap(),
        )
        .unwrap();
        let (path, _) = index
            .as_object()
            .unwrap()
            .iter()
            .find(|(_, entry)| entry["app_id"] == app_id)
            .expect("the app is in the index");
        path.clone()
    }

    /// An edit in Git: replaces `from` with `to` in the app's file, commits and pushes.
    pub fn edit_in_git(&self, app_id: &str, from: &str, to: &str) -> String {
        let path = self.file_of(app_id);
        let file = self.repo.work.join(&path);
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.contains(from), "{path} has no {from:?}:\n{text}");
        let edited = text.replace(from, to);
        self.repo
            .commit(&[(path.as_str(), edited.as_bytes())], &[], "edit in Git")
    }

    /// Whether `sync_status` finds every app in sync.
    pub fn all_in_sync(&self) -> bool {
        let (_, report) = self.run("sync_status", json!({}));
        report["apps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|app| app["state"] == "in_sync")
    }

    pub fn branches(&self) -> Vec<String> {
        git(
            &self.repo.bare,
            &["for-each-ref", "--format=%(refname:short)", "refs/heads"],
        )
        .lines()
        .map(str::to_owned)
        .collect()
    }

    pub fn bare(&self) -> &Path {
        &self.repo.bare
    }
}

/// The text and JSON of a successful tool run; panics with the messages otherwise.
pub fn outputs(messages: &[Value]) -> (String, Value) {
    assert_eq!(
        messages.last().map(|m| m["type"].clone()),
        Some(json!("end")),
        "{messages:#?}"
    );
    let streamed: Vec<&Value> = messages
        .iter()
        .filter(|m| m["type"] == "stream")
        .map(|m| &m["data"])
        .collect();
    let text = streamed
        .iter()
        .find(|m| m["type"] == "text")
        .map(|m| m["message"]["text"].as_str().unwrap().to_string())
        .expect("a text message");
    let json = streamed
        .iter()
        .find(|m| m["type"] == "json")
        .map(|m| m["message"]["json_object"].clone())
        .expect("a json message");
    (text, json)
}

/// The error of a failed tool run.
pub fn failure(messages: &[Value]) -> Value {
    let last = messages.last().expect("messages");
    assert_eq!(last["type"], "error", "{messages:#?}");
    last["data"].clone()
}

/// The objects of a repository (every commit, tree and blob reachable from any ref) whose
/// content holds one of `secrets`.
pub fn objects_containing(bare: &Path, secrets: &[&str]) -> Vec<String> {
    let listed = git(bare, &["rev-list", "--all", "--objects"]);
    listed
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|object| {
            let content = git(bare, &["cat-file", "-p", object]);
            secrets.iter().any(|secret| content.contains(secret))
        })
        .map(str::to_owned)
        .collect()
}
