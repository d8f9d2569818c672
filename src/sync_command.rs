//! `git-datasource sync`: one command makes a pipeline knowledge base mirror a branch,
//! through Dify's knowledge-pipeline Service API (1.13.0 and later). It plans exactly as the
//! plugin's mirroring does (the knowledge base is the state), pushes the files to offer in
//! runs of `POST /pipeline/run`, waits until they are indexed, then deletes what they
//! superseded and what the branch no longer has, under the mass-delete guard.
//!
//! Safe to interrupt: every decision is taken from the knowledge base as listed, so a run
//! killed anywhere leaves documents the next run finds (indexing ones are waited for, never
//! pushed twice) and deletions it redoes.

use std::collections::{BTreeSet, HashSet};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::crawl::fetch::fetch_branch;
use crate::crawl::identity;
use crate::crawl::CrawlError;
use crate::crawl_command::{git_client, git_credentials, DifyArgs, FileStore, RepoArgs};
use crate::mirror::api::KnowledgeApi;
use crate::mirror::cleanup::{self, CleanupReport};
use crate::mirror::documents::{url_prefix, DocState};
use crate::mirror::listing::KbRecord;
use crate::mirror::pipeline::start_node;
use crate::mirror::plan::{self, DeleteGuard, Deletion, MirrorPlan};
use crate::mirror::push::{self, PushEvent, PushReport, PushSettings};
use crate::mirror::Mirror;

/// Exit status when every change was made but the guard held deletions back.
pub const EXIT_HELD: u8 = 3;

/// Make a pipeline knowledge base mirror a branch: push what it lacks through the
/// pipeline API (Dify 1.13+), wait for indexing, delete stale documents.
#[derive(Debug, clap::Args)]
pub struct SyncCommand {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// The knowledge base: its id, or its URL (…/datasets/<id>/documents).
    #[arg(long, value_name = "ID")]
    pub knowledge_base: String,
    #[command(flatten)]
    pub dify: DifyArgs,
    /// A variable of the pipeline's Process form, as name=text or name:=JSON (a number,
    /// true/false). Repeat for each; the others take the pipeline's defaults.
    #[arg(long = "input", value_name = "NAME=VALUE")]
    pub inputs: Vec<String>,
    /// The pipeline's Git Repository node to start at; needed only when it has several.
    #[arg(long, value_name = "NODE_ID")]
    pub start_node: Option<String>,
    /// Print the plan (offer, delete, keep, with paths) and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Hold back deletions of files gone from the branch when there are more than N
    /// (default: more than 20 and more than half of the repository's searchable documents).
    #[arg(long, value_name = "N")]
    pub max_delete: Option<usize>,
    /// Delete the documents of files gone from the branch however many there are.
    #[arg(long, conflicts_with = "max_delete")]
    pub allow_mass_delete: bool,
    /// Documents per pipeline run.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub batch_files: usize,
    /// Bytes per pipeline run (the documents as JSON).
    #[arg(long, default_value_t = 4_000_000, value_name = "BYTES")]
    pub batch_bytes: usize,
    /// Stop waiting when Dify has indexed nothing for this long.
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub stall_secs: u64,
    /// Give up after waiting this long for another sync of the same knowledge base on this
    /// machine.
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    pub lock_wait: u64,
    /// How often indexing is checked (2 s).
    #[arg(skip)]
    pub poll: Option<Duration>,
}

/// What a sync did (or, with `--dry-run`, would do).
#[derive(Debug, Default)]
pub struct SyncReport {
    pub commit: String,
    pub dry_run: bool,
    /// The knowledge base already mirrored this commit: nothing was read or sent.
    pub unchanged: bool,
    /// The branch's files after the filters.
    pub files: usize,
    pub plan: MirrorPlan,
    /// Paths whose current content is indexed already.
    pub kept: Vec<String>,
    /// Documents an earlier run left indexing, waited for before planning.
    pub waited_for: usize,
    pub push: PushReport,
    pub cleanup: CleanupReport,
    /// Deletions held back by the guard at the end.
    pub held: Vec<Deletion>,
    /// Requests to list the knowledge base and find the pipeline's start node.
    pub requests: usize,
    pub time: Duration,
}

