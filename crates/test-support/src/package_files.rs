//! A plugin's package files in tests: its binary without debug info, a zip's entries, the
//! package unpacked as the daemon unpacks it, and a command that starts it as the daemon does.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A test build of `binary` without its debug info (an unoptimized build with it is over
/// 50 MiB; the release build is what ships).
pub fn slim_binary(binary: &str, dir: &Path) -> PathBuf {
    let slim = dir.join("plugin-binary");
    let status = Command::new("objcopy")
        .arg("--strip-debug")
        .arg(binary)
        .arg(&slim)
        .status()
        .expect("objcopy runs");
    assert!(status.success());
    slim
}

/// `(name, is a directory, bytes)` of every entry of a zip.
pub fn zip_entries(path: &Path) -> Vec<(String, bool, Vec<u8>)> {
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

/// Unpacks the package `difypkg` into `plugin` as the daemon's `ExtractTo` does: every file
/// 0644 (the launcher makes its binary executable).
pub fn unpack_package(difypkg: &Path, plugin: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for (name, _, bytes) in zip_entries(difypkg) {
        let target = plugin.join(&name);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(&target, bytes).unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
}

/// An executable at `at` that starts the unpacked `plugin` as the daemon does: its Python
/// launcher, which replaces itself with the binary (for the relay, which runs one program).
pub fn launcher_command(plugin: &Path, at: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(
        at,
        format!("#!/bin/sh\nexec python3 {}/main.py\n", plugin.display()),
    )
    .unwrap();
    std::fs::set_permissions(at, std::fs::Permissions::from_mode(0o755)).unwrap();
    at.to_path_buf()
}
