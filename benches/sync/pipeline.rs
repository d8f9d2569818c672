//! `git-datasource sync` through the pipeline API of the fake Knowledge API: a first sync of
//! a 5,000-file repository into an empty pipeline knowledge base, a re-sync after 1% of the
//! files changed and 1% were deleted, and a re-sync with nothing changed. Time, requests and
//! bytes sent. The fake indexes at once, so the times are ours, not Dify's worker's (the
//! real one indexes about 2.6 documents/s: `knowledge-api.md` §6.4).

use std::path::Path;
use std::time::{Duration, Instant};

use clap::Parser;
use git_datasource::cli::sync::{describe, SyncCommand, SyncReport};
use serde_json::{json, Value};

use super::support::knowledge_api::{FakeKnowledgeApi, KEY};
use super::{Importer, Rng};

const FILES: usize = 5000;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    sync: SyncCommand,
}

/// One sync: its report, wall seconds and requests.
fn sync(bare: &Path, kb: &FakeKnowledgeApi, state: &Path) -> (SyncReport, f64, usize) {
    let args = [
        "sync",
        bare.to_str().unwrap(),
        "--knowledge-base",
        &kb.dataset,
        "--dify-api-url",
        &kb.base_url,
        "--dify-api-key",
        KEY,
        "--state-dir",
        state.to_str().unwrap(),
    ];
    let mut command = Cli::try_parse_from(args).unwrap().sync;
    command.poll = Some(Duration::from_millis(10));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let before = kb.request_count();
    let started = Instant::now();
    let report = runtime.block_on(command.run()).unwrap();
    let wall = started.elapsed().as_secs_f64();
    assert_eq!(report.exit_code(), 0, "{}", describe(&report));
    (report, wall, kb.request_count() - before)
}

fn row(name: &str, (report, wall, requests): &(SyncReport, f64, usize)) -> (String, Value) {
    let push = &report.push;
    let line = format!(
        "sync: {name:<24} {wall:>7.3} s  {requests:>5} requests  {:>10} bytes sent  {:>3} runs  pushed {:>4}  deleted {:>3}",
        push.bytes_sent,
        push.runs,
        push.created.len(),
        report.cleanup.deleted.len()
    );
    let json = json!({"seconds": wall, "requests": requests, "bytes_sent": push.bytes_sent,
                      "runs": push.runs, "pushed": push.created.len(), "deleted": report.cleanup.deleted.len()});
    (line, json)
}

/// Runs the scenario; returns the report lines and their JSON.
pub fn run(work: &Path) -> (Vec<String>, Value) {
    let mut rng = Rng(11);
    let tree = (0..FILES)
        .map(|i| (format!("docs/{:02}/{i:05}.md", i % 50), rng.text(1200)))
        .collect();
    let bare = work.join("pipeline-sync.git");
    let mut importer = Importer::create(&bare, tree);
    let kb = FakeKnowledgeApi::start();
    kb.state().auto_index = 1000;
    let state = work.join("pipeline-sync-state");
    let first = sync(&bare, &kb, &state);

    let paths: Vec<String> = importer.tree.keys().cloned().collect();
    let step = paths.len() / 50;
    let changed: Vec<(String, Vec<u8>)> = paths
        .iter()
        .step_by(step)
        .map(|p| (p.clone(), rng.text(1300)))
        .collect();
    let deleted: Vec<String> = paths.iter().skip(step / 2).step_by(step).cloned().collect();
    importer.commit(changed, &deleted, false, "1% changed, 1% deleted");
    let delta = sync(&bare, &kb, &state);
    let unchanged = sync(&bare, &kb, &state);

    let mut lines = Vec::new();
    let mut report = json!({"files": FILES});
    for (name, key, result) in [
        ("first sync, 5,000 files", "first", &first),
        ("1% changed + 1% deleted", "delta", &delta),
        ("no change", "no_change", &unchanged),
    ] {
        let (line, json) = row(name, result);
        lines.push(line);
        report[key] = json;
    }
    (lines, report)
}
