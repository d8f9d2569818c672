//! `sync --config`: many repositories in one sync against the fake Knowledge API, through the
//! binary as a CI job runs it: every entry mirrored, a failing one reported and never in the
//! way of the others, the worst status as the exit status, `--only`, a bad file refused by
//! its line before anything is asked of Dify; and pushes to one Dify sharing its two runs in
//! flight.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::support::knowledge_api::{FakeKnowledgeApi, KEY};
use crate::sync::World;
use git_datasource::cli::git_client;
use git_datasource::cli::sync_job::{Bar, SyncJob, SyncOptions};
use git_datasource::mirror::plan::DeleteGuard;
use git_datasource::mirror::push::{PushSettings, RunSlots};
use git_datasource::repository::credentials::Credentials;
use git_datasource::repository::params::CrawlParams;
use git_datasource::store::files::FileStore;

/// A knowledge base id no fake serves.
const MISSING_KB: &str = "0d9c1a4e-7b2f-4e3a-8c5d-6f1e2a3b4c5d";

fn entry(name: &str, world: &World, dataset: &str, extra: &str) -> String {
    format!(
        "  - name: {name}\n    repository: {}\n    knowledge_base: {dataset}\n    dify:\n      \
         api_url: {}\n{extra}",
        world.repo.bare.display(),
        world.kb.base_url
    )
}

/// Runs the binary; its exit status and everything it printed (never the key).
fn run(dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_git-datasource"))
        .arg("sync")
        .args(args)
        .args(["--poll-ms", "20", "--state-dir"])
        .arg(dir.join("state"))
        .env("SYNC_CONFIG_TEST_KB_KEY", KEY)
        .env("GIT_DATASOURCE_CACHE_DIR", dir.join("cache"))
        .env_remove("GIT_DATASOURCE_DIFY_API_KEY")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    );
    assert!(!stdout.contains(KEY) && !stderr.contains(KEY));
    (output.status.code(), stdout, stderr)
}

/// The summary table's line of an entry.
fn row<'a>(stdout: &'a str, name: &str) -> &'a str {
    let table = &stdout[stdout.rfind("entry ").expect("a summary table")..];
    table
        .lines()
        .find(|line| line.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no row for {name}: {stdout}"))
}

