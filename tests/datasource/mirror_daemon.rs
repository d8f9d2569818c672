//! Mirroring as Dify drives it (the fake daemon, the plugin binary and its background
//! watcher) against the fake Knowledge API.

use crate::support::knowledge_api::FakeKnowledgeApi;
use crate::support::mirror_scenario;

#[test]
fn the_main_histories_converge_through_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    mirror_scenario::main_histories(&FakeKnowledgeApi::start(), dir.path());
}

#[test]
fn validate_checks_the_knowledge_api_key() {
    let dir = tempfile::tempdir().unwrap();
    mirror_scenario::validation(&FakeKnowledgeApi::start(), dir.path());
}

/// Mirroring with an unreachable API: the crawl falls back to plugin storage, says why, and the
/// key reaches no output.
#[test]
fn an_unreachable_api_falls_back_without_showing_secrets() {
    use crate::support::fake_daemon::FakeDaemon;
    use crate::support::git_servers::TestRepo;
    use serde_json::json;
    let dir = tempfile::tempdir().unwrap();
    let repo = TestRepo::create(dir.path(), "r", &[("a.md", b"a")]);
    let cache = dir.path().join("cache").display().to_string();
    let daemon = FakeDaemon::spawn(&[
        ("GIT_DATASOURCE_ALLOW_LOCAL", "1"),
        ("GIT_DATASOURCE_CACHE_DIR", cache.as_str()),
        ("GIT_DATASOURCE_DIFY_RETRY_MS", "1"),
        ("GIT_DATASOURCE_LOG", "trace"),
    ]);
    let session = daemon.request(
        "invoke_website_datasource_get_crawl",
        json!({"provider": "git_datasource", "datasource": "git_datasource",
               "credentials": {"dify_api_url": "http://127.0.0.1:1/v1",
                               "dify_api_key": "dataset-KeySecret"},
               "datasource_parameters": {"repo_url": repo.bare.display().to_string(),
                                         "knowledge_base_id": "3b7a52c1-5f1e-4c1a-9d7e-2f4e8c1d0a11"}}),
    );
    let messages = daemon.finish(&session);
    assert_eq!(messages.last().unwrap()["type"], "end", "{messages:?}");
    let log = daemon.stderr_once(
        &["plugin storage state"],
        std::time::Duration::from_secs(10),
    );
    assert!(log.contains("plugin storage state"), "{log}");
    let everything = format!("{log}{:?}", daemon.recorded().lines);
    assert!(!everything.contains("KeySecret"), "{everything}");
}

/// With `large_change_sets: push_after_import` one Run and one import ingest a change set
/// larger than a message; with the default nothing is pushed.
#[test]
fn push_after_import_ingests_a_whole_change_set_in_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let kb = FakeKnowledgeApi::start();
    let pushes = |kb: &FakeKnowledgeApi| {
        let state = kb.state();
        state
            .requests
            .iter()
            .filter(|r| r.starts_with("POST") && r.contains("/pipeline/run"))
            .count()
    };
    // The default: the first part only, nothing pushed; the next run offers the next part.
    let default = tempfile::tempdir().unwrap();
    let imported = mirror_scenario::next_run_by_default(&kb, default.path());
    assert_eq!(pushes(&kb), 0, "nothing is pushed unless asked");
    assert_eq!(kb.docs().len(), imported);

    mirror_scenario::push_after_import(&kb, dir.path());
    assert!(pushes(&kb) >= 4, "the rest of each change set went in runs");
    assert!(kb.state().duplicate_pushes.is_empty());
}

/// A pipeline whose process form has a required input without a default refuses the push:
/// the watcher says why and how to go on, deletes the one probe document Dify made and never
/// indexes, and the next run offers the next part as without the option.
#[test]
fn a_refused_push_leaves_the_next_run_to_continue() {
    use crate::support::git_servers::TestRepo;
    use crate::support::mirror_scenario::{crawl_with, large_files, spawn_with, SMALL_MESSAGE};

    let dir = tempfile::tempdir().unwrap();
    let kb = FakeKnowledgeApi::start();
    kb.state().pipeline.as_mut().unwrap().required_inputs = vec!["chunk_size".into()];
    let files = large_files(30, "v1");
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_bytes()))
        .collect();
    let repo = TestRepo::create(dir.path(), "large", &refs);
    let daemon = spawn_with(dir.path(), &[SMALL_MESSAGE]);
    let ask = serde_json::json!({"large_change_sets": "push_after_import"});
    let first = crawl_with(&daemon, &kb, &repo, ask.clone());
    kb.import(&first);
    kb.index_all();
    let log = daemon.stderr_once(
        &["chunk_size is required", "deleted 1 documents"],
        std::time::Duration::from_secs(30),
    );
    assert!(log.contains("chunk_size is required"), "{log}");
    assert!(log.contains("--input"), "the log says how to go on: {log}");
    assert!(
        !log.contains(crate::support::knowledge_api::KEY),
        "the key reached the log"
    );
    let docs = kb.docs();
    assert_eq!(
        docs.len(),
        first.len(),
        "the probe document is gone: {docs:?}"
    );
    assert!(docs.iter().all(|d| d.status == "completed"));

    let second = crawl_with(&daemon, &kb, &repo, ask);
    let mut offered: Vec<&str> = first
        .iter()
        .chain(&second)
        .map(|i| i["title"].as_str().unwrap())
        .collect();
    offered.sort();
    offered.dedup();
    assert_eq!(
        offered.len(),
        first.len() + second.len(),
        "the next part, not the same"
    );
}

