//! The crawl as Dify drives it: through the fake daemon, with real repositories and real
//! plugin storage round-trips.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::support::fake_daemon::{FakeDaemon, StorageMode};
use crate::support::git_servers::{git, TestRepo};
use serde_json::{json, Value};

struct Setup {
    dir: tempfile::TempDir,
    repo: TestRepo,
}

impl Setup {
    fn new(files: &[(&str, &[u8])]) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let repo = TestRepo::create(dir.path(), "kb", files);
        Setup { dir, repo }
    }

    fn cache(&self) -> String {
        self.dir.path().join("cache").display().to_string()
    }

    fn daemon(&self, extra: &[(&str, &str)]) -> FakeDaemon {
        let cache = self.cache();
        let mut envs = vec![
            ("GIT_DATASOURCE_ALLOW_LOCAL", "1"),
            ("GIT_DATASOURCE_CACHE_DIR", cache.as_str()),
        ];
        envs.extend_from_slice(extra);
        FakeDaemon::spawn(&envs)
    }

    fn url(&self) -> String {
        self.repo.bare.display().to_string()
    }
}

/// `count` files `{prefix}NN.md`, each its number then `size` copies of `fill`.
fn numbered_files(prefix: &str, count: usize, fill: &str, size: usize) -> Vec<(String, Vec<u8>)> {
    (0..count)
        .map(|i| {
            (
                format!("{prefix}{i:02}.md"),
                format!("{i} {}", fill.repeat(size)).into_bytes(),
            )
        })
        .collect()
}

fn as_refs(files: &[(String, Vec<u8>)]) -> Vec<(&str, &[u8])> {
    files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_slice()))
        .collect()
}

fn crawl(daemon: &FakeDaemon, parameters: Value) -> Vec<Value> {
    let session = daemon.request(
        "invoke_website_datasource_get_crawl",
        json!({"provider": "git_datasource", "datasource": "git_datasource", "credentials": {}, "datasource_parameters": parameters}),
    );
    daemon.finish(&session)
}

/// Checks the shape of a successful crawl session and returns its documents by title.
fn documents(messages: &[Value]) -> BTreeMap<String, Value> {
    let last = messages.last().unwrap();
    assert_eq!(last, &json!({"type": "end", "data": {}}), "{messages:?}");
    let finals: Vec<&Value> = messages
        .iter()
        .filter(|m| m["data"]["result"]["status"] == "completed")
        .collect();
    assert_eq!(finals.len(), 1, "exactly one completed message");
    let result = &finals[0]["data"]["result"];
    for progress in messages
        .iter()
        .filter(|m| m["data"]["result"]["status"] == "processing")
    {
        assert_eq!(progress["data"]["result"]["web_info_list"], json!([]));
        assert!(
            progress["data"]["result"]["total"].is_u64()
                && progress["data"]["result"]["completed"].is_u64()
        );
    }
    let list = result["web_info_list"].as_array().unwrap();
    let mut by_title = BTreeMap::new();
    for document in list {
        for field in ["source_url", "content", "title", "description"] {
            assert!(
                document[field].is_string(),
                "{field} must be a string: {document}"
            );
        }
        assert!(
            by_title
                .insert(
                    document["title"].as_str().unwrap().to_string(),
                    document.clone()
                )
                .is_none(),
            "duplicate"
        );
    }
    let urls: std::collections::BTreeSet<&str> = list
        .iter()
        .map(|d| d["source_url"].as_str().unwrap())
        .collect();
    assert_eq!(urls.len(), list.len(), "source_url unique within a result");
    by_title
}

fn titles(documents: &BTreeMap<String, Value>) -> Vec<&str> {
    documents.keys().map(String::as_str).collect()
}

