//! The GitClient against real servers on loopback: every authentication path and failure
//! kind, shallow fetch and updates, concurrency, a damaged cache, and what a tree holds.

use std::path::Path;
use std::time::Duration;

use git_remote::GitCredentials;
use git_remote::{
    diff_commits, fill_sizes, list_files, read_blobs, BlobRead, Change, FetchRequest,
    FetchSettings, Fetched, GitClient, GitError, MemoryHostKeys, PathFilter, RefKind, RepoCache,
    SkipReason,
};
use test_support::git_servers::{
    files_containing, git, HttpServer, SshServer, TestRepo, ALICE, TOKEN,
};
use test_support::keys::ssh_keygen;

fn settings() -> FetchSettings {
    FetchSettings {
        depth: 1,
        allow_local: false,
        allow_insecure_http: false,
        attempts: 2,
        retry_delay: Duration::from_millis(100),
        env: git_remote::EnvVars::new("GIT_DATASOURCE"),
    }
}

fn local_client(cache: &Path) -> GitClient {
    client(
        cache,
        FetchSettings {
            allow_local: true,
            ..settings()
        },
    )
}

fn client(cache: &Path, settings: FetchSettings) -> GitClient {
    GitClient::new(RepoCache::new(cache.to_path_buf(), u64::MAX), settings)
}

fn fetch(
    client: &GitClient,
    url: &str,
    reference: &str,
    credentials: &GitCredentials,
) -> Result<Fetched, GitError> {
    let host_keys = MemoryHostKeys::default();
    fetch_with(client, url, reference, credentials, &host_keys)
}

fn fetch_with(
    client: &GitClient,
    url: &str,
    reference: &str,
    credentials: &GitCredentials,
    host_keys: &MemoryHostKeys,
) -> Result<Fetched, GitError> {
    client.fetch(&FetchRequest {
        url,
        reference,
        credentials,
        host_keys,
        deadline: None,
        progress: None,
    })
}

fn token(ca: &str) -> GitCredentials {
    GitCredentials {
        access_token: TOKEN.into(),
        ca_certificate: ca.into(),
        ..GitCredentials::default()
    }
}

fn assert_kind(result: Result<Fetched, GitError>, kind: &str) -> String {
    match result {
        Err(error) => {
            assert_eq!(error.kind(), kind, "{error}");
            error.to_string()
        }
        Ok(fetched) => panic!("expected {kind}, fetched {}", fetched.commit),
    }
}

#[test]
fn https_token_username_anonymous_and_every_failure_kind() {
    let dir = tempfile::tempdir().unwrap();
    let server = HttpServer::start(dir.path());
    let private = TestRepo::create(
        &server.root.join("private"),
        "docs",
        &[("README.md", b"# private")],
    );
    TestRepo::create(&server.root.join("public"), "open", &[("a.txt", b"public")]);
    let ca = server.ca.ca_pem.clone();
    let client = client(&dir.path().join("cache"), settings());

    let fetched = fetch(
        &client,
        &server.https_url("private", "docs"),
        "main",
        &token(&ca),
    )
    .unwrap();
    assert_eq!(fetched.commit.to_string(), private.head());
    assert_eq!(fetched.kind, RefKind::Branch);
    drop(fetched);

    let alice = GitCredentials {
        username: ALICE.into(),
        ..token(&ca)
    };
    fetch(
        &client,
        &server.https_url("private", "docs"),
        "main",
        &alice,
    )
    .unwrap();

    let anonymous = GitCredentials {
        ca_certificate: ca.clone(),
        ..GitCredentials::default()
    };
    fetch(
        &client,
        &server.https_url("public", "open"),
        "main",
        &anonymous,
    )
    .unwrap();

    // Embedded in the URL, the token still never reaches the cache.
    let embedded = format!(
        "https://x-access-token:{TOKEN}@127.0.0.1:{}/private/docs.git",
        server.https_port
    );
    fetch(&client, &embedded, "main", &anonymous).unwrap();

    let wrong = GitCredentials {
        access_token: "not-the-token".into(),
        ..token(&ca)
    };
    let message = assert_kind(
        fetch(
            &client,
            &server.https_url("private", "docs"),
            "main",
            &wrong,
        ),
        "auth_failed",
    );
    assert!(!message.contains("not-the-token"));
    assert_kind(
        fetch(
            &client,
            &server.https_url("private", "docs"),
            "main",
            &anonymous,
        ),
        "auth_failed",
    );
    assert_kind(
        fetch(
            &client,
            &server.https_url("public", "missing"),
            "main",
            &anonymous,
        ),
        "repo_not_found",
    );
    let message = assert_kind(
        fetch(
            &client,
            &server.https_url("private", "docs"),
            "main",
            &GitCredentials {
                access_token: TOKEN.into(),
                ..GitCredentials::default()
            },
        ),
        "tls",
    );
    assert!(message.contains("ca_certificate"), "{message}");
    let message = assert_kind(
        fetch(
            &client,
            &server.https_url("private", "docs"),
            "no-such-branch",
            &token(&ca),
        ),
        "ref_not_found",
    );
    assert!(message.contains("its branches: main"), "{message}");
    assert_kind(
        fetch(
            &client,
            "https://127.0.0.1:1/nothing.git",
            "main",
            &anonymous,
        ),
        "network",
    );
    assert_kind(
        fetch(&client, "ftp://example.com/r.git", "main", &anonymous),
        "invalid_url",
    );

    // Plain http: public works; a token is never sent unless the operator allows it.
    fetch(
        &client,
        &server.http_url("public", "open"),
        "main",
        &token(""),
    )
    .unwrap();
    let message = assert_kind(
        fetch(
            &client,
            &server.http_url("private", "docs"),
            "main",
            &token(""),
        ),
        "not_allowed",
    );
    assert!(
        message.contains("GIT_DATASOURCE_ALLOW_INSECURE_HTTP"),
        "{message}"
    );
    let insecure = client_with(
        dir.path(),
        FetchSettings {
            allow_insecure_http: true,
            ..settings()
        },
    );
    fetch(
        &insecure,
        &server.http_url("private", "docs"),
        "main",
        &token(""),
    )
    .unwrap();

    let leaks = files_containing(&dir.path().join("cache"), &[TOKEN]);
    assert!(leaks.is_empty(), "the token reached {leaks:?}");
}

