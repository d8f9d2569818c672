//! The datasource's integration tests, one binary (one link, and one build of the test
//! support, instead of one per file): the crawl through the fake daemon and the real binary,
//! mirroring and `sync` against the fake Knowledge API, state faults, the plugin's protocol
//! over stdio and TCP, the package as the daemon installs it (on x86_64 and under aarch64
//! emulation), and the real Dify. The Git client's tests are `git-remote`'s, the runtime's
//! `dify-plugin`'s. Tests that start the real Dify take turns (`support::real_dify`).

mod aarch64_emulated;
mod architecture;
mod browse_daemon;
mod browse_real_dify;
mod check_command;
mod crawl_budget;
mod crawl_command;
mod crawl_daemon;
mod git_metadata;
mod install_package;
mod mirror;
mod mirror_daemon;
mod mirror_real_dify;
mod protocol_stdio;
mod protocol_tcp;
mod state_faults;
mod support;
mod sync;
mod sync_config;
mod ui_path_real_dify;
