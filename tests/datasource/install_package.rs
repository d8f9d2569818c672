//! The package, installed the way the daemon installs it: unpacked with every file 0644, a
//! virtual environment with the (empty) requirements, `.venv/bin/python -m main` started with
//! `INSTALL_METHOD=local`, and driven through the fake daemon.

use std::process::Command;

use crate::support::fake_daemon::{BINARY, REPO_DIR};
use crate::support::installed_package::{package, start, unpack, validate_and_crawl};
use crate::support::package_files::{slim_binary, zip_entries};
use sha2::{Digest, Sha256};

#[test]
fn the_package_holds_file_entries_only_with_every_icon_and_requirements() {
    let dir = tempfile::tempdir().unwrap();
    let output = package(dir.path(), &["--no-aarch64"]);
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
        .arg("--no-aarch64")
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

/// Without the cross toolchain (here: no cross compiler on PATH), `package` names what is
/// missing and the ways on, and writes nothing; `--no-aarch64` builds the x86_64-only
/// package and says what it leaves out.
#[test]
fn without_the_cross_toolchain_the_package_says_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let slim = slim_binary(dir.path());
    let out = dir.path().join("x.difypkg");
    let run = |extra: &[&str]| {
        Command::new(BINARY)
            .args(["package", "--dir", REPO_DIR, "--out"])
            .arg(&out)
            .arg("--binary")
            .arg(&slim)
            .args(extra)
            .env("PATH", dir.path())
            .output()
            .unwrap()
    };
    let output = run(&[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    for needed in [
        "aarch64-linux-gnu-gcc",
        "scripts/install-aarch64-toolchain",
        "--aarch64 PATH",
        "--no-aarch64",
    ] {
        assert!(stderr.contains(needed), "{needed}: {stderr}");
    }
    assert!(!out.exists());

    let output = run(&["--no-aarch64"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("holds only the x86_64 binary"), "{stderr}");
    let names: Vec<String> = zip_entries(&out).into_iter().map(|e| e.0).collect();
    assert!(!names.iter().any(|n| n.contains("aarch64")), "{names:?}");
}

#[test]
fn installed_as_the_daemon_installs_it_the_plugin_serves_a_crawl() {
    let dir = tempfile::tempdir().unwrap();
    let output = package(dir.path(), &["--no-aarch64"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let plugin = unpack(dir.path());
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

    let mut command = Command::new(plugin.join(".venv/bin/python"));
    command
        .args(["-m", "main"])
        .current_dir(&plugin)
        .env("INSTALL_METHOD", "local");
    let daemon = start(command, dir.path());
    let pid = daemon.child.as_ref().unwrap().id();
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert!(
        exe.ends_with("bin/git-datasource-x86_64"),
        "PID {pid} runs {exe:?}, not our binary"
    );
    validate_and_crawl(daemon, dir.path());

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
        stderr.starts_with("plugin launcher: ")
            && stderr.contains("missing")
            && stderr.lines().count() == 1,
        "{stderr}"
    );
}
