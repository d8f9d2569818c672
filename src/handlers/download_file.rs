//! `invoke_online_drive_download_file`: one picked file's text, exactly the blob its id
//! names (the content the listing saw, whatever the branch did since), as the one blob
//! message Dify turns into the file its extractor reads. Read from the cached clone when the
//! id's seal holds; otherwise the commit is fetched with the caller's credentials first.
//! With mirroring, the first file of an import starts the watch that cleans up after it.

use std::sync::Arc;

use base64::Engine;
use serde_json::{json, Value};

use super::browse_files::{internal, max_file_bytes, source_of};
use super::browse_mirror;
use super::session::SessionStore;
use super::MirrorProcess;
use crate::browse::file_id::FileId;
use crate::browse::seal::Seal;
use crate::browse::BrowseError;
use crate::settings::Settings;
use dify_plugin::protocol::{ErrorPayload, Request, Session};
use git_remote::blob::{inspect_blob, Unread};
use git_remote::{GitClient, GitError};

pub async fn handle(
    request: &Request,
    session: &Session,
    client: Arc<GitClient>,
    seal: &Seal,
    mirrors: &MirrorProcess,
    settings: &Settings,
) -> Result<(), ErrorPayload> {
    let source = source_of(request)?;
    let id = request
        .fields
        .get("request")
        .and_then(|r| r.get("id"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let Some((file, signature)) = FileId::parse(id) else {
        return Err(BrowseError::Request(
            "this is not a file of the Git browser's listing; open the data source again and \
             pick it anew"
                .into(),
        )
        .into());
    };
    source.check_hash(&file.hash)?;
    let sealed = file.verify(seal, &source.who, signature);
    let store = SessionStore {
        storage: session.storage(),
        deadline: tokio::time::Instant::now() + settings.storage_time_limit,
    };
    let fetched = source
        .open_listed(&client, &store, file.commit, sealed)
        .await?;
    let place = fetched.place();
    let max_bytes = max_file_bytes(session, settings);
    let filter = source.params.filter();
    let read = {
        let file = file.clone();
        tokio::task::spawn_blocking(move || {
            read_listed(&fetched, &file, sealed, &filter, max_bytes)
        })
        .await
        .map_err(|e| internal(&e.to_string()))?
    };
    let encoded = read?;
    let name = file.path.rsplit('/').next().unwrap_or(&file.path);
    let file_name = match name.ends_with(".txt") {
        true => name.to_string(),
        false => format!("{name}.txt"),
    };
    // As plain text whatever the extension: the extractor then keeps the file's text as it
    // is, as the crawl delivers it.
    session
        .stream(json!({"type": "blob", "message": {"blob": encoded},
                       "meta": {"file_name": file_name, "mime_type": "text/plain"}}))
        .await
        .map_err(|e| internal(&e.to_string()))?;
    browse_mirror::watch_import(&source, &place, &store, client, mirrors, settings).await;
    Ok(())
}

/// The file's text in base64. An id without this process's seal must name a file the
/// commit holds at that path, and one the filters take.
fn read_listed(
    fetched: &git_remote::Fetched,
    file: &FileId,
    sealed: bool,
    filter: &git_remote::PathFilter,
    max_bytes: u64,
) -> Result<String, BrowseError> {
    let repo = fetched.open()?;
    if !sealed {
        let at = repo
            .find_commit(file.commit)
            .and_then(|c| c.tree())
            .and_then(|t| t.get_path(std::path::Path::new(&file.path)))
            .map(|entry| entry.id());
        if at.ok() != Some(file.blob) || !filter.matches(&file.path) {
            return Err(BrowseError::Request(format!(
                "{} is not a file of commit {} under this authorization's settings; open the \
                 data source again",
                file.path, file.commit
            )));
        }
    }
    let encode = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    match inspect_blob(&repo, file.blob, max_bytes, encode) {
        Ok(encoded) => Ok(encoded),
        Err(Unread::Skipped(reason)) => Err(BrowseError::Request(format!(
            "{} is not offered: {}",
            file.path, reason
        ))),
        Err(Unread::Failed(why)) => Err(BrowseError::Git(GitError::Read(why))),
    }
}
