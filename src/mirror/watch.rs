//! After the crawl's final message: the import happens later, in the browser, so the plugin
//! keeps watching the knowledge base in the background. The watch deletes what the crawl
//! planned at once, then polls until the documents of the user's import are indexed (or the
//! import makes no progress for a bounded wait) and deletes what they supersede. With
//! `large_change_sets: push_after_import` it then pushes the part of the change set the
//! crawl's message could not hold through the published pipeline. Last, the indexed
//! documents get their Git metadata. Whatever it cannot finish, the next crawl does.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use git2::Oid;

use super::cleanup::CleanupReport;
use super::documents::DocState;
use super::listing::KbRecord;
use super::metadata::TagReport;
use super::mirroring::{Mirroring, Pipeline};
use super::plan::{DeleteGuard, Deletion};
use super::push::{self, PushReport, PushSettings};
use super::WatchSettings;
use crate::dify::pipeline::start_node;
use crate::repository::shorten;
use crate::store::StateStore;
use git_remote::{FileEntry, GitClient, RepoPlace};

/// What follows a crawl that offered documents or planned deletions: its mirroring, and the
/// branch as it read it.
#[derive(Clone)]
pub struct Watch {
    pub mirroring: Mirroring,
    /// The commit the crawl read, and the branch's files.
    pub commit: String,
    pub files: Vec<FileEntry>,
    /// `(path, blob)` of every document the crawl offered.
    pub offered: Vec<(String, Oid)>,
    /// The deletions the crawl planned.
    pub deletions: Vec<Deletion>,
    pub full: bool,
    /// What to push once the user's import is indexed, and the Git client to read it with.
    pub rest: Option<Rest>,
    pub client: Arc<GitClient>,
    /// The import's documents may be listed before the watch starts (the browser's: Dify
    /// creates them before it asks for their files), so every document of an offered file
    /// counts, not only those listed later.
    pub import_listed: bool,
}

/// The part of a change set the crawl's message could not hold, asked to be pushed once
/// the user's import of the first part is indexed (`large_change_sets: push_after_import`).
#[derive(Debug, Clone)]
pub struct Rest {
    pub files: Vec<FileEntry>,
    pub place: RepoPlace,
    pub description_head: String,
    pub max_file_bytes: u64,
}

impl Watch {
    /// The key of its configuration's watcher.
    pub fn key(&self) -> String {
        self.mirroring.key()
    }

    /// About how many bytes the watch holds: its listing, files and record.
    pub fn bytes(&self) -> usize {
        let files = |files: &[FileEntry]| files.iter().map(|f| f.path.len() + 64).sum::<usize>();
        let record = &self.mirroring.record;
        let docs: usize = record
            .docs
            .iter()
            .map(|d| d.id.len() + 48 + d.ours.as_ref().map_or(0, |o| o.path.len() + 96))
            .sum();
        let offered: usize = self.offered.iter().map(|(p, _)| p.len() + 48).sum();
        let skipped: usize = record.skipped.iter().map(|(p, _)| p.len() + 64).sum();
        let rest = self.rest.as_ref().map_or(0, |r| files(&r.files));
        files(&self.files) + docs + offered + skipped + rest
    }

    /// Without a background watch (the command line): deletes what the crawl planned now,
    /// tags the indexed documents that lack their Git metadata, and remembers; the next run
    /// does the rest.
    pub async fn delete_planned<S: StateStore>(mut self, store: &S) -> CleanupReport {
        let report = self
            .mirroring
            .delete(std::mem::take(&mut self.deletions))
            .await;
        self.tag().await;
        self.mirroring.remember(store).await;
        report
    }

