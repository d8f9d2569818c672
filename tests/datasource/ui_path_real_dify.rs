//! What a user of the web app does, through the real Dify API (1.16.1 by default,
//! `DIFY_VERSION=1.13.2` for the older one) with our real package behind it: `../shared/dify`
//! started with `DIFY_DAEMON=relay`, the `.difypkg` unpacked as the daemon unpacks it and
//! started through its launcher. Every step is a console route the browser calls: the data
//! source node set up and published, an authorization added (Dify asks our binary to validate
//! it; a wrong key is refused with our message), *Run* (the SSE stream of the data source
//! node), *Save & Process* exactly as the browser sends it (`{...item, credential_id}`,
//! `response_mode: "blocking"`), a change of the branch, again; after each import the
//! knowledge base holds exactly the branch (mirroring on). A crawl error reaches the browser as
//! our message, not as the JSON of an error Dify does not know. Skipped, saying so, where
//! `../shared/dify` is absent.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::git_servers::TestRepo;
use crate::support::installed_package::{package, unpack};
use crate::support::package_files::launcher_command;
use crate::support::web_app::WebApp;
use serde_json::{json, Value};

const PORT: &str = "5303";
const PLUGIN: &str = "dify-community/git_datasource/git_datasource";

impl WebApp {
    /// The data source node's parameters in the draft (and, with `publish`, published).
    fn set_parameters(&self, parameters: Value, publish: bool) {
        let (mut graph, hash) = self.draft();
        for node in graph["nodes"].as_array_mut().unwrap() {
            if node["id"] == self.node.as_str() {
                let as_constants: serde_json::Map<String, Value> = parameters
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), json!({"type": "constant", "value": v})))
                    .collect();
                node["data"]["datasource_parameters"] = Value::Object(as_constants);
            }
        }
        self.save_draft(&graph, &hash, publish);
    }

    /// *Run*: the data source node's SSE stream; the items of its `datasource_completed`
    /// event, or the text of its `datasource_error`.
    fn run(&self, credential_id: &str) -> Result<Vec<Value>, String> {
        let (status, text) = self.call(
            reqwest::Method::POST,
            &format!(
                "/rag/pipelines/{}/workflows/published/datasource/nodes/{}/run",
                self.pipeline, self.node
            ),
            Some(json!({"inputs": {}, "datasource_type": "website_crawl",
                        "credential_id": credential_id})),
        );
        assert_eq!(status, 200, "{text}");
        for line in text.lines().filter_map(|l| l.strip_prefix("data: ")) {
            let event: Value = serde_json::from_str(line).unwrap();
            match event["event"].as_str() {
                Some("datasource_completed") => {
                    return Ok(event["data"].as_array().unwrap().clone())
                }
                Some("datasource_error") => {
                    return Err(event["error"].as_str().unwrap().to_string())
                }
                _ => {}
            }
        }
        panic!("the stream ended without a result: {text}");
    }

    /// *Save & Process* as the browser sends it.
    fn save_and_process(&self, items: &[Value], credential_id: &str) {
        let list: Vec<Value> = items
            .iter()
            .map(|item| {
                let mut item = item.clone();
                item["credential_id"] = json!(credential_id);
                item
            })
            .collect();
        let answer = self.json(
            reqwest::Method::POST,
            &format!("/rag/pipelines/{}/workflows/published/run", self.pipeline),
            Some(json!({"inputs": {}, "datasource_type": "website_crawl",
                        "datasource_info_list": list, "start_node_id": self.node,
                        "is_preview": false, "response_mode": "blocking"})),
        );
        assert!(answer["documents"].as_array().is_some(), "{answer}");
    }

    /// Every document of the knowledge base (through the Knowledge API): (source_url,
    /// indexing status, content).
    fn documents(&self) -> Vec<(String, String, String)> {
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        self.all_documents()
            .iter()
            .map(|d| {
                let info = &d["data_source_info"];
                (
                    text(&info["source_url"]),
                    text(&d["indexing_status"]),
                    text(&info["content"]),
                )
            })
            .collect()
    }

    /// The documents of one repository (`prefix` of their `source_url`), once indexed:
    /// (path, content), sorted.
    fn indexed(&self, prefix: &str) -> Vec<(String, String)> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let ours: Vec<_> = self
                .documents()
                .into_iter()
                .filter(|(url, _, _)| url.starts_with(prefix))
                .collect();
            if ours.iter().all(|(_, status, _)| status == "completed") {
                let mut ours: Vec<(String, String)> = ours
                    .into_iter()
                    .map(|(url, _, content)| (url[prefix.len()..].to_string(), content))
                    .collect();
                ours.sort();
                return ours;
            }
            assert!(Instant::now() < deadline, "still indexing after 120 s");
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Waits until the knowledge base holds exactly `files` (path, content) of the branch,
    /// each once, indexed: no stale, missing or duplicate document.
    fn holds_exactly(&self, prefix: &str, files: &[(String, String)]) {
        let want = files
            .iter()
            .map(|(p, c)| (format!("{prefix}{p}"), "completed".into(), c.clone()))
            .collect();
        self.wait_for_documents(want, WebApp::documents);
    }
}

