//! A fake of Dify's Knowledge (dataset) Service API on loopback, following
//! `../shared/docs/knowledge-api.md` and what the real 1.13.2 answered: Bearer keys scoped to a
//! workspace, 401/404/403 in Dify's check order with its JSON error envelope, a list of at
//! most 100 documents per page ordered `created_at DESC, position DESC` with `total` and the
//! `has_more`/`limit` traps, each document's content twice, DELETE answering per version
//! (204 empty from 1.13, "200 with body 204" before), 404 for a document already gone, 403
//! for an archived one, and a route miss (HTML 404) for an id that is not a UUID.
//!
//! The list's `status` filter from 1.10.1 (display statuses; ignored before, and for an
//! unknown value).
//!
//! Document metadata as `services/metadata_service.py` keeps it: custom fields (`string`,
//! `number`, `time`; a name taken, or a built-in one, is a 400), values set in one call per
//! many documents, with `partial_update` keeping the values of other fields. Before 1.16 each
//! document is updated in turn, keyed by the name sent, and a missing document stops the
//! call with a 400 after the earlier ones were written; from 1.16 every field and document id
//! is checked first (404) and values are keyed by the field's stored name. The list shows a
//! document's bound fields as `[{id, name, type, value}]` (`null` without, before 1.16; `[]`
//! from 1.16), values as strings before 1.16.
//!
//! Beside it, an import simulator does what Dify does with the items of a crawl's final
//! message when the user presses *Save & Process*: one new `waiting` document per selected
//! item, all of one import in one transaction (one `created_at`, rising positions), no
//! upsert; then indexing turns each into `completed` or `error`. Faults can be injected.
//!
//! The knowledge-pipeline routes (`knowledge-api.md` §6) follow Dify 1.13.2's source: absent
//! (a route miss) before 1.13; `pipeline/datasource-plugins` lists the published graph's data
//! source nodes; `pipeline/run` requires every field (400 `invalid_param`), answers 400
//! "Pipeline not found" for a knowledge base without a pipeline and 500 for an unpublished
//! one, creates its documents `waiting` *before* it checks the process inputs (so a missing
//! required input leaves them waiting for ever, and answers 500 with Dify's message), never
//! checks the start node (documents of a wrong one are never indexed), and the batch's
//! `indexing-status` follows them. A worker indexes `auto_index` documents per request when
//! set, so indexing advances as a client polls.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::http::request::Parts;
use hyper::Response;
use serde_json::{json, Value};

use crate::loopback_http::LoopbackServer;

pub const KEY: &str = "dataset-fakeKey0123456789abcdef";

/// How DELETE answers success, by Dify version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteStyle {
    /// 1.13.0+: 204, empty body.
    NoContent,
    /// ~1.4 to 1.12: `return 204` taken as the body: HTTP 200, body `204`.
    OkWithBody204,
}

#[derive(Debug, Clone)]
pub struct Doc {
    pub id: String,
    /// `item`'s `source_url`, kept apart for lookups over every document.
    url: String,
    pub batch: String,
    pub position: i64,
    pub created_at: i64,
    pub item: Value,
    pub status: String,
    pub archived: bool,
    pub enabled: bool,
    /// `doc_metadata`: values by field name.
    pub metadata: serde_json::Map<String, Value>,
    /// The ids of the fields bound to it.
    pub bound: Vec<String>,
}

/// A custom metadata field of the knowledge base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub id: String,
    pub name: String,
    pub kind: String,
}

impl Doc {
    pub fn source_url(&self) -> &str {
        &self.url
    }
    pub fn content(&self) -> &str {
        self.item["content"].as_str().unwrap_or("")
    }
}

#[derive(Debug, Clone)]
pub struct Fault {
    /// `GET` or `DELETE`.
    pub method: &'static str,
    /// Only list requests for this page or later (GET), or any (DELETE).
    pub from_page: usize,
    /// Requests that still fail.
    pub remaining: usize,
    pub status: u16,
}

impl Fault {
    /// `remaining` requests of `method` (list requests from page `from_page` on) answer
    /// `status`.
    pub fn new(method: &'static str, from_page: usize, remaining: usize, status: u16) -> Self {
        Fault {
            method,
            from_page,
            remaining,
            status,
        }
    }
}

