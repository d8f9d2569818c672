//! Mirroring against the real Dify API (1.16.1 by default, `DIFY_VERSION=1.13.2` for the older
//! one; `../shared/dify`, started by this test on
//! loopback with PostgreSQL, Redis and its worker): the same histories as the fake-based
//! test, through the fake daemon and the plugin binary, with imports made exactly as a
//! user's *Save & Process* makes them (the knowledge base's published pipeline, through
//! `pipeline/run`) and indexed for real; the plugin pushing the rest of a change set larger
//! than its message itself after such an import; then `git-datasource sync` (the binary) mirrors
//! another repository into the same knowledge base through the pipeline API, beside the
//! first one's documents. Skipped, saying so, where `../shared/dify` is absent.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::mirror_scenario::{self, KnowledgeBase};
use crate::support::real_dify::{self, RealDifyProcess};
use serde_json::{json, Value};

const PORT: &str = "5301";

struct RealDify {
    _process: RealDifyProcess,
    service_api: String,
    key: String,
    dataset: String,
    /// A classic (non-pipeline) knowledge base.
    classic_dataset: String,
    start_node: String,
    runtime: tokio::runtime::Runtime,
    http: reqwest::Client,
}

impl RealDify {
    fn start() -> Option<RealDify> {
        let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/dify");
        let process =
            RealDifyProcess::start(&scripts, PORT, "the fake-based mirroring tests still ran")?;
        let boot = process.boot.clone();
        Some(RealDify {
            _process: process,
            service_api: boot["service_api_url"].as_str().unwrap().to_string(),
            key: boot["dataset_api_key"].as_str().unwrap().to_string(),
            dataset: boot["pipeline_dataset_id"].as_str().unwrap().to_string(),
            classic_dataset: boot["dataset_id"].as_str().unwrap().to_string(),
            start_node: boot["start_node_id"].as_str().unwrap().to_string(),
            runtime: real_dify::runtime(),
            http: real_dify::http_client(),
        })
    }

    fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.service_api);
        self.runtime.block_on(async {
            let mut request = self.http.request(method, &url).bearer_auth(&self.key);
            if let Some(body) = body {
                request = request
                    .header("Content-Type", "application/json")
                    .body(body.to_string());
            }
            let response = request.send().await.unwrap();
            let status = response.status();
            let text = response.text().await.unwrap();
            assert!(status.is_success(), "{path}: {status} {text}");
            serde_json::from_str(&text).unwrap_or(Value::Null)
        })
    }

    /// Every document, newest first.
    fn documents(&self) -> Vec<Value> {
        let mut all = Vec::new();
        for page in 1.. {
            let answer = self.call(
                reqwest::Method::GET,
                &format!("/datasets/{}/documents?page={page}&limit=100", self.dataset),
                None,
            );
            let data = answer["data"].as_array().unwrap().clone();
            let total = answer["total"].as_u64().unwrap() as usize;
            all.extend(data);
            if all.len() >= total || page * 100 >= total {
                return all;
            }
        }
        unreachable!()
    }
}

impl KnowledgeBase for RealDify {
    fn api_url(&self) -> String {
        self.service_api.clone()
    }
    fn key(&self) -> String {
        self.key.clone()
    }
    fn dataset(&self) -> String {
        self.dataset.clone()
    }
    /// A NUL in a document's text makes the real indexing fail (PostgreSQL refuses it).
    fn import(&self, items: &[Value], failing: &[&str]) {
        let items: Vec<Value> = items
            .iter()
            .map(|item| {
                let mut item = item.clone();
                if failing.contains(&item["title"].as_str().unwrap()) {
                    item["content"] = json!(format!("{}\u{0}", item["content"].as_str().unwrap()));
                }
                item
            })
            .collect();
        let answer = self.call(
            reqwest::Method::POST,
            &format!("/datasets/{}/pipeline/run", self.dataset),
            Some(json!({"inputs": {}, "datasource_type": "website_crawl", "start_node_id": self.start_node,
                        "is_published": true, "response_mode": "blocking", "datasource_info_list": items})),
        );
        assert_eq!(
            answer["documents"].as_array().unwrap().len(),
            items.len(),
            "{answer}"
        );
    }
    fn wait_indexed(&self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let waiting = self
                .documents()
                .iter()
                .filter(|d| !matches!(d["indexing_status"].as_str(), Some("completed" | "error")))
                .count();
            if waiting == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{waiting} documents still indexing after 120 s"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    fn ours(&self, prefix: &str) -> Vec<(String, String, String)> {
        self.documents()
            .iter()
            .filter_map(|d| {
                let info = &d["data_source_info"];
                let path = info["source_url"].as_str()?.strip_prefix(prefix)?;
                Some((
                    path.to_string(),
                    d["indexing_status"].as_str().unwrap_or("").to_string(),
                    info["content"].as_str().unwrap_or("").to_string(),
                ))
            })
            .collect()
    }
}