    /// Runs the watch to its end; returns every deletion made.
    pub async fn run(mut self, settings: WatchSettings) -> CleanupReport {
        // The wait ends after `max_wait` without any progress of the import: a large import
        // into a slow embedding model may index for longer than that in all.
        let mut progress_at = Instant::now();
        let mut seen = ImportProgress::default();
        let offered_files = std::mem::take(&mut self.offered);
        let offered: HashSet<(&str, String)> = offered_files
            .iter()
            .map(|(path, oid)| (path.as_str(), oid.to_string()))
            .collect();
        let listed_before: HashSet<String> = match offered.is_empty() || self.import_listed {
            true => HashSet::new(),
            false => self
                .mirroring
                .record
                .docs
                .iter()
                .map(|d| d.id.clone())
                .collect(),
        };
        let mut deletions = std::mem::take(&mut self.deletions);
        let mut changed = false;
        let mut total = CleanupReport::default();
        loop {
            if !deletions.is_empty() {
                let report = self.mirroring.delete(std::mem::take(&mut deletions)).await;
                log(&report);
                changed = true;
                total.extend(report);
            }
            let left = self
                .mirroring
                .plan(&self.files, self.full, DeleteGuard::Default);
            changed |= self.mirroring.settle(&self.commit, &left);
            let import = import_progress(&self.mirroring.record, &listed_before, &offered);
            if import != seen {
                (seen, progress_at) = (import, Instant::now());
            }
            if offered.is_empty() || import.finished() {
                if let Some(rest) = self.rest.take() {
                    // Then list again: what the pushed documents supersede is deleted next.
                    total.extend(self.push_rest(rest, settings).await);
                    changed = true;
                } else {
                    changed |= self.tag().await;
                    if !offered.is_empty() {
                        tracing::info!("mirror: the import is indexed; watcher done");
                    }
                    break;
                }
            } else if progress_at.elapsed() >= settings.max_wait {
                tracing::info!(
                    "mirror: the import made no progress for {:?} ({} of its documents arrived, \
                     {} still indexing); the next crawl cleans up",
                    settings.max_wait,
                    import.arrived,
                    import.indexing
                );
                break;
            }
            self.mirroring.remember_in_memory(changed);
            tokio::time::sleep(settings.poll).await;
            match self.mirroring.refresh().await {
                Ok(listed) => {
                    changed |= listed;
                    let plan = self
                        .mirroring
                        .plan(&self.files, self.full, DeleteGuard::Default);
                    if !plan.held.is_empty() {
                        tracing::warn!(
                            "mirror: {} deletions of gone files held back (more than half of \
                             this configuration's searchable documents); run with sync_mode \
                             full to allow them",
                            plan.held.len()
                        );
                    }
                    deletions = plan.delete;
                }
                Err(error) if error.is_configuration() => {
                    tracing::warn!("mirror: watcher stopped: {error}");
                    return total;
                }
                Err(error) => tracing::warn!("mirror: listing failed, trying again later: {error}"),
            }
        }
        self.mirroring.into_memory(changed);
        total
    }

    /// Sets the Git metadata of the indexed documents that lack it, and settles again;
    /// returns whether any document was tagged.
    async fn tag(&mut self) -> bool {
        let left = self
            .mirroring
            .plan(&self.files, self.full, DeleteGuard::Default);
        if left.untagged.is_empty() {
            return false;
        }
        let report = self.mirroring.tag(&left.untagged, &self.commit).await;
        log_tags(&report);
        let left = self
            .mirroring
            .plan(&self.files, self.full, DeleteGuard::Default);
        self.mirroring.settle(&self.commit, &left);
        !report.tagged.is_empty()
    }

    /// Pushes the rest of the change set through the published pipeline with its default
    /// process inputs and waits until it is indexed; returns the deletions of what runs Dify
    /// refused left behind. A failure only logs: the next crawl offers what is left.
    async fn push_rest(&mut self, rest: Rest, settings: WatchSettings) -> CleanupReport {
        let not_pushed = |why: &str| {
            tracing::warn!(
                "mirror: the rest of the change set ({} files) is not pushed: {why}; the next \
                 run offers it",
                rest.files.len()
            );
            CleanupReport::default()
        };
        let target = &self.mirroring.target;
        let start = match target.api.datasource_nodes(&target.dataset).await {
            Ok(nodes) => match start_node(&nodes, None) {
                Ok(start) => start,
                Err(why) => return not_pushed(&why),
            },
            Err(error) => return not_pushed(&error.to_string()),
        };
        // Only what the knowledge base still lacks: the user may have imported more meanwhile.
        let wanted: HashSet<(&str, Oid)> = rest
            .files
            .iter()
            .map(|f| (f.path.as_str(), f.oid))
            .collect();
        let left = self
            .mirroring
            .plan(&self.files, self.full, DeleteGuard::Default);
        let files: Vec<FileEntry> = left
            .offer
            .into_iter()
            .filter(|f| wanted.contains(&(f.path.as_str(), f.oid)))
            .collect();
        if files.is_empty() {
            return CleanupReport::default();
        }
        tracing::info!(
            "mirror: pushing the rest of the change set: {} files through pipeline node {start}",
            files.len()
        );
        let pipeline = Pipeline {
            start_node: &start,
            inputs: &serde_json::json!({}),
        };
        let read = push::read_reopening(self.client.clone(), rest.place, rest.max_file_bytes);
        let push_settings = PushSettings {
            poll: settings.poll,
            ..PushSettings::default()
        };
        let (report, cleanup) = self
            .mirroring
            .push(
                &pipeline,
                read,
                &rest.description_head,
                &files,
                &push_settings,
                &|_| {},
            )
            .await;
        log_push(&report);
        log(&cleanup);
        cleanup
    }
}