fn client_with(dir: &Path, settings: FetchSettings) -> GitClient {
    client(&dir.join("cache"), settings)
}

#[test]
fn ssh_keys_of_every_type_passphrases_and_host_keys() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let (ed25519, ed25519_pub) = ssh_keygen(&keys, "ed", &["-t", "ed25519"], "");
    let (rsa, rsa_pub) = ssh_keygen(&keys, "rsa", &["-t", "rsa", "-b", "3072", "-m", "PEM"], "");
    let (ecdsa, ecdsa_pub) = ssh_keygen(&keys, "ec", &["-t", "ecdsa"], "");
    let (locked, locked_pub) = ssh_keygen(&keys, "locked", &["-t", "ed25519"], "correct horse");
    let (stranger, _) = ssh_keygen(&keys, "stranger", &["-t", "ed25519"], "");
    let server = SshServer::start(
        &dir.path().join("sshd"),
        &[&ed25519_pub, &rsa_pub, &ecdsa_pub, &locked_pub],
    );
    let repo = TestRepo::create(
        &dir.path().join("repos"),
        "code",
        &[("src/lib.rs", b"fn main() {}")],
    );
    let url = server.url(&repo.bare);
    let client = client(&dir.path().join("cache"), settings());
    let with_key = |key: &str, passphrase: &str, known_hosts: &str| GitCredentials {
        ssh_private_key: key.into(),
        ssh_passphrase: passphrase.into(),
        ssh_known_hosts: known_hosts.into(),
        ..GitCredentials::default()
    };
    let known = server.known_hosts_line();

    for (key, passphrase) in [
        (&ed25519, ""),
        (&rsa, ""),
        (&ecdsa, ""),
        (&locked, "correct horse"),
    ] {
        let fetched = fetch(&client, &url, "main", &with_key(key, passphrase, &known)).unwrap();
        assert_eq!(fetched.commit.to_string(), repo.head());
    }
    // Pasted with literal \n, the key still works.
    fetch(
        &client,
        &url,
        "main",
        &with_key(&ed25519.replace('\n', "\\n"), "", &known),
    )
    .unwrap();

    assert_kind(
        fetch(&client, &url, "main", &with_key(&stranger, "", &known)),
        "auth_failed",
    );
    let message = assert_kind(
        fetch(
            &client,
            &url,
            "main",
            &with_key(&locked, "wrong horse", &known),
        ),
        "auth_failed",
    );
    assert!(!message.contains("wrong horse"));
    assert_kind(
        fetch(
            &client,
            &url,
            "main",
            &GitCredentials {
                ssh_known_hosts: known.clone(),
                ..GitCredentials::default()
            },
        ),
        "auth_failed",
    );

    // known_hosts: a different key for this host is a mismatch; no entry is unknown.
    let other_key = std::fs::read_to_string(keys.join("stranger.pub")).unwrap();
    let other_key = other_key
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    let wrong_known = format!("[127.0.0.1]:{} {other_key}", server.port);
    assert_kind(
        fetch(&client, &url, "main", &with_key(&ed25519, "", &wrong_known)),
        "host_key_mismatch",
    );
    let message = assert_kind(
        fetch(
            &client,
            &url,
            "main",
            &with_key(&ed25519, "", &format!("git.example.com {other_key}")),
        ),
        "host_key_unknown",
    );
    assert!(message.contains("ssh-keyscan -p"), "{message}");

    // Trust on first use: recorded, accepted again, and a changed key is refused.
    let host_keys = MemoryHostKeys::default();
    fetch_with(
        &client,
        &url,
        "main",
        &with_key(&ed25519, "", ""),
        &host_keys,
    )
    .unwrap();
    use git_remote::HostKeyStore;
    let name = format!("[127.0.0.1]:{}", server.port);
    assert_eq!(
        host_keys.recorded(&name).as_deref(),
        Some(server.host_key.as_str())
    );
    fetch_with(
        &client,
        &url,
        "main",
        &with_key(&ed25519, "", ""),
        &host_keys,
    )
    .unwrap();
    host_keys.record(&name, &other_key);
    let message = assert_kind(
        fetch_with(
            &client,
            &url,
            "main",
            &with_key(&ed25519, "", ""),
            &host_keys,
        ),
        "host_key_mismatch",
    );
    assert!(
        message.contains("changed") && message.contains("ssh_known_hosts"),
        "{message}"
    );

    let leaks = files_containing(&dir.path().join("cache"), &["correct horse", "PRIVATE KEY"]);
    assert!(leaks.is_empty(), "key material reached {leaks:?}");
}

