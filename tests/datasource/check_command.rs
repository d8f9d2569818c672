//! `git-datasource check`: the plugin's own files pass, and a broken copy reports every
//! problem at once, by file and field.

use std::path::Path;
use std::process::Command;

use crate::support::fake_daemon::{copy_plugin, BINARY, REPO_DIR};

fn edit(dir: &Path, file: &str, from: &str, to: &str) {
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{file} has no {from:?}");
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn the_plugins_own_files_pass() {
    let output = Command::new(BINARY)
        .args(["check", "--dir", REPO_DIR])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("dify-community/git_datasource"), "{stdout}");
}

#[test]
fn every_problem_is_reported_with_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    copy_plugin(dir.path());
    let d = dir.path();
    edit(
        d,
        "manifest.yaml",
        "author: dify-community",
        "author: Dify-Community",
    );
    edit(d, "manifest.yaml", "version: 0.1.0", "version: 0.1");
    edit(
        d,
        "manifest.yaml",
        "created_at: 2026-11-22T00:00:00Z",
        "created_at: 2026-11-22T00:00:00",
    );
    edit(d, "manifest.yaml", "size: 104857600", "size: 12");
    edit(d, "manifest.yaml", "  - rag", "  - git");
    edit(
        d,
        "manifest.yaml",
        "plugins:\n",
        "plugins:\n  tools:\n    - provider/tool.yaml\n",
    );
    edit(
        d,
        "manifest.yaml",
        "icon_dark: icon-dark.svg",
        "icon_dark: missing.svg",
    );
    edit(
        d,
        "provider/git_datasource.yaml",
        "type: text-input",
        "type: textarea",
    );
    edit(
        d,
        "provider/git_datasource.yaml",
        "provider_type: website_crawl",
        "provider_type: crawler",
    );
    edit(
        d,
        "datasources/git_datasource.yaml",
        "  - name: subdir\n    type: string",
        "  - name: subdir\n    type: file\n    scope: all",
    );
    edit(
        d,
        "datasources/git_datasource.yaml",
        "    description:\n      en_US: Branch to read",
        "    description:\n      de_DE: Branch to read",
    );
    edit(
        d,
        "datasources/git_datasource.yaml",
        "default: incremental",
        "default: sometimes",
    );

    let output = Command::new(BINARY)
        .args(["check", "--dir"])
        .arg(d)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let expected = [
        "manifest.yaml: author: \"Dify-Community\" must match ^[a-z0-9_-]{1,64}$",
        "manifest.yaml: version: must be text, not a number (quote it in the YAML)",
        "manifest.yaml: created_at: must be an RFC 3339 time with a zone",
        "manifest.yaml: resource.permission.storage.size: must be a number of bytes from 1024",
        "manifest.yaml: tags[0]: \"git\" is not one of",
        "manifest.yaml: plugins.tools: a datasource plugin cannot also declare other plugin kinds",
        "manifest.yaml: icon_dark: icon \"missing.svg\" is not a file in _assets/",
        "provider/git_datasource.yaml: credentials_schema[1].type: \"textarea\" is not one of",
        "provider/git_datasource.yaml: provider_type: \"crawler\" is not one of",
        "datasources/git_datasource.yaml: parameters[2].type: \"file\" is not one of",
        "datasources/git_datasource.yaml: parameters[2].scope: must not be set",
        "datasources/git_datasource.yaml: parameters[1].description.en_US: is required",
        "datasources/git_datasource.yaml: parameters[1].description.de_DE: unknown locale",
        "datasources/git_datasource.yaml: parameters[6].default: \"sometimes\" is not one of the options",
    ];
    for line in expected {
        assert!(stderr.contains(line), "missing {line:?} in:\n{stderr}");
    }
    assert!(
        stderr.contains(&format!("{} problem(s)", expected.len())),
        "{stderr}"
    );
}

#[test]
fn unreadable_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    copy_plugin(dir.path());
    std::fs::remove_file(dir.path().join("datasources/git_datasource.yaml")).unwrap();
    std::fs::write(
        dir.path().join("provider/git_datasource.yaml"),
        "identity: [unclosed",
    )
    .unwrap();
    let output = Command::new(BINARY)
        .args(["check", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("provider/git_datasource.yaml: not valid YAML"),
        "{stderr}"
    );
}
