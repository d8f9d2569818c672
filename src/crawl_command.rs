//! `git-datasource crawl`: the plugin's crawl from a terminal, with state in files, a
//! progress bar, and a summary (or the documents as JSON lines).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressStyle};

use crate::crawl::params::CrawlParams;
use crate::crawl::shorten;
use crate::crawl::state::{StateError, StateStore};
use crate::crawl::{result_budget, Crawl, CrawlError, CrawlSettings, CrawlSink, RunSummary};
use crate::credentials::Credentials;
use crate::mirror::api::KnowledgeApi;
use crate::mirror::{cleanup, Mirror};
use dify_plugin::protocol::stdio;
use git_remote::{FetchSettings, GitClient, GitCredentials, RepoCache};

use crate::GIT_ENV;

/// The repository and which of its files to sync (shared by `crawl` and `sync`).
#[derive(Debug, clap::Args)]
pub struct RepoArgs {
    /// A repository URL or a local path (local paths are allowed here).
    pub repo: String,
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
            "repo_url": self.repo, "branch": self.branch, "subdir": self.subdir, "extensions": self.extensions,
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
    pub fn api(&self, needed_by: &str) -> Result<KnowledgeApi, CrawlError> {
        let key = match &self.dify_api_key_file {
            Some(file) => Some(read_secret_file(file, "--dify-api-key-file")?),
            None => self.dify_api_key.clone(),
        };
        match key {
            Some(key) if !key.trim().is_empty() => KnowledgeApi::new(&self.dify_api_url, &key)
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

/// Crawl a repository from the terminal, exactly as the plugin does, with sync state in
/// files: the first run delivers every text file, later runs what changed.
#[derive(Debug, clap::Args)]
pub struct CrawlCommand {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Print the delivered documents as JSON lines on stdout (the summary goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Mirror into this knowledge base (its id, or its URL): offer only what it lacks and
    /// delete its stale documents. Needs --dify-api-key.
    #[arg(long, value_name = "ID")]
    pub knowledge_base: Option<String>,
    #[command(flatten)]
    pub dify: DifyArgs,
}

/// `$XDG_CACHE_HOME/git-datasource`, else `~/.cache/git-datasource`.
pub fn user_cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("git-datasource")
}

impl CrawlCommand {
    pub async fn run(&self) -> Result<RunSummary, CrawlError> {
        let params = self.repo.params(self.knowledge_base.as_deref())?;
        let mirror = match &params.knowledge_base_id {
            Some(dataset) => Some(Mirror {
                api: self.dify.api("--knowledge-base")?,
                dataset: dataset.clone(),
                memory: None,
            }),
            None => None,
        };
        let credentials = git_credentials()?;
        let store = self.repo.store();
        let sink = TerminalSink::new(self.json);
        let crawl_settings = CrawlSettings::from_env();
        let crawl = Crawl {
            params: &params,
            credentials: &credentials,
            store: &store,
            sink: &sink,
            client: git_client(),
            settings: &crawl_settings,
            mirror: mirror.as_ref(),
        };
        let summary = crawl.run().await;
        sink.bar.finish_and_clear();
        let mut summary = summary?;
        if let (Some(mirror), Some(outcome)) = (&mirror, summary.mirror.as_mut()) {
            // No background watcher here: delete what can go now; the next run does the rest.
            let deletions = std::mem::take(&mut outcome.plan.delete);
            outcome.cleanup =
                cleanup::delete_all(&mirror.api, &mirror.dataset, deletions, &mut outcome.record)
                    .await;
            mirror
                .remember(&store, &summary.config_hash, &mut outcome.record)
                .await;
        }
        Ok(summary)
    }
}

fn read_env_file(name: &str) -> String {
    std::env::var_os(name)
        .and_then(|path| std::fs::read_to_string(path).ok())
        .unwrap_or_default()
}

/// The summary a person reads at the end of a run.
pub fn describe(summary: &RunSummary) -> String {
    let mut out = String::new();
    let short = &summary.commit[..summary.commit.len().min(12)];
    if summary.unchanged {
        out.push_str(&format!(
            "commit {short}: unchanged since the last run, nothing to deliver\n"
        ));
    } else {
        out.push_str(&format!(
            "commit {short}: delivered {} of {} changed files ({} bytes){}\n",
            summary.delivered,
            summary.total,
            summary.bytes,
            if summary.complete {
                ""
            } else {
                "; the rest continues on the next run"
            }
        ));
    }
    if !summary.skipped.is_empty() {
        let reasons: Vec<String> = summary
            .skipped
            .iter()
            .map(|(reason, n)| format!("{reason} {n}"))
            .collect();
        out.push_str(&format!("skipped: {}\n", reasons.join(", ")));
        for line in summary.skipped_lines().iter().take(20) {
            out.push_str(&format!("  {line}\n"));
        }
        if summary.skipped_files.len() > 20 {
            out.push_str(&format!(
                "  and {} more\n",
                summary.skipped_files.len() - 20
            ));
        }
    }
    if !summary.failed.is_empty() {
        out.push_str(&format!(
            "failed (retried next run): {}\n",
            summary.failed.join(", ")
        ));
    }
    if !summary.deleted.is_empty() {
        out.push_str(&format!(
            "deleted since the last run: {}\n",
            summary.deleted.join(", ")
        ));
    }
    if !summary.renamed.is_empty() {
        out.push_str(&format!(
            "renamed since the last run: {}\n",
            summary.renamed_lines().join(", ")
        ));
    }
    if let Some(mirror) = &summary.mirror {
        out.push_str(&describe_mirror(mirror));
    }
    out.push_str(&format!(
        "time: fetch {:.2?}, plan {:.2?}, read {:.2?}, record {:.2?}\n",
        summary.fetch_time, summary.plan_time, summary.read_time, summary.record_time
    ));
    out
}

fn describe_mirror(mirror: &crate::mirror::MirrorOutcome) -> String {
    let plan = &mirror.plan;
    let report = &mirror.cleanup;
    let mut out = format!(
        "knowledge base: {} documents of this repository; kept {}, offered {}, deleted {}, \
         still indexing {} ({} API requests to list, {:.2?})\n",
        plan.ours,
        plan.kept,
        mirror.offered.len(),
        report.deleted.len(),
        plan.indexing,
        mirror.requests,
        mirror.listing_time,
    );
    let paths = |list: &[crate::mirror::plan::Deletion]| {
        let paths: Vec<&str> = list.iter().map(|d| d.path.as_str()).collect();
        shorten(&paths)
    };
    if !report.deleted.is_empty() {
        out.push_str(&format!("deleted: {}\n", paths(&report.deleted)));
    }
    if !plan.held.is_empty() {
        out.push_str(&format!(
            "NOT deleted: {} documents of files gone from the branch, more than half of this \
             repository's searchable documents (a wrong branch or filter?); run with --full to allow it: {}\n",
            plan.held.len(),
            paths(&plan.held)
        ));
    }
    if !report.archived.is_empty() {
        out.push_str(&format!(
            "archived, left alone: {}\n",
            paths(&report.archived)
        ));
    }
    if !report.failed.is_empty() {
        let failed: Vec<crate::mirror::plan::Deletion> =
            report.failed.iter().map(|(d, _)| d.clone()).collect();
        out.push_str(&format!(
            "delete failed (retried next run): {}\n",
            paths(&failed)
        ));
    }
    out
}

/// Sync state as files, one per key, in a directory.
pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    pub fn new(dir: PathBuf) -> Self {
        FileStore { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, key: &str) -> PathBuf {
        let name: String = key
            .chars()
            .map(|c| match c {
                '/' => "%2F".to_string(),
                '%' => "%25".to_string(),
                c => c.to_string(),
            })
            .collect();
        self.dir.join(name)
    }
}

fn state_error(path: &Path, error: std::io::Error) -> StateError {
    StateError(format!("{}: {error}", path.display()))
}

impl StateStore for FileStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        let path = self.path(key);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(state_error(&path, error)),
        }
    }

