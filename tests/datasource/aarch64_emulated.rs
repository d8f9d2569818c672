//! The aarch64 (arm64) binary, built by `git-datasource package` itself, proven under qemu
//! user-mode emulation: started straight under `qemu-aarch64-static` by the fake daemon, and
//! installed as the daemon installs it, started by an aarch64 Python through the launcher
//! (`main.py` sees `uname -m` = aarch64 and execs the aarch64 binary, which the kernel hands
//! to qemu through binfmt_misc, as Docker Desktop does). Each answers a heartbeat, a
//! credentials validation and a crawl with its final `completed` message.
//!
//! Needs `scripts/install-aarch64-toolchain` (run by `scripts/install-test-deps`). qemu runs
//! the binary without `-L /usr/aarch64-linux-gnu`: with that prefix the loader comes from the
//! cross sysroot and the C library from the multiarch one, and the first thread spins.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::support::installed_package::{package, start, unpack, validate_and_crawl};
use crate::support::package_files::zip_entries;

const QEMU: &str = "qemu-aarch64-static";
const PYTHON: &str = "/opt/aarch64-python/bin/python3.11";
const BINFMT: &str = "/proc/sys/fs/binfmt_misc/qemu-aarch64";

fn needs(what: &str, ok: bool) {
    assert!(
        ok,
        "{what} is missing: run scripts/install-aarch64-toolchain (as root)"
    );
}

#[test]
fn the_aarch64_binary_serves_the_daemon_under_emulation() {
    needs(QEMU, Command::new(QEMU).arg("--version").output().is_ok());
    needs(PYTHON, Path::new(PYTHON).exists());
    needs(
        "qemu-aarch64 registered with binfmt_misc",
        std::fs::read_to_string(BINFMT).is_ok_and(|s| s.starts_with("enabled")),
    );

    // `package` builds the aarch64 binary itself and packs both.
    let dir = tempfile::tempdir().unwrap();
    let output = package(dir.path(), &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("bin/git-datasource-x86_64 ("), "{stdout}");
    assert!(stdout.contains("bin/git-datasource-aarch64 ("), "{stdout}");
    let entries = zip_entries(&dir.path().join("git_datasource.difypkg"));
    let aarch64 = &entries
        .iter()
        .find(|(name, _, _)| name == "bin/git-datasource-aarch64")
        .unwrap()
        .2;
    assert_eq!(
        u16::from_le_bytes([aarch64[18], aarch64[19]]),
        183,
        "EM_AARCH64"
    );
    let plugin = unpack(dir.path());

    // Straight under qemu, in the plugin's directory as the daemon starts it. Like the
    // kernel, qemu runs only an executable file: the launcher sets the bit the daemon's
    // unpacking leaves off.
    let binary = plugin.join("bin/git-datasource-aarch64");
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
    let straight = dir.path().join("straight");
    std::fs::create_dir(&straight).unwrap();
    let mut command = Command::new(QEMU);
    command.arg(&binary).current_dir(&plugin);
    validate_and_crawl(start(command, &straight), &straight);
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o644)).unwrap();

    // Installed: an aarch64 Python runs the launcher, which picks the binary by `uname -m`.
    let machine = Command::new(PYTHON)
        .args(["-c", "import platform; print(platform.machine())"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&machine.stdout).trim(), "aarch64");
    let launched = dir.path().join("launched");
    std::fs::create_dir(&launched).unwrap();
    let mut command = Command::new(PYTHON);
    command
        .args(["-m", "main"])
        .current_dir(&plugin)
        .env("INSTALL_METHOD", "local");
    let daemon = start(command, &launched);
    let pid = daemon.child.as_ref().unwrap().id();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    assert!(
        cmdline.contains("bin/git-datasource-aarch64"),
        "PID {pid} runs {cmdline:?}, not the aarch64 binary"
    );
    validate_and_crawl(daemon, &launched);
}