#[test]
fn shallow_fetch_then_updates_after_new_commits_and_a_force_push() {
    let dir = tempfile::tempdir().unwrap();
    let server = HttpServer::start(dir.path());
    let repo = TestRepo::create(&server.root.join("public"), "evolving", &[("a.md", b"one")]);
    repo.commit(&[("b.md", b"two")], &[], "second");
    let url = server.https_url("public", "evolving");
    let credentials = GitCredentials {
        ca_certificate: server.ca.ca_pem.clone(),
        ..GitCredentials::default()
    };
    let client = client(&dir.path().join("cache"), settings());

    let first = fetch(&client, &url, "main", &credentials).unwrap();
    let opened = first.open().unwrap();
    assert!(opened.is_shallow(), "depth 1 gives a shallow clone");
    let parent = opened
        .find_commit(first.commit)
        .unwrap()
        .parent_id(0)
        .unwrap();
    assert!(
        opened.find_commit(parent).is_err(),
        "history beyond depth 1 is not fetched"
    );
    drop((first, opened));

    let newer = repo.commit(&[("c.md", b"three")], &["a.md"], "third");
    let second = fetch(&client, &url, "main", &credentials).unwrap();
    assert_eq!(second.commit.to_string(), newer);
    drop(second);

    let rewritten = repo.rewrite(&[("only.md", b"new history")]);
    let third = fetch(&client, &url, "main", &credentials).unwrap();
    assert_eq!(third.commit.to_string(), rewritten);
    let listing = list_files(&third.open().unwrap(), third.commit, &PathFilter::default()).unwrap();
    let paths: Vec<&str> = listing.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["only.md"]);
}

#[test]
fn branches_tags_and_commit_ids_resolve() {
    let dir = tempfile::tempdir().unwrap();
    let server = HttpServer::start(dir.path());
    let repo = TestRepo::create(&server.root.join("public"), "refs", &[("a.md", b"v1")]);
    let v1 = repo.head();
    repo.tag("v1.0");
    git(
        &repo.work,
        &["push", "-q", "origin", "HEAD:refs/heads/release"],
    );
    let v2 = repo.commit(&[("a.md", b"v2")], &[], "v2");
    let url = server.https_url("public", "refs");
    let credentials = GitCredentials {
        ca_certificate: server.ca.ca_pem.clone(),
        ..GitCredentials::default()
    };
    let client = client(&dir.path().join("cache"), settings());

    let tag = fetch(&client, &url, "v1.0", &credentials).unwrap();
    assert_eq!(
        (tag.commit.to_string(), tag.kind.clone()),
        (v1.clone(), RefKind::Tag)
    );
    drop(tag);
    assert_eq!(
        fetch(&client, &url, "release", &credentials)
            .unwrap()
            .commit
            .to_string(),
        v1
    );
    let by_id = fetch(&client, &url, &v2, &credentials).unwrap();
    assert_eq!(
        (by_id.commit.to_string(), by_id.kind.clone()),
        (v2.clone(), RefKind::Commit)
    );
    drop(by_id);
    let message = assert_kind(fetch(&client, &url, "v9", &credentials), "ref_not_found");
    assert!(
        message.contains("main") && message.contains("release") && message.contains("v1.0"),
        "{message}"
    );
    assert_kind(
        fetch(&client, &url, &"ab".repeat(20), &credentials),
        "ref_not_found",
    );
}

#[test]
fn concurrent_fetches_of_one_repository_wait_for_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let server = HttpServer::start(dir.path());
    let files: Vec<(String, Vec<u8>)> = (0..300)
        .map(|i| {
            (
                format!("d{}/f{i}.txt", i % 7),
                format!("file {i}\n").repeat(50).into_bytes(),
            )
        })
        .collect();
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_slice()))
        .collect();
    let repo = TestRepo::create(&server.root.join("public"), "busy", &refs);
    let url = server.https_url("public", "busy");
    let credentials = GitCredentials {
        ca_certificate: server.ca.ca_pem.clone(),
        ..GitCredentials::default()
    };
    let client = client(&dir.path().join("cache"), settings());
    let commits: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    let fetched = fetch(&client, &url, "main", &credentials).unwrap();
                    let listing = list_files(
                        &fetched.open().unwrap(),
                        fetched.commit,
                        &PathFilter::default(),
                    )
                    .unwrap();
                    assert_eq!(listing.files.len(), 300);
                    fetched.commit.to_string()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(commits.iter().all(|c| *c == repo.head()));
}