#[test]
fn mirroring_against_the_real_dify_api() {
    let Some(dify) = RealDify::start() else {
        return;
    };
    let (validate, histories) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    mirror_scenario::validation(&dify, validate.path());
    mirror_scenario::main_histories(&dify, histories.path());
    let pushed = tempfile::tempdir().unwrap();
    mirror_scenario::push_after_import(&dify, pushed.path());
    let synced = tempfile::tempdir().unwrap();
    sync_through_the_pipeline_api(&dify, synced.path());
    let configured = tempfile::tempdir().unwrap();
    sync_config(&dify, configured.path());
}

/// `git-datasource sync` as a CI job runs it: key from the environment, exit status read.
fn sync(
    dify: &RealDify,
    repo: &Path,
    dataset: &str,
    state: &Path,
    extra: &[&str],
) -> (i32, String) {
    let mut args: Vec<&std::ffi::OsStr> = vec![repo.as_os_str()];
    for arg in [
        "--knowledge-base",
        dataset,
        "--dify-api-url",
        &dify.service_api,
    ] {
        args.push(arg.as_ref());
    }
    args.extend([OsStr::new("--state-dir"), state.as_os_str()]);
    args.extend(extra.iter().map(OsStr::new));
    run_sync(dify, &args, "GIT_DATASOURCE_DIFY_API_KEY")
}

/// `git-datasource sync ARGS` with the Knowledge API key in the variable `key_in` (and in no
/// other): its exit status and all it printed, which never shows the key.
fn run_sync(dify: &RealDify, args: &[&OsStr], key_in: &str) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_git-datasource"))
        .arg("sync")
        .args(args)
        .env_remove("GIT_DATASOURCE_DIFY_API_KEY")
        .env(key_in, &dify.key)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!text.contains(&dify.key), "the key was shown: {text}");
    (output.status.code().unwrap_or(-1), text)
}

/// A repository `name` of `count` Markdown files under `folder/`, and its files.
fn numbered_repository(
    dir: &Path,
    name: &str,
    folder: &str,
    count: usize,
) -> (crate::support::git_servers::TestRepo, Vec<(String, String)>) {
    let files: Vec<(String, String)> = (0..count)
        .map(|n| {
            (
                format!("{folder}/{n:02}.md"),
                format!("# {folder} {n}\n\nSynced text {n}.\n"),
            )
        })
        .collect();
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_bytes()))
        .collect();
    let repo = crate::support::git_servers::TestRepo::create(dir, name, &refs);
    (repo, files)
}

fn sync_through_the_pipeline_api(dify: &RealDify, dir: &Path) {
    let (repo, files) = numbered_repository(dir, "synced", "guide", 12);
    let state = dir.join("state");
    let bare = repo.bare.to_str().unwrap().to_string();
    let prefix = crate::support::crawl_harness::source_url_prefix(&bare);
    let others_before = dify.documents().len() - dify.ours(&prefix).len();
    let mirrored = |expected: &[(String, String)]| {
        let mut ours = dify.ours(&prefix);
        ours.sort();
        let want: Vec<(String, String, String)> = expected
            .iter()
            .map(|(p, c)| (p.clone(), "completed".to_string(), c.clone()))
            .collect();
        assert_eq!(ours, want);
        assert_eq!(
            dify.documents().len() - ours.len(),
            others_before,
            "the other repository's documents are untouched"
        );
    };

    let (code, text) = sync(dify, &repo.bare, &dify.dataset, &state, &["--dry-run"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("would offer 12 files"), "{text}");

    let (code, text) = sync(
        dify,
        &repo.bare,
        &dify.dataset,
        &state,
        &["--batch-files", "5"],
    );
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("pushed 12 in 4 pipeline runs"), "{text}");
    mirrored(&files);

    let mut files = files;
    files[3].1 = "# Part 3\n\nRewritten.\n".into();
    files.remove(7);
    repo.commit(
        &[("guide/03.md", files[3].1.as_bytes())],
        &["guide/07.md"],
        "edit",
    );
    let (code, text) = sync(dify, &repo.bare, &dify.dataset, &state, &[]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("pushed 1 "), "{text}");
    assert!(text.contains("deleted: guide/03.md, guide/07.md"), "{text}");
    mirrored(&files);

    let (code, text) = sync(dify, &repo.bare, &dify.dataset, &state, &[]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("already mirrors"), "{text}");

    let (code, text) = sync(dify, &repo.bare, &dify.classic_dataset, &state, &[]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("not a knowledge-pipeline knowledge base"),
        "{text}"
    );
    let (code, text) = sync(
        dify,
        &repo.bare,
        &dify.dataset,
        &state,
        &["--start-node", "42", "--full"],
    );
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("no Git Repository node 42"), "{text}");
    mirrored(&files);
    git_metadata_filters_retrieval(dify, &repo, &state, &prefix);
}

