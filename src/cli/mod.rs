//! The command line: `crawl` (the plugin's crawl from a terminal) and `sync` (a pipeline
//! knowledge base made to mirror a branch), and what they share: the repository arguments,
//! how to reach Dify, and the credentials and Git client a terminal run uses.

pub mod crawl;
pub mod sync;
pub mod sync_all;
pub mod sync_config;
pub mod sync_job;
mod sync_lock;
mod sync_report;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::crawl::CrawlError;
use crate::dify::knowledge::KnowledgeApi;
use crate::repository::credentials::Credentials;
use crate::repository::params::CrawlParams;
use crate::settings::Settings;
use crate::store::files::FileStore;
use crate::GIT_ENV;
use git_remote::{FetchSettings, GitClient, GitCredentials, RepoCache};

/// The repository and which of its files to sync (shared by `crawl` and `sync`).
#[derive(Debug, clap::Args)]
pub struct RepoArgs {
    /// A repository URL or a local path (local paths are allowed here).
    #[arg(required = true)]
    pub repo: Option<String>,
    #[arg(long, default_value = "main")]
    pub branch: String,
    /// Only files under this directory.
    #[arg(long, default_value = "")]
    pub subdir: String,
    /// Comma-separated extensions, e.g. md,txt.
    #[arg(long, default_value = "")]
    pub extensions: String,
    /// Comma-separated globs a path must match.
    #[arg(long, default_value = "")]
    pub include: String,
    /// Comma-separated globs of paths to leave out.
    #[arg(long, default_value = "")]
    pub exclude: String,
    /// Ignore what was synced before and deliver every file again.
    #[arg(long)]
    pub full: bool,
    /// Where sync state is kept (default: ~/.cache/git-datasource/state).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
}

impl RepoArgs {
    /// The plugin's parameters for these arguments.
    pub fn params(&self, knowledge_base: Option<&str>) -> Result<CrawlParams, CrawlError> {
        CrawlParams::from_json(Some(&serde_json::json!({
            "repo_url": self.repo.as_deref().unwrap_or_default(), "branch": self.branch, "subdir": self.subdir, "extensions": self.extensions,
            "include": self.include, "exclude": self.exclude, "sync_mode": if self.full { "full" } else { "incremental" },
            "knowledge_base_id": knowledge_base.unwrap_or_default(),
        })))
        .map_err(CrawlError::Params)
    }

    pub fn store(&self) -> FileStore {
        FileStore::new(
            self.state_dir
                .clone()
                .unwrap_or_else(|| user_cache_dir().join("state")),
        )
    }
}

/// How the command line reaches Dify's Knowledge API.
#[derive(Debug, clap::Args)]
pub struct DifyArgs {
    /// The Knowledge API's base URL.
    #[arg(
        long,
        env = "GIT_DATASOURCE_DIFY_API_URL",
        default_value = "http://localhost/v1"
    )]
    pub dify_api_url: String,
    /// A Knowledge API key (dataset-…). Prefer GIT_DATASOURCE_DIFY_API_KEY or
    /// --dify-api-key-file: an option's value shows in the process list.
    #[arg(long, env = "GIT_DATASOURCE_DIFY_API_KEY", hide_env_values = true)]
    pub dify_api_key: Option<String>,
    /// A file holding the Knowledge API key (it wins over --dify-api-key).
    #[arg(long, env = "GIT_DATASOURCE_DIFY_API_KEY_FILE", value_name = "FILE")]
    pub dify_api_key_file: Option<PathBuf>,
}

impl DifyArgs {
    /// The API client; `needed_by` names the option that needs a key.
    pub fn api(&self, needed_by: &str, settings: &Settings) -> Result<KnowledgeApi, CrawlError> {
        let key = match &self.dify_api_key_file {
            Some(file) => Some(read_secret_file(file, "--dify-api-key-file")?),
            None => self.dify_api_key.clone(),
        };
        match key {
            Some(key) if !key.trim().is_empty() => KnowledgeApi::new(&self.dify_api_url, &key)
                .map(|api| api.with_first_backoff(settings.dify_retry))
                .map_err(|problem| CrawlError::Params(vec![problem])),
            _ => Err(CrawlError::Params(vec![format!(
                "{needed_by} needs a Knowledge API key: GIT_DATASOURCE_DIFY_API_KEY, \
                 --dify-api-key-file FILE (or GIT_DATASOURCE_DIFY_API_KEY_FILE), or --dify-api-key"
            )])),
        }
    }
}

/// A secret kept in a file (trimmed); the error names the file and `what`, never its content.
fn read_secret_file(file: &Path, what: &str) -> Result<String, CrawlError> {
    std::fs::read_to_string(file)
        .map(|text| text.trim().to_string())
        .map_err(|e| {
            CrawlError::Params(vec![format!(
                "{what}: {} cannot be read ({})",
                file.display(),
                e.kind()
            )])
        })
}

/// A secret from the variable `name`, or from the file `name`_FILE names (which wins).
fn secret_env(name: &str) -> Result<String, CrawlError> {
    match std::env::var_os(format!("{name}_FILE")) {
        Some(file) => read_secret_file(Path::new(&file), &format!("{name}_FILE")),
        None => Ok(std::env::var(name).unwrap_or_default()),
    }
}

/// Git credentials from the environment (`GIT_DATASOURCE_TOKEN` or `…_TOKEN_FILE`,
/// `…_SSH_KEY_FILE`, `…_SSH_PASSPHRASE` or `…_SSH_PASSPHRASE_FILE`, …).
pub fn git_credentials() -> Result<Credentials, CrawlError> {
    Ok(Credentials {
        git: GitCredentials {
            access_token: secret_env("GIT_DATASOURCE_TOKEN")?,
            username: std::env::var("GIT_DATASOURCE_USERNAME").unwrap_or_default(),
            ssh_private_key: read_env_file("GIT_DATASOURCE_SSH_KEY_FILE"),
            ssh_passphrase: secret_env("GIT_DATASOURCE_SSH_PASSPHRASE")?,
            ssh_known_hosts: read_env_file("GIT_DATASOURCE_KNOWN_HOSTS_FILE"),
            ca_certificate: read_env_file("GIT_DATASOURCE_CA_FILE"),
        },
        ..Credentials::default()
    })
}

/// A Git client for the command line: local paths allowed, clones cached under the user's
/// cache directory unless `GIT_DATASOURCE_CACHE_DIR` says otherwise.
pub fn git_client() -> Arc<GitClient> {
    let cache = match GIT_ENV.get("CACHE_DIR") {
        Some(_) => RepoCache::from_env(GIT_ENV),
        None => RepoCache::with_env_bounds(user_cache_dir().join("repos"), GIT_ENV),
    };
    let settings = FetchSettings {
        allow_local: true,
        ..FetchSettings::from_env(GIT_ENV)
    };
    Arc::new(GitClient::new(cache, settings))
}

/// `$XDG_CACHE_HOME/git-datasource`, else `~/.cache/git-datasource`.
pub fn user_cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("git-datasource")
}

fn read_env_file(name: &str) -> String {
    std::env::var_os(name)
        .and_then(|path| std::fs::read_to_string(path).ok())
        .unwrap_or_default()
}
