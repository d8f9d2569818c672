//! `git-datasource crawl` from a terminal, end to end.

use std::process::Command;

use crate::support::fake_daemon::BINARY;
use crate::support::git_servers::{git, TestRepo};
use serde_json::Value;

fn crawl(
    repo: &str,
    state: &std::path::Path,
    cache: &std::path::Path,
    args: &[&str],
) -> (bool, String, String) {
    let output = Command::new(BINARY)
        .arg("crawl")
        .arg(repo)
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .env("GIT_DATASOURCE_CACHE_DIR", cache)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn json_lines_then_a_summary_of_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let repo = TestRepo::create(
        dir.path(),
        "notes",
        &[
            ("a.md", b"alpha"),
            ("b.md", b"beta"),
            ("pic.png", b"\x89PNG\r\n\x1a\n\0"),
            ("src/x.rs", b"fn x() {}"),
        ],
    );
    let (state, cache) = (dir.path().join("state"), dir.path().join("cache"));
    let url = repo.work.display().to_string();

    let (ok, stdout, stderr) = crawl(&url, &state, &cache, &["--json", "--extensions", "md,png"]);
    assert!(ok, "{stderr}");
    let documents: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let titles: Vec<&str> = documents
        .iter()
        .map(|d| d["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["a.md", "b.md"]);
    assert_eq!(documents[0]["content"], "alpha");
    assert!(
        stderr.contains("delivered 2 of 3 changed files") && stderr.contains("skipped: binary 1"),
        "{stderr}"
    );
    assert!(stderr.contains("time: fetch"), "{stderr}");

    let (ok, stdout, _) = crawl(&url, &state, &cache, &["--extensions", "md,png"]);
    assert!(
        ok && stdout.contains("unchanged since the last run"),
        "{stdout}"
    );

    git(&repo.work, &["mv", "a.md", "renamed.md"]);
    repo.commit(&[("c.md", b"gamma")], &["b.md"], "changes");
    let (ok, stdout, stderr) = crawl(&url, &state, &cache, &["--extensions", "md,png"]);
    assert!(ok, "{stderr}");
    // A renamed file is a new document for Dify (a new source_url), so it is delivered too.
    assert!(
        stdout.contains("delivered 2 of 2 changed files"),
        "{stdout}"
    );
    assert!(
        stdout.contains("deleted since the last run: b.md"),
        "{stdout}"
    );
    assert!(
        stdout.contains("renamed since the last run: a.md -> renamed.md"),
        "{stdout}"
    );

    let (ok, stdout, _) = crawl(
        &url,
        &state,
        &cache,
        &["--extensions", "md,png", "--full", "--json"],
    );
    assert!(ok);
    assert_eq!(stdout.lines().count(), 2);
}

#[test]
fn errors_name_the_problem_and_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let (state, cache) = (dir.path().join("state"), dir.path().join("cache"));
    let (ok, _, stderr) = crawl(
        &dir.path().join("missing").display().to_string(),
        &state,
        &cache,
        &[],
    );
    assert!(!ok && stderr.contains("repository not found"), "{stderr}");
    let repo = TestRepo::create(dir.path(), "r", &[("a.md", b"a")]);
    let (ok, _, stderr) = crawl(
        &repo.bare.display().to_string(),
        &state,
        &cache,
        &["--branch", "dev"],
    );
    assert!(
        !ok && stderr.contains("\"dev\" is not a branch, tag or commit") && stderr.contains("main"),
        "{stderr}"
    );
    let (ok, _, stderr) = crawl(
        &repo.bare.display().to_string(),
        &state,
        &cache,
        &["--include", "a/["],
    );
    assert!(
        !ok && stderr.contains("include has invalid glob patterns"),
        "{stderr}"
    );
}

#[test]
fn mirroring_from_the_terminal_cleans_up_a_knowledge_base() {
    use crate::support::knowledge_api::{FakeKnowledgeApi, KEY};
    let dir = tempfile::tempdir().unwrap();
    let repo = TestRepo::create(dir.path(), "kb", &[("a.md", b"alpha"), ("b.md", b"beta")]);
    let (state, cache) = (dir.path().join("state"), dir.path().join("cache"));
    let url = repo.bare.display().to_string();
    let kb = FakeKnowledgeApi::start();
    // A mirroring crawl of this repository into the fake knowledge base.
    let command = |extra: &[&str]| {
        let mut command = Command::new(BINARY);
        command
            .args(["crawl", &url, "--state-dir"])
            .arg(&state)
            .args([
                "--knowledge-base",
                &kb.dataset,
                "--dify-api-url",
                &kb.base_url,
            ])
            .args(extra)
            .env("GIT_DATASOURCE_CACHE_DIR", &cache);
        command
    };
    let mirror = |extra: &[&str]| {
        let output = command(extra)
            .env("GIT_DATASOURCE_DIFY_API_KEY", KEY)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(!text.contains(KEY), "the key was printed: {text}");
        (output.status.success(), output.stdout, text)
    };
    let (ok, stdout, text) = mirror(&["--json"]);
    assert!(ok, "{text}");
    let items: Vec<Value> = String::from_utf8_lossy(&stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(items.len(), 2);
    // Imported twice (a duplicate), then b.md is deleted from the branch.
    kb.import(&items);
    kb.import(&items);
    kb.index_all();
    repo.commit(&[], &["b.md"], "drop b");
    let (ok, _, text) = mirror(&[]);
    assert!(ok, "{text}");
    assert!(
        text.contains("kept 1, offered 0, deleted 3") && text.contains("deleted: a.md, b.md, b.md"),
        "{text}"
    );
    let left: Vec<String> = kb
        .docs()
        .iter()
        .map(|d| d.source_url().to_string())
        .collect();
    assert_eq!(left.len(), 1);
    assert!(left[0].ends_with(":a.md"));
    // The document kept carries its Git metadata.
    assert_eq!(kb.docs()[0].metadata["git_path"], "a.md");

    // Without a key: the fix is named.
    let output = Command::new(BINARY)
        .args(["crawl", &url, "--knowledge-base", &kb.dataset])
        .env_remove("GIT_DATASOURCE_DIFY_API_KEY")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--dify-api-key"));

    // The key from a file, out of the process list; a file that cannot be read is named.
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    for (file, works) in [(key_file.clone(), true), (dir.path().join("absent"), false)] {
        let output = command(&["--dify-api-key-file", file.to_str().unwrap()])
            .env_remove("GIT_DATASOURCE_DIFY_API_KEY")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.success(), works, "{stderr}");
        assert!(works || stderr.contains("absent"), "{stderr}");
        assert!(!stderr.contains(KEY), "{stderr}");
    }
}
