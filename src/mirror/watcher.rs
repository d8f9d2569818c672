//! After the crawl's final message: the import happens later, in the browser, so the plugin
//! keeps watching the knowledge base in the background. It deletes what the crawl planned at
//! once, then polls until the documents of the user's import are indexed (or the import makes
//! no progress for a bounded wait) and deletes what they supersede. With
//! `large_change_sets: push_after_import` it then pushes the part of the change set the
//! crawl's message could not hold through the published pipeline. Whatever it cannot finish,
//! the next crawl does.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use git2::Oid;

use super::cleanup::{self, CleanupReport};
use super::documents::DocState;
use super::listing::KbRecord;
use super::pipeline::start_node;
use super::plan::{self, Deletion};
use super::push::{self, PushReport, PushSettings};
use super::{Mirror, WatchSettings};
use crate::crawl::snapshot::Entries;
use git_remote::{FileEntry, GitClient, RepoPlace};

/// The running watchers, one per (API, knowledge base, configuration, key), oldest first: a
/// new crawl of the same configuration stops the previous one, whose view of the branch is
/// out of date. Bounded in number and in what their watches hold (the oldest gives way, and
/// the next crawl of its configuration finishes its work), and each ends by its deadline.
pub struct Watchers {
    running: Arc<Mutex<Running>>,
    limits: WatcherLimits,
}

impl Default for Watchers {
    fn default() -> Self {
        Watchers::new(WatcherLimits::from_env())
    }
}

#[derive(Default)]
struct Running {
    tasks: Vec<Task>,
    next: u64,
}

struct Task {
    key: String,
    id: u64,
    bytes: usize,
    handle: tokio::task::AbortHandle,
}

/// How many watchers may run at once, how much their watches may hold, and how long one runs.
#[derive(Debug, Clone, Copy)]
pub struct WatcherLimits {
    pub count: usize,
    pub bytes: usize,
    pub deadline: Duration,
}

impl Watchers {
    pub fn new(limits: WatcherLimits) -> Self {
        Watchers {
            running: Arc::default(),
            limits,
        }
    }

    pub fn stop(&self, key: &str) {
        self.running.lock().expect("watchers").tasks.retain(|task| {
            let same = task.key == key;
            if same {
                task.handle.abort();
            }
            !same
        });
    }

    pub fn start(&self, key: String, watch: Watch) {
        let bytes = watch.bytes();
        self.spawn(key, bytes, async move {
            run(watch).await;
        });
    }