#[test]
fn a_damaged_cache_entry_is_cloned_again() {
    let dir = tempfile::tempdir().unwrap();
    let server = HttpServer::start(dir.path());
    let repo = TestRepo::create(
        &server.root.join("public"),
        "fragile",
        &[("a.md", b"alpha"), ("b.md", b"beta")],
    );
    let url = server.https_url("public", "fragile");
    let credentials = GitCredentials {
        ca_certificate: server.ca.ca_pem.clone(),
        ..GitCredentials::default()
    };
    let cache = dir.path().join("cache");
    let client = client(&cache, settings());
    let repo_dir = fetch(&client, &url, "main", &credentials)
        .unwrap()
        .repo_dir
        .clone();

    // Every pack and object file truncated to nothing: the entry cannot be trusted.
    for path in walk_files(&repo_dir.join("objects")) {
        std::fs::write(path, b"").unwrap();
    }
    let fetched = fetch(&client, &url, "main", &credentials).unwrap();
    assert_eq!(fetched.commit.to_string(), repo.head());
    let listing = list_files(
        &fetched.open().unwrap(),
        fetched.commit,
        &PathFilter::default(),
    )
    .unwrap();
    assert_eq!(
        read_blobs(&fetched.repo_dir, &listing.files, 1000)[0],
        BlobRead::Text("alpha".into())
    );
    drop(fetched);

    // A half-written entry (no completion marker) is not trusted either.
    std::fs::remove_file(repo_dir.join("git-datasource-complete")).unwrap();
    std::fs::write(repo_dir.join("HEAD"), b"garbage").unwrap();
    assert_eq!(
        fetch(&client, &url, "main", &credentials)
            .unwrap()
            .commit
            .to_string(),
        repo.head()
    );
}

fn walk_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk_files(&path))
        } else {
            files.push(path)
        }
    }
    files
}

#[test]
fn local_paths_are_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let repo = TestRepo::create(dir.path(), "local", &[("a.md", b"local")]);
    let refused = client(&dir.path().join("cache"), settings());
    for url in [
        repo.bare.display().to_string(),
        format!("file://{}", repo.bare.display()),
    ] {
        let message = assert_kind(
            fetch(&refused, &url, "main", &GitCredentials::default()),
            "not_allowed",
        );
        assert!(message.contains("GIT_DATASOURCE_ALLOW_LOCAL"), "{message}");
    }
    let allowed = local_client(&dir.path().join("cache"));
    let fetched = fetch(
        &allowed,
        &format!("file://{}", repo.bare.display()),
        "main",
        &GitCredentials::default(),
    )
    .unwrap();
    assert_eq!(fetched.commit.to_string(), repo.head());
}

