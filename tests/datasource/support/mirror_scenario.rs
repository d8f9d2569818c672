//! The main mirroring histories driven the way Dify drives the plugin (the fake daemon, the
//! packaged binary, its background watcher), against any knowledge base: the fake Knowledge
//! API, or the real Dify API. A driver plays the user and Dify: it imports what a crawl
//! offered, and waits for indexing.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::fake_daemon::FakeDaemon;
use super::git_servers::TestRepo;
use super::knowledge_api::{FakeKnowledgeApi, KEY};

/// A knowledge base a test imports into, as a user's *Save & Process* does.
pub trait KnowledgeBase {
    fn api_url(&self) -> String;
    fn key(&self) -> String;
    fn dataset(&self) -> String;
    /// Imports `items`; the indexing of those whose title is in `failing` ends in `error`.
    fn import(&self, items: &[Value], failing: &[&str]);
    /// Waits until no document is waiting for indexing.
    fn wait_indexed(&self);
    /// `(path, indexing status, content)` of the documents whose source_url starts `prefix`.
    fn ours(&self, prefix: &str) -> Vec<(String, String, String)>;
}

impl KnowledgeBase for FakeKnowledgeApi {
    fn api_url(&self) -> String {
        self.base_url.clone()
    }
    fn key(&self) -> String {
        KEY.into()
    }
    fn dataset(&self) -> String {
        self.dataset.clone()
    }
    fn import(&self, items: &[Value], failing: &[&str]) {
        self.state().failing_paths = failing.iter().map(|s| s.to_string()).collect();
        FakeKnowledgeApi::import(self, items);
    }
    fn wait_indexed(&self) {
        self.index_all();
    }
    fn ours(&self, prefix: &str) -> Vec<(String, String, String)> {
        self.docs()
            .iter()
            .filter_map(|d| {
                let path = d.source_url().strip_prefix(prefix)?;
                Some((path.to_string(), d.status.clone(), d.content().to_string()))
            })
            .collect()
    }
}

fn crawl(daemon: &FakeDaemon, kb: &dyn KnowledgeBase, repo: &TestRepo) -> Vec<Value> {
    crawl_with(daemon, kb, repo, json!({}))
}

/// A mirrored crawl with `extra` datasource parameters; returns the items it offered.
pub fn crawl_with(
    daemon: &FakeDaemon,
    kb: &dyn KnowledgeBase,
    repo: &TestRepo,
    extra: Value,
) -> Vec<Value> {
    let mut parameters = json!({"repo_url": repo.bare.display().to_string(),
                                "knowledge_base_id": kb.dataset()});
    parameters
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().cloned().unwrap_or_default());
    let session = daemon.request(
        "invoke_website_datasource_get_crawl",
        json!({"provider": "git_datasource", "datasource": "git_datasource",
               "credentials": {"dify_api_url": kb.api_url(), "dify_api_key": kb.key()},
               "datasource_parameters": parameters}),
    );
    let messages = daemon.finish(&session);
    assert_eq!(
        messages.last().unwrap(),
        &json!({"type": "end", "data": {}}),
        "{messages:?}\n{}",
        daemon.stderr_text()
    );
    let last = messages
        .iter()
        .rev()
        .find(|m| m["data"]["result"]["status"] == "completed")
        .unwrap();
    last["data"]["result"]["web_info_list"]
        .as_array()
        .unwrap()
        .clone()
}

fn titles(items: &[Value]) -> Vec<String> {
    let mut titles: Vec<String> = items
        .iter()
        .map(|i| i["title"].as_str().unwrap().to_string())
        .collect();
    titles.sort();
    titles
}

fn prefix_of(items: &[Value]) -> String {
    let url = items[0]["source_url"].as_str().unwrap();
    let title = items[0]["title"].as_str().unwrap();
    url.strip_suffix(title).unwrap().to_string()
}

/// Waits (the watcher polls every second) until the knowledge base holds exactly one
/// completed document per file with its content, and nothing else of this configuration.
fn wait_mirrored(
    kb: &dyn KnowledgeBase,
    prefix: &str,
    files: &BTreeMap<&str, &str>,
    daemon: &FakeDaemon,
) {
    let expected: Vec<(String, String, String)> = files
        .iter()
        .map(|(p, c)| (p.to_string(), "completed".to_string(), c.to_string()))
        .collect();
    wait_for_documents(kb, prefix, expected, daemon);
}

