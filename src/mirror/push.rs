//! Pushing files into a pipeline knowledge base through `POST /pipeline/run`: read the
//! blobs, group the documents into runs bounded by count and bytes, keep few runs indexing at
//! once (Dify's worker takes them one after another, and many at once exhaust its database
//! pool), and follow each run's batch until its documents are indexed.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use git2::Oid;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::batcher::{Batch, Batcher};
use super::documents::{DocState, KbDocument};
use super::plan::{DeleteReason, Deletion};
use crate::dify::knowledge::{ApiError, KnowledgeApi};
use crate::dify::pipeline::run_body;
use crate::repository::identity::{self, Document};
use git_remote::{read_blobs, BlobRead, BlobReader, FileEntry, GitClient, GitError, RepoPlace};

/// Files read per blocking read.
const READ_CHUNK: usize = 50;

/// Runs whose documents are not all indexed yet, at most, per Dify.
pub const RUNS_IN_FLIGHT: usize = 2;

/// Room for pipeline runs still indexing. Pushes that share one (every push to one Dify in a
/// `sync --config`) keep at most its size of runs in Dify's worker queue between them.
#[derive(Debug, Clone)]
pub struct RunSlots(Arc<Semaphore>);

impl RunSlots {
    pub fn new(runs: usize) -> RunSlots {
        RunSlots(Arc::new(Semaphore::new(runs.max(1))))
    }
}

#[derive(Debug, Clone)]
pub struct PushSettings {
    /// Documents per run, and bytes of their JSON per run (a run of one larger document
    /// goes alone).
    pub max_items: usize,
    pub max_bytes: usize,
    /// Room for runs whose documents are not all indexed yet.
    pub slots: RunSlots,
    /// How often indexing is checked, and how long it may make no progress at all.
    pub poll: Duration,
    pub stall: Duration,
}

impl Default for PushSettings {
    fn default() -> Self {
        PushSettings {
            max_items: 100,
            max_bytes: 4 * 1024 * 1024,
            slots: RunSlots::new(RUNS_IN_FLIGHT),
            poll: Duration::from_secs(2),
            stall: Duration::from_secs(300),
        }
    }
}

/// Where documents go: the knowledge base, the published pipeline's start node, and its
/// process-form inputs.
pub struct Target<'a> {
    pub api: &'a KnowledgeApi,
    pub dataset: &'a str,
    pub start_node: &'a str,
    pub inputs: &'a serde_json::Value,
}

/// Reads the blobs of some files (on a blocking thread); an error stops the push.
pub type ReadFiles = Arc<dyn Fn(&[FileEntry]) -> Result<Vec<BlobRead>, GitError> + Send + Sync>;

/// Reads from a fetched commit held for the whole push, with warm handles.
pub fn read_held(repo_dir: &Path, max_file_bytes: u64) -> ReadFiles {
    let reader = Mutex::new(BlobReader::new(repo_dir, max_file_bytes));
    Arc::new(move |files| Ok(reader.lock().expect("blob reader").read(files)))
}

/// Reads from a fetched commit whose cache entry is locked for each read only, so crawls of
/// the same repository are not held up by a long push.
pub fn read_reopening(client: Arc<GitClient>, place: RepoPlace, max_file_bytes: u64) -> ReadFiles {
    Arc::new(move |files| {
        let fetched = client.reopen(&place)?;
        Ok(read_blobs(&fetched.repo_dir, files, max_file_bytes))
    })
}

/// Where the files come from, and how their documents are named.
pub struct Source<'a> {
    pub read: ReadFiles,
    pub config_hash: &'a str,
    pub description_head: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushEvent {
    /// Files read so far, of all to push.
    Read { done: usize, total: usize },
    /// Documents indexed (or failed) so far, of all created.
    Indexed { done: usize, created: usize },
}

/// A run Dify refused (or whose answer was lost): its files and why.
#[derive(Debug, Clone)]
pub struct Rejected {
    pub files: Vec<(String, Oid)>,
    pub why: String,
    /// Dify answered with an error, so documents it made for the run will never be
    /// indexed; false when the connection broke after sending (they may be indexing).
    pub answered: bool,
}

#[derive(Debug, Default)]
pub struct PushReport {
    /// `(path, blob)` of every document created, by document id.
    pub created: HashMap<String, (String, Oid)>,
    pub indexed: usize,
    /// Files never pushed: binary, too large… (path, blob, why).
    pub skipped: Vec<(String, Oid, String)>,
    pub read_failed: Vec<String>,
    pub rejected: Vec<Rejected>,
    /// Documents whose indexing ended in `error`: path and Dify's message.
    pub failed_indexing: Vec<(String, String)>,
    /// Paths of documents still not indexed when indexing stalled.
    pub unfinished: Vec<String>,
    /// A configuration error that stopped the push (nothing more was sent after it).
    pub stopped: Option<ApiError>,
    pub runs: usize,
    pub requests: usize,
    pub bytes_sent: usize,
}

