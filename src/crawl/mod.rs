//! The crawl: parameters → fetch → plan → read → deliver → record. It knows nothing of
//! JSON lines: it reports through a [`CrawlSink`] and remembers through a [`StateStore`],
//! which is what lets the command line reuse it with a progress bar and files.

pub mod deliver;
pub mod fetch;
pub mod identity;
pub mod params;
pub mod plan;
pub mod snapshot;
pub mod state;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::credentials::Credentials;
use crate::mirror::api::{ApiError, ApiErrorKind};
use crate::mirror::{Mirror, MirrorOutcome};
use deliver::{Delivery, Document, Fit};
use git_remote::{
    self, BlobRead, FetchRequest, Fetched, GitClient, GitError, MemoryHostKeys, SkipReason,
};
use params::{CrawlParams, SyncMode};
use snapshot::Entries;
use state::{StateError, StateStore, SyncState};

/// Files read and reported per progress message.
pub const BATCH: usize = 50;
/// Progress is reported at least this often while fetching.
pub const FETCH_PROGRESS_EVERY: Duration = Duration::from_secs(10);
/// The default time budget of one run, well under the daemon's 600 s.
pub const DEFAULT_TIME_BUDGET: Duration = Duration::from_secs(420);
/// Room kept free below the transport's line cap.
pub const LINE_MARGIN: usize = 64 * 1024;

/// The byte budget of the final message's data: `GIT_DATASOURCE_MAX_RESULT_BYTES` when set
/// (never above the line), else the longest line less a margin; less the `envelope` the
/// transport wraps around the data.
pub fn result_budget(max_line: usize, envelope: usize) -> usize {
    let configured = std::env::var("GIT_DATASOURCE_MAX_RESULT_BYTES")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok());
    let line_budget = match configured {
        Some(bytes) => bytes.min(max_line),
        None => max_line.saturating_sub(LINE_MARGIN),
    };
    line_budget.saturating_sub(envelope)
}

/// Where a run's messages go: the daemon session, or the terminal.
pub trait CrawlSink: Send + Sync {
    fn progress(
        &self,
        total: usize,
        completed: usize,
    ) -> impl Future<Output = Result<(), CrawlError>> + Send;
    /// The most bytes the final message's data may take.
    fn data_budget(&self) -> usize;
    /// Writes the final `completed` message (its serialized `data`).
    fn finish(&self, data: Vec<u8>) -> impl Future<Output = Result<(), CrawlError>> + Send;
}

#[derive(Debug, Clone)]
pub struct CrawlSettings {
    pub max_file_bytes: u64,
    pub time_budget: Duration,
}

