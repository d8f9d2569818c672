//! `invoke_online_drive_browse_files`: one page of one folder of the branch. The top folder
//! fetches the branch (the listing's one request to the server); a folder or next page the
//! listing handed out is read at the commit its id names, from the cached clone when its
//! seal holds.

use std::sync::Arc;

use serde_json::{json, Value};

use super::crawl::git_error_payload;
use super::session::SessionStore;
use crate::browse::file_id::FolderId;
use crate::browse::folder_page::{folder_page, IdMaker, Page, PageLimits, MAX_PAGE_ENTRIES};
use crate::browse::seal::Seal;
use crate::browse::{BrowseError, BrowseSource};
use crate::crawl::result_budget;
use crate::settings::Settings;
use dify_plugin::protocol::stdio::DEFAULT_LINE_CAP;
use dify_plugin::protocol::{ErrorPayload, Request, Session, Shown};
use git_remote::GitClient;

/// What the answer's envelope around the entries may take.
const PAGE_MARGIN: usize = 1024;
/// How long one page may read files for: well within what Dify waits for a browse.
const PAGE_TIME: std::time::Duration = std::time::Duration::from_secs(20);
/// The longest bucket name echoed back (this provider has no buckets; Dify sends `""`).
const MAX_BUCKET_CHARS: usize = 64;

pub async fn handle(
    request: &Request,
    session: &Session,
    client: Arc<GitClient>,
    seal: &Arc<Seal>,
    settings: &Settings,
) -> Result<(), ErrorPayload> {
    let source = source_of(request)?;
    let asked = request
        .fields
        .get("request")
        .cloned()
        .unwrap_or(Value::Null);
    let store = SessionStore {
        storage: session.storage(),
        deadline: tokio::time::Instant::now() + settings.storage_time_limit,
    };
    // A next page names its folder (and so its commit): the branch may have moved since.
    let next = &asked["next_page_parameters"];
    let prefix = next["folder"]
        .as_str()
        .or_else(|| asked["prefix"].as_str())
        .unwrap_or_default();
    let from = next["from"].as_u64().unwrap_or(0) as usize;
    let (folder, fetched) = if prefix.is_empty() {
        let fetched = source.fetch_branch(&client, &store).await?;
        let folder = FolderId {
            hash: source.hash.clone(),
            dir: source.params.filter().subdir().to_string(),
            commit: fetched.commit,
        };
        (folder, fetched)
    } else {
        let Some((folder, signature)) = FolderId::parse(prefix) else {
            return Err(BrowseError::Request(
                "this is not a folder of the Git browser's listing; open the data source again"
                    .into(),
            )
            .into());
        };
        source.check_hash(&folder.hash)?;
        let sealed = folder.verify(seal, &source.who, signature);
        let fetched = source
            .open_listed(&client, &store, folder.commit, sealed)
            .await?;
        (folder, fetched)
    };
    let folder_id = folder.sealed(seal, &source.who);
    let limits = PageLimits {
        // The next page's parameters name the folder: its id, escaped at worst, comes first.
        bytes: page_budget(session, settings).saturating_sub(2 * folder_id.len()),
        entries: MAX_PAGE_ENTRIES,
        max_file_bytes: max_file_bytes(session, settings),
        time: PAGE_TIME,
    };
    let page = {
        let (filter, who) = (source.params.filter(), source.who.clone());
        let seal_key = seal.clone();
        tokio::task::spawn_blocking(move || {
            let ids = IdMaker {
                seal: &seal_key,
                who: &who,
            };
            folder_page(&fetched.open()?, &folder, from, &filter, limits, &ids)
        })
        .await
        .map_err(|e| internal(&e.to_string()))?
        .map_err(BrowseError::Git)?
    };
    tracing::info!(
        entries = page.entries.len(),
        skipped = page.skipped,
        more = page.next.is_some(),
        "browsed a folder of {}",
        source.hash
    );
    // The bucket is echoed as Dify sent it (`""` from the web app): text of a bounded
    // length only, so the answer stays within the budget its page was cut to.
    let bucket = match &asked["bucket"] {
        Value::String(text) if text.len() <= MAX_BUCKET_CHARS => Value::String(text.clone()),
        _ => Value::Null,
    };
    session
        .stream(answer(&page, &bucket, &folder_id))
        .await
        .map_err(|e| internal(&e.to_string()))
}

/// `{"result": [{bucket, files, is_truncated, next_page_parameters}]}`.
fn answer(page: &Page, bucket: &Value, folder_id: &str) -> Value {
    let files: Vec<Value> = page
        .entries
        .iter()
        .map(|e| {
            json!({"id": e.id, "name": e.name, "size": e.size,
                   "type": if e.folder { "folder" } else { "file" }})
        })
        .collect();
    let next = page
        .next
        .map(|from| json!({"folder": folder_id, "from": from}));
    json!({"result": [{"bucket": bucket, "files": files,
                       "is_truncated": next.is_some(), "next_page_parameters": next}]})
}

/// The bytes one answer's entries may take: the result budget less the envelope.
fn page_budget(session: &Session, settings: &Settings) -> usize {
    let max_line = session.max_line_len().unwrap_or(DEFAULT_LINE_CAP - 1);
    result_budget(
        max_line,
        session.stream_line_len(0),
        settings.max_result_bytes,
    )
    .saturating_sub(PAGE_MARGIN)
}

/// The largest file the browser offers: under the file limit, and small enough that its
/// download (one message, base64) fits the daemon's line.
pub(super) fn max_file_bytes(session: &Session, settings: &Settings) -> u64 {
    let max_line = session.max_line_len().unwrap_or(DEFAULT_LINE_CAP - 1);
    let line = result_budget(max_line, session.stream_line_len(0), None);
    let in_one_message = (line.saturating_sub(PAGE_MARGIN) / 4 * 3) as u64;
    settings.crawl.max_file_bytes.min(in_one_message)
}

/// The authorization, read; its problems as Dify shows them.
pub(super) fn source_of(request: &Request) -> Result<BrowseSource, ErrorPayload> {
    BrowseSource::from_credentials(request.fields.get("credentials")).map_err(|problems| {
        ErrorPayload::shown(
            Shown::Credentials,
            "CredentialsValidateFailedError",
            format!("the authorization has problems: {}", problems.join("; ")),
        )
    })
}

/// A browser's error as Dify shows it.
impl From<BrowseError> for ErrorPayload {
    fn from(error: BrowseError) -> ErrorPayload {
        match &error {
            BrowseError::Git(git) => git_error_payload(git),
            BrowseError::State(_) => ErrorPayload::shown(
                Shown::ServerUnavailable,
                "PluginStorageError",
                error.to_string(),
            ),
            BrowseError::Request(_) => {
                ErrorPayload::shown(Shown::BadRequest, "BrowseRequestError", error.to_string())
            }
        }
    }
}

pub(super) fn internal(message: &str) -> ErrorPayload {
    ErrorPayload::shown(
        Shown::ServerUnavailable,
        "InternalError",
        message.to_string(),
    )
}