impl PushReport {
    /// Documents runs Dify refused after creating them (it will never index them): new
    /// since `listed_before`, of a refused file, still waiting. Deleting them is safe: a run
    /// whose answer was lost is not counted (its documents may be indexing).
    pub fn refused_orphans(
        &self,
        docs: &[KbDocument],
        listed_before: &HashSet<String>,
    ) -> Vec<Deletion> {
        let refused: HashSet<(&str, String)> = self
            .rejected
            .iter()
            .filter(|r| r.answered)
            .flat_map(|r| r.files.iter().map(|(p, o)| (p.as_str(), o.to_string())))
            .collect();
        docs.iter()
            .filter(|d| !listed_before.contains(&d.id) && !self.created.contains_key(&d.id))
            .filter_map(|d| {
                let ours = d.ours.as_ref()?;
                let refused_file = refused.contains(&(ours.path.as_str(), ours.blob.clone()?));
                (refused_file && ours.state == DocState::Indexing).then(|| Deletion {
                    id: d.id.clone(),
                    path: ours.path.clone(),
                    why: DeleteReason::Gone,
                })
            })
            .collect()
    }
}

/// A run whose documents are not all indexed yet.
struct Running {
    batch: String,
    left: HashSet<String>,
    /// Its room among the runs in flight, given back when it is dropped.
    _slot: OwnedSemaphorePermit,
}

struct Pusher<'a> {
    target: &'a Target<'a>,
    settings: &'a PushSettings,
    on: &'a (dyn Fn(PushEvent) + Send + Sync),
    running: Vec<Running>,
    last_change: Instant,
    report: PushReport,
}

/// Pushes `files` (in order) and waits until their documents are indexed, or indexing makes
/// no progress for `settings.stall`, or Dify refuses the configuration.
pub async fn push(
    target: &Target<'_>,
    source: &Source<'_>,
    files: &[FileEntry],
    settings: &PushSettings,
    on: &(dyn Fn(PushEvent) + Send + Sync),
) -> PushReport {
    let mut pusher = Pusher {
        target,
        settings,
        on,
        running: Vec::new(),
        last_change: Instant::now(),
        report: PushReport::default(),
    };
    let mut batcher = Batcher::new(settings.max_items, settings.max_bytes);
    let mut read = 0;
    'files: for chunk in files.chunks(READ_CHUNK) {
        let reads = {
            let (read_files, owned) = (source.read.clone(), chunk.to_vec());
            tokio::task::spawn_blocking(move || read_files(&owned))
                .await
                .unwrap_or_else(|e| Ok(vec![BlobRead::Failed(e.to_string()); chunk.len()]))
        };
        let reads = match reads {
            Ok(reads) => reads,
            Err(error) => {
                tracing::warn!(
                    "reading the files to push stopped ({error}): {} files not pushed",
                    files.len() - read
                );
                pusher
                    .report
                    .read_failed
                    .extend(files[read..].iter().map(|f| f.path.clone()));
                break 'files;
            }
        };
        for (file, blob) in chunk.iter().zip(reads) {
            let item = match blob {
                BlobRead::Text(text) => item(source, file, &text),
                BlobRead::Skipped(why) => {
                    let why = why.to_string();
                    pusher
                        .report
                        .skipped
                        .push((file.path.clone(), file.oid, why));
                    continue;
                }
                BlobRead::Failed(why) => {
                    tracing::warn!("reading {} failed: {why}", file.path);
                    pusher.report.read_failed.push(file.path.clone());
                    continue;
                }
            };
            if let Some(batch) = batcher.add(item, (file.path.clone(), file.oid)) {
                if !pusher.send(batch).await {
                    break 'files;
                }
            }
        }
        read += chunk.len();
        on(PushEvent::Read {
            done: read,
            total: files.len(),
        });
    }
    if let Some(batch) = batcher.finish() {
        if pusher.report.stopped.is_none() && !pusher.stalled() {
            pusher.send(batch).await;
        }
    }
    pusher.wait_until_indexed().await;
    let mut report = pusher.report;
    for running in &pusher.running {
        report.unfinished.extend(
            running
                .left
                .iter()
                .filter_map(|id| Some(report.created.get(id)?.0.clone())),
        );
    }
    report.unfinished.sort();
    report
}

/// One file's document, serialized once.
fn item(source: &Source<'_>, file: &FileEntry, text: &str) -> Vec<u8> {
    let url = identity::source_url(source.config_hash, &file.path);
    let title = identity::title(&file.path);
    let description = identity::description(source.description_head, file.oid);
    let document = Document {
        source_url: &url,
        content: text,
        title: &title,
        description: &description,
    };
    serde_json::to_vec(&document).expect("a document serializes")
}

