//! The real Dify with our packages behind the relay, driven as the web app drives it: the
//! console routes (cookies and `X-CSRF-Token`), and the Knowledge API to see what a user's
//! import made. Started in a home of its own on `port`; skipped, saying so, where
//! `../shared/dify` is absent.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::real_dify::{self, RealDifyProcess};

pub struct WebApp {
    pub process: RealDifyProcess,
    /// The pipeline knowledge base `bootstrap` made, its pipeline and its data source node.
    pub pipeline: String,
    pub dataset: String,
    pub node: String,
    pub runtime: tokio::runtime::Runtime,
    pub http: reqwest::Client,
}

impl WebApp {
    /// Dify on `port` with `plugins` (`DIR:LAUNCHER,…`) behind the relay, their cache under
    /// `dir`, mirroring polling every 2 s, and `env` for them.
    pub fn start(dir: &Path, port: &str, plugins: &str, env: &[(&str, &str)]) -> Option<WebApp> {
        let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/dify");
        let cache = dir.join("cache");
        let mut all = vec![
            ("DIFY_DAEMON", "relay"),
            ("DIFY_RELAY_PLUGINS", plugins),
            ("GIT_DATASOURCE_ALLOW_LOCAL", "1"),
            ("GIT_DATASOURCE_CACHE_DIR", cache.to_str().unwrap()),
            ("GIT_DATASOURCE_MIRROR_POLL_SECS", "2"),
        ];
        all.extend_from_slice(env);
        let process =
            RealDifyProcess::start_with(&scripts, port, &all, "the fake daemon tests still ran")?;
        let boot = process.boot.clone();
        let mut app = WebApp {
            process,
            pipeline: String::new(),
            dataset: boot["pipeline_dataset_id"].as_str().unwrap().to_string(),
            node: boot["start_node_id"].as_str().unwrap().to_string(),
            runtime: real_dify::runtime(),
            http: real_dify::http_client(),
        };
        let dataset = app.json(
            reqwest::Method::GET,
            &format!("/datasets/{}", app.dataset),
            None,
        );
        app.pipeline = dataset["pipeline_id"].as_str().unwrap().to_string();
        Some(app)
    }

    /// A console call as the web app makes it (cookies and `X-CSRF-Token`): status and body.
    pub fn call(&self, method: reqwest::Method, route: &str, body: Option<Value>) -> (u16, String) {
        let boot = &self.process.boot;
        let cookies: Vec<String> = boot["cookies"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap()))
            .collect();
        let url = format!("{}/console/api{route}", self.process.url);
        self.runtime.block_on(async {
            let mut request = self
                .http
                .request(method, &url)
                .header("Cookie", cookies.join("; "))
                .header("X-CSRF-Token", boot["csrf_token"].as_str().unwrap());
            if let Some(body) = body {
                request = request
                    .header("Content-Type", "application/json")
                    .body(body.to_string());
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.text().await.unwrap())
        })
    }

    /// A console call that must succeed: its JSON.
    pub fn json(&self, method: reqwest::Method, route: &str, body: Option<Value>) -> Value {
        let (status, text) = self.call(method, route, body);
        assert!((200..300).contains(&status), "{route}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// The pipeline's draft: its graph and hash.
    pub fn draft(&self) -> (Value, Value) {
        let route = format!("/rag/pipelines/{}/workflows/draft", self.pipeline);
        let draft = self.json(reqwest::Method::GET, &route, None);
        (draft["graph"].clone(), draft["hash"].clone())
    }

    /// Saves `graph` as the draft (of `hash`), and with `publish` publishes it.
    pub fn save_draft(&self, graph: &Value, hash: &Value, publish: bool) {
        self.json(
            reqwest::Method::POST,
            &format!("/rag/pipelines/{}/workflows/draft", self.pipeline),
            Some(
                serde_json::json!({"graph": graph, "hash": hash, "features": {},
                                    "environment_variables": [], "conversation_variables": [],
                                    "rag_pipeline_variables": []}),
            ),
        );
        if publish {
            self.json(
                reqwest::Method::POST,
                &format!("/rag/pipelines/{}/workflows/publish", self.pipeline),
                Some(serde_json::json!({})),
            );
        }
    }

    /// A Knowledge API GET with the knowledge base's key: its JSON.
    pub fn service_get(&self, route: &str) -> Value {
        self.service_try_get(route)
            .unwrap_or_else(|| panic!("{route}: not found"))
    }

    /// [`Self::service_get`], `None` when the API answers 404 (a document deleted meanwhile).
    pub fn service_try_get(&self, route: &str) -> Option<Value> {
        let boot = &self.process.boot;
        let url = format!("{}{route}", boot["service_api_url"].as_str().unwrap());
        self.runtime.block_on(async {
            let response = self
                .http
                .get(&url)
                .bearer_auth(boot["dataset_api_key"].as_str().unwrap())
                .send()
                .await
                .unwrap();
            if response.status() == reqwest::StatusCode::NOT_FOUND {
                return None;
            }
            assert!(response.status().is_success(), "{url}: {response:?}");
            Some(serde_json::from_str(&response.text().await.unwrap()).unwrap())
        })
    }

    /// Waits until `read` (sorted) is `want` (sorted): (path, status, text) of every
    /// document, so none is stale, missing or twice; fails after 180 s showing both.
    pub fn wait_for_documents(
        &self,
        mut want: Vec<(String, String, String)>,
        read: impl Fn(&WebApp) -> Vec<(String, String, String)>,
    ) {
        want.sort();
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let mut have = read(self);
            have.sort();
            if have == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the knowledge base is not the branch after 180 s:\nhave {have:#?}\nwant {want:#?}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Every document of the knowledge base, as the Knowledge API lists them.
    pub fn all_documents(&self) -> Vec<Value> {
        let mut all = Vec::new();
        for page in 1..100 {
            let answer = self.service_get(&format!(
                "/datasets/{}/documents?page={page}&limit=100",
                self.dataset
            ));
            all.extend(answer["data"].as_array().unwrap().iter().cloned());
            if answer["has_more"] != Value::Bool(true) {
                break;
            }
        }
        all
    }
}
