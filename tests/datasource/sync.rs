//! `sync` against the fake Knowledge API with its pipeline routes: the knowledge base ends as
//! one indexed document per file with its current content and nothing else, whatever
//! history, interruptions, refusals and indexing errors came before; and every problem a
//! user meets is reported with its fix.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::support::git_servers::TestRepo;
use crate::support::knowledge_api::{FakeKnowledgeApi, FakePipeline, KEY};
use clap::Parser;
use git_datasource::cli::sync::{describe, SyncCommand, SyncReport, EXIT_HELD};
use git_datasource::crawl::CrawlError;
use git_datasource::dify::knowledge::ApiErrorKind;
use proptest::prelude::*;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    sync: SyncCommand,
}

pub struct World {
    pub dir: tempfile::TempDir,
    pub repo: TestRepo,
    pub kb: FakeKnowledgeApi,
    /// The branch as the test wrote it.
    files: BTreeMap<String, String>,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

impl World {
    pub fn new(files: &[(String, String)]) -> World {
        std::env::set_var("GIT_DATASOURCE_DIFY_RETRY_MS", "1");
        let dir = tempfile::tempdir().unwrap();
        let refs: Vec<(&str, &[u8])> = files
            .iter()
            .map(|(p, c)| (p.as_str(), c.as_bytes()))
            .collect();
        let repo = TestRepo::create(dir.path(), "kb", &refs);
        let kb = FakeKnowledgeApi::start();
        kb.state().auto_index = 1000;
        World {
            dir,
            repo,
            kb,
            files: files.iter().cloned().collect(),
        }
    }

    pub fn numbered(count: usize) -> World {
        let files: Vec<(String, String)> = (0..count)
            .map(|n| {
                (
                    format!("docs/{n:04}.md"),
                    format!("# File {n}\n\nversion 1\n"),
                )
            })
            .collect();
        World::new(&files)
    }