impl Pusher<'_> {
    /// Sends one run once there is room; false when nothing more should be sent.
    async fn send(&mut self, batch: Batch) -> bool {
        let Some(slot) = self.wait_for_a_slot().await else {
            return false;
        };
        let items: Vec<&[u8]> = batch.items.iter().map(Vec::as_slice).collect();
        let body = run_body(self.target.start_node, self.target.inputs, &items);
        self.report.requests += 1;
        self.report.runs += 1;
        self.report.bytes_sent += body.len();
        match self
            .target
            .api
            .run_pipeline(self.target.dataset, &body)
            .await
        {
            Ok(answer) => {
                let mut left = HashSet::new();
                for (document, file) in answer.documents.into_iter().zip(batch.files) {
                    left.insert(document.id.clone());
                    self.report.created.insert(document.id, file);
                }
                self.running.push(Running {
                    batch: answer.batch,
                    left,
                    _slot: slot,
                });
                self.last_change = Instant::now();
                true
            }
            Err(error) => {
                let paths: Vec<&str> = batch.files.iter().map(|(p, _)| p.as_str()).collect();
                tracing::warn!(
                    "a run of {} documents was refused ({}): {error}",
                    paths.len(),
                    crate::repository::shorten(&paths)
                );
                let stop = error.is_configuration();
                self.report.rejected.push(Rejected {
                    files: batch.files,
                    why: error.message.clone(),
                    answered: error.status.is_some(),
                });
                if stop {
                    self.report.stopped = Some(error);
                }
                !stop
            }
        }
    }

    fn stalled(&self) -> bool {
        !self.running.is_empty() && self.last_change.elapsed() >= self.settings.stall
    }

    /// Room for one more run: polls this push's runs until one of them gives room back, or,
    /// with none of its own in flight, waits for other pushes to give some back. None when
    /// indexing stalled or the configuration was refused.
    async fn wait_for_a_slot(&mut self) -> Option<OwnedSemaphorePermit> {
        let slots = &self.settings.slots.0;
        loop {
            if let Ok(slot) = slots.clone().try_acquire_owned() {
                return Some(slot);
            }
            if self.running.is_empty() {
                return slots.clone().acquire_owned().await.ok();
            }
            if !self.wait_a_poll().await {
                return None;
            }
        }
    }

    /// Waits until every run of this push is indexed; false when indexing stalled or the
    /// configuration was refused.
    async fn wait_until_indexed(&mut self) -> bool {
        while !self.running.is_empty() {
            if !self.wait_a_poll().await {
                return false;
            }
        }
        true
    }

    /// Waits one poll interval and reads the runs' indexing; false when indexing stalled or
    /// the configuration was refused.
    async fn wait_a_poll(&mut self) -> bool {
        if self.report.stopped.is_some() {
            return false;
        }
        if self.stalled() {
            tracing::warn!(
                "no document was indexed for {:?}; is Dify's worker running?",
                self.settings.stall
            );
            return false;
        }
        tokio::time::sleep(self.settings.poll).await;
        self.poll().await;
        true
    }

    /// Reads the indexing status of every running batch.
    async fn poll(&mut self) {
        let mut progressed = false;
        for running in &mut self.running {
            self.report.requests += 1;
            let statuses = match self
                .target
                .api
                .batch_status(self.target.dataset, &running.batch)
                .await
            {
                Ok(statuses) => statuses,
                Err(error) if error.is_configuration() => {
                    self.report.stopped = Some(error);
                    return;
                }
                Err(error) => {
                    tracing::warn!("indexing status: {error}; asking again");
                    continue;
                }
            };
            let present: HashSet<&str> = statuses.iter().map(|s| s.id.as_str()).collect();
            // A document deleted meanwhile is no longer waited for.
            running.left.retain(|id| present.contains(id.as_str()));
            for status in &statuses {
                let finished = match status.indexing_status.as_deref() {
                    Some("completed") => true,
                    Some("error") => {
                        let path = self.report.created.get(&status.id).map(|f| f.0.clone());
                        let why = status.error.clone().unwrap_or_default();
                        self.report
                            .failed_indexing
                            .push((path.unwrap_or_else(|| status.id.clone()), why));
                        true
                    }
                    _ => false,
                };
                if finished && running.left.remove(&status.id) {
                    self.report.indexed += 1;
                    progressed = true;
                }
            }
        }
        self.running.retain(|r| !r.left.is_empty());
        if progressed {
            self.last_change = Instant::now();
        }
        (self.on)(PushEvent::Indexed {
            done: self.report.indexed,
            created: self.report.created.len(),
        });
    }
}