/// The knowledge base's pipeline.
#[derive(Debug, Clone)]
pub struct FakePipeline {
    pub published: bool,
    /// `(node_id, plugin_id, datasource_type)` of the published graph's data source nodes.
    pub nodes: Vec<(String, String, String)>,
    /// Process-form variables that must be given.
    pub required_inputs: Vec<String>,
}

pub const START_NODE: &str = "1750000000001";

impl Default for FakePipeline {
    fn default() -> Self {
        FakePipeline {
            published: true,
            nodes: vec![(
                START_NODE.into(),
                "dify-community/git_datasource".into(),
                "website_crawl".into(),
            )],
            required_inputs: Vec::new(),
        }
    }
}

pub struct KbState {
    pub enable_api: bool,
    /// Dify's version: the pipeline routes exist from 1.13.
    pub version: (u32, u32),
    /// `None`: a classic knowledge base.
    pub pipeline: Option<FakePipeline>,
    /// Documents the worker indexes per request (0: only [`FakeKnowledgeApi::index_all`]).
    pub auto_index: usize,
    /// Documents that are never indexed (a run that failed after creating them).
    pub stuck: std::collections::HashSet<String>,
    /// Runs with an item of one of these paths are refused after their documents exist.
    pub refused_paths: Vec<String>,
    /// `(source_url, content)` pushed while a live document already held it.
    pub duplicate_pushes: Vec<String>,
    /// After this many requests the fake raises `halted` (the test then drops its client).
    pub halt_at: Option<usize>,
    pub halted: bool,
    pub docs: Vec<Doc>,
    pub delete_style: DeleteStyle,
    pub faults: Vec<Fault>,
    /// `METHOD path?query` of every request, in arrival order.
    pub requests: Vec<String>,
    /// Paths (by source_url suffix) whose indexing ends in `error`.
    pub failing_paths: Vec<String>,
    pub fields: Vec<Field>,
    clock: i64,
    next_id: u64,
}

pub struct FakeKnowledgeApi {
    pub dataset: String,
    pub base_url: String,
    state: Arc<Mutex<KbState>>,
    _server: LoopbackServer,
}

impl FakeKnowledgeApi {
    pub fn start() -> FakeKnowledgeApi {
        let dataset = "3b7a52c1-5f1e-4c1a-9d7e-2f4e8c1d0a11".to_string();
        let state = Arc::new(Mutex::new(KbState {
            enable_api: true,
            version: (1, 13),
            pipeline: Some(FakePipeline::default()),
            auto_index: 0,
            stuck: Default::default(),
            refused_paths: Vec::new(),
            duplicate_pushes: Vec::new(),
            halt_at: None,
            halted: false,
            docs: Vec::new(),
            delete_style: DeleteStyle::NoContent,
            faults: Vec::new(),
            requests: Vec::new(),
            failing_paths: Vec::new(),
            fields: Vec::new(),
            clock: 1_790_000_000,
            next_id: 1,
        }));
        let (served, id) = (state.clone(), dataset.clone());
        let server = LoopbackServer::start(Arc::new(move |parts, body| {
            answer(&served, &id, parts, body)
        }));
        FakeKnowledgeApi {
            dataset,
            base_url: format!("http://127.0.0.1:{}/v1", server.port),
            state,
            _server: server,
        }
    }

    pub fn state(&self) -> MutexGuard<'_, KbState> {
        self.state.lock().unwrap()
    }

    /// What Dify does with the selected items of a crawl: one new `waiting` document each,
    /// in one transaction. Returns the new ids.
    pub fn import(&self, items: &[Value]) -> Vec<String> {
        create(&mut self.state(), items, "import")
    }

    /// The worker's pass: every `waiting` document ends `completed`, or `error` when its path
    /// is in `failing_paths`.
    pub fn index_all(&self) {
        let mut state = self.state();
        work(&mut state, usize::MAX);
    }

    pub fn docs(&self) -> Vec<Doc> {
        self.state().docs.clone()
    }

    pub fn request_count(&self) -> usize {
        self.state().requests.len()
    }

    pub fn fail(&self, fault: Fault) {
        self.state().faults.push(fault);
    }

    pub fn halted(&self) -> bool {
        self.state().halted
    }
}