    fn command(&self, extra: &[&str]) -> SyncCommand {
        let state = self.dir.path().join("state");
        let mut args = vec![
            "sync",
            self.repo.bare.to_str().unwrap(),
            "--knowledge-base",
            &self.kb.dataset,
            "--dify-api-url",
            &self.kb.base_url,
            "--dify-api-key",
            KEY,
            "--state-dir",
            state.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let mut command = Cli::try_parse_from(args).unwrap().sync;
        command.poll_ms = 1;
        command
    }

    pub fn sync(&self, extra: &[&str]) -> SyncReport {
        let command = self.command(extra);
        runtime().block_on(command.run()).unwrap()
    }

    fn sync_err(&self, extra: &[&str]) -> CrawlError {
        let command = self.command(extra);
        runtime().block_on(command.run()).unwrap_err()
    }

    /// Syncs until the fake has answered `at` more requests, then drops the run there (as a
    /// kill would); the run's report if it finished first.
    fn sync_interrupted(&self, at: usize, extra: &[&str]) -> Option<SyncReport> {
        {
            let mut state = self.kb.state();
            state.halt_at = Some(state.requests.len() + at);
            state.halted = false;
        }
        let command = self.command(extra);
        let outcome = runtime().block_on(async {
            tokio::select! {
                report = command.run() => Some(report.unwrap()),
                _ = async { while !self.kb.halted() { tokio::time::sleep(Duration::from_millis(1)).await } } => None,
            }
        });
        self.kb.state().halt_at = None;
        outcome
    }

    pub fn change(&mut self, files: &[(&str, &str)], removed: &[&str]) {
        let refs: Vec<(&str, &[u8])> = files.iter().map(|(p, c)| (*p, c.as_bytes())).collect();
        self.repo.commit(&refs, removed, "change");
        for (path, content) in files {
            self.files.insert(path.to_string(), content.to_string());
        }
        for path in removed {
            self.files.remove(*path);
        }
    }

    /// One completed document per file, with its current content; nothing else.
    pub fn assert_mirrored(&self) {
        let docs = self.kb.docs();
        let mut by_path: BTreeMap<String, Vec<&crate::support::knowledge_api::Doc>> =
            BTreeMap::new();
        for doc in &docs {
            let path = doc
                .source_url()
                .splitn(3, ':')
                .nth(2)
                .unwrap_or("")
                .to_string();
            by_path.entry(path).or_default().push(doc);
        }
        let paths: Vec<&String> = by_path.keys().collect();
        let expected: Vec<&String> = self.files.keys().collect();
        assert_eq!(
            paths, expected,
            "the knowledge base holds exactly the branch's files"
        );
        for (path, docs) in &by_path {
            assert_eq!(docs.len(), 1, "{path}: one document");
            assert_eq!(docs[0].status, "completed", "{path}");
            assert_eq!(
                docs[0].content(),
                self.files[path],
                "{path}: current content"
            );
        }
        assert!(
            self.kb.state().duplicate_pushes.is_empty(),
            "pushed while a live document held the same content: {:?}",
            self.kb.state().duplicate_pushes
        );
    }
}

#[test]
fn a_first_sync_a_change_and_an_unchanged_run() {
    let mut world = World::numbered(30);
    let first = world.sync(&["--batch-files", "7"]);
    assert_eq!(first.exit_code(), 0, "{}", describe(&first));
    assert_eq!(first.push.created.len(), 30);
    // The first run holds one document (a refused run costs one), then runs of 7.
    assert_eq!(first.push.runs, 1 + 29usize.div_ceil(7));
    world.assert_mirrored();

    world.change(
        &[("docs/0001.md", "changed\n"), ("new.md", "new\n")],
        &["docs/0002.md"],
    );
    let second = world.sync(&[]);
    assert_eq!(second.exit_code(), 0, "{}", describe(&second));
    assert_eq!(second.push.created.len(), 2);
    assert_eq!(
        second.cleanup.deleted.len(),
        2,
        "the old 0001 and the gone 0002"
    );
    world.assert_mirrored();
    let text = describe(&second);
    assert!(
        text.contains("deleted: docs/0001.md, docs/0002.md"),
        "{text}"
    );

    let before = world.kb.request_count();
    let third = world.sync(&[]);
    assert!(third.unchanged, "{}", describe(&third));
    assert!(
        world.kb.request_count() - before <= 2,
        "an unchanged knowledge base costs the pipeline lookup and one probe"
    );
}

#[test]
fn dry_run_prints_the_plan_and_changes_nothing() {
    let mut world = World::numbered(5);
    world.sync(&[]);
    world.change(&[("docs/0001.md", "changed\n")], &["docs/0003.md"]);
    let before = world.kb.request_count();
    let report = world.sync(&["--dry-run"]);
    let text = describe(&report);
    assert!(text.contains("offer   docs/0001.md"), "{text}");
    assert!(
        text.contains("delete  docs/0003.md (gone from the branch)"),
        "{text}"
    );
    assert!(text.contains("keep    docs/0000.md"), "{text}");
    assert!(
        text.contains("would offer 1 files, delete 1 documents"),
        "{text}"
    );
    let state = world.kb.state();
    assert!(
        state.requests[before..]
            .iter()
            .all(|r| r.starts_with("GET ")),
        "{:?}",
        &state.requests[before..]
    );
    assert_eq!(state.docs.len(), 5);
}

#[test]
fn the_guard_holds_mass_deletions_with_a_distinct_status() {
    let mut world = World::numbered(40);
    world.sync(&[]);
    let gone: Vec<String> = (0..30).map(|n| format!("docs/{n:04}.md")).collect();
    let gone: Vec<&str> = gone.iter().map(String::as_str).collect();
    world.change(&[], &gone);
    let held = world.sync(&[]);
    assert_eq!(held.exit_code(), EXIT_HELD, "{}", describe(&held));
    assert_eq!(held.held.len(), 30);
    assert_eq!(world.kb.docs().len(), 40, "nothing deleted");
    assert!(describe(&held).contains("--allow-mass-delete"));

    let capped = world.sync(&["--max-delete", "10"]);
    assert_eq!(capped.exit_code(), EXIT_HELD);
    let allowed = world.sync(&["--max-delete", "30"]);
    assert_eq!(allowed.exit_code(), 0, "{}", describe(&allowed));
    world.assert_mirrored();
}

#[test]
fn allow_mass_delete_lifts_the_guard() {
    let mut world = World::numbered(25);
    world.sync(&[]);
    let gone: Vec<String> = (0..24).map(|n| format!("docs/{n:04}.md")).collect();
    let gone: Vec<&str> = gone.iter().map(String::as_str).collect();
    world.change(&[], &gone);
    let report = world.sync(&["--allow-mass-delete"]);
    assert_eq!(report.exit_code(), 0, "{}", describe(&report));
    world.assert_mirrored();
}

#[test]
fn pipeline_problems_are_named_with_their_fix() {
    let world = World::numbered(3);
    let kind = |error: CrawlError| match error {
        CrawlError::Mirror(error) => (error.kind, error.message),
        other => panic!("expected an API error, got {other}"),
    };

    world.kb.state().version = (1, 12);
    let (k, message) = kind(world.sync_err(&[]));
    assert_eq!(k, ApiErrorKind::NoPipelineApi);
    assert!(message.contains("Dify 1.13.0 or later"), "{message}");

    world.kb.state().version = (1, 13);
    world.kb.state().pipeline = None;
    let (k, message) = kind(world.sync_err(&[]));
    assert_eq!(k, ApiErrorKind::NoPipeline);
    assert!(
        message.contains("not a knowledge-pipeline knowledge base"),
        "{message}"
    );

    world.kb.state().pipeline = Some(FakePipeline {
        published: false,
        ..FakePipeline::default()
    });
    let (_, message) = kind(world.sync_err(&[]));
    assert!(message.contains("press Publish"), "{message}");

    world.kb.state().pipeline = Some(FakePipeline {
        nodes: vec![(
            "9".into(),
            "langgenius/firecrawl_datasource".into(),
            "website_crawl".into(),
        )],
        ..FakePipeline::default()
    });
    let error = world.sync_err(&[]).to_string();
    assert!(
        error.contains("no Git Repository data source node"),
        "{error}"
    );

    world.kb.state().pipeline = Some(FakePipeline::default());
    world.kb.state().enable_api = false;
    let (k, message) = kind(world.sync_err(&[]));
    assert_eq!(k, ApiErrorKind::ApiDisabled);
    assert!(message.contains("API Access"), "{message}");
    world.kb.state().enable_api = true;

    let mut wrong_key = world.command(&[]);
    wrong_key.dify.dify_api_key = Some("dataset-wrongKeyThatIsSecret".into());
    let error = runtime().block_on(wrong_key.run()).unwrap_err().to_string();
    assert!(error.contains("401"), "{error}");
    assert!(!error.contains("wrongKeyThatIsSecret"), "{error}");

    let mut unreachable = world.command(&[]);
    unreachable.dify.dify_api_url = "http://user:hunter2@127.0.0.1:9/v1".into();
    let error = runtime()
        .block_on(unreachable.run())
        .unwrap_err()
        .to_string();
    // User info would go as `Authorization: Basic` before the key: refused, never repeated.
    assert!(error.contains("user name or password"), "{error}");
    assert!(!error.contains("hunter2"), "{error}");
    assert!(world.kb.docs().is_empty(), "nothing was pushed");
}

#[test]
fn a_missing_process_input_costs_one_document_which_is_removed() {
    let world = World::numbered(12);
    world.kb.state().pipeline = Some(FakePipeline {
        required_inputs: vec!["chunk_size".into()],
        ..FakePipeline::default()
    });
    let report = world.sync(&["--stall-secs", "2"]);
    assert_eq!(report.exit_code(), 1);
    let stopped = report.push.stopped.as_ref().expect("stopped");
    assert_eq!(stopped.kind, ApiErrorKind::InputRejected);
    assert!(stopped
        .message
        .contains("chunk_size is required in input form"));
    assert!(stopped.message.contains("--input"), "{}", stopped.message);
    assert_eq!(report.push.runs, 1, "only the one-document run was sent");
    assert!(
        world.kb.docs().is_empty(),
        "its waiting document was deleted"
    );

    let fixed = world.sync(&["--input", "chunk_size:=512"]);
    assert_eq!(fixed.exit_code(), 0, "{}", describe(&fixed));
    world.assert_mirrored();
}

#[test]
fn a_refused_run_is_reported_by_path_and_the_others_proceed() {
    let world = World::numbered(20);
    world.kb.state().refused_paths = vec!["docs/0013.md".into()];
    let report = world.sync(&["--batch-files", "5"]);
    assert_eq!(report.exit_code(), 1);
    let errors = report.errors().join("\n");
    assert!(errors.contains("docs/0013.md"), "{errors}");
    assert!(errors.contains("fake: this run was refused"), "{errors}");
    assert_eq!(report.push.rejected.len(), 1);
    let docs = world.kb.docs();
    assert_eq!(
        docs.len(),
        15,
        "every other run's documents, none of the refused run"
    );
    assert!(docs.iter().all(|d| d.status == "completed"));

    world.kb.state().refused_paths.clear();
    let again = world.sync(&[]);
    assert_eq!(again.exit_code(), 0, "{}", describe(&again));
    assert_eq!(again.push.created.len(), 5);
    world.assert_mirrored();
}

#[test]
fn an_indexing_error_fails_the_run_with_difys_message_and_is_retried() {
    let world = World::numbered(6);
    world.kb.state().failing_paths = vec!["docs/0004.md".into()];
    let report = world.sync(&[]);
    assert_eq!(report.exit_code(), 1);
    let errors = report.errors().join("\n");
    assert!(
        errors.contains("indexing docs/0004.md failed in Dify: chunker failed"),
        "{errors}"
    );
    world.kb.state().failing_paths.clear();
    let again = world.sync(&[]);
    assert_eq!(again.exit_code(), 0, "{}", describe(&again));
    world.assert_mirrored();
}

#[test]
fn a_stalled_worker_is_reported_and_waited_for_next_time() {
    let world = World::numbered(4);
    world.kb.state().auto_index = 0;
    let report = world.sync(&["--stall-secs", "1"]);
    assert_eq!(report.exit_code(), 1);
    assert_eq!(report.push.unfinished.len(), 4, "{}", describe(&report));
    assert!(report.errors().join("\n").contains("worker running"));
    // The worker is back, slowly: the next sync waits for them instead of pushing again.
    world.kb.state().auto_index = 1;
    let again = world.sync(&[]);
    assert!(again.waited_for > 0, "{}", describe(&again));
    assert_eq!(again.push.created.len(), 0, "nothing pushed twice");
    assert_eq!(again.exit_code(), 0, "{}", describe(&again));
    world.assert_mirrored();
}

#[test]
fn two_syncs_at_once_do_not_corrupt_the_knowledge_base() {
    let world = World::numbered(40);
    world.kb.state().auto_index = 3;
    let (a, b) = (
        world.command(&["--batch-files", "6"]),
        world.command(&["--batch-files", "6"]),
    );
    let (a, b) = runtime().block_on(async { tokio::join!(a.run(), b.run()) });
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.exit_code(), 0, "{}", describe(&a));
    assert_eq!(b.exit_code(), 0, "{}", describe(&b));
    assert_eq!(a.push.created.len() + b.push.created.len(), 40);
    world.assert_mirrored();
}

#[test]
fn five_thousand_files_converge_after_interruptions() {
    let mut world = World::numbered(5000);
    // Killed three times during the first sync: mid-run, while indexing, mid-listing.
    for at in [3, 40, 95] {
        world.kb.state().auto_index = 150;
        assert!(
            world.sync_interrupted(at, &[]).is_none(),
            "interrupted at {at}"
        );
    }
    let first = world.sync(&[]);
    assert_eq!(first.exit_code(), 0, "{}", describe(&first));
    world.assert_mirrored();

    let changed: Vec<(String, String)> = (0..50)
        .map(|n| (format!("docs/{:04}.md", n * 97), format!("changed {n}\n")))
        .collect();
    let changed: Vec<(&str, &str)> = changed
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    world.change(&changed, &["docs/4999.md"]);
    let before = world.kb.request_count();
    let again = world.sync(&[]);
    assert_eq!(again.exit_code(), 0, "{}", describe(&again));
    assert_eq!(again.push.created.len(), 50);
    assert_eq!(again.cleanup.deleted.len(), 51);
    world.assert_mirrored();
    let requests = world.kb.request_count() - before;
    assert!(requests < 120, "{requests} requests for a 1% change");
}

#[derive(Debug, Clone)]
enum Step {
    Edit(usize),
    Add(usize),
    Remove(usize),
    Rename(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0usize..100).prop_map(Step::Edit),
        (0usize..100).prop_map(Step::Add),
        (0usize..100).prop_map(Step::Remove),
        (0usize..100).prop_map(Step::Rename),
    ]
}

