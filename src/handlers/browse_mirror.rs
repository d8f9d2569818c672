//! Mirroring after a browser import: Dify creates the documents of the picked files first and
//! asks for their text one by one, so the first download of a commit starts the watch of the
//! configuration's knowledge base (once while it runs). The watch waits until the documents
//! of the branch's files are indexed, deleting what they supersede and the documents of
//! files gone from the branch as it goes, as it does after a crawl.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::crawl::mirror_target;
use super::session::SessionStore;
use super::MirrorProcess;
use crate::browse::BrowseSource;
use crate::mirror::metadata::GitSource;
use crate::mirror::plan::DeleteGuard;
use crate::mirror::watch::Watch;
use crate::mirror::{MirrorConfig, Mirroring};
use crate::settings::Settings;
use git_remote::{GitClient, RepoPlace};

/// A watch being started is not started again by the downloads that arrive meanwhile.
const STARTING: Duration = Duration::from_secs(60);

/// Starts the watch of this import unless one for its commit runs; failures only log (the
/// next import, crawl or `sync` cleans up).
pub async fn watch_import(
    source: &BrowseSource,
    place: &RepoPlace,
    store: &SessionStore,
    client: Arc<GitClient>,
    mirrors: &MirrorProcess,
    settings: &Settings,
) {
    let Ok(Some(target)) = mirror_target(&source.params, &source.credentials, mirrors) else {
        return;
    };
    let key = target.key(&source.hash);
    let commit = place.commit().to_string();
    {
        let mut claims = mirrors.browse_claims.lock().expect("claims");
        let claimed = claims.get(&key).is_some_and(|(at_commit, since)| {
            *at_commit == commit
                && (since.elapsed() < STARTING || mirrors.watchers.is_running(&key))
        });
        if claimed {
            return;
        }
        claims.retain(|_, (_, since)| since.elapsed() < settings.watchers.deadline);
        claims.insert(key.clone(), (commit.clone(), Instant::now()));
    }
    let config = MirrorConfig {
        hash: &source.hash,
        legacy_hash: source.legacy_hash.as_deref(),
        source: GitSource::new(place.url(), &source.params.branch),
    };
    // A failure keeps the claim: the import's next downloads do not each try again (and
    // wait on an API that just failed) until a claim's start time has passed.
    let mirroring = match Mirroring::open(target, store, config, None).await {
        Ok(mirroring) => mirroring,
        Err(error) => {
            tracing::warn!("mirror: not watching this import: {error}");
            return;
        }
    };
    let listed = {
        let (client, place, filter) = (client.clone(), place.clone(), source.params.filter());
        tokio::task::spawn_blocking(move || {
            let fetched = client.reopen(&place)?;
            git_remote::list_files(&fetched.open()?, fetched.commit, &filter)
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|listed| listed.map_err(|e| e.to_string()))
    };
    let files = match listed {
        Ok(listing) => listing.files,
        Err(error) => {
            tracing::warn!("mirror: not watching this import: {error}");
            return;
        }
    };
    let plan = mirroring.plan(&files, false, DeleteGuard::Default);
    tracing::info!(
        "mirror: watching the import of {} at {commit} ({} documents to delete now)",
        source.hash,
        plan.delete.len()
    );
    let watch = Watch {
        mirroring,
        commit,
        offered: files.iter().map(|f| (f.path.clone(), f.oid)).collect(),
        files,
        deletions: plan.delete,
        full: false,
        rest: None,
        client,
        import_listed: true,
    };
    mirrors.watchers.start(watch, settings.watch);
}
