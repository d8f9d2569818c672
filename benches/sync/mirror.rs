//! The mirror scenario: a 5,000-file repository already mirrored into the fake Knowledge API
//! over loopback, then 1% of its files changed and 1% deleted. Times and API requests of the
//! listing, the plan and the deletes, next to the plain incremental sync of the same
//! repository (plugin storage only). In-process, so each phase is timed on its own.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use git_datasource::crawl::{CrawlSettings, Crawled};
use git_datasource::dify::knowledge::KnowledgeApi;
use git_datasource::mirror::record::RecordMemory;
use git_datasource::mirror::{Mirror, WatchSettings};
use serde_json::{json, Value};

use super::support::crawl_harness::{local_client, params, run_mirrored, CaptureSink, MemoryStore};
use super::support::knowledge_api::{FakeKnowledgeApi, KEY};
use super::{Importer, Rng};

const FILES: usize = 5000;
const REPS: usize = 5;

struct Bench {
    url: String,
    cache: std::path::PathBuf,
    kb: FakeKnowledgeApi,
    memory: Arc<RecordMemory>,
}

impl Bench {
    fn mirror(&self) -> Mirror {
        Mirror {
            api: KnowledgeApi::new(&self.kb.base_url, KEY).unwrap(),
            dataset: self.kb.dataset.clone(),
            memory: Some(self.memory.clone()),
        }
    }

    /// One crawl; with `mirror`, into the fake knowledge base. Returns the crawl (its summary
    /// and watch), the offered items, the wall time and the API requests it made.
    fn crawl(&self, store: &MemoryStore, mirror: bool) -> (Crawled, Vec<Value>, f64, usize) {
        let sink = CaptureSink::new(2_000_000_000);
        let settings = CrawlSettings {
            max_file_bytes: 5_000_000,
            time_budget: Duration::from_secs(300),
        };
        let extra = match mirror {
            true => json!({"knowledge_base_id": self.kb.dataset}),
            false => json!({}),
        };
        let target = self.mirror();
        let before = self.kb.request_count();
        let started = Instant::now();
        let summary = run_mirrored(
            &params(&self.url, extra),
            store,
            &sink,
            local_client(&self.cache),
            &settings,
            mirror.then_some(&target),
        )
        .unwrap();
        let wall = started.elapsed().as_secs_f64();
        (
            summary,
            sink.documents(),
            wall,
            self.kb.request_count() - before,
        )
    }