#[test]
fn a_tree_of_every_kind_of_file_is_walked_and_classified() {
    let dir = tempfile::tempdir().unwrap();
    let big = "x".repeat(2000);
    let lfs = b"version https://git-lfs.github.com/spec/v1\noid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 12345\n";
    let repo = TestRepo::create(
        dir.path(),
        "fixture",
        &[
            ("README.md", b"# Fixture\n"),
            ("docs/guide.md", "\u{feff}Guide with a BOM\n".as_bytes()),
            ("docs/deep/nested/notes.TXT", b"deep notes"),
            ("docs/image.png", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"),
            ("docs/data.bin", b"abc\0def"),
            ("docs/latin1.txt", b"caf\xe9 cr\xe8me"),
            ("docs/big.md", big.as_bytes()),
            ("docs/model.md", lfs),
            (".github/workflows/ci.yml", b"on: push\n"),
            ("src/main.rs", b"fn main() {}\n"),
        ],
    );
    std::os::unix::fs::symlink("README.md", repo.work.join("docs/link.md")).unwrap();
    git(
        &repo.work,
        &[
            "update-index",
            "--add",
            "--cacheinfo",
            &format!("160000,{},docs/vendored", repo.head()),
        ],
    );
    let first = repo.head();
    git(&repo.work, &["add", "docs/link.md"]);
    git(&repo.work, &["commit", "-q", "-m", "symlink and submodule"]);
    git(&repo.work, &["push", "-q", "origin", "HEAD:main"]);
    let second = repo.head();
    let client = local_client(&dir.path().join("cache"));
    let fetched = fetch(
        &client,
        &repo.bare.display().to_string(),
        "main",
        &GitCredentials::default(),
    )
    .unwrap();
    assert_eq!(fetched.commit.to_string(), second);
    let repository = fetched.open().unwrap();

    let mut all = list_files(&repository, fetched.commit, &PathFilter::default()).unwrap();
    assert!(
        all.files.iter().all(|f| f.size.is_none()),
        "the walk reads no blob header"
    );
    fill_sizes(&repository, &mut all.files).unwrap();
    let paths: Vec<&str> = all.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            ".github/workflows/ci.yml",
            "README.md",
            "docs/big.md",
            "docs/data.bin",
            "docs/deep/nested/notes.TXT",
            "docs/guide.md",
            "docs/image.png",
            "docs/latin1.txt",
            "docs/model.md",
            "src/main.rs",
        ]
    );
    let skipped: Vec<(&str, &SkipReason)> = all
        .skipped
        .iter()
        .map(|s| (s.path.as_str(), &s.reason))
        .collect();
    assert_eq!(
        skipped,
        [
            ("docs/link.md", &SkipReason::Symlink),
            ("docs/vendored", &SkipReason::Submodule)
        ]
    );
    assert_eq!(
        all.files
            .iter()
            .find(|f| f.path == "docs/big.md")
            .unwrap()
            .size,
        Some(2000)
    );

    let reads = read_blobs(&fetched.repo_dir, &all.files, 1000);
    let by_path: Vec<(&str, &BlobRead)> = paths.iter().copied().zip(reads.iter()).collect();
    let expect = [
        (
            ".github/workflows/ci.yml",
            BlobRead::Text("on: push\n".into()),
        ),
        ("README.md", BlobRead::Text("# Fixture\n".into())),
        (
            "docs/big.md",
            BlobRead::Skipped(SkipReason::TooLarge {
                size: 2000,
                limit: 1000,
            }),
        ),
        ("docs/data.bin", BlobRead::Skipped(SkipReason::Binary)),
        (
            "docs/deep/nested/notes.TXT",
            BlobRead::Text("deep notes".into()),
        ),
        ("docs/guide.md", BlobRead::Text("Guide with a BOM\n".into())),
        ("docs/image.png", BlobRead::Skipped(SkipReason::Binary)),
        ("docs/latin1.txt", BlobRead::Skipped(SkipReason::NotUtf8)),
        ("docs/model.md", BlobRead::Skipped(SkipReason::LfsPointer)),
        ("src/main.rs", BlobRead::Text("fn main() {}\n".into())),
    ];
    for ((path, read), (expected_path, expected)) in by_path.iter().zip(expect.iter()) {
        assert_eq!((*path, *read), (*expected_path, expected));
    }

    let docs_text = PathFilter::new("docs", "md, .txt", "", "**/deep/**").unwrap();
    let filtered = list_files(&repository, fetched.commit, &docs_text).unwrap();
    let paths: Vec<&str> = filtered.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "docs/big.md",
            "docs/guide.md",
            "docs/latin1.txt",
            "docs/model.md"
        ]
    );
    assert_eq!(
        filtered.skipped.len(),
        1,
        "the symlink matches the filter, the submodule does not"
    );

    // Tree to tree: added, modified, deleted and renamed, under the same filter.
    drop(repository);
    drop(fetched);
    // (`git add -A` in this commit also drops the submodule, which has no work tree.)
    repo.commit(
        &[
            ("docs/new.md", b"brand new"),
            ("README.md", b"# Fixture, edited\n"),
        ],
        &["src/main.rs"],
        "changes",
    );
    git(&repo.work, &["mv", "docs/guide.md", "docs/handbook.md"]);
    git(&repo.work, &["commit", "-q", "-m", "rename"]);
    git(&repo.work, &["push", "-q", "origin", "HEAD:main"]);
    let full = client_full_history(dir.path());
    let fetched = fetch(
        &full,
        &repo.bare.display().to_string(),
        "main",
        &GitCredentials::default(),
    )
    .unwrap();
    let repository = fetched.open().unwrap();
    let first_oid = git2::Oid::from_str(&first).unwrap();
    let mut changes = diff_commits(
        &repository,
        first_oid,
        fetched.commit,
        &PathFilter::default(),
    )
    .unwrap();
    changes.sort_by_key(|c| format!("{c:?}"));
    assert_eq!(
        changes,
        [
            Change::Added("docs/link.md".into()),
            Change::Added("docs/new.md".into()),
            Change::Deleted("src/main.rs".into()),
            Change::Modified("README.md".into()),
            Change::Renamed {
                from: "docs/guide.md".into(),
                to: "docs/handbook.md".into()
            },
        ]
    );
    let only_src = diff_commits(
        &repository,
        first_oid,
        fetched.commit,
        &PathFilter::new("src", "", "", "").unwrap(),
    )
    .unwrap();
    assert_eq!(only_src, [Change::Deleted("src/main.rs".into())]);
}

fn client_full_history(dir: &Path) -> GitClient {
    client(
        &dir.join("cache-full"),
        FetchSettings {
            allow_local: true,
            depth: 0,
            ..settings()
        },
    )
}

#[test]
fn the_cache_evicts_least_recently_used_entries() {
    let dir = tempfile::tempdir().unwrap();
    let server = HttpServer::start(dir.path());
    for i in 0..3 {
        TestRepo::create(
            &server.root.join("public"),
            &format!("r{i}"),
            &[("blob.txt", format!("{i}").repeat(40_000).as_bytes())],
        );
    }
    let cache = dir.path().join("cache");
    let small = GitClient::new(RepoCache::new(cache.clone(), 1), settings());
    for i in 0..3 {
        fetch(
            &small,
            &server.http_url("public", &format!("r{i}")),
            "main",
            &GitCredentials::default(),
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let left: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "git"))
        .collect();
    assert_eq!(
        left.len(),
        1,
        "only the entry in use stays under a tiny bound"
    );
    assert!(left[0].file_name().to_string_lossy().starts_with("r2-"));
}