impl SyncReport {
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
                crate::crawl::shorten(&paths),
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
                crate::crawl::shorten(&paths)
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

/// Parses `--input` values: `name=text` (a string) or `name:=JSON`.
pub fn parse_inputs(inputs: &[String]) -> Result<serde_json::Value, String> {
    let mut map = serde_json::Map::new();
    for input in inputs {
        let (name, value) = match (input.find(":="), input.find('=')) {
            (Some(at), Some(eq)) if at < eq => {
                let text = &input[at + 2..];
                let value = serde_json::from_str(text).map_err(|_| {
                    format!(
                        "--input {}:=…: the value is not JSON (a number, true, false, \"text\"); \
                         use name=value for text",
                        &input[..at]
                    )
                })?;
                (&input[..at], value)
            }
            (_, Some(eq)) => (&input[..eq], serde_json::Value::from(&input[eq + 1..])),
            _ => {
                return Err(format!(
                    "--input needs name=value (or name:=JSON); got {} characters without '='",
                    input.chars().count()
                ))
            }
        };
        let name = name.trim();
        if name.is_empty() {
            return Err("--input needs a variable name before '='".into());
        }
        map.insert(name.to_string(), value);
    }
    Ok(serde_json::Value::Object(map))
}

impl SyncCommand {
    pub async fn run(&self) -> Result<SyncReport, CrawlError> {
        let started = Instant::now();
        let params = self.repo.params(Some(&self.knowledge_base))?;
        let dataset = params
            .knowledge_base_id
            .clone()
            .ok_or_else(|| CrawlError::Params(vec!["--knowledge-base is empty".into()]))?;
        let api = self.dify.api("sync")?;
        let inputs = parse_inputs(&self.inputs).map_err(|e| CrawlError::Params(vec![e]))?;
        let guard = match (self.allow_mass_delete, self.max_delete) {
            (true, _) => DeleteGuard::Off,
            (false, Some(most)) => DeleteGuard::AtMost(most),
            (false, None) => DeleteGuard::Default,
        };
        let full = params.sync_mode.ignores_state();
        let store = self.repo.store();
        let _lock = match self.dry_run {
            true => None,
            false => Some(lock(&store, &api, &dataset, Duration::from_secs(self.lock_wait)).await?),
        };
        let bar = Bar::new();
        let mirror = Mirror {
            api,
            dataset,
            memory: None,
        };
        let hash = identity::config_hash(&params);
        let legacy = identity::legacy_config_hash(&params);
        let prefixes: Vec<String> = std::iter::once(hash.as_str())
            .chain(legacy.as_deref())
            .map(url_prefix)
            .collect();
        let mut report = SyncReport {
            dry_run: self.dry_run,
            ..SyncReport::default()
        };

        bar.say("fetching");
        let credentials = git_credentials()?;
        let (fetched, _) = fetch_branch(
            &git_client(),
            &params,
            &credentials,
            &store,
            None,
            || async { Ok(()) },
        )
        .await?;
        report.commit = fetched.commit.to_string();
        let files = {
            let repo = fetched.open()?;
            git_remote::list_files(&repo, fetched.commit, &params.filter())?.files
        };
        report.files = files.len();

        // A knowledge base that cannot take documents fails before anything else.
        bar.say("finding the pipeline");
        let nodes = mirror
            .api
            .datasource_nodes(&mirror.dataset)
            .await
            .map_err(CrawlError::Mirror)?;
        report.requests += 1;
        let start = start_node(&nodes, self.start_node.as_deref())
            .map_err(|e| CrawlError::Params(vec![e]))?;

        bar.say("listing the knowledge base");
        let known = mirror.remembered(&store, &hash).await;
        let (mut record, unchanged) = self.listed(&mirror, &prefixes, known, &mut report).await?;
        if !full
            && !self.dry_run
            && unchanged
            && record.settled.as_deref() == Some(report.commit.as_str())
        {
            report.unchanged = true;
            report.time = started.elapsed();
            return Ok(report);
        }
        if !self.dry_run {
            report.waited_for = self
                .wait_for_earlier_indexing(&mirror, &prefixes, &mut record, &bar, &mut report)
                .await?;
        }
        let skipped = record.skipped_entries();
        report.plan = plan::plan(&files, &record.docs, &skipped, full, guard);
        let offered: BTreeSet<&str> = report.plan.offer.iter().map(|f| f.path.as_str()).collect();
        report.kept = files
            .iter()
            .filter(|f| !offered.contains(f.path.as_str()) && skipped.get(&f.path) != Some(&f.oid))
            .map(|f| f.path.clone())
            .collect();
        if self.dry_run {
            report.held = report.plan.held.clone();
            report.time = started.elapsed();
            return Ok(report);
        }

        let listed_before: HashSet<String> = record.docs.iter().map(|d| d.id.clone()).collect();
        let description_head =
            identity::description_head(&fetched.url.masked(), &params.branch, &report.commit);
        let settings = PushSettings {
            max_items: self.batch_files.max(1),
            max_bytes: self.batch_bytes,
            stall: Duration::from_secs(self.stall_secs),
            poll: self.poll.unwrap_or(PushSettings::default().poll),
            ..PushSettings::default()
        };
        bar.start(report.plan.offer.len());
        let on_event = |event: PushEvent| bar.event(event);
        report.push = push::push(
            &push::Target {
                api: &mirror.api,
                dataset: &mirror.dataset,
                start_node: &start,
                inputs: &inputs,
            },
            &push::Source {
                read: push::read_held(
                    &fetched.repo_dir,
                    crate::crawl::CrawlSettings::from_env().max_file_bytes,
                ),
                config_hash: &hash,
                description_head: &description_head,
            },
            &report.plan.offer,
            &settings,
            &on_event,
        )
        .await;
        bar.say("deleting stale documents");

        // What the pushes left: a run Dify refused may have created documents it will never
        // index; everything else is planned from the knowledge base as it is now.
        let (mut record, _) = self
            .listed(&mirror, &prefixes, Some(record), &mut report)
            .await?;
        let mut deletions = report.push.refused_orphans(&record.docs, &listed_before);
        let mut skipped = record.skipped_entries();
        for (path, oid, _) in &report.push.skipped {
            skipped.insert(path.clone(), *oid);
        }
        let current: std::collections::BTreeMap<&str, git2::Oid> =
            files.iter().map(|f| (f.path.as_str(), f.oid)).collect();
        skipped.retain(|path, oid| current.get(path.as_str()) == Some(oid));
        let after = plan::plan(&files, &record.docs, &skipped, full, guard);
        deletions.extend(after.delete);
        report.held = after.held;
        report.cleanup =
            cleanup::delete_all(&mirror.api, &mirror.dataset, deletions, &mut record).await;
        record.skipped = skipped
            .iter()
            .map(|(path, oid)| (path.clone(), oid.to_string()))
            .collect();
        let left = plan::plan(&files, &record.docs, &skipped, full, guard);
        let settled = left.offer.is_empty()
            && left.delete.is_empty()
            && left.held.is_empty()
            && left.indexing == 0;
        record.settled = settled.then(|| report.commit.clone());
        mirror.remember(&store, &hash, &mut record).await;
        bar.finish();
        report.time = started.elapsed();
        Ok(report)
    }

