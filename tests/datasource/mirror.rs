//! Mirroring against the fake Knowledge API: the knowledge base converges on the branch
//! (one indexed document per file, with its current content, nothing else of this
//! configuration) through random histories of edits, renames, force pushes, cancelled and
//! partial imports, indexing errors, API faults and lost plugin storage.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::support::crawl_harness::{local_client, params, run_mirrored, CaptureSink, MemoryStore};
use crate::support::git_servers::TestRepo;
use crate::support::knowledge_api::{DeleteStyle, FakeKnowledgeApi, Fault, KEY};
use git_datasource::crawl::{CrawlSettings, RunSummary};
use git_datasource::dify::knowledge::{ApiErrorKind, KnowledgeApi};
use git_datasource::mirror::cleanup::CleanupReport;
use git_datasource::mirror::record::RecordMemory;
use git_datasource::mirror::watch::Watch;
use git_datasource::mirror::{Mirror, WatchSettings};
use proptest::prelude::*;
use serde_json::{json, Value};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

struct World {
    dir: tempfile::TempDir,
    repo: TestRepo,
    kb: FakeKnowledgeApi,
    store: MemoryStore,
    memory: Arc<RecordMemory>,
    /// The branch as the test wrote it.
    files: BTreeMap<String, String>,
    budget: usize,
}

/// What one crawl offered and planned, and the watch that follows it.
struct Crawled {
    summary: RunSummary,
    watch: Option<Watch>,
    items: Vec<Value>,
}

impl Crawled {
    fn titles(&self) -> Vec<&str> {
        self.items
            .iter()
            .map(|i| i["title"].as_str().unwrap())
            .collect()
    }
}

impl World {
    /// A world of generated files (path, content).
    fn owned(files: &[(String, String)]) -> World {
        let refs: Vec<(&str, &str)> = files
            .iter()
            .map(|(p, c)| (p.as_str(), c.as_str()))
            .collect();
        World::new(&refs)
    }

    fn new(files: &[(&str, &str)]) -> World {
        let dir = tempfile::tempdir().unwrap();
        let refs: Vec<(&str, &[u8])> = files.iter().map(|(p, c)| (*p, c.as_bytes())).collect();
        let repo = TestRepo::create(dir.path(), "kb", &refs);
        World {
            dir,
            repo,
            kb: FakeKnowledgeApi::start(),
            store: MemoryStore::default(),
            memory: Arc::default(),
            files: files
                .iter()
                .map(|(p, c)| (p.to_string(), c.to_string()))
                .collect(),
            budget: 4_000_000,
        }
    }

    /// A fresh client each time: a connection pool belongs to the runtime that made it.
    /// Injected faults outlast every retry; the backoff is short.
    fn mirror(&self) -> Mirror {
        let api = KnowledgeApi::new(&self.kb.base_url, KEY).unwrap();
        Mirror {
            api: api.with_first_backoff(Duration::from_millis(1)),
            dataset: self.kb.dataset.clone(),
            memory: Some(self.memory.clone()),
        }
    }

    fn write(&mut self, files: &[(String, String)], removed: &[String]) {
        let refs: Vec<(&str, &[u8])> = files
            .iter()
            .map(|(p, c)| (p.as_str(), c.as_bytes()))
            .collect();
        let removed_refs: Vec<&str> = removed.iter().map(String::as_str).collect();
        self.repo.commit(&refs, &removed_refs, "change");
        for (p, c) in files {
            self.files.insert(p.clone(), c.clone());
        }
        for p in removed {
            self.files.remove(p);
        }
    }

    fn force_push(&mut self, files: BTreeMap<String, String>) {
        let refs: Vec<(&str, &[u8])> = files
            .iter()
            .map(|(p, c)| (p.as_str(), c.as_bytes()))
            .collect();
        self.repo.rewrite(&refs);
        self.files = files;
    }