#[test]
fn a_local_repository_is_read_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let repo = TestRepo::create(dir.path(), "here", &[("a.md", b"local")]);
    repo.tag("v1");
    let cache = dir.path().join("cache");
    let client = client(
        &cache,
        FetchSettings {
            allow_local: true,
            ..settings()
        },
    );
    for (reference, kind) in [("main", RefKind::Branch), ("v1", RefKind::Tag)] {
        let fetched = fetch(
            &client,
            &repo.work.display().to_string(),
            reference,
            &GitCredentials::default(),
        )
        .unwrap();
        assert_eq!(
            (fetched.commit.to_string(), fetched.kind.clone()),
            (repo.head(), kind)
        );
    }
    let head = repo.head();
    assert_eq!(
        fetch(
            &client,
            &repo.bare.display().to_string(),
            &head,
            &GitCredentials::default()
        )
        .unwrap()
        .kind,
        RefKind::Commit
    );
    assert_kind(
        fetch(
            &client,
            &repo.bare.display().to_string(),
            "nope",
            &GitCredentials::default(),
        ),
        "ref_not_found",
    );
    assert!(!cache.exists(), "nothing copied into the cache");
}

/// A commit already in the shared clone cache (fetched by a workspace with the token) is
/// never handed to a caller the server would refuse: no token, a wrong one, or the same
/// repository spelled over plain http.
#[test]
fn a_cached_commit_still_needs_the_callers_own_authorization() {
    let dir = tempfile::tempdir().unwrap();
    let server = HttpServer::start(dir.path());
    let private = TestRepo::create(
        &server.root.join("private"),
        "docs",
        &[("README.md", b"# private")],
    );
    let ca = server.ca.ca_pem.clone();
    let cache = dir.path().join("cache");
    let (https, http) = (
        client(&cache, settings()),
        client(
            &cache,
            FetchSettings {
                allow_insecure_http: true,
                ..settings()
            },
        ),
    );
    let client = https;
    let url = server.https_url("private", "docs");
    let head = private.head();
    drop(fetch(&client, &url, "main", &token(&ca)).unwrap());
    drop(fetch(&client, &url, &head, &token(&ca)).unwrap());

    let anonymous = GitCredentials {
        ca_certificate: ca.clone(),
        ..GitCredentials::default()
    };
    assert_kind(fetch(&client, &url, &head, &anonymous), "auth_failed");
    let wrong = GitCredentials {
        access_token: "not-the-token".into(),
        ..token(&ca)
    };
    let message = assert_kind(fetch(&client, &url, &head, &wrong), "auth_failed");
    assert!(!message.contains("not-the-token"));
    assert_kind(
        fetch(
            &http,
            &server.http_url("private", "docs"),
            &head,
            &anonymous,
        ),
        "auth_failed",
    );
    // The token still works from the cache.
    assert_eq!(
        fetch(&client, &url, &head, &token(&ca))
            .unwrap()
            .commit
            .to_string(),
        head
    );
}

/// A URL that fails (not found, refused) leaves no repository and no lock file in the cache,
/// so a flood of distinct failing URLs cannot grow it; entries are bounded in number too.
#[test]
fn failures_leave_no_litter_and_entries_are_bounded_in_number() {
    let dir = tempfile::tempdir().unwrap();
    let server = HttpServer::start(dir.path());
    TestRepo::create(&server.root.join("private"), "docs", &[("a.md", b"a")]);
    for n in 0..3 {
        TestRepo::create(
            &server.root.join("public"),
            &format!("p{n}"),
            &[("a.md", b"a")],
        );
    }
    let ca = server.ca.ca_pem.clone();
    let cache = dir.path().join("cache");
    let client = client(&cache, settings());
    let anonymous = GitCredentials {
        ca_certificate: ca.clone(),
        ..GitCredentials::default()
    };
    let listing = || -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&cache)
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    };
    for n in 0..20 {
        let url = server.https_url("public", &format!("missing{n}"));
        assert_kind(fetch(&client, &url, "main", &anonymous), "repo_not_found");
    }
    let private = server.https_url("private", "docs");
    assert_kind(fetch(&client, &private, "main", &anonymous), "auth_failed");
    assert!(listing().is_empty(), "{:?}", listing());

    // A good entry survives a later failure of the same repository.
    drop(fetch(&client, &private, "main", &token(&ca)).unwrap());
    assert_kind(
        fetch(&client, &private, "no-such-branch", &token(&ca)),
        "ref_not_found",
    );
    assert_eq!(listing().iter().filter(|n| n.ends_with(".git")).count(), 1);

    let bounded = GitClient::new(
        RepoCache::new(cache.clone(), u64::MAX).with_max_entries(2),
        settings(),
    );
    for n in 0..3 {
        let url = server.https_url("public", &format!("p{n}"));
        drop(fetch(&bounded, &url, "main", &anonymous).unwrap());
        std::thread::sleep(Duration::from_millis(20));
    }
    let names = listing();
    assert_eq!(
        names.iter().filter(|n| n.ends_with(".git")).count(),
        2,
        "{names:?}"
    );
    assert_eq!(
        names.iter().filter(|n| n.ends_with(".lock")).count(),
        2,
        "{names:?}"
    );
}

