//! The datasource's integration tests, one binary (one link, and one build of the test
//! support, instead of one per file): the Git client against real servers, the crawl through
//! the fake daemon and the real binary, mirroring and `sync` against the fake Knowledge API,
//! state faults, the protocol over stdio and TCP, the package as the daemon installs it (on
//! x86_64 and under aarch64 emulation), and the real Dify. Tests that start the real Dify
//! take turns (`support::real_dify`).

#[path = "../support/mod.rs"]
mod support;

mod aarch64_emulated;
mod check_command;
mod crawl_budget;
mod crawl_command;
mod crawl_daemon;
mod git_client;
mod install_package;
mod mirror;
mod mirror_daemon;
mod mirror_real_dify;
mod protocol_stdio;
mod protocol_tcp;
mod session_runtime;
mod state_faults;
mod sync;
mod ui_path_real_dify;
