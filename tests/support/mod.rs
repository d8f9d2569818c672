//! Test harness: a fake Dify plugin daemon that speaks the real wire format.
#![allow(dead_code)]

pub mod crawl_harness;
pub mod daemon_rules;
pub mod fake_daemon;
pub mod git_servers;
pub mod installed_package;
pub mod keys;
pub mod knowledge_api;
pub mod loopback_http;
pub mod mirror_scenario;
pub mod package_files;
pub mod real_dify;

/// The plugin the fake daemon starts: the datasource.
pub mod plugin_under_test {
    pub const BINARY: &str = env!("CARGO_BIN_EXE_git-datasource");
    pub const REPO_DIR: &str = env!("CARGO_MANIFEST_DIR");

    /// The plugin's declaration files and icons.
    pub const PLUGIN_FILES: [&str; 5] = [
        "manifest.yaml",
        "provider/git_datasource.yaml",
        "datasources/git_datasource.yaml",
        "_assets/icon.svg",
        "_assets/icon-dark.svg",
    ];
}
