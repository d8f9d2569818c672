//! App Git Sync's test support: the workspace's helpers (`test_support`), aimed at this
//! plugin, and fakes of Dify's console and OpenAPI.
#![allow(dead_code)]

pub mod app_scenario;
pub mod fake_console;
pub mod fake_openapi;

pub use test_support::{git_servers, keys, loopback_http, real_dify};

use test_support::fake_daemon::{Plugin, UnderTest};

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