/// Waits until this configuration's documents are `expected` (path, status, content; the
/// content of a document in `error` is not compared).
fn wait_for_documents(
    kb: &dyn KnowledgeBase,
    prefix: &str,
    mut expected: Vec<(String, String, String)>,
    daemon: &FakeDaemon,
) {
    expected.sort();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        kb.wait_indexed();
        let mut ours: Vec<(String, String, String)> = kb
            .ours(prefix)
            .into_iter()
            .map(|(p, s, c)| {
                if s == "error" {
                    (p, s, String::new())
                } else {
                    (p, s, c)
                }
            })
            .collect();
        ours.sort();
        if ours == expected {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "the knowledge base did not converge:\n got {ours:?}\nwant {expected:?}\n{}",
                daemon.stderr_text()
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn spawn(dir: &Path) -> FakeDaemon {
    spawn_with(dir, &[])
}

/// The plugin under the fake daemon, its watcher polling every second, with `extra` settings.
pub fn spawn_with(dir: &Path, extra: &[(&str, &str)]) -> FakeDaemon {
    let cache = dir.join("cache").display().to_string();
    let mut envs = vec![
        ("GIT_DATASOURCE_ALLOW_LOCAL", "1"),
        ("GIT_DATASOURCE_CACHE_DIR", cache.as_str()),
        ("GIT_DATASOURCE_MIRROR_POLL_SECS", "1"),
        ("GIT_DATASOURCE_MIRROR_WAIT_SECS", "60"),
        ("GIT_DATASOURCE_LOG", "info"),
    ];
    envs.extend_from_slice(extra);
    FakeDaemon::spawn(&envs)
}

/// First sync; a change with a delete and a rename whose import has an indexing error; a
/// cancelled import; the watcher's cleanup; lost plugin storage (a new process, empty
/// storage). Checks the knowledge base after each, and that no secret reaches any output.
pub fn main_histories(kb: &dyn KnowledgeBase, dir: &Path) {
    let files = [
        ("a.md", "alpha\n\nA"),
        ("b.md", "beta"),
        ("docs/c.md", "gamma\n\nC"),
    ];
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(p, c)| (*p, c.as_bytes())).collect();
    let mut repo_files: Vec<(&str, &[u8])> = refs.clone();
    repo_files.push(("logo.png", b"\x89PNG\r\n\x1a\n\0\0\0binary"));
    let repo = TestRepo::create(dir, "mirrored", &repo_files);
    let daemon = spawn(dir);

    // 1. First sync: every text file is offered; the binary is skipped.
    let first = crawl(&daemon, kb, &repo);
    assert_eq!(titles(&first), ["a.md", "b.md", "docs/c.md"]);
    let prefix = prefix_of(&first);
    kb.import(&first, &[]);
    let mut expected: BTreeMap<&str, &str> = files.iter().copied().collect();
    wait_mirrored(kb, &prefix, &expected, &daemon);
    assert!(
        crawl(&daemon, kb, &repo).is_empty(),
        "nothing left to offer"
    );

    // 2. a.md changes, b.md goes, docs/c.md moves; the import's indexing of a.md fails.
    repo.commit(
        &[("a.md", b"alpha 2\n\nA2"), ("docs/d.md", b"gamma\n\nC")],
        &["b.md", "docs/c.md"],
        "change",
    );
    let second = crawl(&daemon, kb, &repo);
    assert_eq!(titles(&second), ["a.md", "docs/d.md"]);
    kb.import(&second, &["a.md"]);
    expected.remove("b.md");
    expected.remove("docs/c.md");
    expected.insert("docs/d.md", "gamma\n\nC");
    // The gone files go; the old a.md stays until a good copy is indexed.
    let with_error = vec![
        (
            "a.md".to_string(),
            "completed".to_string(),
            "alpha\n\nA".to_string(),
        ),
        ("a.md".to_string(), "error".to_string(), String::new()),
        (
            "docs/d.md".to_string(),
            "completed".to_string(),
            "gamma\n\nC".to_string(),
        ),
    ];
    wait_for_documents(kb, &prefix, with_error, &daemon);

    // 3. a.md is offered again (its copy ended in error); the user cancels.
    let third = crawl(&daemon, kb, &repo);
    assert_eq!(titles(&third), ["a.md"]);
    // 4. The next run offers it again: nothing lost. Imported, the watcher removes the old
    //    and the failed copies.
    let fourth = crawl(&daemon, kb, &repo);
    assert_eq!(titles(&fourth), ["a.md"]);
    kb.import(&fourth, &[]);
    expected.insert("a.md", "alpha 2\n\nA2");
    wait_mirrored(kb, &prefix, &expected, &daemon);

    // 5. Plugin storage lost, the process restarted: the knowledge base is the state.
    let leaked = daemon.stderr_once(&["mirror"], Duration::from_secs(10));
    drop(daemon);
    let daemon = spawn(dir);
    assert!(
        crawl(&daemon, kb, &repo).is_empty(),
        "{}",
        daemon.stderr_text()
    );
    let restarted = daemon.stderr_once(&["mirror"], Duration::from_secs(10));
    for text in [leaked, restarted] {
        assert!(!text.contains(&kb.key()), "the key reached the log");
        assert!(text.contains("mirror"), "the log reports mirroring: {text}");
    }
    let recorded = daemon.recorded();
    for (_, line) in &recorded.lines {
        assert!(
            !line.to_string().contains(&kb.key()),
            "the key reached the daemon"
        );
    }
}

/// *Validate* with a Knowledge API key: a good key passes, a wrong one is named, and
/// neither appears in any answer.
pub fn validation(kb: &dyn KnowledgeBase, dir: &Path) {
    let daemon = spawn(dir);
    let validate = |key: &str| {
        let session = daemon.request(
            "validate_datasource_credentials",
            json!({"provider": "git_datasource",
                   "credentials": {"dify_api_url": kb.api_url(), "dify_api_key": key}}),
        );
        daemon.finish(&session)
    };
    assert_eq!(validate(&kb.key())[0]["data"], json!({"result": true}));
    let wrong = "dataset-NotTheKeyNotTheKey1234";
    let answer = validate(wrong);
    assert_eq!(answer[0]["type"], "error", "{answer:?}");
    let text = answer[0]["data"].to_string();
    assert!(
        text.contains("dify_api_key") && text.contains("401"),
        "{text}"
    );
    assert!(!text.contains("NotTheKey") && !daemon.stderr_text().contains("NotTheKey"));
}

/// A result budget that holds about 8 of [`large_files`]' files in one message.
pub const SMALL_MESSAGE: (&str, &str) = ("GIT_DATASOURCE_MAX_RESULT_BYTES", "20000");

/// `count` files of about 2 KB each, `version` in every one.
pub fn large_files(count: usize, version: &str) -> Vec<(String, String)> {
    (0..count)
        .map(|n| {
            let body = format!("{version} of file {n}\n").repeat(2048 / 20);
            (format!("docs/{n:03}.md"), body)
        })
        .collect()
}

fn large_repo(dir: &Path, name: &str, files: &[(String, String)]) -> TestRepo {
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_bytes()))
        .collect();
    TestRepo::create(dir, name, &refs)
}

