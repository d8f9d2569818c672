//! Reading the change set's files and putting them in the final message: a batch at a time
//! on a blocking thread, each document serialized once, until the message's byte budget or
//! the run's time is spent.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use git2::Oid;
use git_remote::{BlobRead, BlobReader, FileEntry, SkipReason};

use super::deliver::{Delivery, Fit};
use super::summary::RunSummary;
use super::{blocking, Crawl, CrawlError, CrawlSink, BATCH};
use crate::repository::identity::{self, Document};
use crate::store::snapshot::Entries;
use crate::store::StateStore;

/// What the read loop did.
pub(super) struct Read {
    /// Files done with for this change set (delivered or skipped for good).
    pub handled: Entries,
    pub failed: Vec<String>,
    /// Files skipped for good (binary, too large, …).
    pub skipped: Entries,
    /// `(path, blob)` of every document in the final message.
    pub offered: Vec<(String, Oid)>,
    /// The budget ran out before every candidate was attempted.
    pub stopped: bool,
}

impl<S: StateStore, K: CrawlSink> Crawl<'_, S, K> {
    /// Reads `candidates` in order from the fetched repository at `repo_dir` and adds their
    /// documents to the message, which it returns; counts into `summary`.
    pub(super) async fn read_and_deliver(
        &self,
        candidates: &[FileEntry],
        repo_dir: &std::path::Path,
        description_head: &str,
        deadline: Instant,
        summary: &mut RunSummary,
    ) -> Result<(Delivery, Read), CrawlError> {
        let mut delivery = Delivery::new(self.sink.data_budget());
        let mut read = Read {
            handled: Entries::new(),
            failed: Vec::new(),
            skipped: Entries::new(),
            offered: Vec::new(),
            stopped: false,
        };
        let hash = summary.config_hash.clone();
        let reader = Arc::new(Mutex::new(BlobReader::new(
            repo_dir,
            self.settings.max_file_bytes,
        )));
        'batches: for batch in candidates.chunks(BATCH) {
            if summary.attempted > 0 && Instant::now() >= deadline {
                tracing::warn!(
                    "time budget spent after {} of {} files",
                    summary.attempted,
                    summary.total
                );
                read.stopped = true;
                break;
            }
            let reads = {
                let (reader, batch) = (reader.clone(), batch.to_vec());
                blocking(move || Ok(reader.lock().expect("blob reader").read(&batch))).await?
            };
            for (file, blob) in batch.iter().zip(reads) {
                match blob {
                    BlobRead::Text(text) => {
                        let url = identity::source_url(&hash, &file.path);
                        let title = identity::title(&file.path);
                        let description = identity::description(description_head, file.oid);
                        let document = Document {
                            source_url: &url,
                            content: &text,
                            title: &title,
                            description: &description,
                        };
                        match delivery.try_add(&document) {
                            Fit::Added => {
                                summary.delivered += 1;
                                read.offered.push((file.path.clone(), file.oid));
                            }
                            Fit::Full => {
                                read.stopped = true;
                                break 'batches;
                            }
                            Fit::TooLarge(json_bytes) => {
                                // Under the file limit, but larger than a whole message
                                // once escaped as JSON.
                                let reason = SkipReason::TooLarge {
                                    size: json_bytes as u64,
                                    limit: self.sink.data_budget() as u64,
                                };
                                summary.skip(&file.path, &reason);
                                read.skipped.insert(file.path.clone(), file.oid);
                            }
                        }
                        read.handled.insert(file.path.clone(), file.oid);
                    }
                    BlobRead::Skipped(reason) => {
                        summary.skip(&file.path, &reason);
                        read.handled.insert(file.path.clone(), file.oid);
                        read.skipped.insert(file.path.clone(), file.oid);
                    }
                    BlobRead::Failed(why) => {
                        tracing::warn!("reading {} failed: {why}", file.path);
                        read.failed.push(file.path.clone());
                    }
                }
                summary.attempted += 1;
            }
            self.sink.progress(summary.total, summary.attempted).await?;
        }
        Ok((delivery, read))
    }
}