    fn crawl(&self, extra: Value) -> Crawled {
        let sink = CaptureSink::new(self.budget);
        let settings = CrawlSettings {
            max_file_bytes: 5_000_000,
            time_budget: Duration::from_secs(300),
        };
        let mut parameters = json!({"knowledge_base_id": self.kb.dataset});
        parameters
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().cloned().unwrap_or_default());
        let mirror = self.mirror();
        let crawled = run_mirrored(
            &params(&self.repo.bare.display().to_string(), parameters),
            &self.store,
            &sink,
            local_client(&self.dir.path().join("cache")),
            &settings,
            Some(&mirror),
        )
        .unwrap();
        Crawled {
            items: sink.documents(),
            summary: crawled.summary,
            watch: crawled.watch,
        }
    }

    /// The watcher that follows a crawl, polling fast; `wait` bounds it when no import comes.
    fn watch(&self, crawled: &Crawled, wait: Duration) -> CleanupReport {
        let settings = WatchSettings {
            poll: Duration::from_millis(1),
            max_wait: wait,
        };
        self.watch_with(crawled, settings)
    }

    fn watch_with(&self, crawled: &Crawled, settings: WatchSettings) -> CleanupReport {
        match crawled.watch.clone() {
            Some(watch) => runtime().block_on(watch.run(settings)),
            None => CleanupReport::default(),
        }
    }

    /// The user imports `items` and the worker indexes them.
    fn import_all(&self, items: &[Value]) {
        self.kb.import(items);
        self.kb.index_all();
    }

    /// Crawl, import every offered item, index, and let the watcher clean up.
    fn cycle(&self) -> Crawled {
        let crawled = self.crawl(json!({}));
        self.kb.import(&crawled.items);
        self.kb.index_all();
        self.watch(&crawled, Duration::from_secs(5));
        crawled
    }

    /// Exactly one completed document per file of the branch, with its current content, and
    /// nothing else of this configuration.
    fn assert_mirrored(&self, hash: &str) {
        let prefix = format!("git:{hash}:");
        let mut ours: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        for doc in self.kb.docs() {
            if let Some(path) = doc.source_url().strip_prefix(&prefix) {
                ours.entry(path.to_string())
                    .or_default()
                    .push((doc.status.clone(), doc.content().to_string()));
            }
        }
        let expected: BTreeMap<String, Vec<(String, String)>> = self
            .files
            .iter()
            .map(|(p, c)| (p.clone(), vec![("completed".to_string(), c.clone())]))
            .collect();
        assert_eq!(ours, expected);
    }
}

/// No offered (path, blob) was already live (indexed or indexing) in the knowledge base.
fn assert_nothing_sent_twice(crawled: &Crawled, kb_before: &[crate::support::knowledge_api::Doc]) {
    if crawled.summary.mirror.is_none() {
        return; // a fallback run delivers from plugin storage
    }
    let hash = &crawled.summary.config_hash;
    for item in &crawled.items {
        let url = item["source_url"].as_str().unwrap();
        let content = item["content"].as_str().unwrap();
        let live = kb_before
            .iter()
            .any(|d| d.source_url() == url && d.content() == content && d.status != "error");
        assert!(
            !live,
            "{url} offered again while live in the knowledge base ({hash})"
        );
    }
}

#[test]
fn first_sync_change_rename_delete_and_a_cancelled_import_converge() {
    let mut world = World::new(&[("a.md", "alpha"), ("b.md", "beta"), ("docs/c.md", "gamma")]);
    let first = world.cycle();
    assert_eq!(first.items.len(), 3);
    let hash = first.summary.config_hash.clone();
    world.assert_mirrored(&hash);

    // Unchanged: nothing offered, and one probe request says so.
    let before = world.kb.request_count();
    let again = world.crawl(json!({}));
    assert!(again.items.is_empty());
    assert!(again.summary.unchanged);
    assert_eq!(
        world.kb.request_count() - before,
        1,
        "one probe of the list"
    );

    // Change one, rename one, delete one.
    world.write(
        &[
            ("a.md".into(), "alpha 2".into()),
            ("docs/moved.md".into(), "gamma".into()),
        ],
        &["docs/c.md".into(), "b.md".into()],
    );
    let crawled = world.crawl(json!({}));
    let offered = crawled.titles();
    assert_eq!(offered, ["a.md", "docs/moved.md"]);
    let plan = &crawled.summary.mirror.as_ref().unwrap().plan;
    let gone: Vec<&str> = plan.delete.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(gone, ["b.md", "docs/c.md"], "gone files go at once");
    // The user cancels the import: the watcher deletes the gone files and gives up waiting.
    let report = world.watch(&crawled, Duration::from_millis(50));
    assert_eq!(report.deleted.len(), 2);
    // The next run offers the same files again: nothing was lost.
    let retried = world.cycle();
    let offered = retried.titles();
    assert_eq!(offered, ["a.md", "docs/moved.md"]);
    world.assert_mirrored(&hash);
}

