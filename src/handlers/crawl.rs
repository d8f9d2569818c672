//! `invoke_website_datasource_get_crawl`: the crawl over a daemon session, with plugin
//! storage for state and the session's stream for progress and the final result.

use std::sync::Arc;

use crate::crawl::params::CrawlParams;
use crate::crawl::state::{StateError, StateStore};
use crate::crawl::{result_budget, Crawl, CrawlError, CrawlSettings, CrawlSink, RunSummary};
use crate::credentials::Credentials;
use crate::handlers::MirrorProcess;
use crate::mirror::api::{ApiErrorKind, KnowledgeApi};
use crate::mirror::watcher::Watch;
use crate::mirror::{Mirror, WatchSettings};
use dify_plugin::protocol::stdio::DEFAULT_LINE_CAP;
use dify_plugin::protocol::storage::Storage;
use dify_plugin::protocol::{ErrorPayload, Request, Session, Shown};
use git_remote::{Fault, GitClient};

pub async fn handle(
    request: &Request,
    session: &Session,
    client: Arc<GitClient>,
    mirrors: &MirrorProcess,
) -> Result<(), ErrorPayload> {
    let params = CrawlParams::from_json(request.fields.get("datasource_parameters")).map_err(
        |problems| {
            ErrorPayload::shown(
                Shown::BadRequest,
                "CrawlParameterError",
                format!(
                    "the datasource parameters have problems: {}",
                    problems.join("; ")
                ),
            )
        },
    )?;
    let credentials =
        Credentials::from_request(request.fields.get("credentials")).map_err(|problems| {
            let listed: Vec<String> = problems.iter().map(ToString::to_string).collect();
            ErrorPayload::shown(
                Shown::Credentials,
                "CredentialsValidateFailedError",
                listed.join("; "),
            )
        })?;
    let mirror = mirror_target(&params, &credentials, mirrors)?;
    if params.push_rest && mirror.is_none() {
        tracing::warn!(
            "large_change_sets is push_after_import, but mirroring is off (it needs \
             knowledge_base_id and a dify_api_key): the next run offers what does not fit"
        );
    }
    let watch_key = mirror
        .as_ref()
        .map(|m| m.key(&crate::crawl::identity::config_hash(&params)));
    if let Some(key) = &watch_key {
        // The previous watcher's view of the branch is about to be out of date.
        mirrors.watchers.stop(key);
    }
    let store = SessionStore {
        storage: session.storage(),
        deadline: tokio::time::Instant::now() + storage_time_limit(),
    };
    let sink = SessionSink {
        session: session.clone(),
    };
    let settings = CrawlSettings::from_env();
    let crawl = Crawl {
        params: &params,
        credentials: &credentials,
        store: &store,
        sink: &sink,
        client: client.clone(),
        settings: &settings,
        mirror: mirror.as_ref(),
    };
    match crawl.run().await {
        Ok(summary) => {
            tracing::info!(
                commit = %summary.commit,
                delivered = summary.delivered,
                total = summary.total,
                attempted = summary.attempted,
                bytes = summary.bytes,
                deleted = summary.deleted.len(),
                renamed = summary.renamed.len(),
                failed = summary.failed.len(),
                complete = summary.complete,
                "crawl of {} finished",
                summary.config_hash
            );
            log_files(&summary);
            if let (Some(mirror), Some(key)) = (mirror, watch_key) {
                watch(mirror, key, summary, &params, mirrors, client);
            }
            Ok(())
        }
        Err(error) => Err(error_payload(&error)),
    }
}

/// Names the files a run skipped (with why), and those deleted and renamed since the last run.
fn log_files(summary: &RunSummary) {
    let listed = |lines: &[String]| {
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        crate::crawl::shorten(&lines)
    };
    if !summary.skipped_files.is_empty() {
        let files = summary.skipped_lines();
        tracing::info!("skipped {} files: {}", files.len(), listed(&files));
    }
    if !summary.deleted.is_empty() {
        tracing::info!("deleted since the last run: {}", listed(&summary.deleted));
    }
    if !summary.renamed.is_empty() {
        tracing::info!(
            "renamed since the last run: {}",
            listed(&summary.renamed_lines())
        );
    }
}

/// The knowledge base to mirror into: on when both the key and the id are given.
fn mirror_target(
    params: &CrawlParams,
    credentials: &Credentials,
    mirrors: &MirrorProcess,
) -> Result<Option<Mirror>, ErrorPayload> {
    let Some(dataset) = params.knowledge_base_id.clone() else {
        return Ok(None);
    };
    if credentials.dify_api_key.is_empty() {
        tracing::warn!(
            "knowledge_base_id is set but the authorization has no dify_api_key: mirroring is off"
        );
        return Ok(None);
    }
    let invalid = |problem: String| {
        ErrorPayload::shown(
            Shown::Credentials,
            "CredentialsValidateFailedError",
            problem,
        )
    };
    let http = mirrors
        .http
        .get_or_init(|| dify_plugin::dify_http::client().unwrap_or_default())
        .clone();
    let api = KnowledgeApi::with_client(http, credentials.api_url(), &credentials.dify_api_key)
        .map_err(invalid)?;
    Ok(Some(Mirror {
        api,
        dataset,
        memory: Some(mirrors.memory.clone()),
    }))
}