/// Without `large_change_sets`, a change set larger than a message is offered part by part:
/// after the first part's import nothing else arrives. Returns how many documents it made.
pub fn next_run_by_default(kb: &dyn KnowledgeBase, dir: &Path) -> usize {
    let repo = large_repo(dir, "parts", &large_files(20, "v1"));
    let daemon = spawn_with(dir, &[SMALL_MESSAGE]);
    let first = crawl(&daemon, kb, &repo);
    assert!((3..15).contains(&first.len()), "a part: {}", first.len());
    kb.import(&first, &[]);
    kb.wait_indexed();
    std::thread::sleep(Duration::from_secs(3));
    kb.wait_indexed();
    let prefix = prefix_of(&first);
    assert_eq!(kb.ours(&prefix).len(), first.len(), "nothing more arrived");
    let second = crawl(&daemon, kb, &repo);
    assert!(!second.is_empty(), "the next run offers the next part");
    assert!(second.iter().all(|i| !first.contains(i)));
    first.len()
}

/// With `large_change_sets: push_after_import`, one Run and one import of its first part
/// ingest a whole change set larger than a message: the watcher pushes the rest through the
/// pipeline once the import is indexed. Then a change to every file with two deletions
/// goes the same way, and the old copies are deleted.
pub fn push_after_import(kb: &dyn KnowledgeBase, dir: &Path) {
    let files = large_files(24, "v1");
    let repo = large_repo(dir, "whole", &files);
    let daemon = spawn_with(dir, &[SMALL_MESSAGE]);
    let ask = json!({"large_change_sets": "push_after_import"});
    let first = crawl_with(&daemon, kb, &repo, ask.clone());
    assert!((3..15).contains(&first.len()), "a part: {}", first.len());
    kb.import(&first, &[]);
    let prefix = prefix_of(&first);
    let expected: BTreeMap<&str, &str> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    wait_mirrored(kb, &prefix, &expected, &daemon);
    let log = daemon.stderr_once(
        &["pushed the rest of the change set"],
        Duration::from_secs(60),
    );
    assert!(log.contains("pushed the rest of the change set"), "{log}");
    assert!(
        crawl_with(&daemon, kb, &repo, ask.clone()).is_empty(),
        "nothing left to offer"
    );

    let changed = large_files(22, "v2");
    let writes: Vec<(&str, &[u8])> = changed
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_bytes()))
        .collect();
    repo.commit(&writes, &["docs/022.md", "docs/023.md"], "v2");
    let second = crawl_with(&daemon, kb, &repo, ask);
    assert!((3..15).contains(&second.len()), "a part: {}", second.len());
    kb.import(&second, &[]);
    let expected: BTreeMap<&str, &str> = changed
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    wait_mirrored(kb, &prefix, &expected, &daemon);
}
