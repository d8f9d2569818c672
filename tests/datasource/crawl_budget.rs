//! Budgets: whatever the byte budget, repeating runs delivers every file of any repository
//! exactly once, and the commit is recorded only when the whole change set is delivered.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::crawl_harness::{local_client, params, run, CaptureSink, MemoryStore};
use crate::support::git_servers::TestRepo;
use git_datasource::crawl::CrawlSettings;
use proptest::prelude::*;
use serde_json::json;

fn settings() -> CrawlSettings {
    CrawlSettings {
        max_file_bytes: 5_000_000,
        time_budget: Duration::from_secs(300),
    }
}

/// Runs until a run completes; returns every delivered (title, content) in order.
fn sync_until_complete(
    url: &str,
    store: &MemoryStore,
    budget: usize,
    cache: &std::path::Path,
) -> (Vec<(String, String)>, usize) {
    let mut delivered = Vec::new();
    for runs in 1..=500 {
        let sink = CaptureSink::new(budget);
        let summary = run(
            &params(url, json!({})),
            store,
            &sink,
            local_client(cache),
            &settings(),
        )
        .unwrap();
        let finals = sink.finals.lock().unwrap();
        assert_eq!(finals.len(), 1, "one final message a run");
        assert!(
            finals[0].len() <= budget,
            "the final message of {} bytes exceeds the budget {budget}",
            finals[0].len()
        );
        drop(finals);
        for document in sink.documents() {
            delivered.push((
                document["title"].as_str().unwrap().to_string(),
                document["content"].as_str().unwrap().to_string(),
            ));
        }
        let sha_key = format!("git_sha:{}", summary.config_hash);
        let recorded = store.0.lock().unwrap().get(&sha_key).cloned();
        if summary.complete {
            assert_eq!(recorded.as_deref(), Some(summary.commit.as_bytes()));
            return (delivered, runs);
        }
        assert!(
            recorded.is_none() || recorded.as_deref() != Some(summary.commit.as_bytes()),
            "the commit advanced before the change set was delivered"
        );
    }
    panic!("never completed");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn every_file_exactly_once_whatever_the_budget(
        files in prop::collection::btree_map("[a-c]{1,2}(/[a-d]{1,3}){0,2}\\.md", 0usize..4000, 1..40),
        budget in 1500usize..30000,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let contents: BTreeMap<String, String> = files
            .iter()
            .map(|(path, size)| (path.clone(), format!("{path}\n{}", "é\"\\x".repeat(*size / 4))))
            .collect();
        // A path that is also a directory prefix of another cannot exist in one tree.
        let contents: BTreeMap<String, String> = contents
            .iter()
            .filter(|(p, _)| !contents.keys().any(|q| q.starts_with(&format!("{}/", p.trim_end_matches(".md")))))
            .map(|(p, c)| (p.clone(), c.clone()))
            .collect();
        let refs: Vec<(&str, &[u8])> = contents.iter().map(|(p, c)| (p.as_str(), c.as_bytes())).collect();
        let repo = TestRepo::create(dir.path(), "random", &refs);
        let store = MemoryStore::default();
        let (delivered, _) = sync_until_complete(&repo.bare.display().to_string(), &store, budget, &dir.path().join("cache"));

        let mut seen = BTreeMap::new();
        for (title, content) in &delivered {
            prop_assert!(seen.insert(title.clone(), content.clone()).is_none(), "{} delivered twice", title);
        }
        // Files too large for the budget on their own are skipped; every other arrives once.
        let fits = |content: &String| serde_json::to_vec(&json!({"source_url": "git:0123456789abcdef:", "content": content, "title": "", "description": ""})).unwrap().len() + 2000 < budget;
        for (path, content) in &contents {
            match seen.get(path) {
                Some(got) => prop_assert_eq!(got, content),
                None => prop_assert!(!fits(content), "{} was never delivered", path),
            }
        }
    }
}

#[test]
fn a_change_set_split_over_runs_survives_a_push_in_the_middle() {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<(String, String)> = (0..30)
        .map(|i| {
            (
                format!("doc{i:02}.md"),
                format!("document {i}\n{}", "text ".repeat(300)),
            )
        })
        .collect();
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_bytes()))
        .collect();
    let repo = TestRepo::create(dir.path(), "moving", &refs);
    let url = repo.bare.display().to_string();
    let store = MemoryStore::default();
    let cache = dir.path().join("cache");

    let sink = CaptureSink::new(8_000);
    let first = run(
        &params(&url, json!({})),
        &store,
        &sink,
        local_client(&cache),
        &settings(),
    )
    .unwrap();
    assert!(!first.complete && first.delivered > 0);
    let mut delivered: Vec<String> = sink
        .documents()
        .iter()
        .map(|d| d["title"].as_str().unwrap().to_string())
        .collect();

    // Meanwhile: one delivered file changes, one not yet delivered changes, one is deleted.
    let early = delivered[0].clone();
    repo.commit(
        &[
            (early.as_str(), b"changed early file"),
            ("doc29.md", b"changed late file"),
        ],
        &["doc28.md"],
        "edit during a split sync",
    );
    let (rest, _) = sync_until_complete(&url, &store, 8_000, &cache);
    delivered.extend(rest.iter().map(|(t, _)| t.clone()));

    let mut expected: Vec<String> = files
        .iter()
        .map(|(p, _)| p.clone())
        .filter(|p| p != "doc28.md")
        .collect();
    expected.push(early.clone());
    expected.sort();
    delivered.sort();
    assert_eq!(
        delivered, expected,
        "every file once, the early one again for its new content, nothing lost"
    );
    let late = rest.iter().find(|(t, _)| t == "doc29.md").unwrap();
    assert_eq!(late.1, "changed late file");
}