    /// The knowledge base's documents, reading only what `known` cannot tell; and whether
    /// nothing changed since `known`.
    async fn listed(
        &self,
        mirror: &Mirror,
        prefixes: &[String],
        known: Option<KbRecord>,
        report: &mut SyncReport,
    ) -> Result<(KbRecord, bool), CrawlError> {
        let listing = mirror
            .list(prefixes, known.as_ref())
            .await
            .map_err(CrawlError::Mirror)?;
        report.requests += listing.requests;
        let mut record = known.unwrap_or_default();
        if let Some(docs) = listing.docs {
            record.docs = docs;
            record.total = listing.total;
        }
        Ok((record, listing.unchanged))
    }

    /// Documents of this repository an earlier import or an interrupted sync left indexing
    /// are waited for (pushing their files again would duplicate them), as long as Dify
    /// makes progress. Returns how many there were.
    async fn wait_for_earlier_indexing(
        &self,
        mirror: &Mirror,
        prefixes: &[String],
        record: &mut KbRecord,
        bar: &Bar,
        report: &mut SyncReport,
    ) -> Result<usize, CrawlError> {
        let indexing = |record: &KbRecord| {
            record
                .docs
                .iter()
                .filter(|d| {
                    d.ours
                        .as_ref()
                        .is_some_and(|o| o.state == DocState::Indexing)
                })
                .count()
        };
        let first = indexing(record);
        if first == 0 {
            return Ok(0);
        }
        bar.say(&format!(
            "waiting for {first} documents an earlier run left indexing"
        ));
        let stall = Duration::from_secs(self.stall_secs);
        let poll = self.poll.unwrap_or(PushSettings::default().poll);
        // Progress is a new low: a count that goes up and down (someone else importing) does
        // not restart the clock.
        let (mut left, mut lowest, mut progress_at) = (first, first, Instant::now());
        while left > 0 {
            if progress_at.elapsed() >= stall {
                tracing::warn!(
                    "{left} documents made no progress in {stall:?}; planning with them as they are"
                );
                break;
            }
            tokio::time::sleep(poll).await;
            let known = std::mem::take(record);
            *record = self.listed(mirror, prefixes, Some(known), report).await?.0;
            left = indexing(record);
            if left < lowest {
                (lowest, progress_at) = (left, Instant::now());
            }
            bar.say(&format!(
                "waiting for {left} of {first} documents an earlier run left indexing"
            ));
        }
        Ok(first)
    }
}

/// One sync of a knowledge base at a time on this machine: a lock file per (API, knowledge
/// base) under the state directory, naming its holder; a second sync waits for the first, up
/// to `wait`, then gives up saying who holds it.
async fn lock(
    store: &FileStore,
    api: &KnowledgeApi,
    dataset: &str,
    wait: Duration,
) -> Result<std::fs::File, CrawlError> {
    use sha2::Digest;
    let dir = store.dir().join("locks");
    let io = |e: std::io::Error| {
        CrawlError::State(crate::crawl::state::StateError(format!(
            "{}: {e}",
            dir.display()
        )))
    };
    std::fs::create_dir_all(&dir).map_err(io)?;
    let name = hex::encode(&sha2::Sha256::digest(format!("{}|{dataset}", api.shown_base()))[..8]);
    let path = dir.join(format!("sync-{name}.lock"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io)?;
    let holder = || {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        match text.trim() {
            "" => "a process that did not say who it is".to_string(),
            text => text.chars().take(100).collect(),
        }
    };
    let until = Instant::now() + wait;
    let mut said = false;
    loop {
        match file.try_lock() {
            Ok(()) => {
                use std::io::Write;
                let since = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or_default();
                let mut held = &file;
                file.set_len(0).map_err(io)?;
                write!(held, "pid {} since {since} (unix time)", std::process::id()).map_err(io)?;
                return Ok(file);
            }
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < until => {
                if !said {
                    said = true;
                    eprintln!(
                        "another sync of this knowledge base is running on this machine ({}, {}); \
                         waiting up to {wait:?} for it to finish",
                        holder(),
                        path.display()
                    );
                }
                tokio::time::sleep(Duration::from_millis(250).min(wait)).await;
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(CrawlError::State(crate::crawl::state::StateError(format!(
                    "another sync of this knowledge base ({}) still holds {} after {wait:?}; run \
                     again when it has finished, or wait longer with --lock-wait",
                    holder(),
                    path.display()
                ))))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
    }
}

/// The progress bar on a terminal (stderr), nothing otherwise.
struct Bar(ProgressBar);

impl Bar {
    fn new() -> Bar {
        if !std::io::stderr().is_terminal() {
            return Bar(ProgressBar::hidden());
        }
        let bar = ProgressBar::new_spinner();
        bar.enable_steady_tick(Duration::from_millis(120));
        Bar(bar)
    }

    fn say(&self, what: &str) {
        self.0.set_message(what.to_string());
    }

    fn start(&self, files: usize) {
        self.0.set_style(
            ProgressStyle::with_template(
                "{spinner} {msg} [{bar:30}] {pos}/{len} indexed ({elapsed})",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        self.0.set_length(files as u64);
        self.0.set_message("reading");
    }

    fn event(&self, event: PushEvent) {
        match event {
            PushEvent::Read { done, total } => {
                self.0.set_message(format!("pushing: read {done}/{total}"))
            }
            PushEvent::Indexed { done, created } => {
                self.0.set_message(format!("pushed {created}"));
                self.0.set_position(done as u64);
            }
        }
    }

    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

/// The summary a person (or a CI log) reads.
pub fn describe(report: &SyncReport) -> String {
    let short = &report.commit[..report.commit.len().min(12)];
    let paths = |list: &[Deletion]| {
        let paths: Vec<&str> = list.iter().map(|d| d.path.as_str()).collect();
        crate::crawl::shorten(&paths)
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
            "dry run, commit {short}: would offer {} files, delete {} documents{}, keep {} files; \
             {} documents of this repository still indexing; nothing was changed\n",
            plan.offer.len(),
            plan.delete.len(),
            if plan.held.is_empty() {
                String::new()
            } else {
                format!(" (and hold back {})", plan.held.len())
            },
            report.kept.len(),
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
        out.push_str(&format!("skipped: {}\n", crate::crawl::shorten(&lines)));
    }
    if !report.cleanup.deleted.is_empty() {
        out.push_str(&format!("deleted: {}\n", paths(&report.cleanup.deleted)));
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
        "requests: {} to list and plan, {} to push and follow indexing, {} to delete; time {:.1?}\n",
        report.requests,
        push.requests,
        report.cleanup.deleted.len() + report.cleanup.failed.len() + report.cleanup.archived.len(),
        report.time
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs() {
        let parsed = parse_inputs(&[
            "chunk_size:=1024".into(),
            "separator=\\n\\n".into(),
            "label=a=b".into(),
            "flag:=true".into(),
        ])
        .unwrap();
        assert_eq!(parsed["chunk_size"], 1024);
        assert_eq!(parsed["separator"], "\\n\\n");
        assert_eq!(parsed["label"], "a=b");
        assert_eq!(parsed["flag"], true);
        assert!(parse_inputs(&["novalue".into()]).is_err());
        assert!(parse_inputs(&["=x".into()]).is_err());
        let error = parse_inputs(&["n:=nope".into()]).unwrap_err();
        assert!(error.contains("--input n:="), "{error}");
    }
}