impl CrawlSettings {
    /// `GIT_DATASOURCE_MAX_FILE_BYTES` (5,000,000) and `GIT_DATASOURCE_TIME_BUDGET_SECS` (420).
    pub fn from_env() -> Self {
        let number = |name: &str| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        CrawlSettings {
            max_file_bytes: number("GIT_DATASOURCE_MAX_FILE_BYTES")
                .unwrap_or(git_remote::blob::DEFAULT_MAX_FILE_BYTES),
            time_budget: number("GIT_DATASOURCE_TIME_BUDGET_SECS")
                .map(Duration::from_secs)
                .unwrap_or(DEFAULT_TIME_BUDGET),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CrawlError {
    #[error("invalid parameters: {}", .0.join("; "))]
    Params(Vec<String>),
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("sending the result failed: {0}")]
    Output(String),
    #[error("mirroring into the knowledge base: {0}")]
    Mirror(ApiError),
    /// `sync_mode: snapshot` could not return the whole branch: nothing was returned.
    #[error("{0}")]
    NotWhole(String),
}

/// A snapshot run that cannot return every file returns none: its caller deletes what a run
/// leaves out, so part of the branch would delete the rest.
fn not_whole(summary: &RunSummary, failed: &[String], budget: usize) -> Result<(), CrawlError> {
    let why = if !failed.is_empty() {
        format!(
            "{} files could not be read ({})",
            failed.len(),
            shorten(&failed.iter().map(String::as_str).collect::<Vec<_>>())
        )
    } else if summary.complete {
        return Ok(());
    } else {
        format!(
            "the branch does not fit in one run: {} of its {} files fit in the result's {budget} \
             bytes (Dify's limit per message) or in the run's time",
            summary.delivered, summary.total
        )
    };
    Err(CrawlError::NotWhole(format!(
        "sync_mode snapshot returns the whole branch or nothing, and {why}. Nothing was returned, \
         so the knowledge base keeps what it has. Narrow the source with subdir, extensions, \
         include or exclude (or split it into several sources), or use a knowledge pipeline with \
         sync_mode incremental"
    )))
}

/// What a run did, for logs and the command line.
#[derive(Debug, Default, Clone)]
pub struct RunSummary {
    pub commit: String,
    pub config_hash: String,
    /// Files in the change set, and how many of them this run attempted.
    pub total: usize,
    pub attempted: usize,
    pub delivered: usize,
    pub bytes: usize,
    pub skipped: BTreeMap<&'static str, usize>,
    /// Every skipped file and why.
    pub skipped_files: Vec<(String, String)>,
    pub failed: Vec<String>,
    pub deleted: Vec<String>,
    pub renamed: Vec<(String, String)>,
    /// False when the change set did not fit: the next run continues it.
    pub complete: bool,
    pub unchanged: bool,
    /// With mirroring: what the knowledge base held and what to delete.
    pub mirror: Option<MirrorOutcome>,
    pub fetch_time: Duration,
    pub plan_time: Duration,
    pub read_time: Duration,
    pub record_time: Duration,
}

impl RunSummary {
    /// `path (why)` of every skipped file.
    pub fn skipped_lines(&self) -> Vec<String> {
        self.skipped_files
            .iter()
            .map(|(path, why)| format!("{path} ({why})"))
            .collect()
    }

    /// `from -> to` of every rename.
    pub fn renamed_lines(&self) -> Vec<String> {
        self.renamed
            .iter()
            .map(|(from, to)| format!("{from} -> {to}"))
            .collect()
    }
}

pub struct Crawl<'a, S: StateStore, K: CrawlSink> {
    pub params: &'a CrawlParams,
    pub credentials: &'a Credentials,
    pub store: &'a S,
    pub sink: &'a K,
    pub client: Arc<GitClient>,
    pub settings: &'a CrawlSettings,
    /// The knowledge base to mirror into, when configured.
    pub mirror: Option<&'a Mirror>,
}

impl<S: StateStore, K: CrawlSink> Crawl<'_, S, K> {
    pub async fn run(&self) -> Result<RunSummary, CrawlError> {
        let started = Instant::now();
        let deadline = started + self.settings.time_budget;
        let hash = identity::config_hash(self.params);
        let legacy = identity::legacy_config_hash(self.params);
        let mut old = state::load(self.store, &hash, legacy.as_deref()).await?;
        let mut summary = RunSummary {
            config_hash: hash.clone(),
            ..RunSummary::default()
        };

        let (fetched, host_keys) = fetch::fetch_branch(
            &self.client,
            self.params,
            self.credentials,
            self.store,
            Some(deadline),
            || self.sink.progress(0, 0),
        )
        .await?;
        let commit = fetched.commit.to_string();
        summary.commit = commit.clone();
        summary.fetch_time = started.elapsed();

        let full = self.params.sync_mode.ignores_state();
        let mut mirror = self
            .list_knowledge_base(&hash, legacy.as_deref(), deadline)
            .await?;
        let settled = match &mirror {
            Some(mirror) => mirror.unchanged && mirror.record.settled.as_ref() == Some(&commit),
            None => {
                old.last_commit.as_deref() == Some(commit.as_str())
                    && old.pending.is_none()
                    && old.failed.is_empty()
            }
        };
        if !full && settled {
            self.sink
                .finish(Delivery::new(usize::MAX).into_final_message(0, 0))
                .await?;
            summary.complete = true;
            summary.unchanged = true;
            if let (Some(target), Some(outcome)) = (self.mirror, mirror.as_mut()) {
                // Nothing to watch: the record goes back where the next run looks. What a
                // watcher learned lives in memory only until a crawl stores it.
                let mut record = std::mem::take(&mut outcome.record);
                match record.stored {
                    true => target.remember_in_memory(&hash, record, false),
                    false => target.remember(self.store, &hash, &mut record).await,
                }
            }
            summary.mirror = mirror;
            return Ok(summary);
        }

        let plan_started = Instant::now();
        let fetched = Arc::new(fetched);
        let filter = self.params.filter();
        let listing = {
            let (fetched, filter) = (fetched.clone(), filter.clone());
            blocking(move || git_remote::list_files(&fetched.open()?, fetched.commit, &filter))
                .await?
        };
        // With mirroring the knowledge base, not the snapshot, says what was delivered.
        let (snapshot, failed_before) = match full || mirror.is_some() {
            true => (Entries::new(), Vec::new()),
            false => (
                self.previous_delivery(&mut old, &fetched, &filter, host_keys.clone())
                    .await,
                old.failed.clone(),
            ),
        };
        // What earlier runs of an unfinished change set handled: a `full` sync continues
        // only a `full` one, since it ignores the snapshot.
        let carried = match &old.pending {
            Some((record, entries)) if !full || record.full => Some(entries),
            _ => None,
        };
        let delivered_before = match carried {
            Some(carried) => {
                let mut overlaid = snapshot.clone();
                overlaid.extend(carried.iter().map(|(p, o)| (p.clone(), *o)));
                std::borrow::Cow::Owned(overlaid)
            }
            None => std::borrow::Cow::Borrowed(&snapshot),
        };
        let plan = match mirror.as_mut() {
            // The knowledge base says what to offer; deletions are its plan's.
            Some(mirror) => {
                let skipped = mirror.record.skipped_entries();
                mirror.plan = crate::mirror::plan::plan(
                    &listing.files,
                    &mirror.record.docs,
                    &skipped,
                    full,
                    crate::mirror::plan::DeleteGuard::Default,
                );
                plan::Plan {
                    candidates: std::mem::take(&mut mirror.plan.offer),
                    ..plan::Plan::default()
                }
            }
            None => plan::plan(&listing.files, &delivered_before, &snapshot, &failed_before),
        };
        summary.total = plan.candidates.len();
        summary.deleted = plan.deleted.clone();
        summary.renamed = plan.renamed.clone();
        summary.plan_time = plan_started.elapsed();

        let read_started = Instant::now();
        let mut delivery = Delivery::new(self.sink.data_budget());
        let mut handled = Entries::new();
        let mut failed_now = Vec::new();
        let mut skipped_now = Entries::new();
        let mut offered_now = Vec::new();
        let description_head =
            identity::description_head(&fetched.url.masked(), &self.params.branch, &commit);
        let reader = Arc::new(std::sync::Mutex::new(git_remote::BlobReader::new(
            &fetched.repo_dir,
            self.settings.max_file_bytes,
        )));
        let mut stopped = false;
        'batches: for batch in plan.candidates.chunks(BATCH) {
            if summary.attempted > 0 && Instant::now() >= deadline {
                tracing::warn!(
                    "time budget spent after {} of {} files",
                    summary.attempted,
                    summary.total
                );
                stopped = true;
                break;
            }
            let reads = {
                let (reader, batch) = (reader.clone(), batch.to_vec());
                blocking(move || Ok(reader.lock().expect("blob reader").read(&batch))).await?
            };
            for (file, read) in batch.iter().zip(reads) {
                match read {
                    BlobRead::Text(text) => {
                        let url = identity::source_url(&hash, &file.path);
                        let title = identity::title(&file.path);
                        let description = identity::description(&description_head, file.oid);
                        let document = Document {
                            source_url: &url,
                            content: &text,
                            title: &title,
                            description: &description,
                        };
                        match delivery.try_add(&document) {
                            Fit::Added => {
                                summary.delivered += 1;
                                offered_now.push((file.path.clone(), file.oid));
                            }
                            Fit::Full => {
                                stopped = true;
                                break 'batches;
                            }
                            Fit::TooLarge(json_bytes) => {
                                // Under the file limit, but larger than a whole message
                                // once escaped as JSON.
                                let reason = SkipReason::TooLarge {
                                    size: json_bytes as u64,
                                    limit: self.sink.data_budget() as u64,
                                };
                                skip(&mut summary, &file.path, &reason);
                                skipped_now.insert(file.path.clone(), file.oid);
                            }
                        }
                        handled.insert(file.path.clone(), file.oid);
                    }
                    BlobRead::Skipped(reason) => {
                        skip(&mut summary, &file.path, &reason);
                        handled.insert(file.path.clone(), file.oid);
                        skipped_now.insert(file.path.clone(), file.oid);
                    }
                    BlobRead::Failed(why) => {
                        tracing::warn!("reading {} failed: {why}", file.path);
                        failed_now.push(file.path.clone());
                    }
                }
                summary.attempted += 1;
            }
            self.sink.progress(summary.total, summary.attempted).await?;
        }
        summary.complete = !stopped;
        summary.bytes = delivery.bytes();
        summary.read_time = read_started.elapsed();
        if self.params.sync_mode == SyncMode::Snapshot {
            not_whole(&summary, &failed_now, self.sink.data_budget())?;
        }

