//! One configuration's documents in one knowledge base: the mirror engine. Every rule of
//! mirroring lives here once (the listing merge, the plan's inputs, when the knowledge base
//! is settled at a commit, what a refused push leaves behind, which documents carry their Git
//! metadata); the crawl, the watch and `sync` only decide when to call what.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::{Duration, Instant};

use git2::Oid;
use git_remote::FileEntry;

use super::cleanup::{self, CleanupReport};
use super::documents::{url_prefix, DocState};
use super::listing::{KbRecord, Listing};
use super::metadata::{self, GitSource, TagReport};
use super::plan::{self, DeleteGuard, Deletion, MirrorPlan};
use super::push::{self, PushEvent, PushReport, PushSettings, ReadFiles};
use super::Mirror;
use crate::dify::knowledge::{ApiError, ApiErrorKind};
use crate::store::StateStore;

/// One configuration's documents in one knowledge base, as last listed.
#[derive(Clone)]
pub struct Mirroring {
    pub target: Mirror,
    pub config_hash: String,
    /// The `source_url` prefixes of this configuration's documents: its hash, and the hash
    /// of the URL as typed when that differs.
    pub prefixes: Vec<String>,
    /// Where the documents come from (their Git metadata).
    pub source: GitSource,
    /// The knowledge base as listed, with what runs learned (permanent skips, the commit it
    /// is settled at).
    pub record: KbRecord,
    /// Requests made to list it, and how long the first listing took.
    pub requests: usize,
    pub listing_time: Duration,
    /// The last listing found nothing changed since the remembered record.
    pub unchanged: bool,
}

/// Which configuration's documents: its hashes (the one of the URL as typed, when that
/// differs) and where its documents come from.
pub struct MirrorConfig<'a> {
    pub hash: &'a str,
    pub legacy_hash: Option<&'a str>,
    pub source: GitSource,
}

/// The published pipeline a push goes through: its start node and process inputs.
pub struct Pipeline<'a> {
    pub start_node: &'a str,
    pub inputs: &'a serde_json::Value,
}

impl Mirroring {
    /// What an earlier run remembered, brought up to date by a listing that ends by `ends`
    /// (when given). On failure the remembered record goes back where the next run looks.
    pub async fn open<S: StateStore>(
        target: Mirror,
        store: &S,
        config: MirrorConfig<'_>,
        ends: Option<Instant>,
    ) -> Result<Mirroring, ApiError> {
        let started = Instant::now();
        let config_hash = config.hash;
        let known = target.remembered(store, config_hash).await;
        let prefixes: Vec<String> = std::iter::once(config_hash)
            .chain(config.legacy_hash)
            .map(url_prefix)
            .collect();
        let listing = target.list(&prefixes, known.as_ref());
        let listed = match ends {
            None => listing.await,
            Some(ends) => tokio::time::timeout_at(tokio::time::Instant::from_std(ends), listing)
                .await
                .unwrap_or_else(|_| {
                    Err(ApiError {
                        kind: ApiErrorKind::Other,
                        status: None,
                        message: format!(
                            "listing the knowledge base took longer than this run can wait \
                             ({:.0?})",
                            ends.saturating_duration_since(started)
                        ),
                    })
                }),
        };
        match listed {
            Ok(listing) => {
                let mut mirroring = Mirroring {
                    target,
                    config_hash: config_hash.to_string(),
                    prefixes,
                    source: config.source,
                    record: known.unwrap_or_default(),
                    requests: 0,
                    listing_time: Duration::ZERO,
                    unchanged: false,
                };
                mirroring.merge(listing);
                mirroring.listing_time = started.elapsed();
                Ok(mirroring)
            }
            Err(error) => {
                if let Some(known) = known {
                    target.remember_in_memory(config_hash, known, false);
                }
                Err(error)
            }
        }
    }

    /// The key of this configuration's watcher and remembered record.
    pub fn key(&self) -> String {
        self.target.key(&self.config_hash)
    }

    /// The one listing merge: a fresh listing replaces the documents, unless nothing changed.
    fn merge(&mut self, listing: Listing) {
        self.requests += listing.requests;
        self.unchanged = listing.unchanged;
        if let Some(docs) = listing.docs {
            self.record.docs = docs;
            self.record.total = listing.total;
        }
    }

    /// Lists again, reading only what changed; returns whether anything did.
    pub async fn refresh(&mut self) -> Result<bool, ApiError> {
        let listing = self.target.list(&self.prefixes, Some(&self.record)).await?;
        let changed = listing.docs.is_some();
        self.merge(listing);
        Ok(changed)
    }

    /// The knowledge base already mirrors `commit`, and nothing changed since it did.
    pub fn settled_at(&self, commit: &str) -> bool {
        self.unchanged && self.record.settled.as_deref() == Some(commit)
    }

    /// The branch's `files` against the documents as listed, less the remembered skips.
    pub fn plan(&self, files: &[FileEntry], full: bool, guard: DeleteGuard) -> MirrorPlan {
        let skipped = self.record.skipped_entries();
        plan::plan(files, &self.record.docs, &skipped, full, guard)
    }

    /// Learns a run's permanent skips: the skips of `attempted` paths become `skipped_now`,
    /// and a skip no longer in `files` (gone, or another blob) is forgotten.
    pub fn learn_skips(
        &mut self,
        files: &[FileEntry],
        attempted: &BTreeSet<&str>,
        skipped_now: impl IntoIterator<Item = (String, Oid)>,
    ) {
        let mut skipped = self.record.skipped_entries();
        skipped.retain(|path, _| !attempted.contains(path.as_str()));
        skipped.extend(skipped_now);
        let current: BTreeMap<&str, Oid> = files.iter().map(|f| (f.path.as_str(), f.oid)).collect();
        skipped.retain(|path, oid| current.get(path.as_str()) == Some(oid));
        self.record.skipped = skipped
            .iter()
            .map(|(path, oid)| (path.clone(), oid.to_string()))
            .collect();
    }