/// A fetched commit is taken again later for a short read (what the watcher does between
/// pushes), after the branch moved on; once its entry is evicted, reopening says so.
#[test]
fn a_fetched_commit_is_reopened_until_its_entry_is_evicted() {
    let dir = tempfile::tempdir().unwrap();
    let server = HttpServer::start(dir.path());
    let repo = TestRepo::create(&server.root.join("public"), "kept", &[("a.md", b"alpha")]);
    TestRepo::create(&server.root.join("public"), "other", &[("b.md", b"beta")]);
    let small = GitClient::new(RepoCache::new(dir.path().join("cache"), 1), settings());
    let url = server.http_url("public", "kept");
    let fetched = fetch(&small, &url, "main", &GitCredentials::default()).unwrap();
    let place = fetched.place();
    let files = list_files(
        &fetched.open().unwrap(),
        fetched.commit,
        &PathFilter::default(),
    )
    .unwrap()
    .files;
    drop(fetched);

    repo.commit(&[("a.md", b"alpha 2")], &[], "change");
    let newer = fetch(&small, &url, "main", &GitCredentials::default()).unwrap();
    assert_eq!(newer.commit.to_string(), repo.head());
    drop(newer);
    let again = small.reopen(&place).unwrap();
    assert_eq!(
        read_blobs(&again.repo_dir, &files, 1000),
        [BlobRead::Text("alpha".into())]
    );
    drop(again);

    // Another repository's fetch evicts this entry under a tiny bound.
    fetch(
        &small,
        &server.http_url("public", "other"),
        "main",
        &GitCredentials::default(),
    )
    .unwrap();
    let error = small.reopen(&place).unwrap_err();
    assert!(
        error.to_string().contains("no longer holds commit"),
        "{error}"
    );
}

/// A request for the `main` branch of `url`.
fn main_branch<'a>(
    url: &'a str,
    credentials: &'a GitCredentials,
    host_keys: &'a MemoryHostKeys,
) -> FetchRequest<'a> {
    FetchRequest {
        url,
        reference: "main",
        credentials,
        host_keys,
        deadline: None,
        progress: None,
    }
}

/// A commit of ours (`c.txt`) on the fetched branch's head.
fn our_commit(branch: &git_remote::Branch) -> git2::Oid {
    git_remote::write_commit(
        &branch.open().unwrap(),
        branch.head,
        &[git_remote::FileChange {
            path: "c.txt".into(),
            content: Some(b"ours".to_vec()),
        }],
        "ours",
        &git_remote::Author {
            name: "Test".into(),
            email: "test@example.com".into(),
        },
    )
    .unwrap()
    .unwrap()
}

/// A push never overwrites what someone else pushed after our fetch: refused over HTTPS (the
/// server's advertised head is not ours) and in a local repository (a compare-and-swap).
#[test]
fn a_push_never_overwrites_a_commit_it_has_not_seen() {
    let dir = tempfile::tempdir().unwrap();
    let server = HttpServer::start(&dir.path().join("https"));
    let remote = TestRepo::create(&server.root.join("private"), "race", &[("a.txt", b"1")]);
    git(&remote.bare, &["config", "http.receivepack", "true"]);
    let local = TestRepo::create(dir.path(), "local", &[("a.txt", b"1")]);
    let cases = [
        (
            server.https_url("private", "race"),
            token(&server.ca.ca_pem),
            &remote,
            settings(),
        ),
        (
            local.bare.to_str().unwrap().to_string(),
            GitCredentials::default(),
            &local,
            FetchSettings {
                allow_local: true,
                ..settings()
            },
        ),
    ];
    for (url, credentials, repo, settings) in cases {
        let client = client(&dir.path().join(format!("cache-{}", repo.head())), settings);
        let host_keys = MemoryHostKeys::default();
        let request = main_branch(&url, &credentials, &host_keys);
        let branch = client.fetch_branch(&request).unwrap();
        let theirs = repo.commit(&[("b.txt", b"someone else")], &[], "meanwhile");
        let ours = our_commit(&branch);
        let refused = client.push(&branch, ours, "main", &request).unwrap_err();
        assert_eq!(refused.kind(), "push_rejected", "{url}: {refused}");
        assert!(!refused.to_string().contains(TOKEN));
        assert_eq!(git(&repo.bare, &["rev-parse", "main"]), theirs, "{url}");
        // A new branch is created; an existing one is never replaced.
        client.push(&branch, ours, "side", &request).unwrap();
        assert_eq!(git(&repo.bare, &["rev-parse", "side"]), ours.to_string());
        assert!(client.push(&branch, ours, "main", &request).is_err());
    }
}