/// Every file of the commit, listed by the git command line (the independent listing).
fn git_listing(work: &Path) -> Vec<String> {
    git(work, &["ls-tree", "-r", "--name-only", "HEAD"])
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn first_sync_delivers_every_text_file_then_nothing_until_something_changes() {
    let files: Vec<(String, Vec<u8>)> = (0..120)
        .map(|i| {
            (
                format!("docs/page{i:03}.md"),
                format!("# Page {i}\nBody {i}\n").into_bytes(),
            )
        })
        .collect();
    let mut refs = as_refs(&files);
    refs.push(("README.md", b"# KB\n"));
    refs.push(("logo.png", b"\x89PNG\r\n\x1a\n\0\0"));
    let setup = Setup::new(&refs);
    let daemon = setup.daemon(&[]);
    let url = setup.url();

    let messages = crawl(&daemon, json!({"repo_url": url, "branch": "main"}));
    let docs = documents(&messages);
    let mut expected: Vec<String> = git_listing(&setup.repo.work)
        .into_iter()
        .filter(|p| p.ends_with(".md"))
        .collect();
    expected.sort();
    assert_eq!(titles(&docs), expected);
    let readme = &docs["README.md"];
    assert_eq!(readme["content"], "# KB\n");
    let hash = readme["source_url"]
        .as_str()
        .unwrap()
        .split(':')
        .nth(1)
        .unwrap()
        .to_string();
    assert_eq!(readme["source_url"], format!("git:{hash}:README.md"));
    let description = readme["description"].as_str().unwrap();
    assert!(
        description.contains(&setup.repo.head()) && description.contains("branch main"),
        "{description}"
    );

    // Progress after every 50 attempted files; total known up front.
    let progress: Vec<(u64, u64)> = messages
        .iter()
        .filter(|m| m["data"]["result"]["status"] == "processing")
        .map(|m| {
            (
                m["data"]["result"]["total"].as_u64().unwrap(),
                m["data"]["result"]["completed"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(progress, [(122, 50), (122, 100), (122, 122)]);

    let storage = daemon.recorded().storage.clone();
    assert_eq!(
        storage[&format!("git_sha:{hash}")],
        setup.repo.head().into_bytes()
    );
    assert_eq!(storage[&format!("git_failed:{hash}")], b"[]".to_vec());
    assert!(storage.contains_key(&format!("git_snapshot:{hash}")));

    let again = crawl(&daemon, json!({"repo_url": url}));
    assert_eq!(again.len(), 2, "{again:?}");
    assert_eq!(
        again[0]["data"]["result"],
        json!({"status": "completed", "total": 0, "completed": 0, "web_info_list": []})
    );
}

#[test]
fn each_kind_of_change_behaves_as_specified() {
    let setup = Setup::new(&[
        ("keep.md", b"unchanged"),
        ("edit.md", b"before"),
        ("drop.md", b"to delete"),
        ("move.md", b"moving content"),
    ]);
    let daemon = setup.daemon(&[("GIT_DATASOURCE_MAX_FILE_BYTES", "1000")]);
    let url = setup.url();
    documents(&crawl(&daemon, json!({"repo_url": url})));

    let lfs = b"version https://git-lfs.github.com/spec/v1\noid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 99\n";
    let big = "y".repeat(1500);
    git(&setup.repo.work, &["mv", "move.md", "moved.md"]);
    std::os::unix::fs::symlink("keep.md", setup.repo.work.join("link.md")).unwrap();
    setup.repo.commit(
        &[
            ("edit.md", b"after"),
            ("new.md", b"brand new"),
            ("image.bin", b"\0\x01binary"),
            ("latin1.txt", b"caf\xe9"),
            ("big.md", big.as_bytes()),
            ("model.md", lfs),
        ],
        &["drop.md"],
        "every kind of change",
    );
    let head = setup.repo.head();
    git(
        &setup.repo.work,
        &[
            "update-index",
            "--add",
            "--cacheinfo",
            &format!("160000,{head},vendor/lib"),
        ],
    );
    git(&setup.repo.work, &["commit", "-q", "-m", "submodule"]);
    git(&setup.repo.work, &["push", "-q", "origin", "HEAD:main"]);

    let docs = documents(&crawl(&daemon, json!({"repo_url": url})));
    assert_eq!(titles(&docs), ["edit.md", "moved.md", "new.md"]);
    assert_eq!(docs["edit.md"]["content"], "after");
    // The run's log line may follow its last message by a moment.
    let stderr = daemon.stderr_once(&["deleted=1", "renamed=1"], Duration::from_secs(10));
    assert!(
        stderr.contains("deleted=1") && stderr.contains("renamed=1"),
        "{stderr}"
    );

    // Permanent skips are not retried: the next run delivers nothing.
    let again = crawl(&daemon, json!({"repo_url": url}));
    assert_eq!(again[0]["data"]["result"]["total"], 0);
}

#[test]
fn a_force_push_or_a_wiped_cache_resends_only_changed_content() {
    let setup = Setup::new(&[("a.md", b"alpha"), ("b.md", b"beta"), ("c.md", b"gamma")]);
    let daemon = setup.daemon(&[]);
    let url = setup.url();
    documents(&crawl(&daemon, json!({"repo_url": url})));

    setup.repo.rewrite(&[
        ("a.md", b"alpha"),
        ("b.md", b"beta, rewritten"),
        ("d.md", b"delta"),
    ]);
    let docs = documents(&crawl(&daemon, json!({"repo_url": url})));
    assert_eq!(titles(&docs), ["b.md", "d.md"]);

    std::fs::remove_dir_all(setup.cache()).unwrap();
    setup
        .repo
        .commit(&[("e.md", b"epsilon")], &[], "after the cache was lost");
    let docs = documents(&crawl(&daemon, json!({"repo_url": url})));
    assert_eq!(titles(&docs), ["e.md"]);

    // sync_mode full ignores the state and delivers everything, then records it.
    let docs = documents(&crawl(
        &daemon,
        json!({"repo_url": url, "sync_mode": "full"}),
    ));
    assert_eq!(titles(&docs), ["a.md", "b.md", "d.md", "e.md"]);
    assert_eq!(
        crawl(&daemon, json!({"repo_url": url}))[0]["data"]["result"]["total"],
        0
    );
}

#[test]
fn state_left_by_the_python_plugin_is_continued() {
    let setup = Setup::new(&[
        ("a.md", b"one"),
        ("b.md", b"two"),
        ("retry.md", b"failed before"),
    ]);
    let old = setup.repo.head();
    setup.repo.commit(
        &[("b.md", b"two, edited"), ("c.md", b"three")],
        &[],
        "after the Python plugin",
    );
    let daemon = setup.daemon(&[]);
    let url = setup.url();
    // The Python plugin's hash of these parameters, and its encodings.
    let hash = {
        use sha2::Digest;
        hex::encode(&sha2::Sha256::digest(format!("{url}:main::").as_bytes())[..8])
    };
    daemon
        .recorded()
        .storage
        .insert(format!("git_sha:{hash}"), old.clone().into_bytes());
    daemon.recorded().storage.insert(
        format!("git_failed:{hash}"),
        br#"["retry.md", "gone.md"]"#.to_vec(),
    );

    let docs = documents(&crawl(&daemon, json!({"repo_url": url})));
    assert_eq!(titles(&docs), ["b.md", "c.md", "retry.md"]);
    assert!(docs["c.md"]["source_url"]
        .as_str()
        .unwrap()
        .starts_with(&format!("git:{hash}:")));
    assert_eq!(
        daemon.recorded().storage[&format!("git_sha:{hash}")],
        setup.repo.head().into_bytes()
    );
}

#[test]
fn a_small_budget_splits_the_change_set_and_every_final_line_fits() {
    let files = numbered_files("f", 40, "z", 3000);
    let setup = Setup::new(&as_refs(&files));
    let daemon = setup.daemon(&[("GIT_DATASOURCE_MAX_RESULT_BYTES", "20000")]);
    let url = setup.url();
    let mut seen = Vec::new();
    let mut runs = 0;
    loop {
        runs += 1;
        let messages = crawl(&daemon, json!({"repo_url": url}));
        let docs = documents(&messages);
        let hash_key = daemon
            .recorded()
            .storage
            .keys()
            .any(|k| k.starts_with("git_sha:"));
        seen.extend(docs.keys().cloned());
        if docs.is_empty() {
            break;
        }
        assert!(
            !hash_key || seen.len() == 40,
            "the commit is recorded only once all 40 are delivered"
        );
        assert!(runs < 20);
    }
    seen.sort();
    let expected: Vec<String> = files.iter().map(|(p, _)| p.clone()).collect();
    assert_eq!(seen, expected);
    assert!(
        runs >= 7,
        "40 files of 3 KB in 20 KB messages take several runs, took {runs}"
    );
    for (_, line) in daemon.recorded().lines.iter() {
        assert!(line.to_string().len() < 20_000 + 200);
    }
}

#[test]
fn a_full_sync_that_needs_several_runs_completes_too() {
    let files = numbered_files("g", 30, "q", 3000);
    let setup = Setup::new(&as_refs(&files));
    let daemon = setup.daemon(&[("GIT_DATASOURCE_MAX_RESULT_BYTES", "20000")]);
    let url = setup.url();
    documents(&crawl(&daemon, json!({"repo_url": url})));
    while daemon
        .recorded()
        .storage
        .keys()
        .any(|k| k.starts_with("git_pending:"))
    {
        documents(&crawl(&daemon, json!({"repo_url": url})));
    }
    // Now a full sync, kept on `full` run after run, still moves on and completes.
    let mut seen = Vec::new();
    for _ in 0..20 {
        let messages = crawl(&daemon, json!({"repo_url": url, "sync_mode": "full"}));
        let result = &messages[messages.len() - 2]["data"]["result"];
        seen.extend(documents(&messages).into_keys());
        if result["completed"] == result["total"] {
            break;
        }
    }
    seen.sort();
    let expected: Vec<String> = files.iter().map(|(p, _)| p.clone()).collect();
    assert_eq!(seen, expected, "every file once, in several full runs");
}

/// `sync_mode: snapshot`, for a caller that deletes whatever a run leaves out (an Agent
/// knowledge base's source): every file in every run, or an error and no documents at all.
#[test]
fn a_snapshot_returns_the_whole_branch_every_run_or_nothing() {
    let setup = Setup::new(&[("a.md", b"alpha"), ("b.md", b"beta"), ("c.md", b"gamma")]);
    let daemon = setup.daemon(&[("GIT_DATASOURCE_MAX_RESULT_BYTES", "20000")]);
    let url = setup.url();
    let snapshot = json!({"repo_url": url, "sync_mode": "snapshot"});
    for _ in 0..2 {
        let docs = documents(&crawl(&daemon, snapshot.clone()));
        assert_eq!(titles(&docs), ["a.md", "b.md", "c.md"]);
    }
    setup
        .repo
        .commit(&[("d.md", b"delta")], &["b.md"], "one in, one out");
    let docs = documents(&crawl(&daemon, snapshot.clone()));
    assert_eq!(titles(&docs), ["a.md", "c.md", "d.md"]);

    // Larger than one result: an error Dify shows as text, and nothing delivered or recorded.
    let files = numbered_files("s", 30, "q", 3000);
    setup
        .repo
        .commit(&as_refs(&files), &[], "too much for one run");
    let before = daemon.recorded().storage.clone();
    let messages = crawl(&daemon, snapshot);
    assert!(
        messages
            .iter()
            .all(|m| m["data"]["result"]["status"] != "completed"
                && m["data"]["result"]["web_info_list"]
                    .as_array()
                    .is_none_or(Vec::is_empty)),
        "no document in any message (an Agent knowledge base reads every one)"
    );
    let error = &messages.last().unwrap()["data"];
    assert_eq!(error["error_type"], "InvokeBadRequestError");
    assert_eq!(error["args"]["error"], "CrawlIncompleteError");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("returns the whole branch or nothing")
            && message.contains("of its 33 files"),
        "{message}"
    );
    assert_eq!(
        daemon.recorded().storage,
        before,
        "a refused snapshot records nothing"
    );
}

#[test]
fn a_final_message_never_reaches_the_daemons_line_cap() {
    let big = "w".repeat(900_000);
    let files: Vec<(String, Vec<u8>)> = (0..8)
        .map(|i| (format!("big{i}.md"), big.clone().into_bytes()))
        .collect();
    let refs = as_refs(&files);
    let setup = Setup::new(&refs);
    let daemon = setup.daemon(&[]);
    let docs = documents(&crawl(&daemon, json!({"repo_url": setup.url()})));
    assert!(
        !docs.is_empty() && docs.len() < 8,
        "{} documents",
        docs.len()
    );
    let longest = daemon
        .recorded()
        .lines
        .iter()
        .map(|(_, l)| serde_json::to_string(l).unwrap().len())
        .max()
        .unwrap();
    assert!(longest < 5_242_880 - 1, "a line of {longest} bytes");
    let second = documents(&crawl(&daemon, json!({"repo_url": setup.url()})));
    assert_eq!(docs.len() + second.len(), 8);
}

#[test]
fn a_failing_storage_or_a_killed_process_records_nothing() {
    let setup = Setup::new(&[("a.md", b"alpha"), ("b.md", b"beta")]);
    let url = setup.url();
    let daemon = setup.daemon(&[]);
    daemon.set_storage_mode(StorageMode::FailWrites);
    let messages = crawl(&daemon, json!({"repo_url": url}));
    let error = messages.last().unwrap();
    assert_eq!(error["type"], "error", "{messages:?}");
    assert_eq!(error["data"]["error_type"], "InvokeServerUnavailableError");
    assert_eq!(error["data"]["args"]["error"], "PluginStorageError");
    assert!(daemon
        .recorded()
        .storage
        .keys()
        .all(|k| !k.starts_with("git_sha:")));
    daemon.set_storage_mode(StorageMode::Normal);
    assert_eq!(
        documents(&crawl(&daemon, json!({"repo_url": url}))).len(),
        2,
        "the failed run lost nothing"
    );

    // Killed mid-run (after a progress message, before the final one): nothing recorded.
    let files: Vec<(String, Vec<u8>)> = (0..400)
        .map(|i| (format!("n{i:03}.md"), vec![b'n'; 20_000]))
        .collect();
    let refs = as_refs(&files);
    let other = Setup::new(&refs);
    let mut daemon = other.daemon(&[]);
    let session = daemon.request(
        "invoke_website_datasource_get_crawl",
        json!({"datasource_parameters": {"repo_url": other.url()}}),
    );
    daemon.wait_for(Duration::from_secs(30), "a progress message", |r| {
        r.session(&session)
            .iter()
            .any(|m| m["data"]["result"]["status"] == "processing")
            .then_some(())
    });
    daemon.child.as_mut().unwrap().kill().unwrap();
    daemon.wait_exit(Duration::from_secs(5));
    let storage = daemon.recorded().storage.clone();
    assert!(
        storage
            .keys()
            .all(|k| !k.starts_with("git_sha:") && !k.starts_with("git_pending:")),
        "{:?}",
        storage.keys()
    );
}

#[test]
fn bad_parameters_and_urls_get_clear_errors() {
    let setup = Setup::new(&[("a.md", b"alpha")]);
    let daemon = setup.daemon(&[]);
    let messages = crawl(
        &daemon,
        json!({"repo_url": "{{#rag.shared.repo#}}", "sync_mode": "sometimes"}),
    );
    let error = &messages.last().unwrap()["data"];
    assert_eq!(error["error_type"], "InvokeBadRequestError");
    assert_eq!(error["args"]["error"], "CrawlParameterError");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("repo_url is missing")
            && error["message"].as_str().unwrap().contains("sync_mode")
    );
    let messages = crawl(&daemon, json!({"repo_url": setup.url(), "branch": "nope"}));
    let error = &messages.last().unwrap()["data"];
    assert_eq!(error["error_type"], "InvokeBadRequestError");
    assert_eq!(error["args"]["error"], "GitRefNotFoundError");
    assert!(error["message"]
        .as_str()
        .unwrap()
        .contains("its branches: main"));
    let messages = crawl(&daemon, json!({"repo_url": "https://127.0.0.1:1/r.git"}));
    let error = &messages.last().unwrap()["data"];
    assert_eq!(error["error_type"], "InvokeConnectionError");
    assert_eq!(error["args"]["error"], "GitNetworkError");
}

/// Malformed URLs with a token in them (one slash, none, `http//`, a `%` before a multi-byte
/// character) get a clear error that never quotes the token, and the plugin stays up.
#[test]
fn malformed_urls_never_echo_their_token() {
    let setup = Setup::new(&[("a.md", b"a")]);
    let daemon = setup.daemon(&[("GIT_DATASOURCE_LOG", "trace")]);
    for url in [
        "https:/user:SeCrEtToKeN@example.com/org/repo.git",
        "user:SeCrEtToKeN@example.com/org/repo.git",
        "http//user:SeCrEtToKeN@example.com/org/repo.git",
        "https://user:SeCrEtToKeN%\u{e9}@example.com/org/repo.git",
        "https://user:%\u{1F600}SeCrEtToKeN@127.0.0.1:1/org/repo.git",
    ] {
        let messages = crawl(&daemon, json!({"repo_url": url}));
        let last = messages.last().unwrap();
        assert_eq!(last["type"], "error", "{url}: {messages:?}");
        assert!(!last.to_string().contains("SeCrEtToKeN"), "{url}: {last}");
    }
    let session = daemon.request(
        "validate_datasource_credentials",
        json!({"provider": "git_datasource", "credentials": {}}),
    );
    assert_eq!(
        daemon.finish(&session)[0]["data"],
        json!({"result": true}),
        "still serving"
    );
    assert!(
        !daemon.stderr_text().contains("SeCrEtToKeN"),
        "{}",
        daemon.stderr_text()
    );
    assert!(!daemon
        .recorded()
        .lines
        .iter()
        .any(|(_, l)| l.to_string().contains("SeCrEtToKeN")));
}

/// A file under the size limit whose JSON escaping makes it larger than the whole message is
/// reported as skipped, with why, in the log and the progress totals; deleted and renamed
/// files are named in the log.
#[test]
fn skipped_deleted_and_renamed_files_are_named() {
    let quotes = "\"".repeat(3000);
    let setup = Setup::new(&[
        ("a.md", b"alpha"),
        ("quotes.md", quotes.as_bytes()),
        ("gone.md", b"gone"),
        ("old.md", b"moving"),
    ]);
    let daemon = setup.daemon(&[("GIT_DATASOURCE_MAX_RESULT_BYTES", "4000")]);
    let messages = crawl(&daemon, json!({"repo_url": setup.url()}));
    let delivered = documents(&messages);
    assert_eq!(titles(&delivered), ["a.md", "gone.md", "old.md"]);
    let last = &messages[messages.len() - 2]["data"]["result"];
    assert_eq!(
        (last["total"].as_u64(), last["completed"].as_u64()),
        (Some(4), Some(4))
    );
    let skipped = "skipped 1 files: quotes.md (too large (";
    let log = daemon.stderr_once(&[skipped], Duration::from_secs(10));
    assert!(log.contains(skipped), "{log}");

    setup
        .repo
        .commit(&[("new.md", b"moving")], &["gone.md", "old.md"], "move");
    let messages = crawl(&daemon, json!({"repo_url": setup.url()}));
    assert_eq!(titles(&documents(&messages)), ["new.md"]);
    let log = daemon.stderr_once(
        &["deleted since the last run", "renamed since the last run"],
        Duration::from_secs(10),
    );
    assert!(log.contains("deleted since the last run: gone.md"), "{log}");
    assert!(
        log.contains("renamed since the last run: old.md -> new.md"),
        "{log}"
    );
}

/// A daemon that never answers storage calls cannot hold a crawl past its own time limit:
/// the run fails by `PLUGIN_MAX_EXECUTION_TIMEOUT` less a margin, not after 250 s per call.
#[test]
fn a_silent_storage_cannot_outlive_the_run() {
    let setup = Setup::new(&[("a.md", b"a")]);
    let daemon = setup.daemon(&[("PLUGIN_MAX_EXECUTION_TIMEOUT", "33")]);
    daemon.set_storage_mode(StorageMode::Silent);
    let started = std::time::Instant::now();
    let messages = crawl(&daemon, json!({"repo_url": setup.url()}));
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(20), "{elapsed:?}");
    let last = messages.last().unwrap();
    assert_eq!(last["type"], "error", "{messages:?}");
    assert!(last.to_string().contains("time limit"), "{last}");
}

/// The state key is the URL without user info: changing the token typed into the URL keeps
/// the state, and state stored under the old key (the URL as typed, as the Python plugin and
/// earlier versions hashed it) is found and moved.
#[test]
fn a_token_typed_into_the_url_can_change_without_a_full_sync() {
    use crate::support::git_servers::{HttpServer, ALICE, TOKEN};
    use sha2::{Digest, Sha256};
    let dir = tempfile::tempdir().unwrap();
    let server = HttpServer::start(dir.path());
    let repo = TestRepo::create(
        &server.root.join("private"),
        "docs",
        &[("a.md", b"a"), ("b.md", b"b")],
    );
    let with_user = |user: &str| {
        format!(
            "https://{user}:{TOKEN}@127.0.0.1:{}/private/docs.git",
            server.https_port
        )
    };
    let cache = dir.path().join("cache").display().to_string();
    let daemon = FakeDaemon::spawn(&[("GIT_DATASOURCE_CACHE_DIR", cache.as_str())]);
    let crawl_url = |url: &str| {
        let session = daemon.request(
            "invoke_website_datasource_get_crawl",
            json!({"provider": "git_datasource", "datasource": "git_datasource",
                   "credentials": {"ca_certificate": server.ca.ca_pem},
                   "datasource_parameters": {"repo_url": url}}),
        );
        documents(&daemon.finish(&session)).len()
    };
    let first = with_user("x-access-token");
    assert_eq!(crawl_url(&first), 2);
    assert_eq!(
        crawl_url(&with_user(ALICE)),
        0,
        "another user-info, same state"
    );

    // State as an earlier version stored it: under the hash of the URL as typed.
    let hash = |text: &str| hex::encode(&Sha256::digest(format!("{text}:main::").as_bytes())[..8]);
    let bare = format!("https://127.0.0.1:{}/private/docs.git", server.https_port);
    let (new, old) = (hash(&bare), hash(&first));
    {
        let mut recorded = daemon.recorded();
        let moved: Vec<(String, Vec<u8>)> = recorded
            .storage
            .drain()
            .map(|(k, v)| (k.replace(&new, &old), v))
            .collect();
        recorded.storage.extend(moved);
    }
    assert_eq!(
        crawl_url(&first),
        0,
        "continued from the old key, no full sync"
    );
    // The next change is delivered alone, and the state moves under the new key.
    repo.commit(&[("a.md", b"a2")], &[], "change");
    assert_eq!(crawl_url(&first), 1);
    assert!(daemon
        .recorded()
        .storage
        .keys()
        .any(|k| k == &format!("git_snapshot:{new}")));
    assert_eq!(crawl_url(&with_user(ALICE)), 0);
    assert!(!daemon.stderr_text().contains(TOKEN));
}

/// Continuing the Python plugin's state makes a second connection (to fetch its last
/// commit). A proxy that shows another host key there is refused like anywhere else: the
/// run then syncs everything instead of trusting what the impostor served.
#[test]
fn the_connection_continuing_python_state_checks_the_host_key_too() {
    use crate::support::git_servers::SshServer;
    use crate::support::keys::ssh_keygen;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("keys")).unwrap();
    let (key, public) = ssh_keygen(&dir.path().join("keys"), "k", &["-t", "ed25519"], "");
    let (genuine, impostor) = (
        SshServer::start(&dir.path().join("a"), &[public.trim()]),
        SshServer::start(&dir.path().join("b"), &[public.trim()]),
    );
    // The first connection reaches the genuine server, every later one the impostor.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_port = listener.local_addr().unwrap().port();
    let ports = [genuine.port, impostor.port];
    std::thread::spawn(move || {
        for (n, client) in listener.incoming().enumerate() {
            let Ok(client) = client else { continue };
            let server = TcpStream::connect(("127.0.0.1", ports[n.min(1)])).unwrap();
            for (mut from, mut to) in [
                (client.try_clone().unwrap(), server.try_clone().unwrap()),
                (server, client),
            ] {
                std::thread::spawn(move || {
                    let mut buffer = [0u8; 16384];
                    while let Ok(read) = from.read(&mut buffer) {
                        if read == 0 || to.write_all(&buffer[..read]).is_err() {
                            break;
                        }
                    }
                    let _ = to.shutdown(std::net::Shutdown::Both);
                });
            }
        }
    });
    let repo = TestRepo::create(dir.path(), "r", &[("a.md", b"a"), ("b.md", b"b")]);
    let python_commit = repo.head();
    repo.commit(&[("a.md", b"a2")], &[], "change");
    let url = format!(
        "ssh://{}@127.0.0.1:{proxy_port}{}",
        genuine.user,
        repo.bare.display()
    );
    // The Python plugin's state: only git_sha, under the hash of the URL as typed.
    let hash = hex::encode(
        &sha2::Digest::finalize(sha2::Digest::chain_update(
            <sha2::Sha256 as sha2::Digest>::new(),
            format!("{url}:main::"),
        ))[..8],
    );
    let setup_cache = dir.path().join("cache").display().to_string();
    let daemon = FakeDaemon::spawn(&[("GIT_DATASOURCE_CACHE_DIR", setup_cache.as_str())]);
    daemon
        .recorded()
        .storage
        .insert(format!("git_sha:{hash}"), python_commit.into_bytes());
    let session = daemon.request(
        "invoke_website_datasource_get_crawl",
        json!({"provider": "git_datasource", "datasource": "git_datasource",
               "credentials": {"ssh_private_key": key},
               "datasource_parameters": {"repo_url": url}}),
    );
    let delivered = documents(&daemon.finish(&session));
    assert_eq!(
        titles(&delivered),
        ["a.md", "b.md"],
        "{}",
        daemon.stderr_text()
    );
    let log = daemon.stderr_once(&["syncing everything"], Duration::from_secs(10));
    assert!(log.contains("syncing everything"), "{log}");
}

/// Through the plugin: a workspace without the token cannot read a private repository by
/// naming a commit another workspace's crawl left in the shared cache.
#[test]
fn a_cached_commit_is_not_served_without_authorization() {
    use crate::support::git_servers::{HttpServer, TOKEN};
    let dir = tempfile::tempdir().unwrap();
    let server = HttpServer::start(dir.path());
    let repo = TestRepo::create(&server.root.join("private"), "docs", &[("secret.md", b"s")]);
    let cache = dir.path().join("cache").display().to_string();
    let daemon = FakeDaemon::spawn(&[("GIT_DATASOURCE_CACHE_DIR", cache.as_str())]);
    let url = server.https_url("private", "docs");
    let crawl_with = |credentials: Value, branch: &str| {
        let session = daemon.request(
            "invoke_website_datasource_get_crawl",
            json!({"provider": "git_datasource", "datasource": "git_datasource", "credentials": credentials,
                   "datasource_parameters": {"repo_url": url, "branch": branch}}),
        );
        daemon.finish(&session)
    };
    let ca = server.ca.ca_pem.clone();
    let owner = crawl_with(json!({"access_token": TOKEN, "ca_certificate": ca}), "main");
    assert_eq!(titles(&documents(&owner)), ["secret.md"]);
    for credentials in [
        json!({"ca_certificate": ca}),
        json!({"access_token": "wrong-token", "ca_certificate": ca}),
    ] {
        let other = crawl_with(credentials, &repo.head());
        let last = other.last().unwrap();
        assert_eq!(
            last["data"]["error_type"], "InvokeAuthorizationError",
            "{other:?}"
        );
        assert_eq!(last["data"]["args"]["error"], "GitAuthenticationError");
        assert!(!other.iter().any(|m| m.to_string().contains("secret.md")));
    }
}

/// A known_hosts line of many `*` cannot pin a core: the host is simply not found in it.
#[test]
fn a_hostile_known_hosts_pattern_answers_at_once() {
    use crate::support::git_servers::SshServer;
    use crate::support::keys::ssh_keygen;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("keys")).unwrap();
    let (key, public) = ssh_keygen(&dir.path().join("keys"), "k", &["-t", "ed25519"], "");
    let ssh = SshServer::start(&dir.path().join("sshd"), &[public.trim()]);
    let repo = TestRepo::create(dir.path(), "r", &[("a.md", b"a")]);
    let hostile = format!("{}x {}", "*".repeat(300), ssh.host_key);
    let daemon = FakeDaemon::spawn(&[]);
    let started = std::time::Instant::now();
    let session = daemon.request(
        "invoke_website_datasource_get_crawl",
        json!({"provider": "git_datasource", "datasource": "git_datasource",
               "credentials": {"ssh_private_key": key, "ssh_known_hosts": hostile},
               "datasource_parameters": {"repo_url": ssh.url(&repo.bare)}}),
    );
    let messages = daemon.finish(&session);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let error = &messages.last().unwrap()["data"];
    assert_eq!(error["error_type"], "InvokeBadRequestError", "{messages:?}");
    assert_eq!(error["args"]["error"], "GitHostKeyError");
}
