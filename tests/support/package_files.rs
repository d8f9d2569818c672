//! A plugin's package files in tests: its binary without debug info, and a zip's entries.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::plugin_under_test::BINARY;

/// This test binary without its debug info (an unoptimized build with it is over 50 MiB;
/// the release build is what ships).
pub fn slim_binary(dir: &Path) -> PathBuf {
    let slim = dir.join("plugin-binary");
    let status = Command::new("objcopy")
        .arg("--strip-debug")
        .arg(BINARY)
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