fn log_tags(report: &TagReport) {
    if !report.tagged.is_empty() {
        tracing::info!(
            "mirror: set the Git metadata of {} documents ({} requests)",
            report.tagged.len(),
            report.requests
        );
    }
    if let Some(problem) = &report.problem {
        tracing::warn!("mirror: Git metadata not set: {problem}; the next run tries again");
    }
}

fn log_push(report: &PushReport) {
    tracing::info!(
        created = report.created.len(),
        indexed = report.indexed,
        runs = report.runs,
        requests = report.requests,
        bytes_sent = report.bytes_sent,
        "mirror: pushed the rest of the change set"
    );
    let paths = |list: &[String]| {
        let list: Vec<&str> = list.iter().map(String::as_str).collect();
        shorten(&list)
    };
    if let Some(error) = &report.stopped {
        tracing::warn!(
            "mirror: the pipeline refused the push with its default process inputs: {error}; \
             give them with `git-datasource sync --input name=value`, or import the rest from \
             the next run"
        );
    }
    let refused: Vec<String> = report
        .rejected
        .iter()
        .flat_map(|r| r.files.iter().map(|(p, _)| p.clone()))
        .collect();
    if !refused.is_empty() {
        tracing::warn!(
            "mirror: {} files refused: {}",
            refused.len(),
            paths(&refused)
        );
    }
    let failed: Vec<String> = report
        .failed_indexing
        .iter()
        .map(|(p, why)| format!("{p} ({why})"))
        .collect();
    if !failed.is_empty() {
        tracing::warn!(
            "mirror: {} documents failed indexing: {}",
            failed.len(),
            paths(&failed)
        );
    }
    if !report.unfinished.is_empty() {
        tracing::warn!(
            "mirror: {} documents still not indexed when indexing stalled: {}",
            report.unfinished.len(),
            paths(&report.unfinished)
        );
    }
    if !report.read_failed.is_empty() {
        tracing::warn!(
            "mirror: {} files could not be read: {}",
            report.read_failed.len(),
            paths(&report.read_failed)
        );
    }
}

/// How far the user's import has come: the documents of offered files that were not listed
/// before, and how many of them are still indexing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct ImportProgress {
    arrived: usize,
    indexing: usize,
}

impl ImportProgress {
    /// The import has arrived and none of its documents is still indexing.
    fn finished(&self) -> bool {
        self.arrived > 0 && self.indexing == 0
    }
}

fn import_progress(
    record: &KbRecord,
    before: &HashSet<String>,
    offered: &HashSet<(&str, String)>,
) -> ImportProgress {
    let arrived = record
        .docs
        .iter()
        .filter(|d| !before.contains(&d.id))
        .filter_map(|d| d.ours.as_ref())
        .filter(|o| {
            o.blob
                .as_ref()
                .is_some_and(|b| offered.contains(&(o.path.as_str(), b.clone())))
        });
    arrived.fold(ImportProgress::default(), |mut progress, ours| {
        progress.arrived += 1;
        progress.indexing += usize::from(ours.state == DocState::Indexing);
        progress
    })
}

pub fn log(report: &CleanupReport) {
    if !report.deleted.is_empty() {
        let paths: Vec<&str> = report.deleted.iter().map(|d| d.path.as_str()).collect();
        tracing::info!(
            "mirror: deleted {} documents: {}",
            paths.len(),
            shorten(&paths)
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
