//! App Git Sync's test support: the workspace's helpers (`test_support`), aimed at this
//! plugin, and fakes of Dify's console and OpenAPI.
#![allow(dead_code)]

pub mod app_scenario;
pub mod fake_console;
pub mod fake_openapi;

pub use test_support::{git_servers, keys, loopback_http, real_dify};

use test_support::fake_daemon::{Plugin, UnderTest};

/// The DSL of a workflow app with a Start node and an End node titled `end_title`, in DSL
/// `version`.
pub fn start_end_workflow(name: &str, end_title: &str, version: &str) -> String {
    format!(
        r#"app: {{description: '', icon: "\U0001F680", icon_background: '#FFEAD5', mode: workflow, name: {name}}}
dependencies: []
kind: app
version: {version}
workflow:
  conversation_variables: []
  environment_variables: []
  features: {{}}
  graph:
    edges:
    - {{data: {{sourceType: start, targetType: end}}, id: s-e, source: '1', sourceHandle: source, target: '2', targetHandle: target, type: custom}}
    nodes:
    - {{data: {{desc: '', title: Start, type: start, variables: []}}, id: '1', position: {{x: 80, y: 280}}, type: custom}}
    - {{data: {{desc: '', outputs: [], title: {end_title}, type: end}}, id: '2', position: {{x: 380, y: 280}}, type: custom}}
  rag_pipeline_variables: []
"#
    )
}

/// The plugin under test: App Git Sync.
pub struct AppGitSync;

impl UnderTest for AppGitSync {
    const PLUGIN: Plugin = PLUGIN;
}

pub const PLUGIN: Plugin = Plugin {
    binary: env!("CARGO_BIN_EXE_app-git-sync"),
    dir: env!("CARGO_MANIFEST_DIR"),
    files: &[
        "manifest.yaml",
        "provider/app_git_sync.yaml",
        "tools/export_apps.yaml",
        "tools/import_apps.yaml",
        "tools/sync_status.yaml",
        "tools/app_diff.yaml",
        "tools/app_history.yaml",
        "tools/lint_apps.yaml",
        "endpoints/git_push.yaml",
        "endpoints/push.yaml",
        "_assets/icon.svg",
    ],
};

/// The plugin's binary, directory and declaration files.
pub mod plugin_under_test {
    pub const BINARY: &str = super::PLUGIN.binary;
    pub const REPO_DIR: &str = super::PLUGIN.dir;
    pub const PLUGIN_FILES: &[&str] = super::PLUGIN.files;
}

/// The fake daemon, driving this plugin.
pub mod fake_daemon {
    pub type FakeDaemon = test_support::fake_daemon::FakeDaemon<super::AppGitSync>;
}

/// A package's files, with this plugin's binary.
pub mod package_files {
    pub use test_support::package_files::*;

    /// This plugin's test binary without its debug info.
    pub fn slim_binary(dir: &std::path::Path) -> std::path::PathBuf {
        test_support::package_files::slim_binary(super::PLUGIN.binary, dir)
    }
}
