//! The crawl's last step, once its message is out: the state store learns what was
//! delivered (or how far an unfinished change set came), and with mirroring the knowledge
//! base's record learns the run's permanent skips and whether it is settled; what is left
//! (deletions, the wait for the import, the rest of the change set) becomes a [`Watch`].

use std::collections::BTreeSet;

use git_remote::FileEntry;

use super::ledger::ChangeSet;
use super::read::Read;
use super::summary::{MirrorReport, RunSummary};
use super::{Crawl, CrawlError, CrawlSink};
use crate::mirror::watch::{Rest, Watch};
use crate::mirror::Mirroring;
use crate::store::snapshot::Entries;
use crate::store::sync_state::{self, SyncState};
use crate::store::StateStore;

impl<S: StateStore, K: CrawlSink> Crawl<'_, S, K> {
    /// The state store: the whole branch when the change set is done, else how far it came.
    pub(super) async fn record_state(
        &self,
        files: &[FileEntry],
        change: &ChangeSet,
        read: &Read,
        summary: &RunSummary,
        old: &SyncState,
    ) -> Result<(), CrawlError> {
        let (hash, commit) = (&summary.config_hash, &summary.commit);
        let attempted = attempted(change, summary);
        let present: BTreeSet<&str> = files.iter().map(|f| f.path.as_str()).collect();
        let mut failed: Vec<String> = change
            .failed_before
            .iter()
            .filter(|p| !attempted.contains(p.as_str()) && present.contains(p.as_str()))
            .cloned()
            .chain(read.failed.iter().cloned())
            .collect();
        failed.sort();
        failed.dedup();
        if summary.complete {
            let delivered: Entries = files
                .iter()
                .filter(|f| !read.failed.contains(&f.path))
                .map(|f| (f.path.clone(), f.oid))
                .collect();
            sync_state::save_complete(self.store, hash, commit, &delivered, &failed, old).await?;
        } else {
            let mut pending = change.carried.clone().unwrap_or_default();
            pending.extend(read.handled.iter().map(|(p, o)| (p.clone(), *o)));
            let full = self.params.sync_mode.ignores_state();
            sync_state::save_pending(self.store, hash, commit, &pending, &failed, old, full)
                .await?;
        }
        Ok(())
    }

    /// The knowledge base's record: the run's permanent skips, and the commit when nothing
    /// was left to do. Returns the report, and the watch when anything is left.
    pub(super) async fn record_mirror(
        &self,
        mut mirroring: Mirroring,
        files: Vec<FileEntry>,
        change: ChangeSet,
        read: &Read,
        summary: &RunSummary,
        rest: Option<Rest>,
    ) -> (MirrorReport, Option<Watch>) {
        let full = self.params.sync_mode.ignores_state();
        mirroring.learn_skips(&files, &attempted(&change, summary), read.skipped.clone());
        // What is left: the plan, its offer less what this run skipped for good (a file
        // offered, failed or not reached is not in the knowledge base yet).
        let mut plan = change.mirror.unwrap_or_default();
        plan.offer = change
            .plan
            .candidates
            .into_iter()
            .filter(|f| read.skipped.get(&f.path) != Some(&f.oid))
            .collect();
        mirroring.settle(&summary.commit, &plan);
        plan.offer = Vec::new();
        mirroring.remember(self.store).await;
        let report = MirrorReport {
            offered: read.offered.len(),
            requests: mirroring.requests,
            listing_time: mirroring.listing_time,
            unchanged: mirroring.unchanged,
            plan,
            ..MirrorReport::default()
        };
        let untouched = report.plan.delete.is_empty() && report.plan.untagged.is_empty();
        if mirroring.unchanged && read.offered.is_empty() && untouched {
            return (report, None);
        }
        let rest = match rest {
            // The user's import of the first part is what says to go on.
            Some(rest) if read.offered.is_empty() => {
                tracing::info!(
                    "mirror: the run offered nothing to import, so the rest of the change set \
                     ({} files) is left to the next run",
                    rest.files.len()
                );
                None
            }
            rest => rest,
        };
        let watch = Watch {
            mirroring,
            commit: summary.commit.clone(),
            files,
            offered: read.offered.clone(),
            deletions: report.plan.delete.clone(),
            full,
            rest,
            client: self.client.clone(),
            import_listed: false,
        };
        (report, Some(watch))
    }
}

/// The paths of the candidates this run attempted.
fn attempted<'a>(change: &'a ChangeSet, summary: &RunSummary) -> BTreeSet<&'a str> {
    let candidates = change.plan.candidates.iter().take(summary.attempted);
    candidates.map(|f| f.path.as_str()).collect()
}