/// A push that races a force-push rewinding the branch never brings the dropped commit back
/// (a fast-forward of the rewound head): the branch must still be where the run read it.
#[test]
fn a_push_after_the_branch_was_rewound_stops_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let server = HttpServer::start(&dir.path().join("https"));
    let remote = TestRepo::create(&server.root.join("private"), "rewind", &[("a.txt", b"1")]);
    git(&remote.bare, &["config", "http.receivepack", "true"]);
    let first = remote.head();
    let dropped = remote.commit(&[("b.txt", b"2")], &[], "to be dropped");
    let client = client(&dir.path().join("cache"), settings());
    let credentials = token(&server.ca.ca_pem);
    let host_keys = MemoryHostKeys::default();
    let url = server.https_url("private", "rewind");
    let request = main_branch(&url, &credentials, &host_keys);
    let branch = client.fetch_branch(&request).unwrap();
    assert_eq!(branch.head.unwrap().to_string(), dropped);
    // Someone force-pushes the branch back to its first commit.
    git(&remote.bare, &["update-ref", "refs/heads/main", &first]);
    let ours = our_commit(&branch);
    let refused = client.push(&branch, ours, "main", &request).unwrap_err();
    assert_eq!(refused.kind(), "push_rejected", "{refused}");
    assert!(
        refused.to_string().contains("force-pushed")
            && refused.to_string().contains("nothing was pushed"),
        "{refused}"
    );
    assert_eq!(git(&remote.bare, &["rev-parse", "main"]), first);
}

/// libgit2 follows redirects; credentials do not. A server that redirects (301, 302, 307,
/// 308) to another origin gets the fetch refused with both origins named, and the recording
/// server there never sees the token, whether it was given as a credential or in the URL. A
/// redirect within the origin is followed.
#[test]
fn a_redirect_to_another_origin_never_receives_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = HttpServer::start(&dir.path().join("https"));
    TestRepo::create(&server.root.join("private"), "moved", &[("a.txt", b"1")]);
    for code in [301, 302, 307, 308] {
        for in_url in [false, true] {
            let url = server.redirect_url(code, "moved");
            let (url, credentials) = match in_url {
                false => (url, token(&server.ca.ca_pem)),
                true => (
                    url.replace("https://", &format!("https://{ALICE}:{TOKEN}@")),
                    GitCredentials {
                        ca_certificate: server.ca.ca_pem.clone(),
                        ..GitCredentials::default()
                    },
                ),
            };
            let cache = dir.path().join(format!("cache-{code}-{in_url}"));
            let client = client(&cache, settings());
            let message = assert_kind(fetch(&client, &url, "main", &credentials), "not_allowed");
            let recorder = format!("https://127.0.0.1:{}", server.recording_port);
            let ours = format!("https://127.0.0.1:{}", server.https_port);
            assert!(
                message.contains(&recorder) && message.contains(&ours),
                "{code}: {message}"
            );
            assert!(!message.contains(TOKEN), "{message}");
        }
    }
    let seen = server.recorded_authorizations();
    assert!(seen.iter().all(|line| line.trim() == "-"), "{seen:?}");
    assert!(
        !seen.is_empty(),
        "the redirects were followed to the recorder"
    );
    // Within the origin, a redirect is followed and the token works.
    let client = client(&dir.path().join("cache-same"), settings());
    let url = server.same_origin_redirect_url("moved");
    fetch(&client, &url, "main", &token(&server.ca.ca_pem)).unwrap();
}

/// A branch that has not moved since it was fetched costs the ref advertisement and nothing
/// more (as `git fetch` skips it); the private repository's token is still asked for; a branch
/// that moved is fetched through the same connection; a missing one is named without a fetch.
#[test]
fn an_unmoved_branch_costs_one_request() {
    let dir = tempfile::tempdir().unwrap();
    let server = HttpServer::start(&dir.path().join("https"));
    let repo = TestRepo::create(&server.root.join("private"), "steady", &[("a.md", b"1")]);
    let url = server.https_url("private", "steady");
    let client = client(&dir.path().join("cache"), settings());
    let first = fetch(&client, &url, "main", &token(&server.ca.ca_pem))
        .unwrap()
        .commit;
    let requests = |from: usize| -> Vec<String> {
        server.requests()[from..]
            .iter()
            .map(|r| r.rsplit('/').next().unwrap().to_string())
            .collect()
    };
    let seen = server.requests().len();
    let again = fetch(&client, &url, "main", &token(&server.ca.ca_pem)).unwrap();
    assert_eq!(again.commit, first);
    // libgit2 asks without the token first, then with it: both for the advertisement only.
    assert_eq!(requests(seen), ["refs", "refs"], "{:?}", server.requests());
    drop(again);
    let wrong = GitCredentials {
        access_token: "wrong".into(),
        ..token(&server.ca.ca_pem)
    };
    assert_kind(fetch(&client, &url, "main", &wrong), "auth_failed");

    let moved = repo.commit(&[("a.md", b"2")], &[], "move");
    let seen = server.requests().len();
    let fetched = fetch(&client, &url, "main", &token(&server.ca.ca_pem)).unwrap();
    assert_eq!(fetched.commit.to_string(), moved);
    assert!(
        requests(seen)
            .iter()
            .filter(|r| *r == "git-upload-pack")
            .count()
            >= 1,
        "{:?}",
        server.requests()
    );
    assert_eq!(
        requests(seen).iter().filter(|r| *r == "refs").count(),
        2,
        "one advertisement for the whole fetch: {:?}",
        server.requests()
    );
    drop(fetched);
    let seen = server.requests().len();
    let message = assert_kind(
        fetch(&client, &url, "nope", &token(&server.ca.ca_pem)),
        "ref_not_found",
    );
    assert!(message.contains("main"), "{message}");
    assert!(
        requests(seen).iter().all(|r| r == "refs"),
        "{:?}",
        server.requests()
    );
}
