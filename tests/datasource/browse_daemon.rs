//! The browser (`git_browser`, an `online_drive` provider) as Dify drives it, through the
//! fake daemon: a 100,000-file repository listed a folder page by page within the line cap,
//! every file found once, its text read from the cached clone; a file delivered at the
//! commit it was listed at after the branch moved; one request to the server per listing
//! and none per file; an id another process sealed, or a forged one, decided by the server
//! and the commit; errors as text.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};

use crate::support::browse_requests::{answer, browse, download, heap_mb, walk, Walk};
use crate::support::fake_daemon::FakeDaemon;
use crate::support::git_servers::{HttpServer, TestRepo, TOKEN};
use crate::support::imported_repo::ImportedRepo;

fn daemon(dir: &Path, extra: &[(&str, &str)]) -> FakeDaemon {
    let cache = dir.join("cache").display().to_string();
    let mut envs = vec![
        ("GIT_DATASOURCE_ALLOW_LOCAL", "1"),
        ("GIT_DATASOURCE_CACHE_DIR", cache.as_str()),
    ];
    envs.extend_from_slice(extra);
    FakeDaemon::spawn(&envs)
}

#[test]
fn a_100000_file_repository_is_browsed_page_by_page_and_read_file_by_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut tree = BTreeMap::new();
    for part in 0..100 {
        for page in 0..1000 {
            tree.insert(
                format!("docs/part{part:02}/page{page:04}.md"),
                format!("# Part {part}, page {page}\n").into_bytes(),
            );
        }
    }
    tree.insert("README.md".into(), b"# Read me\n".to_vec());
    tree.insert("logo.png".into(), b"\x89PNG\r\n\x1a\n\0\0\0".to_vec());
    tree.insert(
        "big.bin.md".into(),
        b"version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 9\n".to_vec(),
    );
    let repo = ImportedRepo::create(&dir.path().join("large.git"), tree.clone());
    // Pages of at most 100 kB: a folder of 1,000 files takes three.
    let daemon = daemon(dir.path(), &[("GIT_DATASOURCE_MAX_RESULT_BYTES", "100000")]);
    let credentials = json!({"repo_url": repo.bare.display().to_string()});

    // Once the process has served a request: its heap before any listing.
    browse(&daemon, &credentials, "", &Value::Null).unwrap();
    let heap_before = heap_mb(&daemon);
    let mut heap_peak = heap_before;
    let Walk {
        files,
        answers,
        longest,
    } = walk(&daemon, &credentials, || {
        heap_peak = heap_peak.max(heap_mb(&daemon))
    });
    assert_eq!(
        files.len(),
        100_001,
        "every text file once, no binary or LFS pointer"
    );
    let mut names: Vec<&str> = files.iter().map(|(_, name, _)| name.as_str()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 100_001);
    assert!(names.contains(&"docs/part42/page0999.md"));
    assert!(!names.contains(&"logo.png") && !names.contains(&"big.bin.md"));
    assert!(longest <= 100_000, "an answer of {longest} bytes");
    assert!(answers >= 100 * 3, "{answers} answers");
    // The heap follows a page, not the repository (whose listing alone is ~25 MB).
    assert!(
        heap_peak - heap_before < 24.0,
        "the heap grew from {heap_before:.1} to {heap_peak:.1} MB"
    );

    // Each file's text, exactly, from the cached clone.
    let sizes: BTreeMap<&str, u64> = files.iter().map(|(_, n, s)| (n.as_str(), *s)).collect();
    assert_eq!(sizes["README.md"], 10);
    for (id, name, _) in files.iter().step_by(997) {
        let (text, meta) = download(&daemon, &credentials, id).unwrap();
        assert_eq!(text.as_bytes(), tree[name.as_str()].as_slice(), "{name}");
        assert_eq!(meta["mime_type"], "text/plain");
        assert!(
            meta["file_name"].as_str().unwrap().ends_with(".md.txt"),
            "{meta}"
        );
    }
}