/// An import that takes longer in all than the watcher's wait, but makes progress within
/// it, is waited for: every superseded document goes. Without progress the watcher stops.
#[test]
fn a_slow_import_is_waited_for_while_it_makes_progress() {
    let files: Vec<(String, String)> = (0..30)
        .map(|n| (format!("f{n:02}.md"), format!("v1 {n}")))
        .collect();
    let mut world = World::owned(&files);
    let hash = world.cycle().summary.config_hash.clone();
    let changed: Vec<(String, String)> = files
        .iter()
        .map(|(p, _)| (p.clone(), format!("v2 {p}")))
        .collect();
    world.write(&changed, &[]);
    let crawled = world.crawl(json!({}));
    assert_eq!(crawled.items.len(), 30);
    world.kb.import(&crawled.items);
    // Dify's worker indexes one document per request (each poll lists twice and deletes
    // what the indexed ones supersede, so about four a poll): some eight polls of 25 ms,
    // twice the wait.
    world.kb.state().auto_index = 1;
    let settings = WatchSettings {
        poll: Duration::from_millis(25),
        max_wait: Duration::from_millis(100),
    };
    let started = std::time::Instant::now();
    let report = world.watch_with(&crawled, settings);
    assert!(
        started.elapsed() > settings.max_wait,
        "{:?}",
        started.elapsed()
    );
    assert_eq!(report.deleted.len(), 30, "every superseded copy");
    world.assert_mirrored(&hash);

    // An import whose indexing never moves: the watcher gives up after the wait.
    world.kb.state().auto_index = 0;
    world.write(&[("f00.md".into(), "v3".into())], &[]);
    let crawled = world.crawl(json!({}));
    world.kb.import(&crawled.items);
    let started = std::time::Instant::now();
    let report = world.watch_with(&crawled, settings);
    assert!(report.deleted.is_empty());
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn an_indexing_error_is_offered_again_and_replaced() {
    let world = World::new(&[("a.md", "alpha"), ("b.md", "beta")]);
    world.kb.state().failing_paths.push("b.md".into());
    let first = world.cycle();
    let hash = first.summary.config_hash.clone();
    let statuses: Vec<String> = world.kb.docs().iter().map(|d| d.status.clone()).collect();
    assert!(statuses.contains(&"error".to_string()));
    world.kb.state().failing_paths.clear();
    let second = world.cycle();
    let offered = second.titles();
    assert_eq!(offered, ["b.md"]);
    world.assert_mirrored(&hash);
}

#[test]
fn documents_of_other_configurations_and_archived_ones_are_never_touched() {
    let world = World::new(&[("a.md", "alpha")]);
    world.kb.import(&[
        json!({"source_url": "git:0123456789abcdef:a.md", "content": "other config", "title": "a.md", "description": ""}),
        json!({"source_url": "https://example.com/page", "content": "web", "title": "page", "description": ""}),
    ]);
    world.kb.index_all();
    let first = world.cycle();
    let hash = first.summary.config_hash.clone();
    // An archived stale copy of ours stays, as do the others.
    let stale = world.kb.import(&[json!({"source_url": format!("git:{hash}:gone.md"), "content": "old", "title": "gone.md", "description": ""})]);
    world.kb.index_all();
    world
        .kb
        .state()
        .docs
        .iter_mut()
        .find(|d| d.id == stale[0])
        .unwrap()
        .archived = true;
    world.cycle();
    let urls: Vec<String> = world
        .kb
        .docs()
        .iter()
        .map(|d| d.source_url().to_string())
        .collect();
    assert!(urls.contains(&"git:0123456789abcdef:a.md".to_string()));
    assert!(urls.contains(&"https://example.com/page".to_string()));
    assert!(urls.contains(&format!("git:{hash}:gone.md")));
    assert_eq!(urls.len(), 4);
}

#[test]
fn the_python_plugins_documents_are_adopted_by_content() {
    let world = World::new(&[("a.md", "alpha\n"), ("b.md", "beta\n")]);
    // What the Python plugin imported: our source_url form, no blob in the description.
    let first = world.crawl(json!({}));
    let hash = first.summary.config_hash.clone();
    world.kb.import(&[
        json!({"source_url": format!("git:{hash}:a.md"), "content": "alpha\n", "title": "a.md", "description": "a.md"}),
        json!({"source_url": format!("git:{hash}:b.md"), "content": "beta (old)\n", "title": "b.md", "description": "b.md"}),
    ]);
    world.kb.index_all();
    let crawled = world.cycle();
    let offered = crawled.titles();
    assert_eq!(offered, ["b.md"], "a.md's content matches its blob: kept");
    world.assert_mirrored(&hash);
}

#[test]
fn a_failing_listing_deletes_nothing_and_falls_back_to_plugin_storage() {
    let mut world = World::new(&[("a.md", "alpha"), ("b.md", "beta")]);
    let hash = world.cycle().summary.config_hash;
    world.write(&[("a.md".into(), "alpha 2".into())], &["b.md".into()]);
    // 500 on every list request from page 2 on, beyond the retries: the listing fails.
    world.memory = Arc::default();
    world
        .store
        .0
        .lock()
        .unwrap()
        .retain(|k, _| !k.starts_with("git_kb:"));
    world.kb.fail(Fault::new("GET", 1, 100, 500));
    let crawled = world.crawl(json!({}));
    assert!(crawled.summary.mirror.is_none());
    let offered = crawled.titles();
    assert_eq!(offered, ["a.md"], "delivered from plugin storage state");
    assert_eq!(world.kb.docs().len(), 2, "nothing deleted");
    world.kb.state().faults.clear();
    world.import_all(&crawled.items);
    world.cycle();
    world.assert_mirrored(&hash);
}

#[test]
fn passing_faults_are_retried_with_backoff() {
    let mut world = World::new(&[("a.md", "alpha"), ("b.md", "beta")]);
    let hash = world.cycle().summary.config_hash;
    world.write(&[("a.md".into(), "alpha 2".into())], &["b.md".into()]);
    // Two 503s on the listing and two 429s on the delete: each call's retries absorb them.
    world.kb.fail(Fault::new("GET", 1, 2, 503));
    world.kb.fail(Fault::new("DELETE", 0, 2, 429));
    let crawled = world.crawl(json!({}));
    assert!(crawled.summary.mirror.is_some(), "the listing went through");
    let report = world.watch(&crawled, Duration::from_millis(10));
    assert_eq!((report.deleted.len(), report.failed.len()), (1, 0));
    world.import_all(&crawled.items);
    world.cycle();
    world.assert_mirrored(&hash);
}

#[test]
fn a_failing_delete_is_retried_by_the_next_run() {
    let mut world = World::new(&[("a.md", "alpha"), ("b.md", "beta")]);
    let hash = world.cycle().summary.config_hash;
    world.write(&[], &["b.md".into()]);
    world.kb.fail(Fault::new("DELETE", 0, 100, 503));
    let crawled = world.crawl(json!({}));
    let report = world.watch(&crawled, Duration::from_millis(10));
    assert_eq!(report.failed.len(), 1);
    world.kb.state().faults.clear();
    world.cycle();
    world.assert_mirrored(&hash);
}

#[test]
fn deletes_are_accepted_as_every_version_answers_them() {
    let mut world = World::new(&[("a.md", "alpha"), ("b.md", "beta")]);
    world.kb.state().delete_style = DeleteStyle::OkWithBody204;
    let hash = world.cycle().summary.config_hash;
    world.write(&[("a.md".into(), "alpha 2".into())], &["b.md".into()]);
    world.cycle();
    world.assert_mirrored(&hash);
}

#[test]
fn api_errors_name_the_fix_and_never_the_key() {
    let kb = FakeKnowledgeApi::start();
    let rt = runtime();
    let wrong = KnowledgeApi::new(&kb.base_url, "dataset-wrongwrongwrongwrong").unwrap();
    let error = rt.block_on(wrong.check_key()).unwrap_err();
    assert_eq!(error.kind, ApiErrorKind::Unauthorized);
    assert!(error.message.contains("dataset-") && !error.message.contains("wrongwrong"));
    let api = KnowledgeApi::new(&kb.base_url, KEY).unwrap();
    rt.block_on(api.check_key()).unwrap();
    let error = rt
        .block_on(api.list("11111111-2222-3333-4444-555555555555", 1, 1))
        .unwrap_err();
    assert_eq!(error.kind, ApiErrorKind::NoKnowledgeBase);
    kb.state().enable_api = false;
    let error = rt.block_on(api.list(&kb.dataset, 1, 1)).unwrap_err();
    assert_eq!(error.kind, ApiErrorKind::ApiDisabled);
    assert!(error.message.contains("API Access"));
    // A base URL that is not the API (a route miss answers HTML).
    let wrong_base = KnowledgeApi::new(&kb.base_url.replace("/v1", "/api"), KEY).unwrap();
    let error = rt.block_on(wrong_base.list(&kb.dataset, 1, 1)).unwrap_err();
    assert!(
        error.message.contains("not Dify's Knowledge API"),
        "{error}"
    );
    // Nothing listens: the compose hint.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let down = KnowledgeApi::new(&format!("http://127.0.0.1:{port}/v1"), KEY).unwrap();
    let error = rt.block_on(down.check_key()).unwrap_err();
    assert_eq!(error.kind, ApiErrorKind::Unreachable);
    assert!(error.message.contains("http://api:5001/v1") && !error.message.contains(KEY));
}

#[test]
fn five_thousand_documents_page_and_a_mass_deletion_is_held() {
    let files: Vec<(String, String)> = (0..5000)
        .map(|i| (format!("d/{i:04}.md"), format!("doc {i}")))
        .collect();
    let mut world = World::owned(&files);
    let first = world.cycle();
    assert_eq!(first.items.len(), 5000);
    let hash = first.summary.config_hash.clone();
    world.assert_mirrored(&hash);

    // A no-change run asks one probe; it also stores what the watcher learned. A restarted
    // process reads that from plugin storage: one request again. Without it, every page is
    // read (51 requests: the probe and 50 pages).
    let before = world.kb.request_count();
    let crawled = world.crawl(json!({}));
    assert!(crawled.items.is_empty() && crawled.summary.unchanged);
    assert_eq!(world.kb.request_count() - before, 1);
    world.memory = Arc::default();
    let before = world.kb.request_count();
    let crawled = world.crawl(json!({}));
    assert!(crawled.items.is_empty());
    assert_eq!(world.kb.request_count() - before, 1);
    world.memory = Arc::default();
    world
        .store
        .0
        .lock()
        .unwrap()
        .retain(|k, _| !k.starts_with("git_kb:"));
    let before = world.kb.request_count();
    world.crawl(json!({}));
    assert_eq!(world.kb.request_count() - before, 51);

    // Ten changed files: their import lands at the front; two pages tell the rest.
    let changed: Vec<(String, String)> = files[..10]
        .iter()
        .map(|(p, c)| (p.clone(), format!("{c} v2")))
        .collect();
    world.write(&changed, &[]);
    let crawled = world.cycle();
    assert_eq!(crawled.items.len(), 10);
    let before = world.kb.request_count();
    let settled = world.crawl(json!({}));
    assert!(settled.items.is_empty());
    assert!(
        world.kb.request_count() - before <= 2,
        "probe + the first page"
    );
    world.assert_mirrored(&hash);

    // 3,000 files gone at once: held back, unless the run is `full`.
    let removed: Vec<String> = files[2000..].iter().map(|(p, _)| p.clone()).collect();
    world.write(&[], &removed);
    let crawled = world.crawl(json!({}));
    let plan = &crawled.summary.mirror.as_ref().unwrap().plan;
    assert_eq!((plan.delete.len(), plan.held.len()), (0, 3000));
    assert_eq!(
        world
            .watch(&crawled, Duration::from_millis(10))
            .deleted
            .len(),
        0
    );
    assert_eq!(world.kb.docs().len(), 5000);
    let started = std::time::Instant::now();
    let full = world.crawl(json!({"sync_mode": "full"}));
    assert_eq!(full.items.len(), 2000, "full offers every file again");
    let settings = WatchSettings {
        poll: Duration::from_millis(1),
        max_wait: Duration::from_millis(10),
    };
    let watch = full.watch.clone().unwrap();
    let report = runtime().block_on(watch.run(settings));
    assert_eq!(report.deleted.len(), 3000);
    eprintln!("3,000 deletions in {:?}", started.elapsed());
    // The re-index: import the full run; the new copies replace the old ones.
    world.import_all(&full.items);
    world.cycle();
    world.assert_mirrored(&hash);
}

#[derive(Debug, Clone)]
enum Step {
    Modify(usize),
    Add(usize),
    Delete(usize),
    Rename(usize),
    ForcePush(usize),
    /// Crawl, and the user cancels the import.
    Cancelled,
    /// Crawl, import every other offered item.
    Partial,
    /// Crawl, import, and the indexing of one file ends in error.
    IndexingError(usize),
    Cycle,
    /// A crawl whose listing fails with 500 from page `n` on.
    ListingFails,
    /// Deletes fail with 500 during the watcher.
    DeleteFails,
    /// Plugin storage lost; with `true`, the process restarts too.
    LoseStorage(bool),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0usize..8).prop_map(Step::Modify),
        (0usize..8).prop_map(Step::Add),
        (0usize..8).prop_map(Step::Delete),
        (0usize..8).prop_map(Step::Rename),
        (0usize..8).prop_map(Step::ForcePush),
        Just(Step::Cancelled),
        Just(Step::Partial),
        (0usize..8).prop_map(Step::IndexingError),
        Just(Step::Cycle),
        Just(Step::ListingFails),
        Just(Step::DeleteFails),
        any::<bool>().prop_map(Step::LoseStorage),
    ]
}