    async fn set(&self, key: &str, value: &[u8]) -> Result<(), StateError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| state_error(&self.dir, e))?;
        let path = self.path(key);
        let temporary = path.with_extension("partial");
        std::fs::write(&temporary, value).map_err(|e| state_error(&temporary, e))?;
        std::fs::rename(&temporary, &path).map_err(|e| state_error(&path, e))
    }

    async fn del(&self, key: &str) -> Result<(), StateError> {
        let path = self.path(key);
        match std::fs::remove_file(&path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                Err(state_error(&path, error))
            }
            _ => Ok(()),
        }
    }
}

/// Progress on a terminal bar (stderr), documents as JSON lines on stdout with `--json`.
pub struct TerminalSink {
    json: bool,
    bar: ProgressBar,
}

impl TerminalSink {
    pub fn new(json: bool) -> Self {
        let bar = if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} {msg} [{bar:30}] {pos}/{len} files ({elapsed})",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            bar.set_message("fetching");
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            bar
        } else {
            ProgressBar::hidden()
        };
        TerminalSink { json, bar }
    }
}

impl CrawlSink for TerminalSink {
    async fn progress(&self, total: usize, completed: usize) -> Result<(), CrawlError> {
        if total > 0 {
            self.bar.set_message("reading");
            self.bar.set_length(total as u64);
            self.bar.set_position(completed as u64);
        }
        Ok(())
    }

    fn data_budget(&self) -> usize {
        // The same budget as the plugin has on the daemon's stdio line.
        result_budget(stdio::line_cap_from(|name| std::env::var(name).ok()) - 1, 0)
    }

    async fn finish(&self, data: Vec<u8>) -> Result<(), CrawlError> {
        if !self.json {
            return Ok(());
        }
        let message: serde_json::Value =
            serde_json::from_slice(&data).map_err(|e| CrawlError::Output(e.to_string()))?;
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::new(stdout.lock());
        for document in message["result"]["web_info_list"]
            .as_array()
            .into_iter()
            .flatten()
        {
            writeln!(out, "{document}").map_err(|e| CrawlError::Output(e.to_string()))?;
        }
        out.flush().map_err(|e| CrawlError::Output(e.to_string()))
    }
}