fn apply(world: &mut World, step: &Step, n: usize) {
    let paths: Vec<String> = world.files.keys().cloned().collect();
    let pick = |i: usize| paths[i % paths.len()].clone();
    match step {
        Step::Edit(i) => world.change(&[(&pick(*i), &format!("edit {n}\n"))], &[]),
        Step::Add(i) => world.change(&[(&format!("added/{n}-{i}.md"), "added\n")], &[]),
        Step::Remove(i) if paths.len() > 1 => world.change(&[], &[&pick(*i)]),
        Step::Rename(i) if paths.len() > 1 => {
            let from = pick(*i);
            let content = world.files[&from].clone();
            world.change(&[(&format!("renamed/{n}.md"), &content)], &[&from]);
        }
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, failure_persistence: None, ..ProptestConfig::default() })]

    /// Whatever the history and wherever a sync is killed, the next complete sync leaves the
    /// branch mirrored, and no sync ever pushes content a live document already holds.
    #[test]
    fn interrupted_syncs_converge(
        steps in prop::collection::vec((prop::collection::vec(step(), 0..4), prop::option::of(1usize..30)), 1..4),
        indexing_speed in 1usize..6,
    ) {
        let mut world = World::numbered(24);
        world.kb.state().auto_index = indexing_speed;
        for (n, (changes, interrupt)) in steps.iter().enumerate() {
            for change in changes {
                apply(&mut world, change, n);
            }
            match interrupt {
                Some(at) => { world.sync_interrupted(*at, &["--batch-files", "4"]); }
                None => { world.sync(&["--batch-files", "4"]); }
            }
        }
        let last = world.sync(&["--batch-files", "4"]);
        prop_assert_eq!(last.exit_code(), 0, "{}", describe(&last));
        world.assert_mirrored();
        let again = world.sync(&[]);
        prop_assert!(again.unchanged, "{}", describe(&again));
    }
}

