//! App Git Sync: a Dify tool plugin (and command line) that versions Dify apps and workflows
//! in Git through Dify's console API.

pub mod console;
pub mod dsl;
pub mod environment;
pub mod handler;
pub mod repository;
pub mod review;
pub mod secrets;
pub mod settings;
pub mod state;
pub mod sync;
pub mod webhook;

/// The Git layer's settings are `APP_GIT_SYNC_*` variables (`APP_GIT_SYNC_CACHE_DIR`, …).
pub const GIT_ENV: git_remote::EnvVars = git_remote::EnvVars::new("APP_GIT_SYNC");

/// Fetch settings for app repositories: full history (for `app_history`) unless
/// `APP_GIT_SYNC_FETCH_DEPTH` says otherwise.
pub fn fetch_settings() -> git_remote::FetchSettings {
    git_remote::FetchSettings {
        depth: GIT_ENV.number("FETCH_DEPTH").unwrap_or(0),
        ..git_remote::FetchSettings::from_env(GIT_ENV)
    }
}