    fn spawn(&self, key: String, bytes: usize, task: impl Future<Output = ()> + Send + 'static) {
        let limits = self.limits;
        self.stop(&key);
        if bytes > limits.bytes {
            tracing::warn!(
                "mirror: not watching this import: its watch would hold about {} MB, more than \
                 the {} MB all watchers may (GIT_DATASOURCE_MIRROR_WATCHERS_MB); the next crawl \
                 cleans up",
                bytes >> 20,
                limits.bytes >> 20
            );
            return;
        }
        let mut running = self.running.lock().expect("watchers");
        while !running.tasks.is_empty()
            && (running.tasks.len() >= limits.count
                || running.tasks.iter().map(|t| t.bytes).sum::<usize>() + bytes > limits.bytes)
        {
            let oldest = running.tasks.remove(0);
            oldest.handle.abort();
            tracing::info!(
                "mirror: the oldest watcher gives way to a newer one (at most {} at once, {} MB \
                 in all); the next crawl of its configuration finishes its work",
                limits.count,
                limits.bytes >> 20
            );
        }
        running.next += 1;
        let id = running.next;
        let registry = self.running.clone();
        // Spawned under the lock: the task's own removal waits until it is listed.
        let handle = tokio::spawn(async move {
            if tokio::time::timeout(limits.deadline, task).await.is_err() {
                tracing::info!(
                    "mirror: a watcher reached its deadline ({:?}); the next crawl finishes its \
                     work",
                    limits.deadline
                );
            }
            registry
                .lock()
                .expect("watchers")
                .tasks
                .retain(|t| t.id != id);
        })
        .abort_handle();
        running.tasks.push(Task {
            key,
            id,
            bytes,
            handle,
        });
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
    /// What to push once the user's import is indexed, and the Git client to read it with.
    pub rest: Option<Rest>,
    pub client: Arc<GitClient>,
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
    /// About how many bytes the watch holds: its listing, files and record.
    fn bytes(&self) -> usize {
        let files = |files: &[FileEntry]| files.iter().map(|f| f.path.len() + 64).sum::<usize>();
        let docs: usize = self
            .record
            .docs
            .iter()
            .map(|d| d.id.len() + 48 + d.ours.as_ref().map_or(0, |o| o.path.len() + 96))
            .sum();
        let offered: usize = self.offered.iter().map(|(p, _)| p.len() + 48).sum();
        let skipped: usize = self.skipped.keys().map(|p| p.len() + 64).sum();
        let rest = self.rest.as_ref().map_or(0, |r| files(&r.files));
        files(&self.files) + docs + offered + skipped + rest
    }

    /// The plan for the branch as the crawl read it against the knowledge base as listed.
    fn plan(&self, record: &KbRecord) -> plan::MirrorPlan {
        plan::plan(
            &self.files,
            &record.docs,
            &self.skipped,
            self.full,
            plan::DeleteGuard::Default,
        )
    }

    /// The watch that follows a crawl whose mirroring planned `outcome`; none after a run
    /// that found nothing changed (nothing to delete, nothing offered).
    pub fn after_crawl(
        mirror: Mirror,
        config_hash: &str,
        commit: &str,
        outcome: super::MirrorOutcome,
        full: bool,
        settings: WatchSettings,
        client: Arc<GitClient>,
    ) -> Option<Watch> {
        if outcome.unchanged && outcome.offered.is_empty() && outcome.plan.delete.is_empty() {
            return None;
        }
        let rest = match outcome.rest {
            // The user's import of the first part is what says to go on.
            Some(rest) if outcome.offered.is_empty() => {
                tracing::info!(
                    "mirror: the run offered nothing to import, so the rest of the change set \
                     ({} files) is left to the next run",
                    rest.files.len()
                );
                None
            }
            rest => rest,
        };
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
            rest,
            client,
        })
    }
}

