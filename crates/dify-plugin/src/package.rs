//! A plugin's `package` command: the installable `.difypkg` (a zip of file entries only) with the
//! declarations, icons, the Python launcher and the native binaries, and the plugin's unique
//! identifier computed as the daemon computes it.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;

use crate::declaration::{PluginDeclaration, ASSETS_DIR};

/// The daemon's `MAX_PLUGIN_PACKAGE_SIZE` default, for the file and for its unpacked size.
pub const MAX_PACKAGE_BYTES: u64 = 50 * 1024 * 1024;
/// The daemon runs `python -m main`; this `main.py` replaces itself with the binary for the
/// machine (`bin/<name>-<arch>`). Nothing is installed from PyPI, so offline installs work.
const LAUNCHER: &[u8] = include_bytes!("../launcher/main.py");
const REQUIREMENTS: &[u8] = b"";

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("{0}")]
    Declaration(#[from] crate::declaration::Problems),
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PackageError + '_ {
    move |error| PackageError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// A binary for one architecture.
#[derive(Debug, Clone)]
pub struct ArchBinary {
    /// `x86_64` or `aarch64`.
    pub arch: &'static str,
    pub path: PathBuf,
}

#[derive(Debug)]
pub struct PackageReport {
    pub path: PathBuf,
    pub size: u64,
    pub unpacked_size: u64,
    pub checksum: String,
    pub identifier: String,
    pub binaries: Vec<(String, u64)>,
    pub entries: Vec<String>,
}

/// Builds the package from the plugin directory `dir` into `out` (default
/// `dir/dist/<name>-<version>.difypkg`).
pub fn build(
    dir: &Path,
    out: Option<&Path>,
    binaries: &[ArchBinary],
) -> Result<PackageReport, PackageError> {
    let plugin = PluginDeclaration::load(dir)?;
    if binaries.is_empty() {
        return Err(PackageError::Invalid("no binary to package".into()));
    }
    let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
    let mut add = |name: String, source: &Path| -> Result<(), PackageError> {
        let bytes = std::fs::read(source).map_err(io(source))?;
        entries.push((name, bytes));
        Ok(())
    };
    for file in plugin.declaration_files() {
        add(file.clone(), &dir.join(file))?;
    }
    for icon in plugin.icon_files() {
        add(
            format!("{ASSETS_DIR}/{icon}"),
            &dir.join(ASSETS_DIR).join(&icon),
        )?;
    }
    for doc in ["README.md", "PRIVACY.md"] {
        add(doc.to_string(), &dir.join(doc))?;
    }
    entries.push(("main.py".into(), LAUNCHER.to_vec()));
    entries.push(("requirements.txt".into(), REQUIREMENTS.to_vec()));
    let mut binary_sizes = Vec::new();
    for binary in binaries {
        let bytes = std::fs::read(&binary.path).map_err(io(&binary.path))?;
        check_elf(&bytes, binary)?;
        let name = format!("bin/{}-{}", plugin.binary_name(), binary.arch);
        binary_sizes.push((name.clone(), bytes.len() as u64));
        entries.push((name, bytes));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let unpacked_size: u64 = entries.iter().map(|(_, b)| b.len() as u64).sum();
    if unpacked_size > MAX_PACKAGE_BYTES {
        return Err(PackageError::Invalid(format!(
            "the package would unpack to {unpacked_size} bytes, over the daemon's limit of {MAX_PACKAGE_BYTES} \
             (MAX_PLUGIN_PACKAGE_SIZE); build the binaries with --release"
        )));
    }
    let checksum = checksum(&entries);
    let identifier = format!(
        "{}/{}:{}@{checksum}",
        plugin.author(),
        plugin.name(),
        plugin.version()
    );
    let path = match out {
        Some(out) => out.to_path_buf(),
        None => dir
            .join("dist")
            .join(format!("{}-{}.difypkg", plugin.name(), plugin.version())),
    };
    let bytes = zip_entries(&entries)?;
    if bytes.len() as u64 > MAX_PACKAGE_BYTES {
        return Err(PackageError::Invalid(format!(
            "the package is {} bytes, over the daemon's limit of {MAX_PACKAGE_BYTES}",
            bytes.len()
        )));
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let partial = path.with_extension("partial");
    std::fs::write(&partial, &bytes).map_err(io(&partial))?;
    std::fs::rename(&partial, &path).map_err(io(&path))?;
    Ok(PackageReport {
        path,
        size: bytes.len() as u64,
        unpacked_size,
        checksum,
        identifier,
        binaries: binary_sizes,
        entries: entries.into_iter().map(|(name, _)| name).collect(),
    })
}

/// The daemon's package checksum (`decoder.CalculateChecksum`): entries sorted by path, each
/// contributing sha256(path) then sha256(content); the hex sha256 of all that.
pub fn checksum(entries: &[(String, Vec<u8>)]) -> String {
    let mut sorted: Vec<&(String, Vec<u8>)> = entries.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut all = Sha256::new();
    for (path, content) in sorted {
        all.update(Sha256::digest(path.as_bytes()));
        all.update(Sha256::digest(content));
    }
    hex::encode(all.finalize())
}

/// A zip of file entries only: the daemon's reader fails on directory entries.
fn zip_entries(entries: &[(String, Vec<u8>)]) -> Result<Vec<u8>, PackageError> {
    let zip_error =
        |e: zip::result::ZipError| PackageError::Invalid(format!("writing the zip failed: {e}"));
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o644);
    for (name, content) in entries {
        writer
            .start_file(name.as_str(), options)
            .map_err(zip_error)?;
        writer
            .write_all(content)
            .map_err(|e| PackageError::Invalid(format!("writing {name}: {e}")))?;
    }
    Ok(writer.finish().map_err(zip_error)?.into_inner())
}

/// Refuses a file that is not a Linux executable for the architecture it is packaged as.
fn check_elf(bytes: &[u8], binary: &ArchBinary) -> Result<(), PackageError> {
    let machine = match binary.arch {
        "x86_64" => 62u16,
        "aarch64" => 183u16,
        other => {
            return Err(PackageError::Invalid(format!(
                "unknown architecture {other}"
            )))
        }
    };
    let is_elf = bytes.len() > 20 && bytes.starts_with(b"\x7fELF");
    let found = is_elf.then(|| u16::from_le_bytes([bytes[18], bytes[19]]));
    if found != Some(machine) {
        return Err(PackageError::Invalid(format!(
            "{} is not a Linux {} executable",
            binary.path.display(),
            binary.arch
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_follows_the_daemon() {
        let entries = vec![
            ("b.txt".to_string(), b"B".to_vec()),
            ("a.txt".to_string(), b"A".to_vec()),
        ];
        let mut expected = Vec::new();
        for (path, content) in [("a.txt", b"A"), ("b.txt", b"B")] {
            expected.extend_from_slice(&Sha256::digest(path.as_bytes()));
            expected.extend_from_slice(&Sha256::digest(content));
        }
        assert_eq!(checksum(&entries), hex::encode(Sha256::digest(&expected)));
    }
}
