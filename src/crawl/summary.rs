//! What a crawl did, for logs and the command line.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::mirror::cleanup::CleanupReport;
use crate::mirror::plan::MirrorPlan;
use git_remote::SkipReason;

/// What a run did.
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
    /// With mirroring: what the knowledge base held and what the run planned.
    pub mirror: Option<MirrorReport>,
    pub fetch_time: Duration,
    pub plan_time: Duration,
    pub read_time: Duration,
    pub record_time: Duration,
}

/// What mirroring saw and planned in one crawl.
#[derive(Debug, Default, Clone)]
pub struct MirrorReport {
    /// The plan (its offer is the run's candidates, so it is empty here).
    pub plan: MirrorPlan,
    /// Documents in the final message.
    pub offered: usize,
    /// Requests made to list the knowledge base, and how long that took.
    pub requests: usize,
    pub listing_time: Duration,
    /// Nothing changed in the knowledge base since the remembered list.
    pub unchanged: bool,
    /// The deletions made, when the caller made them before reporting (the command line).
    pub cleanup: CleanupReport,
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

    pub(super) fn skip(&mut self, path: &str, reason: &SkipReason) {
        *self.skipped.entry(reason.name()).or_default() += 1;
        self.skipped_files
            .push((path.to_string(), reason.to_string()));
    }
}