/// One new `waiting` document per item (the whole item kept, as Dify's `json.dumps(item)`),
/// in one transaction: one `created_at`, rising positions, one batch.
fn create(state: &mut KbState, items: &[Value], batch: &str) -> Vec<String> {
    state.clock += 1;
    let created_at = state.clock;
    let batch = format!("{batch}-{created_at}");
    let first = state.docs.iter().map(|d| d.position).max().unwrap_or(0) + 1;
    // Live copies (not failed) of the pushed URLs, by URL and content: one pass over the
    // documents per run, so 100,000-document benches stay linear.
    let urls: std::collections::HashSet<&str> = items
        .iter()
        .filter_map(|i| i["source_url"].as_str())
        .collect();
    let mut live: std::collections::HashSet<(String, String)> = state
        .docs
        .iter()
        .filter(|d| d.status != "error" && urls.contains(d.url.as_str()))
        .map(|d| (d.source_url().to_string(), d.content().to_string()))
        .collect();
    let mut ids = Vec::new();
    for (position, item) in (first..).zip(items) {
        let n = state.next_id;
        state.next_id += 1;
        let id = format!("00000000-0000-4000-8000-{n:012x}");
        let mut item = json!({
            "source_url": item["source_url"], "content": item["content"],
            "title": item["title"], "description": item["description"],
        });
        item["credential_id"] = json!("cred-1");
        let url = item["source_url"].as_str().unwrap_or("").to_string();
        let content = item["content"].as_str().unwrap_or("").to_string();
        if !live.insert((url.clone(), content)) {
            state.duplicate_pushes.push(url);
        }
        state.docs.push(Doc {
            url: item["source_url"].as_str().unwrap_or("").to_string(),
            id: id.clone(),
            batch: batch.clone(),
            position,
            created_at,
            item,
            status: "waiting".into(),
            archived: false,
            enabled: true,
            metadata: serde_json::Map::new(),
            bound: Vec::new(),
        });
        ids.push(id);
    }
    ids
}

/// The worker: indexes up to `count` waiting documents, oldest first.
fn work(state: &mut KbState, count: usize) {
    let failing = state.failing_paths.clone();
    let mut order: Vec<usize> = (0..state.docs.len())
        .filter(|&i| state.docs[i].status == "waiting" && !state.stuck.contains(&state.docs[i].id))
        .collect();
    order.sort_by_key(|&i| (state.docs[i].created_at, state.docs[i].position));
    for i in order.into_iter().take(count) {
        let doc = &mut state.docs[i];
        let url = doc.source_url().to_string();
        doc.status = if failing.iter().any(|p| url.ends_with(&format!(":{p}"))) {
            "error".into()
        } else {
            "completed".into()
        };
    }
}