/// Every document carries its Git metadata in the real Dify, and a retrieval filtered by
/// `git_directory` (the dataset's hit-testing route, as a Knowledge Retrieval node filters)
/// returns only that directory's documents.
fn git_metadata_filters_retrieval(
    dify: &RealDify,
    repo: &crate::support::git_servers::TestRepo,
    state: &Path,
    prefix: &str,
) {
    repo.commit(
        &[
            (
                "api/users.md",
                b"# Users\n\nThe xylophone endpoint lists users.\n",
            ),
            (
                "notes/users.md",
                b"# Notes\n\nA xylophone note about users.\n",
            ),
        ],
        &[],
        "two files that say xylophone",
    );
    let (code, text) = sync(dify, &repo.bare, &dify.dataset, state, &[]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("Git metadata set on 2 documents"), "{text}");
    let listed = dify.documents();
    let ours: Vec<&Value> = listed
        .iter()
        .filter(|d| {
            d["data_source_info"]["source_url"]
                .as_str()
                .is_some_and(|u| u.starts_with(prefix))
        })
        .collect();
    for doc in &ours {
        let values: std::collections::BTreeMap<&str, &str> = doc["doc_metadata"]
            .as_array()
            .unwrap_or_else(|| panic!("no metadata: {doc}"))
            .iter()
            .filter_map(|m| Some((m["name"].as_str()?, m["value"].as_str()?)))
            .collect();
        let path =
            doc["data_source_info"]["source_url"].as_str().unwrap()[prefix.len()..].to_string();
        assert_eq!(values.get("git_path"), Some(&path.as_str()), "{doc}");
        assert_eq!(values.get("git_branch"), Some(&"main"), "{doc}");
        assert_eq!(values.get("git_extension"), Some(&"md"), "{doc}");
        assert_eq!(
            values.get("git_directory").copied(),
            path.split('/').next(),
            "{doc}"
        );
    }
    let search = |conditions: Option<Value>| {
        let mut model = json!({"search_method": "keyword_search", "reranking_enable": false,
                               "top_k": 10, "score_threshold_enabled": false});
        if let Some(conditions) = conditions {
            model["metadata_filtering_conditions"] = conditions;
        }
        let answer = dify.call(
            reqwest::Method::POST,
            &format!("/datasets/{}/hit-testing", dify.dataset),
            Some(json!({"query": "xylophone", "retrieval_model": model})),
        );
        let mut names: Vec<String> = answer["records"]
            .as_array()
            .unwrap_or_else(|| panic!("{answer}"))
            .iter()
            .map(|r| {
                r["segment"]["document"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
            .collect();
        names.sort();
        names.dedup();
        names
    };
    let everywhere = search(None);
    assert_eq!(everywhere, ["api/users.md", "notes/users.md"]);
    let in_api = search(Some(json!({"logical_operator": "and", "conditions": [
        {"name": "git_directory", "comparison_operator": "is", "value": "api"}]})));
    assert_eq!(in_api, ["api/users.md"]);
}

/// `git-datasource sync --config` with three entries, two repositories into the pipeline
/// knowledge base and one into a classic one (which cannot take them): the two are mirrored
/// and indexed by the real Dify, the third fails alone, the exit status is the worst.
fn sync_config(dify: &RealDify, dir: &Path) {
    use crate::support::git_servers::TestRepo;
    let (guide, guide_files) = numbered_repository(dir, "guide", "guide", 3);
    let (manual, manual_files) = numbered_repository(dir, "manual", "manual", 2);
    let entry = |name: &str, repo: &TestRepo, dataset: &str| {
        format!(
            "  - name: {name}\n    repository: {}\n    knowledge_base: {dataset}\n",
            repo.bare.display()
        )
    };
    let config = dir.join("sync.yaml");
    let text = format!(
        "defaults:\n  dify:\n    api_url: {}\n    api_key_env: REAL_DIFY_DATASET_KEY\nsyncs:\n{}{}{}",
        dify.service_api,
        entry("guide", &guide, &dify.dataset),
        entry("classic", &guide, &dify.classic_dataset),
        entry("manual", &manual, &dify.dataset),
    );
    std::fs::write(&config, text).unwrap();
    let state = dir.join("state");
    let args = [
        "--config".as_ref(),
        config.as_os_str(),
        "--jobs".as_ref(),
        "2".as_ref(),
    ];
    let args = [&args[..], &["--state-dir".as_ref(), state.as_os_str()]].concat();
    let (code, text) = run_sync(dify, &args, "REAL_DIFY_DATASET_KEY");
    assert_eq!(code, 1, "{text}");
    let table = &text[text.rfind("entry ").expect(&text)..];
    let row = |name: &str| {
        table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{text}"))
            .to_string()
    };
    assert!(row("guide").contains("mirrored"), "{text}");
    assert!(row("manual").contains("mirrored"), "{text}");
    assert!(row("classic").contains("FAILED"), "{text}");
    assert!(
        text.contains("not a knowledge-pipeline knowledge base"),
        "{text}"
    );
    for (repo, files) in [(&guide, &guide_files), (&manual, &manual_files)] {
        let prefix = crate::support::crawl_harness::source_url_prefix(repo.bare.to_str().unwrap());
        let mut ours = dify.ours(&prefix);
        ours.sort();
        let want: Vec<(String, String, String)> = files
            .iter()
            .map(|(p, c)| (p.clone(), "completed".to_string(), c.clone()))
            .collect();
        assert_eq!(ours, want, "{text}");
    }
}
