//! The browser (`git_browser`) through the fake daemon, as Dify drives it: a walk of every
//! folder of a generated repository page by page (what a user's browsing and Dify's folder
//! pick cost), then 1,000 picked files' text one request each; at 5,000 files, and at
//! 100,000 unless `--size small`. Time, answers, the longest answer, and the plugin's peak
//! resident memory and heap. A local repository: the fetch is the crawl's, measured above.

use std::path::Path;
use std::time::Instant;

use serde_json::{json, Value};

use super::support::browse_requests::{download, walk};
use super::support::fake_daemon::FakeDaemon;
use super::{at_sizes, docs_tree, peak_rss_mb, status_mb, Importer, Rng};

/// Bytes of text per file.
const FILE_BYTES: usize = 1200;
/// Files whose text is asked for.
const PICKED: usize = 1000;

fn scenario(work: &Path, files: usize) -> (Vec<String>, Value) {
    let work = work.join(format!("browse-{files}"));
    let tree = docs_tree(files, &mut Rng(23), FILE_BYTES);
    let bare = work.join("repo.git");
    Importer::create(&bare, tree);
    let cache = work.join("cache").display().to_string();
    let daemon = FakeDaemon::spawn(&[
        ("GIT_DATASOURCE_ALLOW_LOCAL", "1"),
        ("GIT_DATASOURCE_CACHE_DIR", cache.as_str()),
    ]);
    let pid = daemon.child.as_ref().unwrap().id();
    let credentials = json!({"repo_url": bare.display().to_string()});

    let started = Instant::now();
    let mut heap = 0.0f64;
    let listed = walk(&daemon, &credentials, || {
        heap = heap.max(status_mb(pid, "RssAnon:"))
    });
    let listing = started.elapsed().as_secs_f64();
    assert_eq!(listed.files.len(), files);

    let step = (files / PICKED).max(1);
    let mut each: Vec<f64> = Vec::new();
    for (id, _, size) in listed.files.iter().step_by(step).take(PICKED) {
        let started = Instant::now();
        let (text, _) = download(&daemon, &credentials, id).unwrap();
        each.push(started.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(text.len() as u64, *size);
        heap = heap.max(status_mb(pid, "RssAnon:"));
    }
    let peak = peak_rss_mb(pid);
    each.sort_by(f64::total_cmp);
    let (mean, p95) = (
        each.iter().sum::<f64>() / each.len() as f64,
        each[each.len() * 95 / 100],
    );
    drop(daemon);
    let _ = std::fs::remove_dir_all(&work);
    let lines = vec![
        format!(
            "browse {files:>6} files: every folder      {listing:>7.3} s  {:>5} answers  longest \
             {:>7} bytes  {peak:>6.1} MB peak  ({heap:>5.1} MB heap)",
            listed.answers, listed.longest
        ),
        format!(
            "browse {files:>6} files: {:>4} files' text    {mean:>7.2} ms each (p95 {p95:.2} ms), \
             no request to the Git server",
            each.len()
        ),
    ];
    let report = json!({"files": files, "listing_seconds": listing, "answers": listed.answers,
                        "longest_answer_bytes": listed.longest, "peak_rss_mb": peak,
                        "peak_heap_mb": heap, "files_read": each.len(),
                        "file_ms_mean": mean, "file_ms_p95": p95});
    (lines, report)
}

/// Runs the scenarios; returns the report lines and their JSON.
pub fn run(work: &Path, with_100k: bool) -> (Vec<String>, Value) {
    at_sizes(work, with_100k, scenario)
}
