//! What a sync did (or, with `--dry-run`, would do): the summary a person or a CI log
//! reads, the errors a CI job fails on, and the exit status.

use std::time::{Duration, Instant};

use crate::mirror::cleanup::CleanupReport;
use crate::mirror::metadata::TagReport;
use crate::mirror::plan::{self, Deletion, MirrorPlan};
use crate::mirror::push::PushReport;
use crate::mirror::Mirroring;
use crate::repository::shorten;

/// Exit status when every change was made but the guard held deletions back.
pub const EXIT_HELD: u8 = 3;

/// What a sync did (or, with `--dry-run`, would do).
#[derive(Debug, Default)]
pub struct SyncReport {
    pub commit: String,
    pub dry_run: bool,
    /// The knowledge base already mirrored this commit: nothing was read or sent.
    pub unchanged: bool,
    /// The branch's files after the filters (not listed when `unchanged`).
    pub files: usize,
    pub plan: MirrorPlan,
    /// Paths whose current content is indexed already.
    pub kept: Vec<String>,
    /// Documents an earlier run left indexing, waited for before planning.
    pub waited_for: usize,
    pub push: PushReport,
    pub cleanup: CleanupReport,
    /// The Git metadata set on documents that lacked it.
    pub metadata: TagReport,
    /// Deletions held back by the guard at the end.
    pub held: Vec<Deletion>,
    /// Requests to list the knowledge base and find the pipeline's start node.
    pub requests: usize,
    pub time: Duration,
}

impl SyncReport {
    /// The report of a run that ends now, with the listing requests `mirroring` made.
    pub(super) fn finish(mut self, mirroring: &Mirroring, started: Instant) -> SyncReport {
        self.requests += mirroring.requests;
        self.time = started.elapsed();
        self
    }

    /// Every problem a CI job must fail on.
    pub fn errors(&self) -> Vec<String> {
        let push = &self.push;
        let mut errors = Vec::new();
        if let Some(stopped) = &push.stopped {
            errors.push(stopped.message.clone());
        }
        for rejected in push.rejected.iter().filter(|r| {
            push.stopped
                .as_ref()
                .is_none_or(|stopped| stopped.message != r.why)
        }) {
            let paths: Vec<&str> = rejected.files.iter().map(|f| f.0.as_str()).collect();
            errors.push(format!(
                "Dify refused a run of {} files ({}): {}",
                paths.len(),
                shorten(&paths),
                rejected.why
            ));
        }
        for (path, why) in &push.failed_indexing {
            errors.push(format!("indexing {path} failed in Dify: {why}"));
        }
        if !push.unfinished.is_empty() {
            let paths: Vec<&str> = push.unfinished.iter().map(String::as_str).collect();
            errors.push(format!(
                "{} documents were still not indexed when Dify stopped making progress (is its \
                 worker running?); the next sync waits for them: {}",
                paths.len(),
                shorten(&paths)
            ));
        }
        if !push.read_failed.is_empty() {
            errors.push(format!(
                "reading failed (retried next run): {}",
                push.read_failed.join(", ")
            ));
        }
        for (deletion, why) in &self.cleanup.failed {
            errors.push(format!(
                "deleting the document of {} failed: {why}",
                deletion.path
            ));
        }
        if let Some(problem) = &self.metadata.problem {
            errors.push(format!(
                "the Git metadata of the documents was not set (the next sync tries again): \
                 {problem}"
            ));
        }
        errors
    }

    /// 0: mirrored; 1: an error; [`EXIT_HELD`]: mirrored except deletions the guard held.
    pub fn exit_code(&self) -> u8 {
        if !self.errors().is_empty() {
            1
        } else if !self.held.is_empty() {
            EXIT_HELD
        } else {
            0
        }
    }
}

/// The summary a person (or a CI log) reads.
pub fn describe(report: &SyncReport) -> String {
    let short = &report.commit[..report.commit.len().min(12)];
    let paths = |list: &[Deletion]| {
        let paths: Vec<&str> = list.iter().map(|d| d.path.as_str()).collect();
        shorten(&paths)
    };
    if report.unchanged {
        return format!(
            "commit {short}: the knowledge base already mirrors it; nothing to do ({} requests, {:.1?})\n",
            report.requests, report.time
        );
    }
    let plan = &report.plan;
    if report.dry_run {
        let mut out = String::new();
        for file in &plan.offer {
            out.push_str(&format!("offer   {}\n", file.path));
        }
        for deletion in &plan.delete {
            let why = match deletion.why {
                plan::DeleteReason::Gone => "gone from the branch",
                plan::DeleteReason::Superseded => "superseded",
            };
            out.push_str(&format!("delete  {} ({why})\n", deletion.path));
        }
        for deletion in &plan.held {
            out.push_str(&format!(
                "hold    {} (gone; the guard holds it)\n",
                deletion.path
            ));
        }
        for path in &report.kept {
            out.push_str(&format!("keep    {path}\n"));
        }
        out.push_str(&format!(
            "dry run, commit {short}: would offer {} files, delete {} documents{}, keep {} files, \
             set the Git metadata of {} documents; {} documents of this repository still \
             indexing; nothing was changed\n",
            plan.offer.len(),
            plan.delete.len(),
            if plan.held.is_empty() {
                String::new()
            } else {
                format!(" (and hold back {})", plan.held.len())
            },
            report.kept.len(),
            plan.untagged.len(),
            plan.indexing,
        ));
        return out;
    }
    let push = &report.push;
    let mut out = format!(
        "commit {short}: {} files; kept {}, pushed {} in {} pipeline runs ({} bytes), indexed {}, \
         deleted {} documents\n",
        report.files,
        report.kept.len(),
        push.created.len(),
        push.runs,
        push.bytes_sent,
        push.indexed,
        report.cleanup.deleted.len(),
    );
    if report.waited_for > 0 {
        out.push_str(&format!(
            "waited first for {} documents an earlier run left indexing\n",
            report.waited_for
        ));
    }
    if !push.skipped.is_empty() {
        let lines: Vec<String> = push
            .skipped
            .iter()
            .map(|(path, _, why)| format!("{path} ({why})"))
            .collect();
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        out.push_str(&format!("skipped: {}\n", shorten(&lines)));
    }
    if !report.cleanup.deleted.is_empty() {
        out.push_str(&format!("deleted: {}\n", paths(&report.cleanup.deleted)));
    }
    if !report.metadata.tagged.is_empty() {
        out.push_str(&format!(
            "Git metadata set on {} documents\n",
            report.metadata.tagged.len()
        ));
    }
    if !report.cleanup.archived.is_empty() {
        out.push_str(&format!(
            "archived, left alone: {}\n",
            paths(&report.cleanup.archived)
        ));
    }
    if !report.held.is_empty() {
        out.push_str(&format!(
            "NOT deleted: {} documents of files gone from the branch, more than the guard allows \
             (a wrong branch or filter?); run with --allow-mass-delete or --max-delete N to \
             allow it: {}\n",
            report.held.len(),
            paths(&report.held)
        ));
    }
    for error in report.errors() {
        out.push_str(&format!("error: {error}\n"));
    }
    out.push_str(&format!(
        "requests: {} to list and plan, {} to push and follow indexing, {} to delete, {} for \
         metadata; time {:.1?}\n",
        report.requests,
        push.requests,
        report.cleanup.deleted.len() + report.cleanup.failed.len() + report.cleanup.archived.len(),
        report.metadata.requests,
        report.time
    ));
    out
}
