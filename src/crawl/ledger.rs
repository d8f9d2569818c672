//! The crawl's ledger: what says which files are already delivered. With mirroring it is
//! the knowledge base itself (its documents, listed); without, or when the listing fails
//! for a passing reason, the snapshot in the state store of what earlier runs delivered.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use git_remote::{self, FetchRequest, Fetched, FileEntry, MemoryHostKeys, PathFilter};

use super::plan::{self, Plan};
use super::{Crawl, CrawlError, CrawlSink};
use crate::mirror::metadata::GitSource;
use crate::mirror::plan::{DeleteGuard, MirrorPlan};
use crate::mirror::{MirrorConfig, Mirroring};
use crate::store::snapshot::Entries;
use crate::store::sync_state::SyncState;
use crate::store::StateStore;

/// The change set of a run against its ledger.
pub(super) struct ChangeSet {
    /// Files to read and deliver, in path order.
    pub plan: Plan,
    /// With mirroring: its plan (whose offer became the candidates).
    pub mirror: Option<MirrorPlan>,
    /// Without: what earlier runs of an unfinished change set handled, and the files whose
    /// read failed before.
    pub carried: Option<Entries>,
    pub failed_before: Vec<String>,
}

impl<S: StateStore, K: CrawlSink> Crawl<'_, S, K> {
    /// With mirroring on, the knowledge base's documents, listed by `deadline` less a quarter
    /// of the budget (left to read and deliver). A configuration error fails the run; a
    /// passing fault falls back to the state store and deletes nothing.
    pub(super) async fn open_mirror(
        &self,
        hash: &str,
        legacy: Option<&str>,
        source: GitSource,
        deadline: Instant,
    ) -> Result<Option<Mirroring>, CrawlError> {
        let Some(target) = self.mirror else {
            return Ok(None);
        };
        let ends = deadline
            .checked_sub(self.settings.time_budget / 4)
            .unwrap_or(deadline);
        let config = MirrorConfig {
            hash,
            legacy_hash: legacy,
            source,
        };
        let opened = Mirroring::open(target.clone(), self.store, config, Some(ends)).await;
        match opened {
            Ok(mirroring) => Ok(Some(mirroring)),
            Err(error) if error.is_configuration() => Err(CrawlError::Mirror(error)),
            Err(error) => {
                tracing::warn!(
                    "mirror: {error}; this run delivers from plugin storage state and deletes nothing"
                );
                Ok(None)
            }
        }
    }

    /// The files to offer: what the knowledge base lacks (mirroring), else what changed
    /// since the snapshot, with an unfinished change set continued.
    pub(super) async fn change_set(
        &self,
        files: &[FileEntry],
        mirroring: Option<&Mirroring>,
        old: &mut SyncState,
        fetched: &Arc<Fetched>,
        host_keys: Arc<MemoryHostKeys>,
    ) -> ChangeSet {
        let full = self.params.sync_mode.ignores_state();
        if let Some(mirroring) = mirroring {
            let mut mirror = mirroring.plan(files, full, DeleteGuard::Default);
            return ChangeSet {
                plan: Plan {
                    candidates: std::mem::take(&mut mirror.offer),
                    ..Plan::default()
                },
                mirror: Some(mirror),
                carried: None,
                failed_before: Vec::new(),
            };
        }
        let filter = self.params.filter();
        let (snapshot, failed_before) = match full {
            true => (Entries::new(), Vec::new()),
            false => (
                self.previous_delivery(old, fetched, &filter, host_keys)
                    .await,
                old.failed.clone(),
            ),
        };
        // A `full` sync continues only a `full` one, since it ignores the snapshot.
        // (Its entries are taken: `old` keeps only the records, to save against.)
        let carried = match old.pending.as_mut() {
            Some((record, entries)) if !full || record.full => Some(std::mem::take(entries)),
            _ => None,
        };
        let delivered = match &carried {
            Some(carried) => {
                let mut overlaid = snapshot.clone();
                overlaid.extend(carried.iter().map(|(p, o)| (p.clone(), *o)));
                Cow::Owned(overlaid)
            }
            None => Cow::Borrowed(&snapshot),
        };
        ChangeSet {
            plan: plan::plan(files, &delivered, &snapshot, &failed_before),
            mirror: None,
            carried,
            failed_before,
        }
    }

    /// The snapshot (taken out of `old`, whose records alone are needed later); or, with only
    /// the Python plugin's `git_sha`, that commit's tree when it can still be fetched; else
    /// nothing (a full sync).
    async fn previous_delivery(
        &self,
        old: &mut SyncState,
        fetched: &Arc<Fetched>,
        filter: &PathFilter,
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
