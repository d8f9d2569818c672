//! A Dify datasource plugin that turns a Git repository into a knowledge base.

pub mod crawl;
pub mod crawl_command;
pub mod credentials;
pub mod handlers;
pub mod mirror;
pub mod sync_command;

/// The Git layer's settings are `GIT_DATASOURCE_*` variables (`GIT_DATASOURCE_CACHE_DIR`, …).
pub const GIT_ENV: git_remote::EnvVars = git_remote::EnvVars::new("GIT_DATASOURCE");