fn start(dir: &Path) -> Option<WebApp> {
    let built = package(dir, &["--no-aarch64"]);
    assert!(built.status.success(), "{built:?}");
    let plugin = unpack(dir);
    let launcher = launcher_command(&plugin, &dir.join("launch"));
    let plugins = format!("{}:{}", plugin.display(), launcher.display());
    // One Run's result of at most 20 kB: a change set of 40 kB needs two.
    WebApp::start(
        dir,
        PORT,
        &plugins,
        &[("GIT_DATASOURCE_MAX_RESULT_BYTES", "20000")],
    )
}

#[test]
fn the_user_path_through_the_real_dify_keeps_the_knowledge_base_the_branch() {
    let dir = tempfile::tempdir().unwrap();
    let Some(browser) = start(dir.path()) else {
        return;
    };
    let boot = browser.process.boot.clone();
    let mut files: Vec<(String, String)> = (0..8)
        .map(|n| {
            (
                format!("docs/{n:02}.md"),
                format!("# Page {n}\n\nText {n}.\n"),
            )
        })
        .collect();
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_bytes()))
        .chain([("logo.png", b"\x89PNG\r\n\x1a\n\0\0" as &[u8])])
        .collect();
    let repo = TestRepo::create(dir.path(), "docs", &refs);
    let url = repo.bare.display().to_string();
    let prefix = crate::support::crawl_harness::source_url_prefix(&url);
    browser.set_parameters(
        json!({"repo_url": url, "knowledge_base_id": browser.dataset}),
        true,
    );

    // The authorization: Dify asks our binary; a wrong key is refused with our message.
    let route = format!("/auth/plugin/datasource/{PLUGIN}");
    let service_api = boot["service_api_url"].as_str().unwrap();
    let (status, text) = browser.call(
        reqwest::Method::POST,
        &route,
        Some(
            json!({"name": "wrong", "credentials": {"dify_api_url": service_api,
                                                    "dify_api_key": "dataset-not-a-real-key"}}),
        ),
    );
    assert!(status >= 400, "{status} {text}");
    assert!(
        text.contains("dify_api_key") && !text.contains("error_type"),
        "{text}"
    );
    browser.json(
        reqwest::Method::POST,
        &route,
        Some(
            json!({"name": "mirror", "credentials": {"dify_api_url": service_api,
                                                     "dify_api_key": boot["dataset_api_key"]}}),
        ),
    );
    let listed = browser.json(reqwest::Method::GET, &route, None);
    let credential = listed["result"][0]["id"].as_str().unwrap().to_string();

    // Run, Save & Process: every text file, once.
    let items = browser.run(&credential).unwrap();
    assert_eq!(items.len(), files.len(), "{items:?}");
    browser.save_and_process(&items, &credential);
    browser.holds_exactly(&prefix, &files);

    // Modify one, delete one, rename one, add one: Run offers exactly the three new
    // versions, and the knowledge base ends as the branch.
    files[1].1 = "# Page 1\n\nRewritten.\n".into();
    let renamed = ("docs/renamed.md".to_string(), files[2].1.clone());
    let added = ("docs/new.md".to_string(), "# New\n\nAdded.\n".to_string());
    repo.commit(
        &[
            (files[1].0.as_str(), files[1].1.as_bytes()),
            (renamed.0.as_str(), renamed.1.as_bytes()),
            (added.0.as_str(), added.1.as_bytes()),
        ],
        &[files[2].0.as_str(), files[3].0.as_str()],
        "change",
    );
    files.remove(3);
    files.remove(2);
    files.push(renamed);
    files.push(added);
    let items = browser.run(&credential).unwrap();
    let mut offered: Vec<&str> = items.iter().map(|i| i["title"].as_str().unwrap()).collect();
    offered.sort();
    assert_eq!(offered, ["docs/01.md", "docs/new.md", "docs/renamed.md"]);
    browser.save_and_process(&items, &credential);
    browser.holds_exactly(&prefix, &files);

    // A change set larger than one Run's result, with `large_change_sets: push_after_import`:
    // the import takes what the Run offered, and the plugin pushes the rest itself.
    browser.set_parameters(
        json!({"repo_url": url, "knowledge_base_id": browser.dataset,
               "large_change_sets": "push_after_import"}),
        true,
    );
    let many: Vec<(String, String)> = (0..40)
        .map(|n| {
            (
                format!("bulk/{n:02}.md"),
                format!("# Bulk {n}\n\n{}\n", "x".repeat(1000)),
            )
        })
        .collect();
    let refs: Vec<(&str, &[u8])> = many
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_bytes()))
        .collect();
    repo.commit(&refs, &[], "many");
    files.extend(many);
    let items = browser.run(&credential).unwrap();
    assert!(
        !items.is_empty() && items.len() < 40,
        "{} items in one Run",
        items.len()
    );
    browser.save_and_process(&items, &credential);
    browser.holds_exactly(&prefix, &files);

    // Without mirroring (an empty authorization, no knowledge base id): Run offers exactly
    // what changed since the last Run, and Dify keeps the documents of old versions.
    let mut plain_files: Vec<(String, String)> = (0..5)
        .map(|n| (format!("{n}.md"), format!("Plain {n}.\n")))
        .collect();
    let refs: Vec<(&str, &[u8])> = plain_files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_bytes()))
        .collect();
    let plain_repo = TestRepo::create(dir.path(), "plain", &refs);
    let plain_url = plain_repo.bare.display().to_string();
    let plain_prefix = crate::support::crawl_harness::source_url_prefix(&plain_url);
    browser.json(
        reqwest::Method::POST,
        &route,
        Some(json!({"name": "public", "credentials": {}})),
    );
    let listed = browser.json(reqwest::Method::GET, &route, None);
    let empty = listed["result"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "public")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    browser.set_parameters(json!({"repo_url": plain_url}), true);
    let items = browser.run(&empty).unwrap();
    assert_eq!(items.len(), 5);
    browser.save_and_process(&items, &empty);
    assert_eq!(browser.indexed(&plain_prefix), plain_files);
    plain_files[0].1 = "Plain 0, edited.\n".into();
    plain_repo.commit(
        &[(plain_files[0].0.as_str(), plain_files[0].1.as_bytes())],
        &[plain_files[1].0.as_str()],
        "edit one, delete one",
    );
    let old_first = ("0.md".to_string(), "Plain 0.\n".to_string());
    let deleted = plain_files.remove(1);
    let items = browser.run(&empty).unwrap();
    let offered: Vec<&str> = items.iter().map(|i| i["title"].as_str().unwrap()).collect();
    assert_eq!(offered, ["0.md"]);
    browser.save_and_process(&items, &empty);
    let mut expected = plain_files.clone();
    expected.extend([old_first, deleted]);
    expected.sort();
    assert_eq!(
        browser.indexed(&plain_prefix),
        expected,
        "without mirroring, the old version and the deleted file stay searchable"
    );

    // A crawl error reaches the browser as our message, not as JSON.
    browser.set_parameters(
        json!({"repo_url": dir.path().join("no-such-repo").display().to_string()}),
        false,
    );
    let error = browser.run(&credential).unwrap_err();
    assert!(
        error.contains("no-such-repo") && !error.contains("error_type"),
        "{error}"
    );
}