fn respond(status: u16, body: Vec<u8>, content_type: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("Content-Type", content_type)
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

fn error(status: u16, code: &str, message: &str) -> Response<Full<Bytes>> {
    let body = json!({"code": code, "message": message, "status": status});
    let mut response = respond(status, body.to_string().into_bytes(), "application/json");
    if status == 401 {
        response
            .headers_mut()
            .insert("WWW-Authenticate", "Bearer realm=\"api\"".parse().unwrap());
    }
    response
}

fn is_uuid(text: &str) -> bool {
    text.len() == 36
        && text.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn route_miss() -> Response<Full<Bytes>> {
    respond(
        404,
        b"<!doctype html>\n<html lang=en>\n<title>404 Not Found</title>\n".to_vec(),
        "text/html; charset=utf-8",
    )
}

fn answer(
    state: &Mutex<KbState>,
    dataset: &str,
    request: &Parts,
    body: &[u8],
) -> Response<Full<Bytes>> {
    let mut state = state.lock().unwrap();
    let method = request.method.as_str().to_string();
    let path = request.uri.path().to_string();
    let query = request.uri.query().unwrap_or("").to_string();
    state.requests.push(format!("{method} {path}?{query}"));
    if state.halt_at.is_some_and(|at| state.requests.len() >= at) {
        state.halted = true;
    }
    let per_request = state.auto_index;
    if per_request > 0 {
        work(&mut state, per_request);
    }
    let params: HashMap<&str, &str> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    let segments: Vec<&str> = path.trim_start_matches("/v1/").split('/').collect();
    // Routing first: a non-UUID id matches no route (404 before auth).
    let pipeline_routes = state.version >= (1, 13);
    let route = match (method.as_str(), segments.as_slice()) {
        ("GET", ["datasets", id, "pipeline", "datasource-plugins"])
            if is_uuid(id) && pipeline_routes =>
        {
            ("nodes", *id, None)
        }
        ("POST", ["datasets", id, "pipeline", "run"]) if is_uuid(id) && pipeline_routes => {
            ("run", *id, None)
        }
        ("GET", ["datasets", id, "documents", batch, "indexing-status"]) if is_uuid(id) => {
            ("batch", *id, Some(batch.to_string()))
        }
        ("GET", ["datasets", id]) if is_uuid(id) => ("detail", *id, None),
        ("GET", ["datasets", id, "metadata"]) if is_uuid(id) => ("fields", *id, None),
        ("POST", ["datasets", id, "metadata"]) if is_uuid(id) => ("new field", *id, None),
        ("POST", ["datasets", id, "documents", "metadata"]) if is_uuid(id) => ("values", *id, None),
        ("GET", ["datasets", id, "documents"]) if is_uuid(id) => ("list", *id, None),
        ("DELETE", ["datasets", id, "documents", doc]) if is_uuid(id) && is_uuid(doc) => {
            ("delete", *id, Some(doc.to_string()))
        }
        _ => return route_miss(),
    };
    match request
        .headers
        .get("Authorization")
        .and_then(|v| v.to_str().ok())
    {
        None => {
            return error(
                401,
                "unauthorized",
                "Authorization header must be provided and start with 'Bearer'",
            )
        }
        Some(header) => match header.split_once(' ') {
            Some((scheme, key)) if scheme.eq_ignore_ascii_case("bearer") && key.trim() == KEY => {}
            Some((scheme, _)) if !scheme.eq_ignore_ascii_case("bearer") => {
                return error(401, "unauthorized", "Authorization scheme must be 'Bearer'")
            }
            _ => return error(401, "unauthorized", "Access token is invalid"),
        },
    }
    if route.1 != dataset {
        return error(404, "not_found", "Dataset not found.");
    }
    if !state.enable_api {
        return error(403, "forbidden", "Dataset api access is not enabled.");
    }
    let page: usize = params
        .get("page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1)
        .max(1);
    if let Some(fault) = state
        .faults
        .iter_mut()
        .find(|f| f.method == method && f.remaining > 0 && (method != "GET" || page >= f.from_page))
    {
        fault.remaining -= 1;
        let status = fault.status;
        return error(status, "unknown", "Internal Server Error");
    }
    match route.0 {
        "detail" => respond(
            200,
            json!({"id": dataset, "name": "kb", "runtime_mode": "rag_pipeline", "enable_api": true,
                   "document_count": state.docs.len()})
            .to_string()
            .into_bytes(),
            "application/json",
        ),
        "list" => list(&state, &params),
        "fields" => fields(&state),
        "new field" => new_field(&mut state, body),
        "values" => set_values(&mut state, body),
        "nodes" => datasource_nodes(&state),
        "run" => run(&mut state, body),
        "batch" => batch_status(&state, route.2.as_deref().unwrap()),
        _ => {
            let id = route.2.unwrap();
            let Some(at) = state.docs.iter().position(|d| d.id == id) else {
                return error(404, "not_found", "Document Not Exists.");
            };
            if state.docs[at].archived {
                return error(
                    403,
                    "archived_document_immutable",
                    "The archived document is not editable.",
                );
            }
            state.docs.remove(at);
            match state.delete_style {
                DeleteStyle::NoContent => respond(204, Vec::new(), "application/json"),
                DeleteStyle::OkWithBody204 => respond(200, b"204\n".to_vec(), "application/json"),
            }
        }
    }
}

/// `display_status` (`models/dataset.py`).
fn display_status(doc: &Doc) -> &'static str {
    match (doc.status.as_str(), doc.archived, doc.enabled) {
        ("waiting", _, _) => "queuing",
        ("error", _, _) => "error",
        ("completed", true, _) => "archived",
        ("completed", false, true) => "available",
        ("completed", false, false) => "disabled",
        _ => "indexing",
    }
}

/// A document's bound fields as the list shows them.
fn doc_metadata(state: &KbState, doc: &Doc) -> Value {
    let modern = state.version >= (1, 16);
    let bound: Vec<Value> = state
        .fields
        .iter()
        .filter(|f| doc.bound.contains(&f.id))
        .map(|f| {
            let value = doc.metadata.get(&f.name).cloned().unwrap_or(Value::Null);
            // `fields.String` before 1.16.
            let value = match (modern, value) {
                (false, Value::Number(n)) => json!(n.to_string()),
                (_, value) => value,
            };
            json!({"id": f.id, "name": f.name, "type": f.kind, "value": value})
        })
        .collect();
    match (bound.is_empty(), modern) {
        (true, false) => Value::Null,
        _ => Value::Array(bound),
    }
}

fn fields(state: &KbState) -> Response<Full<Bytes>> {
    let listed: Vec<Value> = state
        .fields
        .iter()
        .map(|f| {
            let count = state
                .docs
                .iter()
                .filter(|d| d.bound.contains(&f.id))
                .count();
            json!({"id": f.id, "name": f.name, "type": f.kind, "count": count})
        })
        .collect();
    json_response(json!({"doc_metadata": listed, "built_in_field_enabled": false}))
}

const BUILT_IN_FIELDS: [&str; 5] = [
    "document_name",
    "uploader",
    "upload_date",
    "last_update_date",
    "source",
];

fn new_field(state: &mut KbState, body: &[u8]) -> Response<Full<Bytes>> {
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let (Some(kind), Some(name)) = (body["type"].as_str(), body["name"].as_str()) else {
        return error(400, "invalid_param", "1 validation error for MetadataArgs");
    };
    if !["string", "number", "time"].contains(&kind) {
        return error(
            400,
            "invalid_param",
            "1 validation error for MetadataArgs\ntype",
        );
    }
    if name.chars().count() > 255 {
        return error(
            400,
            "invalid_param",
            "Metadata name cannot exceed 255 characters.",
        );
    }
    if state.fields.iter().any(|f| f.name == name) {
        return error(400, "invalid_param", "Metadata name already exists.");
    }
    if BUILT_IN_FIELDS.contains(&name) {
        return error(
            400,
            "invalid_param",
            "Metadata name already exists in Built-in fields.",
        );
    }
    let n = state.next_id;
    state.next_id += 1;
    let field = Field {
        id: format!("0000000f-0000-4000-8000-{n:012x}"),
        name: name.to_string(),
        kind: kind.to_string(),
    };
    let answer = json!({"id": field.id, "name": field.name, "type": field.kind});
    state.fields.push(field);
    respond(201, answer.to_string().into_bytes(), "application/json")
}

fn set_values(state: &mut KbState, body: &[u8]) -> Response<Full<Bytes>> {
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let Some(operations) = body["operation_data"].as_array().cloned() else {
        return error(
            400,
            "invalid_param",
            "1 validation error for MetadataOperationData",
        );
    };
    let modern = state.version >= (1, 16);
    if modern {
        let unknown_field = operations
            .iter()
            .flat_map(|o| o["metadata_list"].as_array().cloned().unwrap_or_default())
            .any(|v| !state.fields.iter().any(|f| v["id"] == f.id.as_str()));
        if unknown_field {
            return error(404, "not_found", "Metadata not found.");
        }
    }
    let found: Vec<Option<usize>> = {
        let at: HashMap<&str, usize> = state
            .docs
            .iter()
            .enumerate()
            .map(|(at, d)| (d.id.as_str(), at))
            .collect();
        operations
            .iter()
            .map(|o| at.get(o["document_id"].as_str()?).copied())
            .collect()
    };
    if modern && found.contains(&None) {
        return error(404, "not_found", "Document not found.");
    }
    for (operation, at) in operations.iter().zip(found) {
        let Some(doc) = at.map(|at| &mut state.docs[at]) else {
            // A ValueError: 400, the earlier documents already written.
            return error(400, "invalid_param", "Document not found.");
        };
        let partial = operation["partial_update"] == true;
        if !partial {
            doc.metadata.clear();
            doc.bound.clear();
        }
        for value in operation["metadata_list"].as_array().into_iter().flatten() {
            let id = value["id"].as_str().unwrap_or_default().to_string();
            let name = match modern {
                true => state
                    .fields
                    .iter()
                    .find(|f| f.id == id)
                    .map(|f| f.name.clone())
                    .unwrap_or_default(),
                false => value["name"].as_str().unwrap_or_default().to_string(),
            };
            doc.metadata.insert(name, value["value"].clone());
            if !doc.bound.contains(&id) {
                doc.bound.push(id);
            }
        }
    }
    json_response(json!({"result": "success"}))
}

fn json_response(body: Value) -> Response<Full<Bytes>> {
    respond(200, body.to_string().into_bytes(), "application/json")
}

fn datasource_nodes(state: &KbState) -> Response<Full<Bytes>> {
    let Some(pipeline) = &state.pipeline else {
        return error(400, "invalid_param", "Pipeline not found");
    };
    if !pipeline.published {
        return error(400, "invalid_param", "Pipeline or workflow not found");
    }
    let nodes: Vec<Value> = pipeline
        .nodes
        .iter()
        .map(|(id, plugin, kind)| {
            json!({"node_id": id, "plugin_id": plugin, "provider_name": "git_datasource",
                   "datasource_type": kind, "title": "Git Repository", "user_input_variables": [],
                   "credentials": []})
        })
        .collect();
    json_response(Value::Array(nodes))
}

/// `POST /pipeline/run` as `PipelineRunApiEntity` and `PipelineGenerator.generate` do it.
fn run(state: &mut KbState, body: &[u8]) -> Response<Full<Bytes>> {
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(body) else {
        return error(400, "invalid_param", "Invalid JSON payload");
    };
    let fields = [
        ("inputs", body.get("inputs").is_some_and(Value::is_object)),
        (
            "datasource_type",
            body.get("datasource_type").is_some_and(Value::is_string),
        ),
        (
            "datasource_info_list",
            body.get("datasource_info_list").is_some_and(|l| {
                l.as_array()
                    .is_some_and(|items| items.iter().all(Value::is_object))
            }),
        ),
        (
            "start_node_id",
            body.get("start_node_id").is_some_and(Value::is_string),
        ),
        (
            "is_published",
            body.get("is_published").is_some_and(Value::is_boolean),
        ),
        (
            "response_mode",
            body.get("response_mode")
                .is_some_and(|m| m == "blocking" || m == "streaming"),
        ),
    ];
    if let Some((field, _)) = fields.iter().find(|(_, ok)| !ok) {
        return error(
            400,
            "invalid_param",
            &format!("1 validation error for PipelineRunApiEntity\n{field}\n  Field required"),
        );
    }
    let Some(pipeline) = state.pipeline.clone() else {
        return error(400, "invalid_param", "Pipeline not found");
    };
    if body["is_published"] != true {
        return error(
            400,
            "invalid_param",
            "fake: a debugger run (is_published false) is not modelled",
        );
    }
    if !pipeline.published {
        return error(500, "pipeline_run_error", "Workflow not published");
    }
    let kind = body["datasource_type"].as_str().unwrap();
    if ![
        "local_file",
        "online_document",
        "website_crawl",
        "online_drive",
    ]
    .contains(&kind)
    {
        return error(
            500,
            "pipeline_run_error",
            &format!("'{kind}' is not a valid DatasourceProviderType"),
        );
    }
    let items = body["datasource_info_list"].as_array().unwrap().clone();
    let ids = create(state, &items, "run");
    let start = body["start_node_id"].as_str().unwrap();
    let known_start = pipeline.nodes.iter().any(|(id, _, _)| id == start);
    let missing = pipeline
        .required_inputs
        .iter()
        .find(|name| body["inputs"].get(name.as_str()).is_none_or(Value::is_null));
    let refused = items.iter().any(|item| {
        let url = item["source_url"].as_str().unwrap_or("");
        state
            .refused_paths
            .iter()
            .any(|p| url.ends_with(&format!(":{p}")))
    });
    if missing.is_some() || refused || !known_start {
        // Created and committed, never queued (or queued to a start node that does not exist).
        state.stuck.extend(ids.iter().cloned());
    }
    if let Some(name) = missing {
        return error(
            500,
            "pipeline_run_error",
            &format!("{name} is required in input form"),
        );
    }
    if refused {
        return error(500, "pipeline_run_error", "fake: this run was refused");
    }
    // The run's documents are the last ones created.
    let created = &state.docs[state.docs.len() - ids.len()..];
    let batch = created.first().map(|d| d.batch.clone());
    let documents: Vec<Value> = created
        .iter()
        .map(|d| {
            json!({"id": d.id, "position": d.position, "data_source_type": "website_crawl",
                   "data_source_info": d.item, "name": d.item["title"], "indexing_status": d.status,
                   "error": null, "enabled": true})
        })
        .collect();
    json_response(json!({
        "batch": batch.unwrap_or_else(|| format!("run-{}", state.clock)),
        "dataset": {"id": "kb", "name": "kb", "description": "", "chunk_structure": "text_model"},
        "documents": documents,
    }))
}

fn batch_status(state: &KbState, batch: &str) -> Response<Full<Bytes>> {
    let data: Vec<Value> = state
        .docs
        .iter()
        .filter(|d| d.batch == batch)
        .map(|d| {
            json!({"id": d.id, "indexing_status": d.status, "processing_started_at": null,
                   "parsing_completed_at": null, "cleaning_completed_at": null,
                   "splitting_completed_at": null, "completed_at": null, "paused_at": null,
                   "error": if d.status == "error" { json!("chunker failed") } else { json!(null) },
                   "stopped_at": null, "completed_segments": 0, "total_segments": 0})
        })
        .collect();
    if data.is_empty() {
        return error(404, "not_found", "Documents not found.");
    }
    json_response(json!({ "data": data }))
}

fn list(state: &KbState, params: &HashMap<&str, &str>) -> Response<Full<Bytes>> {
    let number = |name: &str, default: i64| -> Result<i64, ()> {
        match params.get(name) {
            None => Ok(default),
            Some(text) => text.parse().map_err(|_| ()),
        }
    };
    let (Ok(page), Ok(limit)) = (number("page", 1), number("limit", 20)) else {
        return error(400, "invalid_param", "page and limit must be integers");
    };
    let per_page = if limit < 1 { 20 } else { limit.min(100) } as usize;
    let start = (page.max(1) as usize - 1) * per_page;
    // The `status` filter, from 1.10.1: a display status (case-insensitive, `active` and
    // `enabled` for `available`); any other value, and any value before, filters nothing.
    let wanted = params
        .get("status")
        .filter(|_| state.version >= (1, 10))
        .map(|s| s.to_ascii_lowercase())
        .map(|s| match s.as_str() {
            "active" | "enabled" => "available".to_string(),
            _ => s,
        })
        .filter(|s| {
            [
                "queuing",
                "indexing",
                "paused",
                "error",
                "available",
                "disabled",
                "archived",
            ]
            .contains(&s.as_str())
        });
    // Newest first; documents are created in that order, so a sort is rarely needed.
    let key = |d: &Doc| (d.created_at, d.position);
    let mut ordered: Vec<&Doc> = state
        .docs
        .iter()
        .filter(|d| wanted.as_deref().is_none_or(|w| display_status(d) == w))
        .collect();
    if ordered.windows(2).all(|w| key(w[0]) < key(w[1])) {
        ordered.reverse();
    } else {
        ordered.sort_by_key(|d| std::cmp::Reverse(key(d)));
    }
    let data: Vec<Value> = ordered
        .iter()
        .skip(start)
        .take(per_page)
        .map(|d| {
            let display = display_status(d);
            json!({
                "id": d.id, "position": d.position, "data_source_type": "website_crawl",
                "data_source_info": d.item, "data_source_detail_dict": d.item,
                "dataset_process_rule_id": null, "name": d.item["title"], "created_from": "rag-pipeline",
                "created_by": "u1", "created_at": d.created_at, "tokens": 0, "indexing_status": d.status,
                "error": if d.status == "error" { json!("chunker failed") } else { json!(null) },
                "enabled": d.enabled, "disabled_at": null, "disabled_by": null, "archived": d.archived,
                "display_status": display, "word_count": d.content().len(), "hit_count": 0,
                "doc_form": "text_model", "doc_metadata": doc_metadata(state, d),
                "summary_index_status": null, "need_summary": false,
            })
        })
        .collect();
    let body = json!({
        "has_more": data.len() as i64 == limit, "data": data, "limit": limit,
        "total": ordered.len(), "page": page,
    });
    respond(200, body.to_string().into_bytes(), "application/json")
}
