//! A Dify datasource plugin that turns a Git repository into a knowledge base.
//!
//! Floors, lowest first (see ARCHITECTURE.md); a module imports only from its own floor or
//! below:
//! 1. [`repository`] (the configured repository and its document names), [`store`] (what is
//!    remembered), [`dify`] (Dify's Knowledge and pipeline API);
//! 2. [`mirror`]: one configuration's documents in one knowledge base;
//! 3. [`crawl`]: fetch → ledger → read and deliver → record;
//! 4. [`handlers`] (the plugin's requests), [`cli`] (the command line) and [`settings`]
//!    (every `GIT_DATASOURCE_*` setting, read once and handed down).

pub mod browse;
pub mod cli;
pub mod crawl;
pub mod dify;
pub mod handlers;
pub mod mirror;
pub mod repository;
pub mod settings;
pub mod store;

/// The Git layer's settings are `GIT_DATASOURCE_*` variables (`GIT_DATASOURCE_CACHE_DIR`, …).
pub const GIT_ENV: git_remote::EnvVars = git_remote::EnvVars::new("GIT_DATASOURCE");
