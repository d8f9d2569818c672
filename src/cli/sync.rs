//! `git-datasource sync`: one command makes a pipeline knowledge base mirror a branch,
//! through Dify's knowledge-pipeline Service API (1.13.0 and later). It plans exactly as the
//! plugin's mirroring does (the knowledge base is the state), pushes the files to offer in
//! runs of `POST /pipeline/run`, waits until they are indexed, then deletes what they
//! superseded and what the branch no longer has, under the mass-delete guard.
//!
//! Safe to interrupt: every decision is taken from the knowledge base as listed, so a run
//! killed anywhere leaves documents the next run finds (indexing ones are waited for, never
//! pushed twice) and deletions it redoes.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::sync_lock::lock;
pub use super::sync_report::{describe, SyncReport, EXIT_HELD};
use super::{git_client, git_credentials, DifyArgs, RepoArgs};
use crate::crawl::CrawlError;
use crate::dify::pipeline::start_node;
use crate::mirror::metadata::GitSource;
use crate::mirror::plan::DeleteGuard;
use crate::mirror::push::{self, PushEvent, PushSettings};
use crate::mirror::{Mirror, MirrorConfig, Mirroring, Pipeline};
use crate::repository::fetch::fetch_branch;
use crate::repository::identity;
use crate::settings::Settings;

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
    /// Write the Git metadata of every document again, not only of those that lack it
    /// (after a field was edited or renamed in Dify, say).
    #[arg(long)]
    pub rewrite_metadata: bool,
    /// How often indexing is checked (2 s).
    #[arg(skip)]
    pub poll: Option<Duration>,
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
        let settings = Settings::from_env();
        let params = self.repo.params(Some(&self.knowledge_base))?;
        let dataset = params
            .knowledge_base_id
            .clone()
            .ok_or_else(|| CrawlError::Params(vec!["--knowledge-base is empty".into()]))?;
        let api = self.dify.api("sync", &settings)?;
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
        let target = Mirror {
            api,
            dataset,
            memory: None,
        };
        let mut report = SyncReport {
            dry_run: self.dry_run,
            ..SyncReport::default()
        };

        bar.say("fetching");
        let credentials = git_credentials()?;
        let (fetched, _) = fetch_branch::<_, CrawlError, _>(
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
        let nodes = target
            .api
            .datasource_nodes(&target.dataset)
            .await
            .map_err(CrawlError::Mirror)?;
        report.requests += 1;
        let start = start_node(&nodes, self.start_node.as_deref())
            .map_err(|e| CrawlError::Params(vec![e]))?;

        bar.say("listing the knowledge base");
        let hash = identity::config_hash(&params);
        let legacy = identity::legacy_config_hash(&params);
        let config = MirrorConfig {
            hash: &hash,
            legacy_hash: legacy.as_deref(),
            source: GitSource::new(&fetched.url, &params.branch),
        };
        let mut mirroring = Mirroring::open(target, &store, config, None)
            .await
            .map_err(CrawlError::Mirror)?;
        if self.rewrite_metadata {
            mirroring.forget_tags();
        }
        let unchanged = !full && !self.rewrite_metadata && mirroring.settled_at(&report.commit);
        if !self.dry_run && unchanged {
            report.unchanged = true;
            return Ok(report.finish(&mirroring, started));
        }
        if !self.dry_run {
            let poll = self.poll.unwrap_or(PushSettings::default().poll);
            let say = |left: usize, first: usize| match left == first {
                true => bar.say(&format!(
                    "waiting for {first} documents an earlier run left indexing"
                )),
                false => bar.say(&format!(
                    "waiting for {left} of {first} documents an earlier run left indexing"
                )),
            };
            report.waited_for = mirroring
                .wait_while_indexing(Duration::from_secs(self.stall_secs), poll, say)
                .await
                .map_err(CrawlError::Mirror)?;
        }
        report.plan = mirroring.plan(&files, full, guard);
        let offered: BTreeSet<&str> = report.plan.offer.iter().map(|f| f.path.as_str()).collect();
        let skipped = mirroring.record.skipped_entries();
        report.kept = files
            .iter()
            .filter(|f| !offered.contains(f.path.as_str()) && skipped.get(&f.path) != Some(&f.oid))
            .map(|f| f.path.clone())
            .collect();
        if self.dry_run {
            report.held = report.plan.held.clone();
            return Ok(report.finish(&mirroring, started));
        }

        let description_head =
            identity::description_head(&fetched.url.masked(), &params.branch, &report.commit);
        let push_settings = PushSettings {
            max_items: self.batch_files.max(1),
            max_bytes: self.batch_bytes,
            stall: Duration::from_secs(self.stall_secs),
            poll: self.poll.unwrap_or(PushSettings::default().poll),
            ..PushSettings::default()
        };
        bar.start(report.plan.offer.len());
        let pipeline = Pipeline {
            start_node: &start,
            inputs: &inputs,
        };
        let read = push::read_held(&fetched.repo_dir, settings.crawl.max_file_bytes);
        let (pushed, cleanup) = mirroring
            .push(
                &pipeline,
                read,
                &description_head,
                &report.plan.offer,
                &push_settings,
                &|event| bar.event(event),
            )
            .await;
        report.push = pushed;
        report.cleanup = cleanup;
        bar.say("deleting stale documents");

        // Everything else is planned from the knowledge base as it is now.
        mirroring.refresh().await.map_err(CrawlError::Mirror)?;
        let never_pushed = report.push.skipped.iter().map(|(p, o, _)| (p.clone(), *o));
        mirroring.learn_skips(&files, &offered, never_pushed);
        let after = mirroring.plan(&files, full, guard);
        report.held = after.held;
        report.cleanup.extend(mirroring.delete(after.delete).await);
        if !after.untagged.is_empty() {
            bar.say("setting the documents' Git metadata");
            report.metadata = mirroring.tag(&after.untagged, &report.commit).await;
        }
        let left = mirroring.plan(&files, full, guard);
        mirroring.settle(&report.commit, &left);
        mirroring.remember(&store).await;
        bar.finish();
        Ok(report.finish(&mirroring, started))
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
