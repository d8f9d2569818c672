//! `invoke_website_datasource_get_crawl`: the crawl over a daemon session (plugin storage
//! for state, the session's stream for progress and the final result), then its watch in
//! the background.

use std::sync::Arc;

use super::session::{SessionSink, SessionStore};
use super::MirrorProcess;
use crate::crawl::{Crawl, CrawlError, Crawled, RunSummary};
use crate::dify::knowledge::ApiErrorKind;
use crate::mirror::Mirror;
use crate::repository::credentials::Credentials;
use crate::repository::identity::config_hash;
use crate::repository::params::CrawlParams;
use crate::repository::shorten;
use crate::settings::Settings;
use dify_plugin::protocol::{ErrorPayload, Request, Session, Shown};
use git_remote::{Fault, GitClient, GitError};

pub async fn handle(
    request: &Request,
    session: &Session,
    client: Arc<GitClient>,
    mirrors: &MirrorProcess,
    settings: &Settings,
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
    if let Some(mirror) = &mirror {
        // The previous watcher's view of the branch is about to be out of date.
        mirrors.watchers.stop(&mirror.key(&config_hash(&params)));
    }
    let store = SessionStore {
        storage: session.storage(),
        deadline: tokio::time::Instant::now() + settings.storage_time_limit,
    };
    let sink = SessionSink {
        session: session.clone(),
        max_result_bytes: settings.max_result_bytes,
    };
    let crawl = Crawl {
        params: &params,
        credentials: &credentials,
        store: &store,
        sink: &sink,
        client,
        settings: &settings.crawl,
        mirror: mirror.as_ref(),
    };
    let Crawled { summary, watch } = crawl.run().await.map_err(|e| error_payload(&e))?;
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
    log_mirror(&summary);
    if let Some(watch) = watch {
        // The deletions and the wait for the import go on in the background: the crawl's
        // session ends now.
        mirrors.watchers.start(watch, settings.watch);
    }
    Ok(())
}

/// Names the files a run skipped (with why), and those deleted and renamed since the last run.
fn log_files(summary: &RunSummary) {
    let listed = |lines: &[String]| {
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        shorten(&lines)
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
pub(super) fn mirror_target(
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
    let api = mirrors
        .knowledge_api(credentials.api_url(), &credentials.dify_api_key)
        .map_err(invalid)?;
    Ok(Some(Mirror {
        api,
        dataset,
        memory: Some(mirrors.memory.clone()),
    }))
}

/// Logs what mirroring planned, and the deletions the guard holds back.
fn log_mirror(summary: &RunSummary) {
    let Some(mirror) = &summary.mirror else {
        return;
    };
    let plan = &mirror.plan;
    tracing::info!(
        kept = plan.kept,
        offered = mirror.offered,
        to_delete = plan.delete.len(),
        held_back = plan.held.len(),
        indexing = plan.indexing,
        requests = mirror.requests,
        unchanged = mirror.unchanged,
        "mirror of {}",
        summary.config_hash
    );
    if !plan.held.is_empty() {
        let paths: Vec<&str> = plan.held.iter().map(|d| d.path.as_str()).collect();
        tracing::warn!(
            "mirror: not deleting {} documents of files gone from the branch, more than half of \
             this configuration's {} searchable documents (a wrong branch or filter?): {}; run \
             once with sync_mode full to allow it",
            paths.len(),
            plan.searchable,
            shorten(&paths)
        );
    }
}

/// The error as Dify shows it: one of the types it turns into text ([`Shown`]), our own name
/// in `args.error`.
fn error_payload(error: &CrawlError) -> ErrorPayload {
    let (shown, name) = match error {
        CrawlError::Params(_) => (Shown::BadRequest, "CrawlParameterError"),
        CrawlError::Git(git) => return git_error_payload(git),
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
    ErrorPayload::shown(shown, name, error.to_string())
}

/// A Git error as Dify shows it, our name for its kind in `args.error`.
pub(super) fn git_error_payload(git: &GitError) -> ErrorPayload {
    let name = match git.kind() {
        "auth_failed" => "GitAuthenticationError",
        "repo_not_found" => "GitRepositoryNotFoundError",
        "ref_not_found" => "GitRefNotFoundError",
        "host_key_mismatch" | "host_key_unknown" => "GitHostKeyError",
        "tls" => "GitTlsError",
        "network" | "timeout" => "GitNetworkError",
        "invalid_url" | "not_allowed" => "GitUrlError",
        _ => "GitError",
    };
    ErrorPayload::shown(shown_for(git.fault()), name, git.to_string()).with_arg("kind", git.kind())
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