    /// The one settle rule: the knowledge base is settled at `commit` when the plan of what
    /// is `left` has nothing to offer, delete, hold back or wait for. Returns whether that
    /// changed the record.
    pub fn settle(&mut self, commit: &str, left: &MirrorPlan) -> bool {
        let settled = left.nothing_left().then(|| commit.to_string());
        let changed = settled != self.record.settled;
        self.record.settled = settled;
        changed
    }

    /// Deletes `deletions` and keeps the record in step.
    pub async fn delete(&mut self, deletions: Vec<Deletion>) -> CleanupReport {
        if deletions.is_empty() {
            return CleanupReport::default();
        }
        let target = &self.target;
        cleanup::delete_all(&target.api, &target.dataset, deletions, &mut self.record).await
    }

    /// Pushes `files` through `pipeline` and waits while they index; then deletes what runs
    /// Dify refused left behind (documents it made but will never index).
    pub async fn push(
        &mut self,
        pipeline: &Pipeline<'_>,
        read: ReadFiles,
        description_head: &str,
        files: &[FileEntry],
        settings: &PushSettings,
        on_event: &(dyn Fn(PushEvent) + Send + Sync),
    ) -> (PushReport, CleanupReport) {
        let listed_before: HashSet<String> =
            self.record.docs.iter().map(|d| d.id.clone()).collect();
        let target = push::Target {
            api: &self.target.api,
            dataset: &self.target.dataset,
            start_node: pipeline.start_node,
            inputs: pipeline.inputs,
        };
        let source = push::Source {
            read,
            config_hash: &self.config_hash,
            description_head,
        };
        let report = push::push(&target, &source, files, settings, on_event).await;
        if !report.rejected.iter().any(|r| r.answered) {
            return (report, CleanupReport::default());
        }
        if let Err(error) = self.refresh().await {
            tracing::warn!("mirror: listing failed: {error}; the next run cleans up");
            return (report, CleanupReport::default());
        }
        let orphans = report.refused_orphans(&self.record.docs, &listed_before);
        let cleanup = self.delete(orphans).await;
        (report, cleanup)
    }

    /// Sets the Git metadata of a plan's `untagged` documents as at `commit`, and keeps the
    /// record in step. A failure is reported, never fatal: the documents stay untagged, and
    /// the next run (which does not count the knowledge base as settled) tries again.
    pub async fn tag(&mut self, untagged: &[(String, String)], commit: &str) -> TagReport {
        let (target, source) = (&self.target, &self.source);
        let report = metadata::tag(&target.api, &target.dataset, untagged, source, commit).await;
        let tagged: HashSet<&str> = report.tagged.iter().map(String::as_str).collect();
        for doc in &mut self.record.docs {
            if tagged.contains(doc.id.as_str()) {
                if let Some(ours) = doc.ours.as_mut() {
                    ours.tagged = true;
                }
            }
        }
        report
    }

    /// Forgets which documents carry their Git metadata, so the next plan tags every kept
    /// document again (`sync --rewrite-metadata`).
    pub fn forget_tags(&mut self) {
        for ours in self.record.docs.iter_mut().filter_map(|d| d.ours.as_mut()) {
            ours.tagged = false;
        }
    }

    /// This configuration's documents still indexing.
    pub fn indexing(&self) -> usize {
        let ours = self.record.docs.iter().filter_map(|d| d.ours.as_ref());
        ours.filter(|o| o.state == DocState::Indexing).count()
    }

    /// Waits while documents an earlier import (or an interrupted sync) left indexing make
    /// progress, listing every `poll`; `on_wait` hears how many are left. Progress is a new
    /// low: a count that goes up and down (someone else importing) does not restart the
    /// clock. Returns how many there were.
    pub async fn wait_while_indexing(
        &mut self,
        stall: Duration,
        poll: Duration,
        on_wait: impl Fn(usize, usize),
    ) -> Result<usize, ApiError> {
        let first = self.indexing();
        let (mut left, mut lowest, mut progress_at) = (first, first, Instant::now());
        while left > 0 {
            on_wait(left, first);
            if progress_at.elapsed() >= stall {
                tracing::warn!(
                    "{left} documents made no progress in {stall:?}; planning with them as they are"
                );
                break;
            }
            tokio::time::sleep(poll).await;
            self.refresh().await?;
            left = self.indexing();
            if left < lowest {
                (lowest, progress_at) = (left, Instant::now());
            }
        }
        Ok(first)
    }

    /// Remembers the record in this process's memory and in the store.
    pub async fn remember<S: StateStore>(&mut self, store: &S) {
        let (target, hash) = (&self.target, &self.config_hash);
        target.remember(store, hash, &mut self.record).await;
    }

    /// Remembers a copy of the record in memory only (a watch has no store, and goes on with
    /// its own); `changed` says whether it differs from what the store holds, so the next
    /// crawl stores it.
    pub fn remember_in_memory(&self, changed: bool) {
        let record = self.record.clone();
        self.target
            .remember_in_memory(&self.config_hash, record, changed);
    }

    /// The same, handing the record itself over: the last thing this mirroring does.
    pub fn into_memory(self, changed: bool) {
        self.target
            .remember_in_memory(&self.config_hash, self.record, changed);
    }
}
