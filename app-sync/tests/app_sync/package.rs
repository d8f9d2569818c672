//! The App Git Sync package: built by `package`, validated by `check`, unpacked as the daemon
//! unpacks it (every file 0644), started through its Python launcher and driven through the
//! fake daemon.

use std::path::Path;
use std::process::Command;

use crate::support::app_scenario::{outputs, AppScenario};
use crate::support::fake_daemon::FakeDaemon;
use crate::support::git_servers::git;
use crate::support::package_files::{slim_binary, unpack_package, zip_entries};
use crate::support::plugin_under_test::{BINARY, PLUGIN_FILES, REPO_DIR};
use serde_json::json;

#[test]
fn the_package_installs_and_its_launcher_serves_the_tools() {
    let s = AppScenario::start();
    let dir = s.dir.path();
    let slim = slim_binary(dir);
    let out = dir.join("app_git_sync.difypkg");
    let built = Command::new(BINARY)
        .args(["package", "--dir", REPO_DIR, "--no-aarch64", "--binary"])
        .arg(&slim)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&built.stdout);
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    assert!(
        stdout.contains("identifier  dify-community/app_git_sync:0.1.0@"),
        "{stdout}"
    );
    let files = zip_entries(&out);
    let names: Vec<&str> = files.iter().map(|(n, _, _)| n.as_str()).collect();
    for needed in PLUGIN_FILES.iter().copied().chain([
        "README.md",
        "PRIVACY.md",
        "main.py",
        "requirements.txt",
        "bin/app-git-sync-x86_64",
    ]) {
        assert!(names.contains(&needed), "{needed} missing from {names:?}");
    }

    // Unpacked as the daemon does, started as `python -m main`.
    let plugin = dir.join("cwd/dify-community/app_git_sync-0.1.0");
    unpack_package(&out, &plugin);
    let mut command = Command::new("python3");
    command
        .args(["-m", "main"])
        .current_dir(&plugin)
        .env("INSTALL_METHOD", "local");
    let cache = dir.join("packaged-cache");
    let daemon = FakeDaemon::spawn_command(
        command,
        &[
            ("APP_GIT_SYNC_ALLOW_LOCAL", "1"),
            ("APP_GIT_SYNC_CACHE_DIR", cache.to_str().unwrap()),
        ],
    );
    let session = daemon.request(
        "invoke_tool",
        json!({"type": "tool", "provider": "app_git_sync", "tool": "export_apps",
               "tool_parameters": {"apps": "Report Workflow"}, "credentials": s.credentials()}),
    );
    let (text, report) = outputs(&daemon.finish(&session));
    assert_eq!(report["exported"].as_array().unwrap().len(), 1, "{text}");
    assert_eq!(
        git(s.bare(), &["rev-parse", "main"]),
        report["commit"].as_str().unwrap()
    );
}

#[test]
fn check_names_what_the_daemon_would_refuse_in_a_tool_plugin() {
    let dir = tempfile::tempdir().unwrap();
    for file in PLUGIN_FILES.iter().chain(&["README.md", "PRIVACY.md"]) {
        let target = dir.path().join(file);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(Path::new(REPO_DIR).join(file), target).unwrap();
    }
    let check = || {
        let output = Command::new(BINARY)
            .args(["check", "--dir"])
            .arg(dir.path())
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).to_string()
                + &String::from_utf8_lossy(&output.stderr),
        )
    };
    let (ok, text) = check();
    assert!(
        ok && text.contains("tool declarations and the endpoint group are valid"),
        "{text}"
    );

    let tool = dir.path().join("tools/app_diff.yaml");
    let broken = std::fs::read_to_string(&tool)
        .unwrap()
        .replace("form: llm", "form: chat")
        .replace("  llm: Shows", "  llm_text: Shows");
    std::fs::write(&tool, broken).unwrap();
    let (ok, text) = check();
    assert!(!ok, "{text}");
    assert!(
        text.contains("tools/app_diff.yaml: parameters[0].form: \"chat\" is not one of"),
        "{text}"
    );
    assert!(
        text.contains("tools/app_diff.yaml: description.llm: is required"),
        "{text}"
    );

    let endpoint = dir.path().join("endpoints/push.yaml");
    std::fs::write(&endpoint, "path: push\nmethod: PATCH\n").unwrap();
    let (ok, text) = check();
    assert!(!ok, "{text}");
    assert!(
        text.contains("endpoints/push.yaml: path: must start with /"),
        "{text}"
    );
    assert!(
        text.contains("endpoints/push.yaml: method: \"PATCH\" is not one of"),
        "{text}"
    );

    let manifest = dir.path().join("manifest.yaml");
    let mixed = std::fs::read_to_string(&manifest).unwrap().replace(
        "plugins:\n",
        "plugins:\n  datasources:\n    - provider/app_git_sync.yaml\n",
    );
    std::fs::write(&manifest, mixed).unwrap();
    let (ok, text) = check();
    assert!(!ok, "{text}");
    assert!(
        text.contains("plugins.tools: a datasource plugin cannot also declare other plugin kinds"),
        "{text}"
    );
}

#[test]
fn remote_debugging_registers_the_provider_as_a_tool_declaration() {
    let plugin = dify_plugin::declaration::PluginDeclaration::load(Path::new(REPO_DIR)).unwrap();
    let frames = dify_plugin::protocol::tcp::registration_frames(&plugin, "key");
    let kinds: Vec<&str> = frames.iter().map(|f| f["type"].as_str().unwrap()).collect();
    assert_eq!(
        &kinds[..3],
        ["handshake", "manifest_declaration", "tool_declaration"]
    );
    let provider = &frames[2]["data"][0];
    let tools: Vec<&str> = provider["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["identity"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        tools,
        [
            "export_apps",
            "import_apps",
            "sync_status",
            "app_diff",
            "app_history",
            "lint_apps"
        ]
    );
    // The provider declares exactly the credentials the plugin reads.
    let declared: Vec<&str> = provider["credentials_schema"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(declared, app_git_sync::settings::FIELDS);
    // The push webhook: its endpoint, and the same settings plus the webhook's own.
    let group = &frames[3];
    assert_eq!(group["type"], "endpoint_declaration");
    let endpoint = &group["data"][0]["endpoints"][0];
    assert_eq!(
        (endpoint["path"].as_str(), endpoint["method"].as_str()),
        (Some(app_git_sync::webhook::PATH), Some("POST"))
    );
    let settings: Vec<&str> = group["data"][0]["settings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(settings[..2], ["webhook_secret", "publish"]);
    assert_eq!(settings[2..], app_git_sync::settings::FIELDS);
    assert_eq!(kinds.last(), Some(&"end"));
}
