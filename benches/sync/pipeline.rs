//! `git-datasource sync` (the binary) through the pipeline API of the fake Knowledge API: a
//! first sync of a generated repository into an empty pipeline knowledge base, a re-sync after
//! 1% of the files changed and 1% were deleted, and a re-sync with nothing changed; at 5,000
//! files, and at 100,000 unless `--size small`. Time, requests, documents pushed and deleted,
//! and the process's peak memory. The fake indexes at once, so the times are ours, not Dify's
//! worker's (the real one indexes about 2.6 documents/s: `knowledge-api.md` §6.4).

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use super::support::fake_daemon::BINARY;
use super::support::knowledge_api::{FakeKnowledgeApi, KEY};
use super::{at_sizes, docs_tree, measure, Importer, Rng, Sample};

/// Bytes of text per file.
const FILE_BYTES: usize = 1200;

/// One sync: the process's measures, the fake's requests, and what it printed.
struct Outcome {
    sample: Sample,
    requests: usize,
    text: String,
}

fn sync(bare: &Path, kb: &FakeKnowledgeApi, work: &Path) -> Outcome {
    let printed = work.join("sync-output.txt");
    let before = kb.request_count();
    let sample = measure(
        Command::new(BINARY)
            .arg("sync")
            .arg(bare)
            .args([
                "--knowledge-base",
                &kb.dataset,
                "--dify-api-url",
                &kb.base_url,
            ])
            .args(["--poll-ms", "10", "--state-dir"])
            .arg(work.join("state"))
            .env("GIT_DATASOURCE_DIFY_API_KEY", KEY)
            .env("GIT_DATASOURCE_CACHE_DIR", work.join("cache"))
            .stdout(std::fs::File::create(&printed).unwrap())
            .stderr(Stdio::null()),
    );
    Outcome {
        sample,
        requests: kb.request_count() - before,
        text: std::fs::read_to_string(&printed).unwrap(),
    }
}

/// The number printed right after `label` in a sync's summary (0 when absent).
fn after(text: &str, label: &str) -> usize {
    text.find(label)
        .map(|at| &text[at + label.len()..])
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn row(files: usize, name: &str, outcome: &Outcome) -> (String, Value) {
    let Outcome {
        sample,
        requests,
        text,
    } = outcome;
    let (pushed, runs, deleted) = (
        after(text, "pushed "),
        after(text, " in "),
        after(text, "deleted "),
    );
    let line = format!(
        "sync {files:>6} files: {name:<24} {:>7.3} s  {requests:>6} requests  {:>6.1} MB peak  \
         ({:>5.1} MB heap)  {:>6.3} s CPU  {runs:>4} runs  pushed {pushed:>6}  deleted {deleted:>5}",
        sample.wall, sample.peak_rss_mb, sample.peak_anon_mb, sample.cpu
    );
    let json = json!({"seconds": sample.wall, "cpu_seconds": sample.cpu, "requests": requests,
                      "peak_rss_mb": sample.peak_rss_mb, "peak_heap_mb": sample.peak_anon_mb, "runs": runs, "pushed": pushed,
                      "deleted": deleted});
    (line, json)
}

/// A first sync, 1% changed and 1% deleted, and no change, at `files` files.
fn scenario(work: &Path, files: usize) -> (Vec<String>, Value) {
    let work = work.join(format!("pipeline-sync-{files}"));
    let mut rng = Rng(11);
    let tree = docs_tree(files, &mut rng, FILE_BYTES);
    let bare = work.join("repo.git");
    let mut importer = Importer::create(&bare, tree);
    let kb = FakeKnowledgeApi::start();
    kb.state().auto_index = 1000;
    let first = sync(&bare, &kb, &work);

    let paths: Vec<String> = importer.tree.keys().cloned().collect();
    let step = 100;
    let changed: Vec<(String, Vec<u8>)> = paths
        .iter()
        .step_by(step)
        .map(|p| (p.clone(), rng.text(FILE_BYTES + 100)))
        .collect();
    let deleted: Vec<String> = paths.iter().skip(step / 2).step_by(step).cloned().collect();
    importer.commit(changed, &deleted, false, "1% changed, 1% deleted");
    let delta = sync(&bare, &kb, &work);
    let unchanged = sync(&bare, &kb, &work);
    assert!(
        unchanged.text.contains("already mirrors"),
        "{}",
        unchanged.text
    );
    assert_eq!(
        kb.docs().len(),
        files - deleted.len(),
        "the knowledge base mirrors the branch"
    );

    let mut lines = Vec::new();
    let mut report = json!({"files": files});
    for (name, key, outcome) in [
        ("first sync", "first", &first),
        ("1% changed + 1% deleted", "delta", &delta),
        ("no change", "no_change", &unchanged),
    ] {
        let (line, json) = row(files, name, outcome);
        lines.push(line);
        report[key] = json;
    }
    let _ = std::fs::remove_dir_all(&work);
    (lines, report)
}

/// Runs the scenarios; returns the report lines and their JSON.
pub fn run(work: &Path, with_100k: bool) -> (Vec<String>, Value) {
    at_sizes(work, with_100k, scenario)
}