#[test]
fn three_entries_one_failing_each_mirrored_or_reported() {
    let mut docs = World::numbered(6);
    let handbook = World::new(&[
        ("guide.md".into(), "# Guide\n".into()),
        ("notes.txt".into(), "left out by the filter\n".into()),
    ]);
    let dir = docs.dir.path().to_path_buf();
    let config = dir.join("sync.yaml");
    let text = format!(
        "# three knowledge bases, one of them mistyped\ndefaults:\n  dify:\n    \
         api_key_env: SYNC_CONFIG_TEST_KB_KEY\nsyncs:\n{}{}{}",
        entry("docs", &docs, &docs.kb.dataset, ""),
        entry("broken", &docs, MISSING_KB, ""),
        entry(
            "handbook",
            &handbook,
            &handbook.kb.dataset,
            "    extensions: [md]\n"
        ),
    );
    std::fs::write(&config, text).unwrap();
    let config = config.to_str().unwrap();

    let (code, stdout, stderr) = run(&dir, &["--config", config, "--jobs", "2"]);
    assert_eq!(code, Some(1), "the worst entry failed: {stdout}{stderr}");
    assert!(row(&stdout, "docs").contains("mirrored"), "{stdout}");
    assert!(row(&stdout, "handbook").contains("mirrored"), "{stdout}");
    let broken = row(&stdout, "broken");
    assert!(broken.contains("FAILED"), "{stdout}");
    assert!(broken.contains("no such knowledge base"), "{stdout}");
    assert!(stdout.contains("== broken ==\nerror: "), "{stdout}");
    assert!(stdout.contains("== docs ==\ncommit "), "{stdout}");
    docs.assert_mirrored();
    let handbook_docs = handbook.kb.docs();
    assert_eq!(handbook_docs.len(), 1, "only guide.md passes the filter");
    assert_eq!(handbook_docs[0].content(), "# Guide\n");

    // A change, synced for the entries --only names: the worst of them is now a success.
    docs.change(&[("docs/0001.md", "changed\n")], &[]);
    let before = handbook.kb.request_count();
    let (code, stdout, stderr) = run(&dir, &["--config", config, "--only", "docs,handbook"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(!stdout.contains("broken"), "{stdout}");
    let line = row(&stdout, "docs");
    assert!(line.contains("mirrored"), "{stdout}");
    assert_eq!(
        line.split_whitespace().nth(4),
        Some("1"),
        "one pushed: {line}"
    );
    assert!(row(&stdout, "handbook").contains("unchanged"), "{stdout}");
    assert!(
        handbook.kb.request_count() - before <= 2,
        "a no-change entry"
    );
    docs.assert_mirrored();

    // --only with a name the file does not have, and a file with a bad entry: nothing runs.
    let asked = docs.kb.request_count() + handbook.kb.request_count();
    let (code, _, stderr) = run(&dir, &["--config", config, "--only", "dcos"]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("\"docs\", \"broken\", \"handbook\""),
        "{stderr}"
    );
    let bad = dir.join("bad.yaml");
    let text = format!(
        "syncs:\n{}{}    subdir: ../outside\n",
        entry("docs", &docs, &docs.kb.dataset, ""),
        entry("second", &docs, &docs.kb.dataset, ""),
    );
    std::fs::write(&bad, text).unwrap();
    let (code, _, stderr) = run(&dir, &["--config", bad.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("bad.yaml: syncs[1]"), "{stderr}");
    assert!(stderr.contains("line 7"), "{stderr}");
    assert!(stderr.contains("subdir"), "{stderr}");
    let (code, _, stderr) = run(&dir, &["--config", config, "--branch", "x"]);
    assert_eq!(code, Some(2), "--branch belongs in the file: {stderr}");
    assert_eq!(
        docs.kb.request_count() + handbook.kb.request_count(),
        asked,
        "a refused file asks nothing of Dify"
    );
}

/// An entry whose credentials' variable is not set fails alone, saying which variable.
#[test]
fn an_unset_variable_fails_its_entry_only() {
    let docs = World::numbered(3);
    let dir = docs.dir.path().to_path_buf();
    let config = dir.join("sync.yaml");
    let text = format!(
        "syncs:\n{}{}",
        entry(
            "docs",
            &docs,
            &docs.kb.dataset,
            "      api_key_env: SYNC_CONFIG_TEST_KB_KEY\n"
        ),
        entry(
            "other",
            &docs,
            MISSING_KB,
            "      api_key_env: SYNC_CONFIG_TEST_UNSET_KEY\n"
        ),
    );
    std::fs::write(&config, text).unwrap();
    let (code, stdout, stderr) = run(&dir, &["--config", config.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(row(&stdout, "docs").contains("mirrored"), "{stdout}");
    assert!(
        row(&stdout, "other").contains("SYNC_CONFIG_TEST_UNSET_KEY (dify.api_key_env) is not set"),
        "{stdout}"
    );
    docs.assert_mirrored();
}

/// Runs whose documents are not all indexed yet, summed over both fakes.
fn runs_in_flight(fakes: &[&FakeKnowledgeApi]) -> usize {
    fakes
        .iter()
        .map(|kb| {
            let mut batches: Vec<String> = kb
                .docs()
                .into_iter()
                .filter(|d| d.status != "completed")
                .map(|d| d.batch)
                .collect();
            batches.sort();
            batches.dedup();
            batches.len()
        })
        .sum()
}

/// The most runs in flight at once while two syncs push 16 files each in runs of two, with
/// `slots` giving each sync its room.
fn most_in_flight(slots: impl Fn() -> RunSlots) -> usize {
    let worlds = [World::numbered(16), World::numbered(16)];
    for world in &worlds {
        world.kb.state().auto_index = 1;
    }
    let jobs: Vec<(SyncJob, SyncOptions, FileStore)> = worlds
        .iter()
        .map(|world| {
            let params = CrawlParams::from_json(Some(&serde_json::json!({
                "repo_url": world.repo.bare.to_str().unwrap(),
                "knowledge_base_id": world.kb.dataset,
            })))
            .unwrap();
            let job = SyncJob {
                params,
                dataset: world.kb.dataset.clone(),
                api: git_datasource::dify::knowledge::KnowledgeApi::new(&world.kb.base_url, KEY)
                    .unwrap(),
                credentials: Credentials::default(),
                inputs: serde_json::json!({}),
                start_node: None,
                guard: DeleteGuard::Default,
            };
            let options = SyncOptions {
                dry_run: false,
                rewrite_metadata: false,
                lock_wait: Duration::from_secs(10),
                push: PushSettings {
                    max_items: 2,
                    poll: Duration::from_millis(2),
                    slots: slots(),
                    ..PushSettings::default()
                },
            };
            (job, options, FileStore::new(world.dir.path().join("state")))
        })
        .collect();
    let fakes: Vec<&FakeKnowledgeApi> = worlds.iter().map(|w| &w.kb).collect();
    let (done, most) = (AtomicBool::new(false), AtomicUsize::new(0));
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                most.fetch_max(runs_in_flight(&fakes), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let git = git_client();
        let bar = Bar::single();
        let [(a, a_options, a_store), (b, b_options, b_store)] = &jobs[..] else {
            unreachable!()
        };
        let (first, second) = runtime.block_on(async {
            tokio::join!(
                a.run(&git, a_store, a_options, &bar),
                b.run(&git, b_store, b_options, &bar)
            )
        });
        done.store(true, Ordering::Relaxed);
        assert_eq!(first.unwrap().push.created.len(), 16);
        assert_eq!(second.unwrap().push.created.len(), 16);
    });
    for world in &worlds {
        world.assert_mirrored();
    }
    most.into_inner()
}

#[test]
fn pushes_to_one_dify_share_its_two_runs_in_flight() {
    let shared = RunSlots::new(2);
    assert_eq!(most_in_flight(|| shared.clone()), 2);
    // The check can fail: with room of their own, two syncs keep up to four runs in flight.
    assert!(most_in_flight(|| RunSlots::new(2)) > 2);
}
