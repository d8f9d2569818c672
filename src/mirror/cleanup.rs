//! Deleting documents, a few requests in flight, and keeping the remembered list in step.

use std::sync::Arc;

use tokio::sync::Semaphore;

use super::listing::KbRecord;
use super::plan::Deletion;
use crate::dify::knowledge::{Deleted, KnowledgeApi};

/// Deletes in flight at once: enough for thousands in a minute or two, few enough for
/// Dify's default single API worker.
pub const DELETES_IN_FLIGHT: usize = 6;

#[derive(Debug, Default, Clone)]
pub struct CleanupReport {
    pub deleted: Vec<Deletion>,
    /// Archived documents cannot be deleted; they are left alone.
    pub archived: Vec<Deletion>,
    /// Deletions that failed (retried by the next run), with why.
    pub failed: Vec<(Deletion, String)>,
}

impl CleanupReport {
    pub fn extend(&mut self, other: CleanupReport) {
        self.deleted.extend(other.deleted);
        self.archived.extend(other.archived);
        self.failed.extend(other.failed);
    }
}

/// Deletes every document of `deletions` and updates `record` to match.
pub async fn delete_all(
    api: &KnowledgeApi,
    dataset: &str,
    deletions: Vec<Deletion>,
    record: &mut KbRecord,
) -> CleanupReport {
    let slots = Arc::new(Semaphore::new(DELETES_IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    for deletion in deletions {
        let (api, dataset, slots) = (api.clone(), dataset.to_string(), slots.clone());
        tasks.spawn(async move {
            let _slot = slots
                .acquire_owned()
                .await
                .expect("the semaphore stays open");
            let outcome = api.delete(&dataset, &deletion.id).await;
            (deletion, outcome)
        });
    }
    let mut report = CleanupReport::default();
    while let Some(joined) = tasks.join_next().await {
        let Ok((deletion, outcome)) = joined else {
            continue;
        };
        match outcome {
            Ok(Deleted::Done | Deleted::AlreadyGone) => report.deleted.push(deletion),
            Ok(Deleted::Archived) => report.archived.push(deletion),
            Err(error) => {
                tracing::warn!("deleting {} failed: {error}", deletion.path);
                report.failed.push((deletion, error.message));
            }
        }
    }
    report
        .deleted
        .sort_by(|a, b| (&a.path, &a.id).cmp(&(&b.path, &b.id)));
    let gone: std::collections::HashSet<&str> =
        report.deleted.iter().map(|d| d.id.as_str()).collect();
    let before = record.docs.len();
    record.docs.retain(|d| !gone.contains(d.id.as_str()));
    record.total = record.total.saturating_sub(before - record.docs.len());
    let archived: std::collections::HashSet<&str> =
        report.archived.iter().map(|d| d.id.as_str()).collect();
    for doc in &mut record.docs {
        if archived.contains(doc.id.as_str()) {
            if let Some(ours) = doc.ours.as_mut() {
                ours.archived = true;
            }
        }
    }
    report
}
