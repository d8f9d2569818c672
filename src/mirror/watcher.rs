//! After the crawl's final message: the import happens later, in the browser, so the plugin
//! keeps watching the knowledge base in the background. It deletes what the crawl planned at
//! once, then polls until the documents of the user's import are indexed (or a bounded wait
//! passes) and deletes what they supersede. Whatever it cannot finish, the next crawl does.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Instant;

use git2::Oid;

use super::cleanup::{self, CleanupReport};
use super::documents::DocState;
use super::listing::KbRecord;
use super::plan::{self, Deletion};
use super::{Mirror, WatchSettings};
use crate::crawl::snapshot::Entries;
use crate::git::FileEntry;

/// The running watcher of each (API, knowledge base, configuration): a new crawl of the same
/// configuration stops the previous one, whose view of the branch is out of date.
#[derive(Default)]
pub struct Watchers(Mutex<HashMap<String, tokio::task::AbortHandle>>);

impl Watchers {
    pub fn stop(&self, key: &str) {
        if let Some(previous) = self.0.lock().expect("watchers").remove(key) {
            previous.abort();
        }
    }

    pub fn start(&self, key: String, watch: Watch) {
        let task = tokio::spawn(run(watch));
        if let Some(previous) = self
            .0
            .lock()
            .expect("watchers")
            .insert(key, task.abort_handle())
        {
            previous.abort();
        }
    }
}

/// What a watcher needs from its crawl.
pub struct Watch {
    pub mirror: Mirror,
    pub config_hash: String,
    /// The `source_url` prefixes of this configuration's documents.
    pub prefixes: Vec<String>,
    /// The commit the crawl read.
    pub commit: String,
    /// The branch's files and the crawl's permanent skips, to plan with.
    pub files: Vec<FileEntry>,
    pub skipped: Entries,
    /// `(path, blob)` of every document the crawl offered.
    pub offered: Vec<(String, Oid)>,
    /// The deletions the crawl planned, and the knowledge base as it listed it.
    pub deletions: Vec<Deletion>,
    pub record: KbRecord,
    pub full: bool,
    pub settings: WatchSettings,
}

impl Watch {
    /// The watch that follows a crawl whose mirroring planned `outcome`; none after a run
    /// that found nothing changed (nothing to delete, nothing offered).
    pub fn after_crawl(
        mirror: Mirror,
        config_hash: &str,
        commit: &str,
        outcome: super::MirrorOutcome,
        full: bool,
        settings: WatchSettings,
    ) -> Option<Watch> {
        if outcome.unchanged && outcome.offered.is_empty() && outcome.plan.delete.is_empty() {
            return None;
        }
        Some(Watch {
            mirror,
            config_hash: config_hash.to_string(),
            commit: commit.to_string(),
            prefixes: outcome.prefixes,
            skipped: outcome.record.skipped_entries(),
            files: outcome.files,
            offered: outcome.offered,
            deletions: outcome.plan.delete,
            record: outcome.record,
            full,
            settings,
        })
    }
}

/// Runs the watch to its end; returns every deletion made.
pub async fn run(mut watch: Watch) -> CleanupReport {
    let started = Instant::now();
    let offered: HashSet<(&str, String)> = watch
        .offered
        .iter()
        .map(|(path, oid)| (path.as_str(), oid.to_string()))
        .collect();
    let listed_before: HashSet<String> = match offered.is_empty() {
        true => HashSet::new(),
        false => watch.record.docs.iter().map(|d| d.id.clone()).collect(),
    };
    let mut record = std::mem::take(&mut watch.record);
    let mut deletions = std::mem::take(&mut watch.deletions);
    let mut changed = false;
    let mut total = CleanupReport::default();
    loop {
        if !deletions.is_empty() {
            let report = cleanup::delete_all(
                &watch.mirror.api,
                &watch.mirror.dataset,
                std::mem::take(&mut deletions),
                &mut record,
            )
            .await;
            log(&report);
            changed = true;
            total.deleted.extend(report.deleted);
            total.archived.extend(report.archived);
            total.failed.extend(report.failed);
        }
        let left = plan::plan(
            &watch.files,
            &record.docs,
            &watch.skipped,
            watch.full,
            plan::DeleteGuard::Default,
        );
        let settled = left.offer.is_empty()
            && left.delete.is_empty()
            && left.held.is_empty()
            && left.indexing == 0;
        let settled = settled.then(|| watch.commit.clone());
        changed |= settled != record.settled;
        record.settled = settled;
        if imported(&record, &listed_before, &offered) {
            if !offered.is_empty() {
                tracing::info!("mirror: the import is indexed; watcher done");
            }
            watch
                .mirror
                .remember_in_memory(&watch.config_hash, record, changed);
            break;
        }
        if started.elapsed() >= watch.settings.max_wait {
            tracing::info!(
                "mirror: no finished import after {:?}; the next crawl cleans up",
                watch.settings.max_wait
            );
            watch
                .mirror
                .remember_in_memory(&watch.config_hash, record, changed);
            break;
        }
        watch
            .mirror
            .remember_in_memory(&watch.config_hash, record.clone(), changed);
        tokio::time::sleep(watch.settings.poll).await;
        match watch.mirror.list(&watch.prefixes, Some(&record)).await {
            Ok(listing) => {
                if let Some(docs) = listing.docs {
                    record.docs = docs;
                    record.total = listing.total;
                    changed = true;
                }
                let plan = plan::plan(
                    &watch.files,
                    &record.docs,
                    &watch.skipped,
                    watch.full,
                    plan::DeleteGuard::Default,
                );
                if !plan.held.is_empty() {
                    tracing::warn!(
                        "mirror: {} deletions of gone files held back (more than half of this \
                         configuration's documents); run with sync_mode full to allow them",
                        plan.held.len()
                    );
                }
                deletions = plan.delete;
            }
            Err(error) if error.is_configuration() => {
                tracing::warn!("mirror: watcher stopped: {error}");
                break;
            }
            Err(error) => tracing::warn!("mirror: listing failed, trying again later: {error}"),
        }
    }
    total
}

/// The user's import has arrived (a document of an offered file that was not listed before)
/// and none of its documents is still indexing; or nothing was offered.
fn imported(
    record: &KbRecord,
    before: &HashSet<String>,
    offered: &HashSet<(&str, String)>,
) -> bool {
    if offered.is_empty() {
        return true;
    }
    let mut arrived = record
        .docs
        .iter()
        .filter(|d| !before.contains(&d.id))
        .filter_map(|d| d.ours.as_ref())
        .filter(|o| {
            o.blob
                .as_ref()
                .is_some_and(|b| offered.contains(&(o.path.as_str(), b.clone())))
        })
        .peekable();
    arrived.peek().is_some() && arrived.all(|o| o.state != DocState::Indexing)
}

pub fn log(report: &CleanupReport) {
    if !report.deleted.is_empty() {
        let paths: Vec<&str> = report.deleted.iter().map(|d| d.path.as_str()).collect();
        tracing::info!(
            "mirror: deleted {} documents: {}",
            paths.len(),
            crate::crawl::shorten(&paths)
        );
    }
    if !report.archived.is_empty() {
        tracing::info!(
            "mirror: {} archived documents left alone",
            report.archived.len()
        );
    }
    if !report.failed.is_empty() {
        tracing::warn!(
            "mirror: {} deletions failed; the next run tries again",
            report.failed.len()
        );
    }
}