#[test]
fn a_file_comes_at_its_listed_commit_with_one_request_per_listing_and_none_per_file() {
    let dir = tempfile::tempdir().unwrap();
    let server = HttpServer::start(&dir.path().join("https"));
    let repo = TestRepo::create(
        &server.root.join("private"),
        "docs",
        &[
            ("docs/a.md", b"A one\n"),
            ("docs/b.md", b"B one\n"),
            ("README.md", b"R\n"),
        ],
    );
    let url = server.https_url("private", "docs");
    let credentials = json!({"repo_url": url, "access_token": TOKEN,
                             "ca_certificate": server.ca.ca_pem});
    let daemon = daemon(dir.path(), &[]);
    let top = browse(&daemon, &credentials, "", &Value::Null).unwrap();
    let entries = top["result"][0]["files"].as_array().unwrap().clone();
    let kinds: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e["type"].as_str().unwrap()))
        .collect();
    assert_eq!(kinds, [("README.md", "file"), ("docs", "folder")]);
    let fetched = server.requests().len();
    assert!(fetched > 0);
    let docs = browse(
        &daemon,
        &credentials,
        entries[1]["id"].as_str().unwrap(),
        &Value::Null,
    )
    .unwrap();
    let ids: Vec<String> = docs["result"][0]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        download(&daemon, &credentials, &ids[0]).unwrap().0,
        "A one\n"
    );
    assert_eq!(
        server.requests().len(),
        fetched,
        "a folder and a file of the listing ask the server nothing"
    );

    // The branch moves: the listed file still comes as it was listed.
    repo.commit(&[("docs/a.md", b"A two\n")], &[], "edit");
    assert_eq!(
        download(&daemon, &credentials, &ids[0]).unwrap().0,
        "A one\n"
    );
    let top_again = browse(&daemon, &credentials, "", &Value::Null).unwrap();
    assert_ne!(top_again, top, "a new listing is of the new commit");

    // Another process (a restart) cannot trust the seal: the server decides, with the
    // caller's own credentials, and the content is still the listed commit's.
    let other = self::daemon(dir.path(), &[]);
    let before = server.requests().len();
    assert_eq!(
        download(&other, &credentials, &ids[0]).unwrap().0,
        "A one\n"
    );
    assert!(server.requests().len() > before, "the server was asked");
    let wrong = json!({"repo_url": url, "access_token": "wrong",
                       "ca_certificate": server.ca.ca_pem});
    let refused = download(&other, &wrong, &ids[0]).unwrap_err();
    assert_eq!(
        refused["error_type"], "InvokeAuthorizationError",
        "{refused}"
    );
    for denied in [download(&daemon, &wrong, &ids[0]).unwrap_err(), refused] {
        assert!(!denied.to_string().contains("A one"), "{denied}");
        assert!(!denied.to_string().contains(TOKEN));
    }

    // A forged id: another path under the same seal, or another configuration's.
    let forged = ids[0].replacen("docs/a.md", "docs/b.md", 1);
    let error = download(&daemon, &credentials, &forged).unwrap_err();
    assert_eq!(error["error_type"], "InvokeBadRequestError", "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("not a file of commit"),
        "{error}"
    );
    let narrower = json!({"repo_url": url, "access_token": TOKEN, "subdir": "docs",
                          "ca_certificate": server.ca.ca_pem});
    let error = download(&daemon, &narrower, &ids[0]).unwrap_err();
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("open the data source again"),
        "{error}"
    );
    for junk in ["", "git:", "../../etc/passwd", &"x".repeat(10_000)] {
        let error = download(&daemon, &credentials, junk).unwrap_err();
        assert_eq!(error["error_type"], "InvokeBadRequestError", "{error}");
        let error = browse(&daemon, &credentials, junk, &Value::Null);
        if !junk.is_empty() {
            assert_eq!(error.unwrap_err()["error_type"], "InvokeBadRequestError");
        }
    }
    // Without a repository the authorization is refused with the fix named.
    let error = browse(&daemon, &json!({}), "", &Value::Null).unwrap_err();
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("repo_url is missing")
            && error["message"]
                .as_str()
                .unwrap()
                .contains("in the authorization"),
        "{error}"
    );
}

#[test]
fn the_browsers_authorization_is_checked_against_the_repository() {
    let dir = tempfile::tempdir().unwrap();
    let server = HttpServer::start(&dir.path().join("https"));
    TestRepo::create(&server.root.join("private"), "docs", &[("a.md", b"a")]);
    let daemon = daemon(dir.path(), &[]);
    let validate = |credentials: Value| {
        let session = daemon.request(
            "validate_datasource_credentials",
            json!({"provider": "git_browser", "credentials": credentials}),
        );
        answer(daemon.finish(&session))
    };
    let url = server.https_url("private", "docs");
    let ca = server.ca.ca_pem.clone();
    assert_eq!(
        validate(json!({"repo_url": url, "access_token": TOKEN, "ca_certificate": ca})).unwrap(),
        json!({"result": true})
    );
    for (credentials, says) in [
        (
            json!({"repo_url": url, "access_token": "wrong", "ca_certificate": ca}),
            "cannot be read",
        ),
        (
            json!({"repo_url": url, "access_token": TOKEN, "ca_certificate": ca,
                "branch": "nope"}),
            "nope",
        ),
        (json!({"access_token": TOKEN}), "repo_url is missing"),
    ] {
        let error = validate(credentials).unwrap_err();
        assert_eq!(
            error["error_type"], "CredentialsValidateFailedError",
            "{error}"
        );
        let message = error["message"].as_str().unwrap();
        assert!(
            message.contains(says) && !message.contains(TOKEN),
            "{message}"
        );
    }
    // A server that redirects to another host: a browse is refused and the token never
    // leaves for the other origin; nothing the plugin logged holds it.
    for code in [301, 302, 307] {
        let moved = json!({"repo_url": server.redirect_url(code, "docs"), "access_token": TOKEN,
                           "ca_certificate": ca});
        let error = browse(&daemon, &moved, "", &Value::Null).unwrap_err();
        assert!(!error.to_string().contains(TOKEN), "{error}");
    }
    let seen = server.recorded_authorizations();
    assert!(
        !seen.is_empty(),
        "the redirects were followed to the recorder"
    );
    assert!(seen.iter().all(|line| line.trim() == "-"), "{seen:?}");
    assert!(!daemon.stderr_text().contains(TOKEN));
}
