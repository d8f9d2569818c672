//! The package as the daemon installs it: built by `git-datasource package`, unpacked with
//! every file 0644, started, and asked to validate and crawl through the fake daemon.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use super::fake_daemon::{FakeDaemon, BINARY, REPO_DIR};
use super::git_servers::TestRepo;
use super::package_files::{slim_binary, unpack_package};

/// `git-datasource package` into `dir/git_datasource.difypkg`, with `extra` arguments.
pub fn package(dir: &Path, extra: &[&str]) -> std::process::Output {
    package_plugin(dir, Path::new(REPO_DIR), "git_datasource", extra)
}

/// `git-datasource package` of the plugin in `plugin_dir` (the datasource's, or the
/// browser's `browser/`) into `dir/<name>.difypkg`, with `extra` arguments.
pub fn package_plugin(
    dir: &Path,
    plugin_dir: &Path,
    name: &str,
    extra: &[&str],
) -> std::process::Output {
    let slim = slim_binary(dir);
    Command::new(BINARY)
        .arg("package")
        .arg("--dir")
        .arg(plugin_dir)
        .arg("--out")
        .arg(dir.join(format!("{name}.difypkg")))
        .arg("--binary")
        .arg(&slim)
        .args(extra)
        .output()
        .unwrap()
}

/// Unpacks `dir/git_datasource.difypkg` where the daemon would, every file 0644 as its
/// `ExtractTo` leaves them; returns the plugin's directory.
pub fn unpack(dir: &Path) -> PathBuf {
    unpack_plugin(dir, "git_datasource")
}

/// Unpacks `dir/<name>.difypkg` as [`unpack`] does.
pub fn unpack_plugin(dir: &Path, name: &str) -> PathBuf {
    let plugin = dir.join(format!("cwd/dify-community/{name}-0.1.0"));
    unpack_package(&dir.join(format!("{name}.difypkg")), &plugin);
    plugin
}

/// Starts `command` as the daemon would (its cache under `dir`), waits for its first
/// heartbeat.
pub fn start(command: Command, dir: &Path) -> FakeDaemon {
    let cache = dir.join("cache");
    let daemon = FakeDaemon::spawn_command(
        command,
        &[
            ("GIT_DATASOURCE_ALLOW_LOCAL", "1"),
            ("GIT_DATASOURCE_CACHE_DIR", cache.to_str().unwrap()),
        ],
    );
    daemon.wait_for(Duration::from_secs(60), "the first heartbeat", |r| {
        (!r.heartbeats().is_empty()).then_some(())
    });
    daemon
}

/// A credentials validation and a crawl of a local repository with its final `completed`
/// message and its state in plugin storage; then the plugin exits on EOF.
pub fn validate_and_crawl(mut daemon: FakeDaemon, dir: &Path) {
    let repo = TestRepo::create(
        dir,
        "docs",
        &[("guide.md", b"# Guide\n"), ("notes/todo.txt", b"todo")],
    );
    let session = daemon.request(
        "validate_datasource_credentials",
        json!({"provider": "git_datasource", "credentials": {}}),
    );
    assert_eq!(daemon.finish(&session)[0]["data"], json!({"result": true}));
    let session = daemon.request(
        "invoke_website_datasource_get_crawl",
        json!({"provider": "git_datasource", "datasource": "git_datasource", "credentials": {},
               "datasource_parameters": {"repo_url": repo.bare.display().to_string()}}),
    );
    let messages = daemon.finish(&session);
    let result = &messages[messages.len() - 2]["data"]["result"];
    assert_eq!(result["status"], "completed", "{messages:?}");
    let titles: Vec<&str> = result["web_info_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["guide.md", "notes/todo.txt"]);
    assert!(
        daemon
            .recorded()
            .storage
            .keys()
            .any(|k| k.starts_with("git_sha:")),
        "state went through plugin storage"
    );
    let status = daemon
        .close_and_wait(Duration::from_secs(10))
        .expect("exits on EOF");
    assert!(status.success());
}
