//! The crawl: fetch → ledger → read and deliver → record. It knows nothing of JSON lines:
//! it reports through a [`CrawlSink`] and remembers through a [`StateStore`], which is what
//! lets the command line reuse it with a progress bar and files. With mirroring, what is
//! left once the message is out (deletions, the wait for the user's import) is handed on as
//! a [`Watch`].

pub mod deliver;
mod ledger;
pub mod plan;
mod read;
mod record;
mod summary;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::dify::knowledge::ApiError;
use crate::mirror::metadata::GitSource;
use crate::mirror::watch::{Rest, Watch};
use crate::mirror::Mirror;
use crate::repository::credentials::Credentials;
use crate::repository::params::{CrawlParams, SyncMode};
use crate::repository::{fetch, identity, shorten};
use crate::store::{sync_state, StateError, StateStore};
use deliver::Delivery;
use git_remote::{self, GitClient, GitError};
pub use summary::{MirrorReport, RunSummary};

/// Files read and reported per progress message.
pub const BATCH: usize = 50;
/// Room kept free below the transport's line cap.
pub const LINE_MARGIN: usize = 64 * 1024;

/// The byte budget of the final message's data: `configured` when set (never above the
/// line), else the longest line less a margin; less the `envelope` the transport wraps
/// around the data.
pub fn result_budget(max_line: usize, envelope: usize, configured: Option<usize>) -> usize {
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

/// The largest file read, and the time one run may take.
#[derive(Debug, Clone)]
pub struct CrawlSettings {
    pub max_file_bytes: u64,
    pub time_budget: Duration,
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

/// A finished crawl: what it did, and what is left for a watch.
pub struct Crawled {
    pub summary: RunSummary,
    /// The mirroring's deletions and the wait for the user's import; none when nothing
    /// was offered or planned.
    pub watch: Option<Watch>,
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
    pub async fn run(&self) -> Result<Crawled, CrawlError> {
        let started = Instant::now();
        let deadline = started + self.settings.time_budget;
        let hash = identity::config_hash(self.params);
        let legacy = identity::legacy_config_hash(self.params);
        let mut old = sync_state::load(self.store, &hash, legacy.as_deref()).await?;
        let mut summary = RunSummary {
            config_hash: hash.clone(),
            ..RunSummary::default()
        };

        // Fetch.
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

        // Ledger.
        let full = self.params.sync_mode.ignores_state();
        let source = GitSource::new(&fetched.url, &self.params.branch);
        let mirroring = self
            .open_mirror(&hash, legacy.as_deref(), source, deadline)
            .await?;
        let settled = match &mirroring {
            Some(mirroring) => mirroring.settled_at(&commit),
            None => old.settled_at(&commit),
        };
        if !full && settled {
            self.sink
                .finish(Delivery::new(usize::MAX).into_final_message(0, 0))
                .await?;
            summary.complete = true;
            summary.unchanged = true;
            if let Some(mut mirroring) = mirroring {
                summary.mirror = Some(MirrorReport {
                    requests: mirroring.requests,
                    listing_time: mirroring.listing_time,
                    unchanged: true,
                    ..MirrorReport::default()
                });
                // Nothing to watch: the record goes back where the next run looks. What a
                // watch learned lives in memory only until a crawl stores it.
                match mirroring.record.stored {
                    true => mirroring.into_memory(false),
                    false => mirroring.remember(self.store).await,
                }
            }
            return Ok(Crawled {
                summary,
                watch: None,
            });
        }
        let plan_started = Instant::now();
        let fetched = Arc::new(fetched);
        let files = {
            let (fetched, filter) = (fetched.clone(), self.params.filter());
            blocking(move || git_remote::list_files(&fetched.open()?, fetched.commit, &filter))
                .await?
                .files
        };
        let mut change = self
            .change_set(&files, mirroring.as_ref(), &mut old, &fetched, host_keys)
            .await;
        summary.total = change.plan.candidates.len();
        summary.deleted = std::mem::take(&mut change.plan.deleted);
        summary.renamed = std::mem::take(&mut change.plan.renamed);
        summary.plan_time = plan_started.elapsed();

        // Read and deliver.
        let read_started = Instant::now();
        let description_head =
            identity::description_head(&fetched.url.masked(), &self.params.branch, &commit);
        let candidates = &change.plan.candidates;
        let (delivery, read) = self
            .read_and_deliver(
                candidates,
                &fetched.repo_dir,
                &description_head,
                deadline,
                &mut summary,
            )
            .await?;
        summary.complete = !read.stopped;
        summary.bytes = delivery.bytes();
        summary.read_time = read_started.elapsed();
        if self.params.sync_mode == SyncMode::Snapshot {
            not_whole(&summary, &read.failed, self.sink.data_budget())?;
        }
        let message = delivery.into_final_message(summary.total, summary.attempted);
        self.sink.finish(message).await?;

        // Record: only now, with the final message written.
        let record_started = Instant::now();
        self.record_state(&files, &change, &read, &summary, &old)
            .await?;
        let watch = match mirroring {
            Some(mirroring) => {
                let rest = (self.params.push_rest && !summary.complete).then(|| Rest {
                    files: candidates[summary.attempted..].to_vec(),
                    place: fetched.place(),
                    description_head,
                    max_file_bytes: self.settings.max_file_bytes,
                });
                let (report, watch) = self
                    .record_mirror(mirroring, files, change, &read, &summary, rest)
                    .await;
                summary.mirror = Some(report);
                watch
            }
            None => None,
        };
        summary.failed = read.failed;
        summary.record_time = record_started.elapsed();
        Ok(Crawled { summary, watch })
    }
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

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, GitError> + Send + 'static,
) -> Result<T, CrawlError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| CrawlError::Output(format!("a worker crashed: {e}")))?
        .map_err(CrawlError::Git)
}
