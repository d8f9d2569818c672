//! The fault matrix of sync state: a failure (an error reply, or no reply at all) at every
//! storage operation of a full, a delta and a resumed run, through the plugin binary and the
//! fake daemon's real storage. Whatever fails, the runs after it deliver every change exactly
//! once: a run that ends in error advanced nothing, so the next run delivers its changes again.

use std::collections::BTreeMap;

use crate::support::fake_daemon::FakeDaemon;
use crate::support::git_servers::TestRepo;
use serde_json::{json, Value};

type Docs = Vec<(String, String)>;

struct Run {
    ok: bool,
    docs: Docs,
    complete: bool,
}

fn crawl(daemon: &FakeDaemon, url: &str) -> Run {
    let session = daemon.request(
        "invoke_website_datasource_get_crawl",
        json!({"provider": "git_datasource", "datasource": "git_datasource", "credentials": {},
               "datasource_parameters": {"repo_url": url}}),
    );
    let messages = daemon.finish(&session);
    let ok = messages.last().unwrap()["type"] == "end";
    let last = messages
        .iter()
        .find(|m| m["data"]["result"]["status"] == "completed");
    let (docs, complete) = match last {
        Some(message) => {
            let result = &message["data"]["result"];
            let docs = result["web_info_list"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d: &Value| {
                    (
                        d["title"].as_str().unwrap().to_string(),
                        d["content"].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            (docs, result["completed"] == result["total"])
        }
        None => (Vec::new(), false),
    };
    Run { ok, docs, complete }
}

/// Normal runs until one completes its change set; what they delivered.
fn until_complete(daemon: &FakeDaemon, url: &str) -> Docs {
    let mut delivered = Vec::new();
    for _ in 0..30 {
        let run = crawl(daemon, url);
        assert!(
            run.ok,
            "a run without faults fails: {}",
            daemon.stderr_text()
        );
        delivered.extend(run.docs);
        if run.complete {
            return delivered;
        }
    }
    panic!("the change set never completed");
}

fn counted(docs: &Docs) -> BTreeMap<(String, String), usize> {
    let mut counts = BTreeMap::new();
    for doc in docs {
        *counts.entry(doc.clone()).or_default() += 1;
    }
    counts
}

/// From the daemon's present storage, injects a fault at each storage operation the next run
/// makes, in turn, and checks what the runs after it deliver.
fn every_fault(daemon: &FakeDaemon, url: &str, scenario: &str) {
    let before = daemon.recorded().storage.clone();
    let calls = daemon.recorded().storage_calls.len();
    let expected = until_complete(daemon, url);
    assert!(!expected.is_empty(), "{scenario}: the scenario has changes");
    let first_run_ops = {
        // The operations of the first run alone: replay it.
        daemon.recorded().storage = before.clone();
        let start = daemon.recorded().storage_calls.len();
        crawl(daemon, url);
        daemon.recorded().storage_calls.len() - start
    };
    assert!(daemon.recorded().storage_calls.len() > calls);
    for op in 0..first_run_ops {
        for silent in [false, true] {
            daemon.recorded().storage = before.clone();
            let at = daemon.recorded().storage_calls.len() + op;
            daemon.set_storage_fault(Some((at, silent)));
            let faulty = crawl(daemon, url);
            let call = daemon
                .recorded()
                .storage_calls
                .get(at)
                .cloned()
                .unwrap_or_default();
            daemon.set_storage_fault(None);
            let after = until_complete(daemon, url);
            let what = format!(
                "{scenario}: {} at operation {op} ({call}), run {}",
                if silent { "no reply" } else { "an error" },
                if faulty.ok { "succeeded" } else { "failed" }
            );
            let mut delivered = after.clone();
            if faulty.ok {
                delivered.extend(faulty.docs.iter().cloned());
            }
            assert_eq!(counted(&delivered), counted(&expected), "{what}");
            let settled = crawl(daemon, url);
            assert!(
                settled.ok && settled.docs.is_empty(),
                "{what}: then nothing is left"
            );
        }
    }
}

fn daemon(dir: &std::path::Path, budget: &str) -> FakeDaemon {
    let cache = dir.join("cache").display().to_string();
    FakeDaemon::spawn(&[
        ("GIT_DATASOURCE_ALLOW_LOCAL", "1"),
        ("GIT_DATASOURCE_CACHE_DIR", cache.as_str()),
        ("GIT_DATASOURCE_MAX_RESULT_BYTES", budget),
        ("MAX_INVOCATION_TIMEOUT", "0.5"),
        ("GIT_DATASOURCE_LOG", "error"),
    ])
}

fn files(n: usize, tag: &str) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|i| (format!("f{i:02}.md"), format!("{tag} {i}").into_bytes()))
        .collect()
}

fn refs(files: &[(String, Vec<u8>)]) -> Vec<(&str, &[u8])> {
    files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_slice()))
        .collect()
}

#[test]
fn a_full_run_with_a_fault_anywhere_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let repo = TestRepo::create(dir.path(), "r", &refs(&files(5, "v1")));
    let daemon = daemon(dir.path(), "100000");
    every_fault(&daemon, &repo.bare.display().to_string(), "full");
}

#[test]
fn a_delta_run_with_a_fault_anywhere_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let repo = TestRepo::create(dir.path(), "r", &refs(&files(5, "v1")));
    let daemon = daemon(dir.path(), "100000");
    let url = repo.bare.display().to_string();
    until_complete(&daemon, &url);
    repo.commit(
        &[("f00.md", b"v2 0"), ("new.md", b"new")],
        &["f01.md"],
        "delta",
    );
    every_fault(&daemon, &url, "delta");
}

#[test]
fn a_resumed_run_with_a_fault_anywhere_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let repo = TestRepo::create(dir.path(), "r", &refs(&files(9, "v1")));
    let daemon = daemon(dir.path(), "1100");
    let url = repo.bare.display().to_string();
    let first = crawl(&daemon, &url);
    assert!(
        first.ok && !first.complete,
        "the budget splits the change set"
    );
    every_fault(&daemon, &url, "resumed");
}
