//! The package, installed the way the daemon installs it: unpacked with every file 0644, a
//! virtual environment with the (empty) requirements, `.venv/bin/python -m main` started with
//! `INSTALL_METHOD=local`, and driven through the fake daemon.

mod support;

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::json;
use sha2::{Digest, Sha256};
use support::fake_daemon::{FakeDaemon, BINARY, REPO_DIR};
use support::git_servers::TestRepo;

/// This test binary without its debug info (an unoptimized build with it is over 50 MiB;
/// the release build is what ships).
fn slim_binary(dir: &Path) -> PathBuf {
    let slim = dir.join("git-datasource");
    let status = Command::new("objcopy")
        .arg("--strip-debug")
        .arg(BINARY)
        .arg(&slim)
        .status()
        .expect("objcopy runs");
    assert!(status.success());
    slim
}

fn package(dir: &Path, extra: &[&str]) -> std::process::Output {
    let slim = slim_binary(dir);
    Command::new(BINARY)
        .args(["package", "--dir", REPO_DIR, "--out"])
        .arg(dir.join("git_datasource.difypkg"))
        .arg("--binary")
        .arg(&slim)
        .args(extra)
        .output()
        .unwrap()
}

fn zip_entries(path: &Path) -> Vec<(String, bool, Vec<u8>)> {
    let mut archive = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    (0..archive.len())
        .map(|i| {
            let mut entry = archive.by_index(i).unwrap();
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            (entry.name().to_string(), entry.is_dir(), bytes)
        })
        .collect()
}

#[test]
fn the_package_holds_file_entries_only_with_every_icon_and_requirements() {
    let dir = tempfile::tempdir().unwrap();
    let output = package(dir.path(), &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let entries = zip_entries(&dir.path().join("git_datasource.difypkg"));
    let names: Vec<&str> = entries.iter().map(|(n, _, _)| n.as_str()).collect();
    assert!(
        entries
            .iter()
            .all(|(name, is_dir, _)| !is_dir && !name.ends_with('/')),
        "directory entries: {names:?}"
    );
    for needed in [
        "manifest.yaml",
        "provider/git_datasource.yaml",
        "datasources/git_datasource.yaml",
        "_assets/icon.svg",
        "_assets/icon-dark.svg",
        "README.md",
        "PRIVACY.md",
        "requirements.txt",
        "main.py",
        "bin/git-datasource-x86_64",
    ] {
        assert!(names.contains(&needed), "{needed} missing from {names:?}");
    }
    assert!(!names.contains(&"pyproject.toml"));
    let requirements = &entries
        .iter()
        .find(|(n, _, _)| n == "requirements.txt")
        .unwrap()
        .2;
    assert!(requirements.iter().all(u8::is_ascii_whitespace));

    // The identifier's checksum, recomputed here as the daemon does.
    let mut sorted: Vec<&(String, bool, Vec<u8>)> = entries.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut all = Vec::new();
    for (name, _, bytes) in sorted {
        all.extend_from_slice(&Sha256::digest(name.as_bytes()));
        all.extend_from_slice(&Sha256::digest(bytes));
    }
    let checksum = hex::encode(Sha256::digest(&all));
    assert!(
        stdout.contains(&format!("dify-community/git_datasource:0.1.0@{checksum}")),
        "{stdout}"
    );
    assert!(stdout.contains("bin/git-datasource-x86_64 ("), "{stdout}");
}

#[test]
fn the_package_refuses_what_the_daemon_would_refuse() {
    let dir = tempfile::tempdir().unwrap();
    // A binary of the wrong architecture.
    let output = package(dir.path(), &["--aarch64", BINARY]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("is not a Linux aarch64 executable"));
    // Over the daemon's 50 MiB limit.
    let huge = dir.path().join("huge");
    let mut bytes = std::fs::read(slim_binary(dir.path())).unwrap();
    bytes.resize(51 * 1024 * 1024, 0);
    std::fs::write(&huge, bytes).unwrap();
    let output = Command::new(BINARY)
        .args(["package", "--dir", REPO_DIR, "--out"])
        .arg(dir.path().join("x.difypkg"))
        .arg("--binary")
        .arg(&huge)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("over the daemon's limit"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!dir.path().join("x.difypkg").exists());
}

#[test]
fn installed_as_the_daemon_installs_it_the_plugin_serves_a_crawl() {
    let dir = tempfile::tempdir().unwrap();
    let output = package(dir.path(), &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // Unpack with every file 0644, as the daemon's ExtractTo does.
    let plugin = dir.path().join("cwd/dify-community/git_datasource-0.1.0");
    for (name, _, bytes) in zip_entries(&dir.path().join("git_datasource.difypkg")) {
        let target = plugin.join(&name);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(&target, bytes).unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let venv = Command::new("python3")
        .args(["-m", "venv", ".venv"])
        .current_dir(&plugin)
        .status()
        .unwrap();
    assert!(venv.success());
    let install = Command::new(".venv/bin/python")
        .args([
            "-m",
            "pip",
            "install",
            "--no-index",
            "-q",
            "-r",
            "requirements.txt",
        ])
        .current_dir(&plugin)
        .status()
        .unwrap();
    assert!(install.success());

    let repo = TestRepo::create(
        dir.path(),
        "docs",
        &[("guide.md", b"# Guide\n"), ("notes/todo.txt", b"todo")],
    );
    let cache = dir.path().join("cache");
    let mut command = Command::new(plugin.join(".venv/bin/python"));
    command
        .args(["-m", "main"])
        .current_dir(&plugin)
        .env("INSTALL_METHOD", "local");
    let mut daemon = FakeDaemon::spawn_command(
        command,
        &[
            ("GIT_DATASOURCE_ALLOW_LOCAL", "1"),
            ("GIT_DATASOURCE_CACHE_DIR", cache.to_str().unwrap()),
        ],
    );
    daemon.wait_for(Duration::from_secs(30), "the first heartbeat", |r| {
        (!r.heartbeats().is_empty()).then_some(())
    });
    let pid = daemon.child.as_ref().unwrap().id();
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert!(
        exe.ends_with("bin/git-datasource-x86_64"),
        "PID {pid} runs {exe:?}, not our binary"
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
    assert_eq!(result["status"], "completed");
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
        .close_and_wait(Duration::from_secs(5))
        .expect("exits on EOF");
    assert!(status.success());

    // Without its binary, the launcher says so in one line and fails.
    std::fs::remove_file(plugin.join("bin/git-datasource-x86_64")).unwrap();
    let output = Command::new(plugin.join(".venv/bin/python"))
        .args(["-m", "main"])
        .current_dir(&plugin)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("git_datasource: ")
            && stderr.contains("missing")
            && stderr.lines().count() == 1,
        "{stderr}"
    );
}