fn nth_path(world: &World, n: usize) -> Option<String> {
    let paths: Vec<&String> = world.files.keys().collect();
    (!paths.is_empty()).then(|| paths[n % paths.len()].clone())
}

fn apply(world: &mut World, step: &Step, counter: &mut usize) {
    *counter += 1;
    let n = *counter;
    match step {
        Step::Modify(i) => {
            if let Some(p) = nth_path(world, *i) {
                world.write(&[(p, format!("modified {n}"))], &[]);
            }
        }
        Step::Add(i) => world.write(&[(format!("new/{i}-{n}.md"), format!("added {n}"))], &[]),
        Step::Delete(i) => {
            if let Some(p) = nth_path(world, *i) {
                world.write(&[], &[p]);
            }
        }
        Step::Rename(i) => {
            if let Some(p) = nth_path(world, *i) {
                let content = world.files[&p].clone();
                world.write(&[(format!("renamed/{n}.md"), content)], &[p]);
            }
        }
        Step::ForcePush(i) => {
            let mut files = world.files.clone();
            if let Some(p) = nth_path(world, *i) {
                files.insert(p, format!("rewritten {n}"));
            }
            files.insert(format!("pushed-{n}.md"), format!("pushed {n}"));
            world.force_push(files);
        }
        Step::Cancelled => {
            let crawled = world.crawl(json!({}));
            world.watch(&crawled, Duration::from_millis(5));
        }
        Step::Partial => {
            let before = world.kb.docs();
            let crawled = world.crawl(json!({}));
            assert_nothing_sent_twice(&crawled, &before);
            let half: Vec<Value> = crawled.items.iter().step_by(2).cloned().collect();
            world.import_all(&half);
            world.watch(&crawled, Duration::from_secs(5));
        }
        Step::IndexingError(i) => {
            if let Some(p) = nth_path(world, *i) {
                world.kb.state().failing_paths.push(p);
            }
            world.cycle();
            world.kb.state().failing_paths.clear();
        }
        Step::Cycle => {
            let before = world.kb.docs();
            let crawled = world.cycle();
            assert_nothing_sent_twice(&crawled, &before);
        }
        Step::ListingFails => {
            world.kb.fail(Fault::new("GET", 2, 100, 500));
            world.memory = Arc::default();
            world
                .store
                .0
                .lock()
                .unwrap()
                .retain(|k, _| !k.starts_with("git_kb:"));
            // A probe alone cannot fail from page 2: seed one listing that needs pages.
            let crawled = world.crawl(json!({}));
            world.import_all(&crawled.items);
            world.kb.state().faults.clear();
        }
        Step::DeleteFails => {
            world.kb.fail(Fault::new("DELETE", 0, 100, 500));
            let crawled = world.crawl(json!({}));
            world.import_all(&crawled.items);
            world.watch(&crawled, Duration::from_secs(5));
            world.kb.state().faults.clear();
        }
        Step::LoseStorage(restart) => {
            world.store.0.lock().unwrap().clear();
            if *restart {
                world.memory = Arc::default();
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn any_history_converges_on_the_branch(
        steps in prop::collection::vec(step(), 1..7),
        budget in prop::sample::select(vec![4_000_000usize, 700]),
    ) {
        let files: Vec<(String, String)> = (0..6).map(|i| (format!("f{i}.md"), format!("file {i}"))).collect();
        let mut world = World::owned(&files);
        world.budget = budget;
        let hash = world.cycle().summary.config_hash;
        let mut counter = 0;
        for step in &steps {
            apply(&mut world, step, &mut counter);
        }
        // Clean cycles until a crawl has nothing to offer (a small budget needs several).
        for _ in 0..12 {
            let before = world.kb.docs();
            let crawled = world.cycle();
            assert_nothing_sent_twice(&crawled, &before);
            if crawled.items.is_empty() && crawled.summary.complete {
                break;
            }
        }
        world.cycle();
        world.assert_mirrored(&hash);
    }
}

/// A "Dify API URL" that is really a hostile server: an endless list is not followed forever,
/// and no message carries the key or the URL's user info.
#[test]
fn an_endless_list_from_a_hostile_server_is_bounded() {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut next = 0u64;
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut out = stream;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {}
                let docs: Vec<String> = (0..100)
                    .map(|_| {
                        next += 1;
                        format!(r#"{{"id":"00000000-0000-4000-8000-{next:012x}","indexing_status":"completed"}}"#)
                    })
                    .collect();
                let body = format!(r#"{{"data":[{}],"total":1000000000000}}"#, docs.join(","));
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                if out.write_all(response.as_bytes()).is_err() {
                    break;
                }
            }
        }
    });
    let api =
        KnowledgeApi::new(&format!("http://127.0.0.1:{port}/v1"), "dataset-KeySecret").unwrap();
    let mirror = Mirror {
        api,
        dataset: "3b7a52c1-5f1e-4c1a-9d7e-2f4e8c1d0a11".into(),
        memory: None,
    };
    let error = runtime()
        .block_on(mirror.list(&["git:h:".to_string()], None))
        .unwrap_err();
    assert!(error.message.contains("more than 2000 pages"), "{error}");
    let shown = format!("{error} {error:?} {:?}", mirror.api);
    assert!(!shown.contains("KeySecret"), "{shown}");
}

/// The Knowledge API client follows no redirect to another origin (301, 302, 307, 308): the
/// key never reaches the recording server there, and the error names both origins.
#[tokio::test(flavor = "multi_thread")]
async fn a_redirect_to_another_origin_never_receives_the_key() {
    use crate::support::loopback_http::{redirecting, Recorder};
    for code in [301, 302, 307, 308] {
        let recorder = Recorder::start();
        let unused = std::sync::Arc::new(|_: &_, _: &_| unreachable!("everything is redirected"));
        let server = redirecting(code, "/nothing", recorder.origin(), unused);
        let api = KnowledgeApi::new(
            &format!("http://127.0.0.1:{}/v1", server.port),
            "dataset-k3y-never-elsewhere",
        )
        .unwrap();
        let error = api.list("d1", 1, 100).await.unwrap_err().to_string();
        assert!(
            error.contains(&recorder.origin())
                && error.contains(&format!("http://127.0.0.1:{}", server.port))
                && error.contains("another origin"),
            "{code}: {error}"
        );
        assert!(recorder.seen().is_empty(), "{code}: {:?}", recorder.seen());
        assert!(!error.contains("k3y"));
    }
}

/// A Knowledge API that answers one byte at a time cannot hold a crawl past its budget: the
/// listing shares the run's deadline, and the run delivers from plugin storage state.
#[test]
fn a_dripping_knowledge_api_cannot_hold_a_crawl_past_its_budget() {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let mut out = stream;
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{";
                if out.write_all(head.as_bytes()).is_err() {
                    return;
                }
                while out.write_all(b" ").is_ok() {
                    std::thread::sleep(Duration::from_millis(200));
                }
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let repo = TestRepo::create(dir.path(), "r", &[("a.md", b"alpha")]);
    let mirror = Mirror {
        api: KnowledgeApi::new(&format!("http://127.0.0.1:{port}/v1"), "dataset-KeySecret")
            .unwrap(),
        dataset: "3b7a52c1-5f1e-4c1a-9d7e-2f4e8c1d0a11".into(),
        memory: None,
    };
    let settings = CrawlSettings {
        max_file_bytes: 5_000_000,
        time_budget: Duration::from_secs(4),
    };
    let sink = CaptureSink::new(1_000_000);
    let started = std::time::Instant::now();
    let summary = run_mirrored(
        &params(
            &repo.bare.display().to_string(),
            json!({"knowledge_base_id": "3b7a52c1-5f1e-4c1a-9d7e-2f4e8c1d0a11"}),
        ),
        &MemoryStore::default(),
        &sink,
        local_client(&dir.path().join("cache")),
        &settings,
        Some(&mirror),
    )
    .unwrap()
    .summary;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the crawl took {:?}",
        started.elapsed()
    );
    assert!(
        summary.mirror.is_none(),
        "delivered from plugin storage state"
    );
    assert_eq!(sink.documents().len(), 1);
}

/// A page of the document list too large to hold at once (a hundred large documents, each
/// carrying its content twice) is read in smaller pages: every document is listed, and no
/// answer is over the cap.
#[test]
fn a_page_too_large_to_hold_is_read_in_smaller_pages() {
    let kb = FakeKnowledgeApi::start();
    let big = "x".repeat(400_000);
    let items: Vec<Value> = (0..100)
        .map(|i| {
            json!({"source_url": format!("git:h:f{i:03}.md"), "content": big,
                   "title": format!("f{i:03}.md"), "description": ""})
        })
        .collect();
    kb.import(&items);
    kb.index_all();
    let mirror = Mirror {
        api: KnowledgeApi::new(&kb.base_url, KEY).unwrap(),
        dataset: kb.dataset.clone(),
        memory: None,
    };
    let listing = runtime()
        .block_on(mirror.list(&["git:h:".to_string()], None))
        .unwrap();
    let docs = listing.docs.unwrap();
    assert_eq!(docs.len(), 100);
    assert!(docs.iter().all(|d| d.ours.is_some()));
    let requests = kb.state().requests.clone();
    assert!(
        requests.iter().any(|r| r.contains("limit=10")),
        "{requests:?}"
    );
}

/// A document left waiting for ever deep in a long list (a run that failed after Dify made
/// it): from Dify 1.10.1 a listing asks the list's `status` filter for it rather than reading
/// every page down to it; an older Dify, which ignores the filter, is read page by page, and
/// both see the same documents. Once it completes, the next listing sees that too.
#[test]
fn a_document_stuck_deep_in_the_list_costs_a_few_requests_not_every_page() {
    use git_datasource::mirror::documents::{url_prefix, DocState};
    use git_datasource::mirror::listing::{list, KbRecord};

    for version in [(1, 13), (1, 9)] {
        let kb = FakeKnowledgeApi::start();
        kb.state().version = version;
        let items = |range: std::ops::Range<usize>| -> Vec<Value> {
            range
                .map(|n| json!({"source_url": format!("git:h1:doc{n}.md"), "content": format!("text {n}"),
                                "title": format!("doc{n}.md"), "description": ""}))
                .collect()
        };
        let stuck = kb.import(&items(0..1))[0].clone();
        kb.state().stuck.insert(stuck.clone());
        for start in (1..951).step_by(100) {
            kb.import(&items(start..(start + 100).min(951)));
        }
        kb.index_all();
        let api = KnowledgeApi::new(&kb.base_url, KEY).unwrap();
        let prefixes = [url_prefix("h1")];
        let listed = |known: Option<&KbRecord>| {
            let before = kb.request_count();
            let listing = runtime()
                .block_on(list(&api, &kb.dataset, &prefixes, known))
                .unwrap();
            let record = KbRecord {
                total: listing.total,
                docs: listing.docs.unwrap(),
                ..KbRecord::default()
            };
            (record, kb.request_count() - before)
        };
        let state_of = |record: &KbRecord, id: &str| {
            let doc = record.docs.iter().find(|d| d.id == id).unwrap();
            doc.ours.as_ref().unwrap().state
        };
        let (first, _) = listed(None);
        assert_eq!(first.docs.len(), 951);
        assert_eq!(state_of(&first, &stuck), DocState::Indexing);

        // An import on top, indexed; the stuck one still waits.
        kb.import(&items(951..961));
        kb.index_all();
        let (second, requests) = listed(Some(&first));
        assert_eq!(second.docs.len(), 961, "{version:?}");
        assert_eq!(state_of(&second, &stuck), DocState::Indexing);
        match version {
            // The probe, the first page, four statuses.
            (1, 13) => assert!(requests <= 6, "{requests} requests"),
            // The probe and every page.
            _ => assert!(requests >= 11, "{requests} requests"),
        }

        // It completes: seen, with nothing new at the front (the probe and four statuses).
        kb.state().stuck.clear();
        kb.index_all();
        let (third, requests) = listed(Some(&second));
        assert_eq!(state_of(&third, &stuck), DocState::Indexed, "{version:?}");
        assert_eq!(third.docs, {
            let mut all = second.docs.clone();
            let doc = all.iter_mut().find(|d| d.id == stuck).unwrap();
            doc.ours.as_mut().unwrap().state = DocState::Indexed;
            all
        });
        if version == (1, 13) {
            assert_eq!(requests, 5);
        }
    }
}

/// What random histories around 15,000 documents (imports on top, some left waiting for
/// ever, indexing, deletions anywhere, stuck ones finishing) do to a listing that starts
/// from the remembered record: it always equals a listing from nothing, on a Dify that
/// honours the `status` filter and on one that ignores it, and never costs more requests.
#[derive(Debug, Clone)]
enum KbStep {
    Import { count: usize, stuck: usize },
    Index,
    Delete { every: usize },
    Unstick,
}

fn kb_step() -> impl Strategy<Value = KbStep> {
    prop_oneof![
        (1usize..250, 0usize..3).prop_map(|(count, stuck)| KbStep::Import { count, stuck }),
        Just(KbStep::Index),
        (200usize..5000).prop_map(|every| KbStep::Delete { every }),
        Just(KbStep::Unstick),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3, ..ProptestConfig::default() })]

    #[test]
    fn a_listing_from_the_record_equals_one_from_nothing(
        start in 14_800usize..15_200,
        modern in any::<bool>(),
        steps in prop::collection::vec(kb_step(), 1..4),
    ) {
        use git_datasource::mirror::documents::url_prefix;
        use git_datasource::mirror::listing::{list, KbRecord};

        let kb = FakeKnowledgeApi::start();
        kb.state().version = if modern { (1, 13) } else { (1, 9) };
        let mut next = 0;
        let mut items = |count: usize| -> Vec<Value> {
            let made = (next..next + count)
                .map(|n| json!({"source_url": format!("git:h1:f{n}.md"), "content": format!("text {n}"),
                                "title": format!("f{n}.md"), "description": ""}))
                .collect();
            next += count;
            made
        };
        for _ in 0..start / 1000 {
            kb.import(&items(1000));
        }
        let stuck_early = kb.import(&items(start % 1000 + 1));
        kb.state().stuck.insert(stuck_early[0].clone());
        kb.index_all();
        let api = KnowledgeApi::new(&kb.base_url, KEY).unwrap();
        let prefixes = [url_prefix("h1")];
        let runtime = runtime();
        let listed = |known: Option<&KbRecord>| {
            let before = kb.request_count();
            let listing = runtime.block_on(list(&api, &kb.dataset, &prefixes, known)).unwrap();
            (listing, kb.request_count() - before)
        };
        let (first, _) = listed(None);
        let mut known = KbRecord { total: first.total, docs: first.docs.unwrap(), ..KbRecord::default() };
        // Every history ends with the stuck documents finishing.
        for step in steps.iter().chain([&KbStep::Unstick]) {
            match step {
                KbStep::Import { count, stuck } => {
                    let ids = kb.import(&items(*count));
                    kb.state().stuck.extend(ids.into_iter().take(*stuck));
                }
                KbStep::Index => kb.index_all(),
                KbStep::Delete { every } => kb.state().docs.retain(|d| {
                    let n = d.source_url().trim_start_matches("git:h1:f").trim_end_matches(".md");
                    n.parse::<usize>().unwrap_or(0) % every != 1
                }),
                KbStep::Unstick => {
                    kb.state().stuck.clear();
                    kb.index_all();
                }
            }
            let (from_record, requests) = listed(Some(&known));
            let (from_nothing, full) = listed(None);
            let fresh = from_nothing.docs.unwrap();
            if let Some(docs) = &from_record.docs {
                prop_assert_eq!(docs, &fresh, "{:?}", step);
                known = KbRecord { total: from_record.total, docs: docs.clone(), ..KbRecord::default() };
            } else {
                prop_assert_eq!(&known.docs, &fresh, "{:?}", step);
            }
            prop_assert!(requests <= full, "{} requests from the record, {} from nothing", requests, full);
        }
    }
}
