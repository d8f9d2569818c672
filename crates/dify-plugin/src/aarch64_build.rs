//! Building the aarch64 (arm64) Linux binary on an x86_64 Linux machine, for the package:
//! a Rust compiler with the aarch64 standard library (rustup's `aarch64-unknown-linux-gnu`
//! target, or Debian's `rustc-web` with `libstd-rust-web-dev:arm64`) and GNU's aarch64 cross
//! compiler, which links the binary and builds the vendored C libraries (libgit2, OpenSSL).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub const TARGET: &str = "aarch64-unknown-linux-gnu";
const LINKER: &str = "aarch64-linux-gnu-gcc";
const AR: &str = "aarch64-linux-gnu-ar";

/// A Rust toolchain that can build for aarch64.
#[derive(Debug, Clone)]
pub struct Toolchain {
    pub cargo: PathBuf,
    pub rustc: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(
        "cannot build the aarch64 binary: {} missing. Install it with scripts/install-aarch64-toolchain \
         (Debian 12, as root), pass --aarch64 PATH with a binary built elsewhere, or --no-aarch64 \
         for a package that runs on x86_64 Dify hosts only",
        .0.join(" and ")
    )]
    Missing(Vec<String>),
    #[error("the aarch64 build failed: {0}")]
    Failed(String),
}

/// The toolchain to build with: rustup's when it has the aarch64 target, else Debian's.
pub fn find() -> Result<Toolchain, BuildError> {
    let mut missing = Vec::new();
    if !runs(Command::new(LINKER).arg("--version")) {
        missing.push(format!(
            "the cross compiler {LINKER} (gcc-aarch64-linux-gnu, libc6-dev-arm64-cross)"
        ));
    }
    let toolchain = [("cargo", "rustc"), ("/usr/bin/cargo", "/usr/bin/rustc")]
        .into_iter()
        .map(|(cargo, rustc)| Toolchain {
            cargo: cargo.into(),
            rustc: rustc.into(),
        })
        .find(|t| has_aarch64_std(&t.rustc) && runs(Command::new(&t.cargo).arg("--version")));
    if toolchain.is_none() {
        missing.push(
            "a Rust standard library for aarch64 (rustup target add aarch64-unknown-linux-gnu, \
             or Debian's rustc-web, cargo-web and libstd-rust-web-dev:arm64)"
                .into(),
        );
    }
    match toolchain {
        Some(toolchain) if missing.is_empty() => Ok(toolchain),
        _ => Err(BuildError::Missing(missing)),
    }
}

/// Builds the binary `bin` of the crate at `source` into `target/aarch64` of its workspace
/// (a directory of its own, since the compiler may differ from the one of the x86_64 build);
/// returns its path. Cargo's progress goes to this process's stderr.
pub fn build(toolchain: &Toolchain, source: &Path, bin: &str) -> Result<PathBuf, BuildError> {
    let manifest = source.join("Cargo.toml");
    if !manifest.is_file() {
        return Err(BuildError::Failed(format!(
            "{} has no Cargo.toml to build from",
            source.display()
        )));
    }
    let target_dir = workspace_root(toolchain, &manifest)?
        .join("target")
        .join("aarch64");
    let status = Command::new(&toolchain.cargo)
        .args(["build", "--release", "--locked", "--target", TARGET])
        .args(["--bin", bin, "--manifest-path"])
        .arg(&manifest)
        .env("RUSTC", &toolchain.rustc)
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER", LINKER)
        .env("CC_aarch64_unknown_linux_gnu", LINKER)
        .env("AR_aarch64_unknown_linux_gnu", AR)
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .status()
        .map_err(|e| BuildError::Failed(format!("{}: {e}", toolchain.cargo.display())))?;
    if !status.success() {
        return Err(BuildError::Failed(format!(
            "{} build exited with {status}",
            toolchain.cargo.display()
        )));
    }
    let binary = target_dir.join(TARGET).join("release").join(bin);
    match binary.is_file() {
        true => Ok(binary),
        false => Err(BuildError::Failed(format!(
            "{} is missing after the build",
            binary.display()
        ))),
    }
}

/// The directory of the workspace `manifest` belongs to (one shared target directory).
fn workspace_root(toolchain: &Toolchain, manifest: &Path) -> Result<PathBuf, BuildError> {
    let output = Command::new(&toolchain.cargo)
        .args(["locate-project", "--workspace", "--message-format", "plain"])
        .arg("--manifest-path")
        .arg(manifest)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| BuildError::Failed(format!("{}: {e}", toolchain.cargo.display())))?;
    let located = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    match (output.status.success(), located.parent()) {
        (true, Some(root)) => Ok(root.to_path_buf()),
        _ => Err(BuildError::Failed(format!(
            "cargo cannot find the workspace of {}",
            manifest.display()
        ))),
    }
}

fn runs(command: &mut Command) -> bool {
    command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether `rustc` has the aarch64 standard library installed.
fn has_aarch64_std(rustc: &Path) -> bool {
    let Ok(output) = Command::new(rustc)
        .args(["--print", "target-libdir", "--target", TARGET])
        .stderr(Stdio::null())
        .output()
    else {
        return false;
    };
    let dir = String::from_utf8_lossy(&output.stdout).trim().to_string();
    output.status.success()
        && std::fs::read_dir(dir).is_ok_and(|entries| {
            entries.flatten().any(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.starts_with("libstd-") && name.ends_with(".rlib")
            })
        })
}
