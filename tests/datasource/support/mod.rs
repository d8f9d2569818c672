//! The datasource's test support: the workspace's helpers (`test_support`), aimed at this
//! plugin, and the harnesses only the datasource needs (the crawl in-process, the mirror
//! scenarios, the installed package).
#![allow(dead_code, unused_imports)]

pub mod browse_requests;
pub mod crawl_harness;
pub mod installed_package;
pub mod mirror_scenario;
pub mod web_app;

pub use test_support::{
    daemon_rules, git_servers, imported_repo, keys, knowledge_api, loopback_http, real_dify,
};

use test_support::fake_daemon::{Plugin, UnderTest};

/// The plugin under test: the datasource.
pub struct Datasource;

impl UnderTest for Datasource {
    const PLUGIN: Plugin = PLUGIN;
}

pub const PLUGIN: Plugin = Plugin {
    binary: env!("CARGO_BIN_EXE_git-datasource"),
    dir: env!("CARGO_MANIFEST_DIR"),
    files: &[
        "manifest.yaml",
        "provider/git_datasource.yaml",
        "datasources/git_datasource.yaml",
        "_assets/icon.svg",
        "_assets/icon-dark.svg",
    ],
};

/// The fake daemon, driving this plugin.
pub mod fake_daemon {
    pub use test_support::fake_daemon::*;

    pub type FakeDaemon = test_support::fake_daemon::FakeDaemon<super::Datasource>;

    pub const BINARY: &str = super::PLUGIN.binary;
    pub const REPO_DIR: &str = super::PLUGIN.dir;

    /// Copies the plugin's own files into `dir`, to run or check a modified copy there.
    pub fn copy_plugin(dir: &std::path::Path) {
        super::PLUGIN.copy_to(dir);
    }
}

/// A package's files, with this plugin's binary.
pub mod package_files {
    pub use test_support::package_files::*;

    /// This plugin's test binary without its debug info.
    pub fn slim_binary(dir: &std::path::Path) -> std::path::PathBuf {
        test_support::package_files::slim_binary(super::PLUGIN.binary, dir)
    }
}
