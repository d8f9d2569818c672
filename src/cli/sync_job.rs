//! One knowledge base made to mirror one branch: what `sync` runs once, and `sync --config`
//! once per entry. It plans exactly as the plugin's mirroring does (the knowledge base is the
//! state), pushes the files to offer in runs of `POST /pipeline/run`, waits until they are
//! indexed, then deletes what they superseded and what the branch no longer has, under the
//! mass-delete guard.
//!
//! Safe to interrupt: every decision is taken from the knowledge base as listed, so a run
//! killed anywhere leaves documents the next run finds (indexing ones are waited for, never
//! pushed twice) and deletions it redoes.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::sync_lock::lock;
use super::sync_report::SyncReport;
use crate::crawl::CrawlError;
use crate::dify::knowledge::KnowledgeApi;
use crate::dify::pipeline::start_node;
use crate::mirror::metadata::GitSource;
use crate::mirror::plan::{DeleteGuard, MirrorPlan};
use crate::mirror::push::{self, PushEvent, PushSettings};
use crate::mirror::{Mirror, MirrorConfig, Mirroring, Pipeline};
use crate::repository::credentials::Credentials;
use crate::repository::fetch::fetch_branch;
use crate::repository::identity;
use crate::repository::params::CrawlParams;
use crate::settings::Settings;
use crate::store::files::FileStore;
use git_remote::GitClient;

/// What to mirror where.
pub struct SyncJob {
    /// The repository, branch, filters and knowledge base.
    pub params: CrawlParams,
    pub dataset: String,
    pub api: KnowledgeApi,
    pub credentials: Credentials,
    /// The pipeline's Process-form inputs.
    pub inputs: serde_json::Value,
    /// The pipeline's Git Repository node, when it has several.
    pub start_node: Option<String>,
    pub guard: DeleteGuard,
}

/// How a sync runs, whatever it mirrors.
#[derive(Clone)]
pub struct SyncOptions {
    /// Plan and print, change nothing.
    pub dry_run: bool,
    /// Write every document's Git metadata again.
    pub rewrite_metadata: bool,
    /// How long to wait for another sync of the same knowledge base on this machine.
    pub lock_wait: Duration,
    /// Runs' sizes, room in Dify's queue, polling and the stall limit.
    pub push: PushSettings,
}

impl SyncJob {
    /// Mirrors the branch into the knowledge base, or with `dry_run` says what that would do.
    /// `bar` shows the progress; the caller finishes it, whatever the outcome.
    pub async fn run(
        &self,
        git: &Arc<GitClient>,
        store: &FileStore,
        options: &SyncOptions,
        bar: &Bar,
    ) -> Result<SyncReport, CrawlError> {
        let started = Instant::now();
        let settings = Settings::from_env();
        let params = &self.params;
        let full = params.sync_mode.ignores_state();
        let _lock = match options.dry_run {
            true => None,
            false => Some(lock(store, &self.api, &self.dataset, options.lock_wait).await?),
        };
        let target = Mirror {
            api: self.api.clone(),
            dataset: self.dataset.clone(),
            memory: None,
        };
        let mut report = SyncReport {
            dry_run: options.dry_run,
            ..SyncReport::default()
        };

        bar.say("fetching");
        let (fetched, _) = fetch_branch::<_, CrawlError, _>(
            git,
            params,
            &self.credentials,
            store,
            None,
            || async { Ok(()) },
        )
        .await?;
        report.commit = fetched.commit.to_string();

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
        let hash = identity::config_hash(params);
        let legacy = identity::legacy_config_hash(params);
        let config = MirrorConfig {
            hash: &hash,
            legacy_hash: legacy.as_deref(),
            source: GitSource::new(&fetched.url, &params.branch),
        };
        let mut mirroring = Mirroring::open(target, store, config, None)
            .await
            .map_err(CrawlError::Mirror)?;
        if options.rewrite_metadata {
            mirroring.forget_tags();
        }
        let unchanged = !full && !options.rewrite_metadata && mirroring.settled_at(&report.commit);
        if !options.dry_run && unchanged {
            report.unchanged = true;
            return Ok(report.finish(&mirroring, started));
        }
        let files = {
            let repo = fetched.open()?;
            git_remote::list_files(&repo, fetched.commit, &params.filter())?.files
        };
        report.files = files.len();
        if !options.dry_run {
            let say = |left: usize, first: usize| match left == first {
                true => bar.say(&format!(
                    "waiting for {first} documents an earlier run left indexing"
                )),
                false => bar.say(&format!(
                    "waiting for {left} of {first} documents an earlier run left indexing"
                )),
            };
            report.waited_for = mirroring
                .wait_while_indexing(options.push.stall, options.push.poll, say)
                .await
                .map_err(CrawlError::Mirror)?;
        }
        report.plan = mirroring.plan(&files, full, self.guard);
        let offered: BTreeSet<&str> = report.plan.offer.iter().map(|f| f.path.as_str()).collect();
        let skipped = mirroring.record.skipped_entries();
        report.kept = files
            .iter()
            .filter(|f| !offered.contains(f.path.as_str()) && skipped.get(&f.path) != Some(&f.oid))
            .map(|f| f.path.clone())
            .collect();
        if options.dry_run {
            report.held = report.plan.held.clone();
            return Ok(report.finish(&mirroring, started));
        }

        let description_head =
            identity::description_head(&fetched.url.masked(), &params.branch, &report.commit);
        bar.start(report.plan.offer.len());
        let pipeline = Pipeline {
            start_node: &start,
            inputs: &self.inputs,
        };
        let read = push::read_held(&fetched.repo_dir, settings.crawl.max_file_bytes);
        let (pushed, cleanup) = mirroring
            .push(
                &pipeline,
                read,
                &description_head,
                &report.plan.offer,
                &options.push,
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
        let MirrorPlan {
            held,
            delete,
            untagged,
            ..
        } = mirroring.plan(&files, full, self.guard);
        report.held = held;
        report.cleanup.extend(mirroring.delete(delete).await);
        if !untagged.is_empty() {
            bar.say("setting the documents' Git metadata");
            report.metadata = mirroring.tag(&untagged, &report.commit).await;
        }
        // One entry per document tagged: gone before the last plan, which is the peak.
        drop(untagged);
        let left = mirroring.plan(&files, full, self.guard);
        mirroring.settle(&report.commit, &left);
        mirroring.remember(store).await;
        Ok(report.finish(&mirroring, started))
    }
}

/// A sync's progress on a terminal (stderr), nothing otherwise.
pub struct Bar(ProgressBar);

impl Bar {
    /// The one bar of a single sync.
    pub fn single() -> Bar {
        if !std::io::stderr().is_terminal() {
            return Bar(ProgressBar::hidden());
        }
        let bar = ProgressBar::new_spinner();
        bar.enable_steady_tick(Duration::from_millis(120));
        Bar(bar)
    }

    /// One line among several, named.
    pub fn in_group(group: &MultiProgress, name: &str) -> Bar {
        let bar = Bar::single();
        bar.0.set_prefix(name.to_string());
        bar.0.set_style(
            ProgressStyle::with_template("{spinner} {prefix}: {msg}").expect("a valid template"),
        );
        Bar(group.add(bar.0))
    }

    fn say(&self, what: &str) {
        self.0.set_message(what.to_string());
    }

    fn start(&self, files: usize) {
        self.0.set_style(
            ProgressStyle::with_template(
                "{spinner} {prefix} {msg} [{bar:30}] {pos}/{len} indexed ({elapsed})",
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

    pub fn finish(&self) {
        self.0.finish_and_clear();
    }
}