    /// The watch after a crawl, once its import is indexed: (seconds, requests, deletions).
    fn cleanup(&self, crawled: &Crawled) -> (f64, usize, usize) {
        let settings = WatchSettings {
            poll: Duration::from_millis(1),
            max_wait: Duration::from_secs(60),
        };
        let Some(watch) = crawled.watch.clone() else {
            return (0.0, 0, 0);
        };
        let before = self.kb.request_count();
        let started = Instant::now();
        let report = runtime().block_on(watch.run(settings));
        (
            started.elapsed().as_secs_f64(),
            self.kb.request_count() - before,
            report.deleted.len(),
        )
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Runs the scenario; returns the report lines and their JSON.
pub fn run(work: &Path) -> (Vec<String>, Value) {
    let mut rng = Rng(7);
    let tree = (0..FILES)
        .map(|i| (format!("docs/{:02}/{i:05}.md", i % 50), rng.text(1200)))
        .collect();
    let bare = work.join("mirror.git");
    let mut importer = Importer::create(&bare, tree);
    let mut bench = Bench {
        url: format!("file://{}", bare.display()),
        cache: work.join("mirror-cache"),
        kb: FakeKnowledgeApi::start(),
        memory: Arc::default(),
    };
    let (plain, mirrored) = (MemoryStore::default(), MemoryStore::default());

    // Already mirrored: a first sync of both, imported, indexed, cleaned up.
    bench.crawl(&plain, false);
    let (first, items, _, _) = bench.crawl(&mirrored, true);
    bench.kb.import(&items);
    bench.kb.index_all();
    bench.cleanup(&first);
    let mut lines = Vec::new();
    let mut report = json!({"files": FILES});

    // No change.
    let plain_walls: Vec<f64> = (0..REPS).map(|_| bench.crawl(&plain, false).2).collect();
    let runs: Vec<(f64, usize, f64)> = (0..REPS)
        .map(|_| {
            let (crawled, _, wall, requests) = bench.crawl(&mirrored, true);
            let listing = crawled
                .summary
                .mirror
                .as_ref()
                .unwrap()
                .listing_time
                .as_secs_f64();
            // As in the plugin: the watcher follows (after the final message, untimed).
            bench.cleanup(&crawled);
            (wall, requests, listing)
        })
        .collect();
    let (plain_nochange, mirror_nochange) = (
        median(plain_walls),
        median(runs.iter().map(|r| r.0).collect()),
    );
    let ratio = mirror_nochange / plain_nochange;
    let listing_nochange = median(runs.iter().map(|r| r.2).collect());
    lines.push(format!(
        "mirror: no-change sync {mirror_nochange:.4} s with mirroring ({} request, listing {listing_nochange:.4} s) vs {plain_nochange:.4} s plain: {ratio:.2}x (target <= 2x): {}",
        runs[0].1,
        if ratio <= 2.0 { "met" } else { "MISSED" }
    ));
    // A restarted process (the record from plugin storage), and one with no record at all.
    bench.memory = Arc::default();
    let (_, _, restart_wall, restart_requests) = bench.crawl(&mirrored, true);
    bench.memory = Arc::default();
    mirrored
        .0
        .lock()
        .unwrap()
        .retain(|k, _| !k.starts_with("git_kb:"));
    let (cold, _, cold_wall, cold_requests) = bench.crawl(&mirrored, true);
    let cold_listing = cold
        .summary
        .mirror
        .as_ref()
        .unwrap()
        .listing_time
        .as_secs_f64();
    lines.push(format!(
        "mirror: after a restart {restart_wall:.3} s ({restart_requests} request); with nothing remembered {cold_wall:.3} s, listing {FILES} documents {cold_listing:.3} s in {cold_requests} requests"
    ));

    // 1% changed, 1% deleted.
    let paths: Vec<String> = importer.tree.keys().cloned().collect();
    let step = paths.len() / 50;
    let changed: Vec<(String, Vec<u8>)> = paths
        .iter()
        .step_by(step)
        .map(|p| (p.clone(), rng.text(1300)))
        .collect();
    let deleted: Vec<String> = paths.iter().skip(step / 2).step_by(step).cloned().collect();
    importer.commit(changed, &deleted, false, "1% changed, 1% deleted");
    let (_, plain_items, plain_delta, _) = bench.crawl(&plain, false);
    let (delta, offered, mirror_delta, delta_requests) = bench.crawl(&mirrored, true);
    let outcome = delta.summary.mirror.clone().unwrap();
    let mut watch = delta.watch.clone().unwrap();
    let gone = std::mem::take(&mut watch.deletions);
    let mut mirroring = watch.mirroring.clone();
    let before = bench.kb.request_count();
    let started = Instant::now();
    let deleted_now = runtime().block_on(mirroring.delete(gone));
    let (delete_wall, delete_requests) = (
        started.elapsed().as_secs_f64(),
        bench.kb.request_count() - before,
    );
    bench.kb.import(&offered);
    bench.kb.index_all();
    // The gone files are deleted already: the watcher is left with what the import replaces.
    let delta = Crawled {
        summary: delta.summary,
        watch: Some(watch),
    };
    let (watch_wall, watch_requests, superseded) = bench.cleanup(&delta);
    lines.push(format!(
        "mirror: 1% changed + 1% deleted: plain incremental {plain_delta:.3} s ({} offered); mirrored {mirror_delta:.3} s ({} offered; listing {:.3} s in {delta_requests} requests, plan {:.3} s)",
        plain_items.len(),
        offered.len(),
        outcome.listing_time.as_secs_f64(),
        delta.summary.plan_time.as_secs_f64(),
    ));
    lines.push(format!(
        "mirror: deleting {} documents of gone files {delete_wall:.3} s in {delete_requests} requests; after the import, the watcher deleted {superseded} superseded documents in {watch_wall:.3} s ({watch_requests} requests)",
        deleted_now.deleted.len()
    ));
    report["no_change"] = json!({"plain_seconds": plain_nochange, "mirror_seconds": mirror_nochange,
        "mirror_requests": runs[0].1, "mirror_listing_seconds": listing_nochange, "ratio": ratio, "restart_seconds": restart_wall,
        "restart_requests": restart_requests, "cold_listing_seconds": cold_listing, "cold_requests": cold_requests});
    report["delta"] = json!({"plain_seconds": plain_delta, "mirror_seconds": mirror_delta,
        "listing_seconds": outcome.listing_time.as_secs_f64(), "listing_requests": delta_requests,
        "plan_seconds": delta.summary.plan_time.as_secs_f64(), "offered": offered.len(),
        "gone_deleted": deleted_now.deleted.len(), "gone_delete_seconds": delete_wall, "gone_delete_requests": delete_requests,
        "superseded_deleted": superseded, "watcher_seconds": watch_wall, "watcher_requests": watch_requests});
    (lines, report)
}