        self.sink
            .finish(delivery.into_final_message(summary.total, summary.attempted))
            .await?;

        // Only now, with the final message written, is anything recorded.
        let record_started = Instant::now();
        let attempted: std::collections::BTreeSet<&str> = plan
            .candidates
            .iter()
            .take(summary.attempted)
            .map(|f| f.path.as_str())
            .collect();
        let present: std::collections::BTreeSet<&str> =
            listing.files.iter().map(|f| f.path.as_str()).collect();
        let mut failed: Vec<String> = failed_before
            .iter()
            .filter(|p| !attempted.contains(p.as_str()) && present.contains(p.as_str()))
            .cloned()
            .chain(failed_now.iter().cloned())
            .collect();
        failed.sort();
        failed.dedup();
        if summary.complete {
            let delivered: Entries = listing
                .files
                .iter()
                .filter(|f| !failed_now.contains(&f.path))
                .map(|f| (f.path.clone(), f.oid))
                .collect();
            state::save_complete(self.store, &hash, &commit, &delivered, &failed, &old).await?;
        } else {
            let mut pending = carried.cloned().unwrap_or_default();
            pending.extend(handled);
            state::save_pending(self.store, &hash, &commit, &pending, &failed, &old, full).await?;
        }
        if let Some(mut mirror) = mirror {
            let progress = RunProgress {
                attempted: plan
                    .candidates
                    .iter()
                    .take(summary.attempted)
                    .map(|f| f.path.clone())
                    .collect(),
                skipped: skipped_now,
                offered: offered_now,
                finished: summary.complete && failed_now.is_empty(),
            };
            self.remember_mirror(&hash, &commit, listing.files, progress, &mut mirror)
                .await;
            if self.params.push_rest && !summary.complete {
                mirror.rest = Some(crate::mirror::watcher::Rest {
                    files: plan.candidates[summary.attempted..].to_vec(),
                    place: fetched.place(),
                    description_head,
                    max_file_bytes: self.settings.max_file_bytes,
                });
            }
            summary.mirror = Some(mirror);
        }
        summary.failed = failed_now;
        summary.record_time = record_started.elapsed();
        Ok(summary)
    }

    /// With mirroring on, the knowledge base's documents (reading only what changed since
    /// the remembered list). A configuration error fails the run; a passing fault falls
    /// back to plugin-storage state and deletes nothing.
    async fn list_knowledge_base(
        &self,
        hash: &str,
        legacy: Option<&str>,
        deadline: Instant,
    ) -> Result<Option<MirrorOutcome>, CrawlError> {
        let Some(mirror) = self.mirror else {
            return Ok(None);
        };
        let started = Instant::now();
        let known = mirror.remembered(self.store, hash).await;
        let prefixes: Vec<String> = std::iter::once(hash)
            .chain(legacy)
            .map(crate::mirror::documents::url_prefix)
            .collect();
        // The listing shares the run's deadline, leaving a quarter of the budget to read and
        // deliver: a slow (or dripping) API cannot hold the crawl past it.
        let listing_ends = deadline
            .checked_sub(self.settings.time_budget / 4)
            .unwrap_or(deadline);
        let listed = match tokio::time::timeout_at(
            tokio::time::Instant::from_std(listing_ends),
            mirror.list(&prefixes, known.as_ref()),
        )
        .await
        {
            Ok(listed) => listed,
            Err(_) => Err(ApiError {
                kind: ApiErrorKind::Other,
                status: None,
                message: format!(
                    "listing the knowledge base took longer than this run can wait ({:.0?})",
                    listing_ends.saturating_duration_since(started)
                ),
            }),
        };
        let (listed, known) = match (listed, known) {
            (Err(error), Some(known)) => {
                // Not lost for the next run.
                mirror.remember_in_memory(hash, known, false);
                (Err(error), None)
            }
            other => other,
        };
        match listed {
            Ok(listing) => {
                let mut record = known.unwrap_or_default();
                if let Some(docs) = listing.docs {
                    record.docs = docs;
                    record.total = listing.total;
                }
                Ok(Some(MirrorOutcome {
                    record,
                    prefixes,
                    requests: listing.requests,
                    listing_time: started.elapsed(),
                    unchanged: listing.unchanged,
                    ..MirrorOutcome::default()
                }))
            }
            Err(error) if error.is_configuration() => Err(CrawlError::Mirror(error)),
            Err(error) => {
                tracing::warn!(
                    "mirror: {error}; this run delivers from plugin storage state and deletes nothing"
                );
                Ok(None)
            }
        }
    }

    /// Keeps what the next run needs: the permanent skips still in the branch, and the
    /// commit when nothing was left to do.
    async fn remember_mirror(
        &self,
        hash: &str,
        commit: &str,
        files: Vec<git_remote::FileEntry>,
        progress: RunProgress,
        mirror: &mut MirrorOutcome,
    ) {
        let mut skipped = mirror.record.skipped_entries();
        skipped.retain(|path, _| !progress.attempted.contains(path));
        skipped.extend(progress.skipped);
        let current: std::collections::BTreeMap<&str, git2::Oid> =
            files.iter().map(|f| (f.path.as_str(), f.oid)).collect();
        skipped.retain(|path, oid| current.get(path.as_str()) == Some(oid));
        mirror.record.skipped = skipped
            .iter()
            .map(|(path, oid)| (path.clone(), oid.to_string()))
            .collect();
        let planned = &mirror.plan;
        let nothing_left = progress.finished
            && progress.offered.is_empty()
            && planned.delete.is_empty()
            && planned.held.is_empty()
            && planned.indexing == 0;
        mirror.record.settled = nothing_left.then(|| commit.to_string());
        mirror.offered = progress.offered;
        mirror.files = files;
        if let Some(target) = self.mirror {
            target.remember(self.store, hash, &mut mirror.record).await;
        }
    }

    /// The snapshot (taken out of `old`, whose records alone are needed later); or, with only
    /// the Python plugin's `git_sha`, that commit's tree when it can still be fetched; else
    /// nothing (a full sync).
    async fn previous_delivery(
        &self,
        old: &mut SyncState,
        fetched: &Arc<Fetched>,
        filter: &git_remote::PathFilter,
        host_keys: Arc<MemoryHostKeys>,
    ) -> Entries {
        if let Some((_, entries)) = old.snapshot.as_mut() {
            return std::mem::take(entries);
        }
        let Some(previous) = old.last_commit.clone() else {
            return Entries::new();
        };
        let (client, fetched, filter, credentials) = (
            self.client.clone(),
            fetched.clone(),
            filter.clone(),
            self.credentials.clone(),
        );
        // The same host keys as the first connection: a server showing another key here
        // is refused, like anywhere else.
        let listed = tokio::task::spawn_blocking(move || {
            let request = FetchRequest {
                url: fetched.url.fetch_url(),
                reference: &previous,
                credentials: &credentials.git,
                host_keys: host_keys.as_ref(),
                deadline: None,
                progress: None,
            };
            let oid = client.fetch_commit(&fetched, &previous, &request)?;
            git_remote::list_files(&fetched.open().ok()?, oid, &filter).ok()
        })
        .await
        .ok()
        .flatten();
        match listed {
            Some(listing) => {
                tracing::info!("continuing from the Python plugin's last commit");
                listing.files.into_iter().map(|f| (f.path, f.oid)).collect()
            }
            None => {
                tracing::info!("the last synced commit cannot be fetched; syncing everything");
                Entries::new()
            }
        }
    }
}

/// At most 20 paths (or lines) for a log or a summary, then how many more.
pub fn shorten(paths: &[&str]) -> String {
    let mut text = paths
        .iter()
        .take(20)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if paths.len() > 20 {
        text.push_str(&format!(" and {} more", paths.len() - 20));
    }
    text
}

/// What the read loop did, for the mirror record.
struct RunProgress {
    attempted: std::collections::BTreeSet<String>,
    /// Files skipped for good (binary, too large, …).
    skipped: Entries,
    /// `(path, blob)` of every document in the final message.
    offered: Vec<(String, git2::Oid)>,
    /// Every candidate was attempted and none failed.
    finished: bool,
}

fn skip(summary: &mut RunSummary, path: &str, reason: &SkipReason) {
    *summary.skipped.entry(reason.name()).or_default() += 1;
    summary
        .skipped_files
        .push((path.to_string(), reason.to_string()));
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, GitError> + Send + 'static,
) -> Result<T, CrawlError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| CrawlError::Output(format!("a worker crashed: {e}")))?
        .map_err(CrawlError::Git)
}
