//! Real key material made with the system's ssh-keygen and openssl.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::git_servers::run;

pub fn ssh_keygen(dir: &Path, name: &str, args: &[&str], passphrase: &str) -> (String, String) {
    let path: PathBuf = dir.join(name);
    run(Command::new("ssh-keygen")
        .args(args)
        .args(["-q", "-N", passphrase, "-C", "test@example", "-f"])
        .arg(&path));
    let private = std::fs::read_to_string(&path).unwrap();
    let public = std::fs::read_to_string(path.with_extension("pub")).unwrap();
    (private, public)
}

/// A self-signed CA certificate in PEM.
pub fn ca_certificate(dir: &Path) -> String {
    crate::git_servers::TestCa::create(dir).ca_pem
}