/// Runs the watch to its end; returns every deletion made.
pub async fn run(mut watch: Watch) -> CleanupReport {
    // The wait ends after `max_wait` without any progress of the import: a large import
    // into a slow embedding model may index for longer than that in all.
    let mut progress_at = Instant::now();
    let mut seen = ImportProgress::default();
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
            total.extend(report);
        }
        let left = watch.plan(&record);
        let settled = left.offer.is_empty()
            && left.delete.is_empty()
            && left.held.is_empty()
            && left.indexing == 0;
        let settled = settled.then(|| watch.commit.clone());
        changed |= settled != record.settled;
        record.settled = settled;
        let import = import_progress(&record, &listed_before, &offered);
        if import != seen {
            (seen, progress_at) = (import, Instant::now());
        }
        if offered.is_empty() || import.finished() {
            if let Some(rest) = watch.rest.take() {
                // Then list again: what the pushed documents supersede is deleted next.
                total.extend(push_rest(&watch, rest, &mut record).await);
                changed = true;
            } else {
                if !offered.is_empty() {
                    tracing::info!("mirror: the import is indexed; watcher done");
                }
                watch
                    .mirror
                    .remember_in_memory(&watch.config_hash, record, changed);
                break;
            }
        } else if progress_at.elapsed() >= watch.settings.max_wait {
            tracing::info!(
                "mirror: the import made no progress for {:?} ({} of its documents arrived, {} \
                 still indexing); the next crawl cleans up",
                watch.settings.max_wait,
                import.arrived,
                import.indexing
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
                let plan = watch.plan(&record);
                if !plan.held.is_empty() {
                    tracing::warn!(
                        "mirror: {} deletions of gone files held back (more than half of this \
                         configuration's searchable documents); run with sync_mode full to allow them",
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

/// Pushes the rest of the change set through the published pipeline with its default
/// process inputs and waits until it is indexed; then deletes the documents of runs Dify
/// refused. Returns those deletions. A failure only logs: the next crawl offers what is left.
async fn push_rest(watch: &Watch, rest: Rest, record: &mut KbRecord) -> CleanupReport {
    let (api, dataset) = (&watch.mirror.api, &watch.mirror.dataset);
    let not_pushed = |why: &str| {
        tracing::warn!(
            "mirror: the rest of the change set ({} files) is not pushed: {why}; the next run \
             offers it",
            rest.files.len()
        );
        CleanupReport::default()
    };
    let start = match api.datasource_nodes(dataset).await {
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
    let left = watch.plan(record);
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
    let listed_before: HashSet<String> = record.docs.iter().map(|d| d.id.clone()).collect();
    let report = push::push(
        &push::Target {
            api,
            dataset,
            start_node: &start,
            inputs: &serde_json::json!({}),
        },
        &push::Source {
            read: push::read_reopening(watch.client.clone(), rest.place, rest.max_file_bytes),
            config_hash: &watch.config_hash,
            description_head: &rest.description_head,
        },
        &files,
        &PushSettings {
            poll: watch.settings.poll,
            ..PushSettings::default()
        },
        &|_| {},
    )
    .await;
    log_push(&report);
    if !report.rejected.iter().any(|r| r.answered) {
        return CleanupReport::default();
    }
    match watch.mirror.list(&watch.prefixes, Some(record)).await {
        Ok(listing) => {
            if let Some(docs) = listing.docs {
                record.docs = docs;
                record.total = listing.total;
            }
        }
        Err(error) => {
            tracing::warn!("mirror: listing failed: {error}; the next run cleans up");
            return CleanupReport::default();
        }
    }
    let orphans = report.refused_orphans(&record.docs, &listed_before);
    let cleanup = cleanup::delete_all(api, dataset, orphans, record).await;
    log(&cleanup);
    cleanup
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
        crate::crawl::shorten(&list)
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

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: WatcherLimits = WatcherLimits {
        count: 3,
        bytes: 1000,
        deadline: Duration::from_secs(3600),
    };

    impl Watchers {
        fn keys(&self) -> Vec<String> {
            let running = self.running.lock().unwrap();
            running.tasks.iter().map(|t| t.key.clone()).collect()
        }
    }

    fn forever() -> impl Future<Output = ()> + Send + 'static {
        std::future::pending()
    }

    #[tokio::test]
    async fn the_oldest_gives_way_in_number_and_in_memory() {
        let watchers = Watchers::new(LIMITS);
        for key in ["a", "b", "c", "d"] {
            watchers.spawn(key.into(), 100, forever());
        }
        assert_eq!(watchers.keys(), ["b", "c", "d"]);
        // A large one pushes out as many as its memory needs.
        watchers.spawn("big".into(), 850, forever());
        assert_eq!(watchers.keys(), ["d", "big"]);
        // One larger than all may hold is not started, and stops nothing but its own.
        watchers.spawn("d".into(), 5000, forever());
        assert_eq!(watchers.keys(), ["big"]);
    }

    #[tokio::test]
    async fn a_watcher_ends_by_its_deadline_and_leaves_the_list_when_done() {
        let watchers = Watchers::new(WatcherLimits {
            deadline: Duration::from_millis(50),
            ..LIMITS
        });
        watchers.spawn("stuck".into(), 10, forever());
        watchers.spawn("quick".into(), 10, async {});
        assert_eq!(watchers.keys().len(), 2);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(watchers.keys().is_empty(), "{:?}", watchers.keys());
    }

    #[tokio::test]
    async fn a_new_crawl_of_a_configuration_replaces_its_watcher() {
        let watchers = Watchers::new(LIMITS);
        watchers.spawn("a".into(), 10, forever());
        watchers.spawn("b".into(), 10, forever());
        watchers.spawn("a".into(), 10, forever());
        assert_eq!(watchers.keys(), ["b", "a"]);
        watchers.stop("b");
        assert_eq!(watchers.keys(), ["a"]);
    }
}