#[test]
fn the_binary_exits_by_outcome_and_never_shows_the_key() {
    let mut world = World::numbered(25);
    let run = |world: &World, extra: &[&str]| {
        let state = world.dir.path().join("bin-state");
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_git-datasource"))
            .args([
                "sync",
                world.repo.bare.to_str().unwrap(),
                "--knowledge-base",
            ])
            .arg(&world.kb.dataset)
            .args(["--dify-api-url", &world.kb.base_url, "--state-dir"])
            .arg(&state)
            .args(extra)
            .env("GIT_DATASOURCE_DIFY_API_KEY", KEY)
            .env("GIT_DATASOURCE_CACHE_DIR", world.dir.path().join("cache"))
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(!text.contains(KEY), "{text}");
        (output.status.code(), text)
    };
    let (code, text) = run(&world, &[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("pushed 25"), "{text}");
    let gone: Vec<String> = (0..24).map(|n| format!("docs/{n:04}.md")).collect();
    let gone: Vec<&str> = gone.iter().map(String::as_str).collect();
    world.change(&[], &gone);
    let (code, text) = run(&world, &[]);
    assert_eq!(code, Some(i32::from(EXIT_HELD)), "{text}");
    world.kb.state().version = (1, 12);
    let (code, text) = run(&world, &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("1.13.0"), "{text}");
    let (code, text) = run(&world, &["--input", "broken"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("--input needs name=value"), "{text}");
    assert!(Path::new(&world.dir.path().join("bin-state")).exists());
}

/// A count of indexing documents that goes up and down (someone else importing meanwhile)
/// does not restart the stall clock: only a new low is progress, so the wait ends.
#[test]
fn an_indexing_count_going_up_and_down_still_stalls() {
    let world = World::numbered(4);
    world.kb.state().auto_index = 0;
    let first = world.sync(&["--stall-secs", "1"]);
    assert_eq!(first.push.unfinished.len(), 4, "{}", describe(&first));
    let done = std::sync::atomic::AtomicBool::new(false);
    let outcome = std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut indexed = false;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                indexed = !indexed;
                world.kb.state().docs[0].status = match indexed {
                    true => "completed".into(),
                    false => "waiting".into(),
                };
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let command = world.command(&["--stall-secs", "1"]);
        let outcome = runtime()
            .block_on(async { tokio::time::timeout(Duration::from_secs(30), command.run()).await });
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        outcome
    });
    let report = outcome.expect("the wait ended").unwrap();
    assert!(report.waited_for > 0, "{}", describe(&report));
}

/// A sync behind another that holds the knowledge base's lock (stopped, say) gives up after
/// `--lock-wait` and names the holder.
#[test]
fn a_sync_behind_a_stopped_holder_gives_up_and_names_it() {
    let world = World::numbered(2);
    assert_eq!(world.sync(&[]).exit_code(), 0);
    let locks = world.dir.path().join("state/locks");
    let path = std::fs::read_dir(&locks)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let held = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    held.lock().unwrap();
    std::fs::write(&path, "pid 4242 since 1790000000 (unix time)").unwrap();
    let started = std::time::Instant::now();
    let error = world.sync_err(&["--lock-wait", "1"]).to_string();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
    assert!(
        error.contains("pid 4242") && error.contains("--lock-wait"),
        "{error}"
    );
    drop(held);
}
