//! Mirroring as Dify drives it (the fake daemon, the plugin binary and its background
//! watcher) against the fake Knowledge API.

mod support;

use support::knowledge_api::FakeKnowledgeApi;
use support::mirror_scenario;

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

/// Mirroring with an unreachable API whose URL carries user info: the crawl falls back to
/// plugin storage, says why, and neither the URL's password nor the key reaches any output.
#[test]
fn an_unreachable_api_falls_back_without_showing_secrets() {
    use serde_json::json;
    use support::fake_daemon::FakeDaemon;
    use support::git_servers::TestRepo;
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
               "credentials": {"dify_api_url": "http://u:PwSecret@127.0.0.1:1/v1",
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
    assert!(
        !everything.contains("PwSecret") && !everything.contains("KeySecret"),
        "{everything}"
    );
}
