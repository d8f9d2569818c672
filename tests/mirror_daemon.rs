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
