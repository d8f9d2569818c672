//! `sync --config`: every entry of the file synced as one `sync` would, one at a time or
//! `--jobs N` at once; a failing entry never stops the others. Pushes to one Dify share its
//! room for runs in flight, so many entries load its worker as one sync does. Each entry's
//! report is printed when it ends, then one summary table; the exit status is the worst.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::MultiProgress;
use tokio::sync::Semaphore;

use super::git_client;
use super::sync::{asked_guard, SyncCommand};
use super::sync_config::{Entry, SyncConfig};
use super::sync_job::{Bar, SyncJob};
use super::sync_report::{describe, SyncReport, EXIT_HELD};
use crate::crawl::CrawlError;
use crate::mirror::plan::DeleteGuard;
use crate::mirror::push::{RunSlots, RUNS_IN_FLIGHT};
use crate::repository::params::SyncMode;
use crate::settings::Settings;

/// How one entry ended.
#[derive(Debug)]
pub struct EntryOutcome {
    pub name: String,
    pub result: Result<SyncReport, String>,
    pub time: Duration,
}

impl EntryOutcome {
    /// As for one `sync`: 0 mirrored, [`EXIT_HELD`] deletions held back, 1 an error.
    pub fn exit_code(&self) -> u8 {
        match &self.result {
            Ok(report) => report.exit_code(),
            Err(_) => 1,
        }
    }
}

/// Syncs the entries (in the file's order, `jobs` at once) and returns how each ended, in
/// that order; `print` gets each entry's report as it ends.
pub async fn sync_all(
    entries: &[&Entry],
    command: &SyncCommand,
    print: impl Fn(&str) + Send + Sync + 'static,
) -> Vec<EntryOutcome> {
    let settings = Settings::from_env();
    let git = git_client();
    let options = command.options();
    let jobs = Arc::new(Semaphore::new(command.jobs.max(1)));
    let group = MultiProgress::new();
    let print = Arc::new(print);
    let mut slots: HashMap<String, RunSlots> = HashMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    for (index, entry) in entries.iter().enumerate() {
        let job = entry_job(entry, command, &settings);
        let mut options = options.clone();
        if let Ok(job) = &job {
            options.push.slots = slots
                .entry(job.api.shown_base().to_string())
                .or_insert_with(|| RunSlots::new(RUNS_IN_FLIGHT))
                .clone();
        }
        let (jobs, git, store) = (jobs.clone(), git.clone(), command.repo.store());
        let (name, group, print) = (entry.name.clone(), group.clone(), print.clone());
        tasks.spawn(async move {
            let _turn = jobs.acquire_owned().await;
            let started = Instant::now();
            let bar = Bar::in_group(&group, &name);
            let result = match job {
                Ok(job) => job.run(&git, &store, &options, &bar).await,
                Err(error) => Err(error),
            };
            bar.finish();
            let text = match &result {
                Ok(report) => describe(report),
                Err(error) => format!("error: {error}\n"),
            };
            group.suspend(|| print(&format!("== {name} ==\n{text}")));
            let result = result.map_err(|e| e.to_string());
            let time = started.elapsed();
            (index, EntryOutcome { name, result, time })
        });
    }
    let mut outcomes: Vec<Option<EntryOutcome>> = entries.iter().map(|_| None).collect();
    let mut lost = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((index, outcome)) => outcomes[index] = Some(outcome),
            Err(error) => lost.push(error.to_string()),
        }
    }
    outcomes
        .into_iter()
        .zip(entries)
        .map(|(outcome, entry)| {
            outcome.unwrap_or_else(|| EntryOutcome {
                name: entry.name.clone(),
                result: Err(format!(
                    "the sync stopped unexpectedly: {}",
                    lost.join("; ")
                )),
                time: Duration::ZERO,
            })
        })
        .collect()
}

/// The sync an entry asks for, with the command's options over the file's.
fn entry_job(
    entry: &Entry,
    command: &SyncCommand,
    settings: &Settings,
) -> Result<SyncJob, CrawlError> {
    let mut params = entry.params.clone();
    if command.repo.full {
        params.sync_mode = SyncMode::Full;
    }
    let guard = command
        .guard()
        .or(asked_guard(
            entry.allow_mass_delete == Some(true),
            entry.max_delete,
        ))
        .unwrap_or(DeleteGuard::Default);
    Ok(SyncJob {
        params,
        dataset: entry.dataset.clone(),
        api: entry.api(&command.dify, settings)?,
        credentials: entry.credentials()?,
        inputs: entry.inputs.clone(),
        start_node: entry.start_node.clone(),
        guard,
    })
}

/// The worst exit status of the entries: an error, else deletions held back, else 0.
pub fn exit_code(outcomes: &[EntryOutcome]) -> u8 {
    let codes: Vec<u8> = outcomes.iter().map(EntryOutcome::exit_code).collect();
    if codes.contains(&1) {
        1
    } else if codes.contains(&EXIT_HELD) {
        EXIT_HELD
    } else {
        0
    }
}

/// One line per entry: how it ended, its commit, files, documents pushed and deleted, time.
pub fn summary(outcomes: &[EntryOutcome]) -> String {
    let width = outcomes
        .iter()
        .map(|o| o.name.chars().count())
        .chain([5])
        .max()
        .unwrap_or(5);
    let mut out = format!(
        "{:width$}  {:<10}  {:<12}  {:>6}  {:>6}  {:>7}  {:>7}  detail\n",
        "entry", "result", "commit", "files", "pushed", "deleted", "time"
    );
    for outcome in outcomes {
        let time = format!("{:.1}s", outcome.time.as_secs_f64());
        let line = match &outcome.result {
            Ok(report) => {
                let result = match (report.dry_run, report.unchanged, outcome.exit_code()) {
                    (true, _, _) => "dry run",
                    (_, true, _) => "unchanged",
                    (_, _, 0) => "mirrored",
                    (_, _, EXIT_HELD) => "held",
                    _ => "FAILED",
                };
                let detail = match report.errors().first() {
                    Some(error) => first_words(error),
                    None if !report.held.is_empty() => {
                        format!("{} deletions held back by the guard", report.held.len())
                    }
                    None if report.dry_run => format!(
                        "would offer {}, delete {}",
                        report.plan.offer.len(),
                        report.plan.delete.len()
                    ),
                    None => String::new(),
                };
                let files = match report.unchanged {
                    true => "-".to_string(),
                    false => report.files.to_string(),
                };
                format!(
                    "{:<10}  {:<12}  {:>6}  {:>6}  {:>7}  {time:>7}  {detail}",
                    result,
                    &report.commit[..report.commit.len().min(12)],
                    files,
                    report.push.created.len(),
                    report.cleanup.deleted.len(),
                )
            }
            Err(error) => format!(
                "{:<10}  {:<12}  {:>6}  {:>6}  {:>7}  {time:>7}  {}",
                "FAILED",
                "-",
                "-",
                "-",
                "-",
                first_words(error)
            ),
        };
        let line = format!("{:width$}  {line}", outcome.name);
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The start of a message, on one line.
fn first_words(message: &str) -> String {
    let line = message.lines().next().unwrap_or_default();
    match line.char_indices().nth(160) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line.to_string(),
    }
}

/// Runs `sync --config` from the command: 2 when the file (or `--only`) is wrong and nothing
/// ran, else the worst entry's status.
pub async fn run(command: &SyncCommand, config: &SyncConfig) -> Result<u8, String> {
    let entries = config.select(&command.only)?;
    let outcomes = sync_all(&entries, command, |text| print!("{text}")).await;
    print!("{}", summary(&outcomes));
    Ok(exit_code(&outcomes))
}