/// Logs what mirroring planned and leaves the deletions and the wait for the import to a
/// background watcher: the crawl's session ends now.
fn watch(
    mirror: Mirror,
    key: String,
    summary: RunSummary,
    params: &CrawlParams,
    mirrors: &MirrorProcess,
    client: Arc<GitClient>,
) {
    let Some(outcome) = summary.mirror else {
        return;
    };
    let plan = &outcome.plan;
    tracing::info!(
        kept = plan.kept,
        offered = outcome.offered.len(),
        to_delete = plan.delete.len(),
        held_back = plan.held.len(),
        indexing = plan.indexing,
        requests = outcome.requests,
        unchanged = outcome.unchanged,
        "mirror of {} in knowledge base {}",
        summary.config_hash,
        mirror.dataset
    );
    if !plan.held.is_empty() {
        let paths: Vec<&str> = plan.held.iter().map(|d| d.path.as_str()).collect();
        tracing::warn!(
            "mirror: not deleting {} documents of files gone from the branch, more than half of \
             this configuration's {} searchable documents (a wrong branch or filter?): {}; run \
             once with sync_mode full to allow it",
            paths.len(),
            plan.searchable,
            crate::crawl::shorten(&paths)
        );
    }
    let full = params.sync_mode.ignores_state();
    let settings = WatchSettings::from_env();
    let (hash, commit) = (&summary.config_hash, &summary.commit);
    if let Some(watch) = Watch::after_crawl(mirror, hash, commit, outcome, full, settings, client) {
        mirrors.watchers.start(key, watch);
    }
}

/// The error as Dify shows it: one of the types it turns into text ([`Shown`]), our own name
/// in `args.error`.
fn error_payload(error: &CrawlError) -> ErrorPayload {
    let (shown, name) = match error {
        CrawlError::Params(_) => (Shown::BadRequest, "CrawlParameterError"),
        CrawlError::Git(git) => (
            shown_for(git.fault()),
            match git.kind() {
                "auth_failed" => "GitAuthenticationError",
                "repo_not_found" => "GitRepositoryNotFoundError",
                "ref_not_found" => "GitRefNotFoundError",
                "host_key_mismatch" | "host_key_unknown" => "GitHostKeyError",
                "tls" => "GitTlsError",
                "network" | "timeout" => "GitNetworkError",
                "invalid_url" | "not_allowed" => "GitUrlError",
                _ => "GitError",
            },
        ),
        CrawlError::State(_) => (Shown::ServerUnavailable, "PluginStorageError"),
        CrawlError::Output(_) => (Shown::ServerUnavailable, "InternalError"),
        CrawlError::NotWhole(_) => (Shown::BadRequest, "CrawlIncompleteError"),
        CrawlError::Mirror(api) => (
            match api.kind {
                ApiErrorKind::Unauthorized => Shown::Authorization,
                ApiErrorKind::Unreachable => Shown::Connection,
                ApiErrorKind::Other | ApiErrorKind::TooLarge => Shown::ServerUnavailable,
                _ => Shown::BadRequest,
            },
            "DifyApiError",
        ),
    };
    let mut payload = ErrorPayload::shown(shown, name, error.to_string());
    if let CrawlError::Git(git) = error {
        payload = payload.with_arg("kind", git.kind());
    }
    payload
}

/// How Dify shows a Git error: bad input, refused credentials, no connection, or a failure.
fn shown_for(fault: Fault) -> Shown {
    match fault {
        Fault::Input => Shown::BadRequest,
        Fault::Credentials => Shown::Authorization,
        Fault::Network => Shown::Connection,
        Fault::Server => Shown::ServerUnavailable,
    }
}

/// Plugin storage for one crawl. A silent daemon must not hold the run past the daemon's own
/// limit: every call ends by the run's deadline (`PLUGIN_MAX_EXECUTION_TIMEOUT`, 600 s,
/// less 30 s).
struct SessionStore {
    storage: Storage,
    deadline: tokio::time::Instant,
}

fn storage_time_limit() -> std::time::Duration {
    let limit = std::env::var("PLUGIN_MAX_EXECUTION_TIMEOUT")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(600);
    std::time::Duration::from_secs(limit.saturating_sub(30).max(5))
}

impl SessionStore {
    async fn within<T, E: std::fmt::Display>(
        &self,
        call: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, StateError> {
        match tokio::time::timeout_at(self.deadline, call).await {
            Ok(result) => result.map_err(|e| StateError(e.to_string())),
            Err(_) => Err(StateError(
                "the daemon did not answer within the run's time limit".into(),
            )),
        }
    }
}

impl StateStore for SessionStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        self.within(self.storage.get(key)).await
    }

    async fn set(&self, key: &str, value: &[u8]) -> Result<(), StateError> {
        self.within(self.storage.set(key, value)).await
    }

    async fn del(&self, key: &str) -> Result<(), StateError> {
        self.within(self.storage.del(key)).await
    }
}

struct SessionSink {
    session: Session,
}

impl CrawlSink for SessionSink {
    async fn progress(&self, total: usize, completed: usize) -> Result<(), CrawlError> {
        self.session
            .stream(crate::crawl::deliver::progress_message(total, completed))
            .await
            .map_err(|e| CrawlError::Output(e.to_string()))
    }

    fn data_budget(&self) -> usize {
        // TCP has no line cap; keep to the stdio default so a debug session behaves alike.
        let max_line = self.session.max_line_len().unwrap_or(DEFAULT_LINE_CAP - 1);
        result_budget(max_line, self.session.stream_line_len(0))
    }

    async fn finish(&self, data: Vec<u8>) -> Result<(), CrawlError> {
        self.session
            .stream_serialized(data)
            .await
            .map_err(|e| CrawlError::Output(e.to_string()))
    }
}
