//! Test harness: a fake Dify plugin daemon that speaks the real wire format.
#![allow(dead_code)]

pub mod crawl_harness;
pub mod daemon_rules;
pub mod fake_daemon;
pub mod git_servers;
pub mod installed_package;
pub mod keys;
pub mod knowledge_api;
pub mod mirror_scenario;