/// Asked to push without mirroring, the crawl says why nothing will be pushed.
#[test]
fn push_after_import_without_mirroring_says_it_has_no_effect() {
    use crate::support::git_servers::TestRepo;
    use serde_json::json;
    let dir = tempfile::tempdir().unwrap();
    let repo = TestRepo::create(dir.path(), "r", &[("a.md", b"a")]);
    let daemon = mirror_scenario::spawn_with(dir.path(), &[]);
    let session = daemon.request(
        "invoke_website_datasource_get_crawl",
        json!({"provider": "git_datasource", "datasource": "git_datasource", "credentials": {},
               "datasource_parameters": {"repo_url": repo.bare.display().to_string(),
                                         "large_change_sets": "push_after_import"}}),
    );
    let messages = daemon.finish(&session);
    assert_eq!(messages.last().unwrap()["type"], "end", "{messages:?}");
    let log = daemon.stderr_once(&["mirroring is off"], std::time::Duration::from_secs(10));
    assert!(
        log.contains("the next run offers what does not fit"),
        "{log}"
    );
}

/// Two files mirrored, imported and indexed, the plugin still running.
fn mirrored_and_indexed() -> (
    tempfile::TempDir,
    FakeKnowledgeApi,
    crate::support::git_servers::TestRepo,
    crate::support::fake_daemon::FakeDaemon,
) {
    use crate::support::mirror_scenario::{crawl_with, spawn_with};
    let dir = tempfile::tempdir().unwrap();
    let kb = FakeKnowledgeApi::start();
    let repo = crate::support::git_servers::TestRepo::create(
        dir.path(),
        "r",
        &[("a.md", b"alpha"), ("b.md", b"beta")],
    );
    let daemon = spawn_with(dir.path(), &[]);
    let first = crawl_with(&daemon, &kb, &repo, serde_json::json!({}));
    kb.import(&first);
    kb.index_all();
    (dir, kb, repo, daemon)
}

/// Another workspace naming the same knowledge base id and repository configuration with its
/// own Knowledge API key cannot stop this workspace's watcher: a watcher is keyed by who asks
/// too (a hash of the key), so the superseded copy still goes once the new one is indexed.
#[test]
fn another_workspace_cannot_stop_a_watcher() {
    use crate::support::mirror_scenario::{crawl_with, KnowledgeBase};
    use serde_json::json;

    let (_dir, kb, repo, daemon) = mirrored_and_indexed();
    repo.commit(&[("a.md", b"alpha 2")], &[], "edit");
    let second = crawl_with(&daemon, &kb, &repo, json!({}));
    assert_eq!(second.len(), 1);

    let other = daemon.request(
        "invoke_website_datasource_get_crawl",
        json!({"provider": "git_datasource", "datasource": "git_datasource",
               "credentials": {"dify_api_url": kb.api_url(), "dify_api_key": "dataset-anotherWorkspace01234567"},
               "datasource_parameters": {"repo_url": repo.bare.display().to_string(),
                                         "knowledge_base_id": kb.dataset()}}),
    );
    let answer = daemon.finish(&other);
    assert_eq!(
        answer.last().unwrap()["data"]["error_type"],
        "InvokeAuthorizationError",
        "{answer:?}"
    );

    kb.import(&second);
    kb.index_all();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while kb
        .docs()
        .iter()
        .filter(|d| d.source_url().ends_with(":a.md"))
        .count()
        > 1
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the watcher was stopped by the other workspace: {:?}\n{}",
            kb.docs(),
            daemon.stderr_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// A listed document id that is not a UUID (a hostile or broken API answering
/// `../../<other knowledge base>/documents/<id>`) never goes into a DELETE: that document is
/// not taken for ours, and nothing is deleted anywhere else.
#[test]
fn a_listed_id_that_is_no_uuid_never_reaches_a_delete() {
    use crate::support::mirror_scenario::crawl_with;
    use serde_json::json;

    const ELSEWHERE: &str = "0e1d2c3b-4a59-4687-9a0b-1c2d3e4f5a6b";
    let (_dir, kb, repo, daemon) = mirrored_and_indexed();
    {
        let mut state = kb.state();
        let doc = state
            .docs
            .iter_mut()
            .find(|d| d.source_url().ends_with(":b.md"))
            .unwrap();
        doc.id = format!("../../{ELSEWHERE}/documents/{}", doc.id);
    }
    repo.commit(&[], &["b.md"], "drop b");
    assert!(crawl_with(&daemon, &kb, &repo, json!({})).is_empty());
    std::thread::sleep(std::time::Duration::from_secs(4));
    let requests = kb.state().requests.clone();
    assert!(
        requests
            .iter()
            .all(|r| !r.starts_with("DELETE") && !r.contains(ELSEWHERE)),
        "{requests:?}"
    );
}

/// The watcher that follows a crawl gives the documents of the user's import their Git
/// metadata once they are indexed; the next run, with nothing to do, is one probe.
#[test]
fn imported_documents_get_their_git_metadata_from_the_watcher() {
    use crate::support::mirror_scenario::crawl_with;

    let (_dir, kb, repo, daemon) = mirrored_and_indexed();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !kb
        .docs()
        .iter()
        .all(|d| d.metadata.contains_key("git_commit"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "not tagged: {:?}\n{}",
            kb.docs(),
            daemon.stderr_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let paths: Vec<serde_json::Value> = kb
        .docs()
        .iter()
        .map(|d| d.metadata["git_path"].clone())
        .collect();
    assert_eq!(
        paths,
        [serde_json::json!("a.md"), serde_json::json!("b.md")]
    );
    // Let the watcher put its record back, then a run with nothing to do.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let before = kb.request_count();
    let again = crawl_with(&daemon, &kb, &repo, serde_json::json!({}));
    assert!(again.is_empty());
    assert_eq!(
        kb.request_count() - before,
        1,
        "{:?}",
        &kb.state().requests[before..]
    );
}
