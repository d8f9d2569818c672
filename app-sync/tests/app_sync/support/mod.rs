//! Test harness: the runtime's fake daemon and Git servers (shared with the datasource's
//! tests), and a fake of Dify's console API.
#![allow(dead_code)]

pub mod app_scenario;
pub mod fake_console;
#[path = "../../../../tests/support/fake_daemon.rs"]
pub mod fake_daemon;
pub mod fake_openapi;
#[path = "../../../../tests/support/git_servers.rs"]
pub mod git_servers;
#[path = "../../../../tests/support/keys.rs"]
pub mod keys;
#[path = "../../../../tests/support/loopback_http.rs"]
pub mod loopback_http;
#[path = "../../../../tests/support/package_files.rs"]
pub mod package_files;
#[path = "../../../../tests/support/real_dify.rs"]
pub mod real_dify;

/// The plugin the fake daemon starts: App Git Sync.
pub mod plugin_under_test {
    pub const BINARY: &str = env!("CARGO_BIN_EXE_app-git-sync");
    pub const REPO_DIR: &str = env!("CARGO_MANIFEST_DIR");

    /// The plugin's declaration files and icons.
    pub const PLUGIN_FILES: [&str; 8] = [
        "manifest.yaml",
        "provider/app_git_sync.yaml",
        "tools/export_apps.yaml",
        "tools/import_apps.yaml",
        "tools/sync_status.yaml",
        "tools/app_diff.yaml",
        "tools/app_history.yaml",
        "_assets/icon.svg",
    ];
}
