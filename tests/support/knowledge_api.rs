//! A fake of Dify's Knowledge (dataset) Service API on loopback, following
//! `../shared/docs/knowledge-api.md` and what the real 1.13.2 answered: Bearer keys scoped to a
//! workspace, 401/404/403 in Dify's check order with its JSON error envelope, a list of at
//! most 100 documents per page ordered `created_at DESC, position DESC` with `total` and the
//! `has_more`/`limit` traps, each document's content twice, DELETE answering per version
//! (204 empty from 1.13, "200 with body 204" before), 404 for a document already gone, 403
//! for an archived one, and a route miss (HTML 404) for an id that is not a UUID.
//!
//! Beside it, an import simulator does what Dify does with the items of a crawl's final
//! message when the user presses *Save & Process*: one new `waiting` document per selected
//! item, all of one import in one transaction (one `created_at`, rising positions), no
//! upsert; then indexing turns each into `completed` or `error`. Faults can be injected.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response};
use serde_json::{json, Value};

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
    pub position: i64,
    pub created_at: i64,
    pub item: Value,
    pub status: String,
    pub archived: bool,
    pub enabled: bool,
}

impl Doc {
    pub fn source_url(&self) -> &str {
        self.item["source_url"].as_str().unwrap_or("")
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

pub struct KbState {
    pub enable_api: bool,
    pub docs: Vec<Doc>,
    pub delete_style: DeleteStyle,
    pub faults: Vec<Fault>,
    /// `METHOD path?query` of every request, in arrival order.
    pub requests: Vec<String>,
    /// Paths (by source_url suffix) whose indexing ends in `error`.
    pub failing_paths: Vec<String>,
    clock: i64,
    next_id: u64,
}

pub struct FakeKnowledgeApi {
    pub dataset: String,
    pub base_url: String,
    state: Arc<Mutex<KbState>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl FakeKnowledgeApi {
    pub fn start() -> FakeKnowledgeApi {
        let dataset = "3b7a52c1-5f1e-4c1a-9d7e-2f4e8c1d0a11".to_string();
        let state = Arc::new(Mutex::new(KbState {
            enable_api: true,
            docs: Vec::new(),
            delete_style: DeleteStyle::NoContent,
            faults: Vec::new(),
            requests: Vec::new(),
            failing_paths: Vec::new(),
            clock: 1_790_000_000,
            next_id: 1,
        }));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let (served, id) = (state.clone(), dataset.clone());
        std::thread::spawn(move || {
            runtime.block_on(async move {
                loop {
                    let accepted = tokio::select! {
                        accepted = listener.accept() => accepted,
                        _ = &mut stopped => break,
                    };
                    let Ok((stream, _)) = accepted else { continue };
                    let (state, id) = (served.clone(), id.clone());
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |request| {
                            let response = answer(&state, &id, &request);
                            async move { Ok::<_, Infallible>(response) }
                        });
                        let io = hyper_util::rt::TokioIo::new(stream);
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(io, service)
                            .await;
                    });
                }
            })
        });
        FakeKnowledgeApi {
            dataset,
            base_url: format!("http://127.0.0.1:{port}/v1"),
            state,
            stop: Some(stop),
        }
    }

    pub fn state(&self) -> MutexGuard<'_, KbState> {
        self.state.lock().unwrap()
    }

    /// What Dify does with the selected items of a crawl: one new `waiting` document each,
    /// in one transaction. Returns the new ids.
    pub fn import(&self, items: &[Value]) -> Vec<String> {
        let mut state = self.state();
        state.clock += 1;
        let created_at = state.clock;
        let first = state.docs.iter().map(|d| d.position).max().unwrap_or(0) + 1;
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
            state.docs.push(Doc {
                id: id.clone(),
                position,
                created_at,
                item,
                status: "waiting".into(),
                archived: false,
                enabled: true,
            });
            ids.push(id);
        }
        ids
    }

    /// The worker's pass: every `waiting` document ends `completed`, or `error` when its path
    /// is in `failing_paths`.
    pub fn index_all(&self) {
        let mut state = self.state();
        let failing = state.failing_paths.clone();
        for doc in state.docs.iter_mut().filter(|d| d.status == "waiting") {
            let url = doc.source_url().to_string();
            doc.status = if failing.iter().any(|p| url.ends_with(&format!(":{p}"))) {
                "error".into()
            } else {
                "completed".into()
            };
        }
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
}

impl Drop for FakeKnowledgeApi {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
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

fn answer<B>(state: &Mutex<KbState>, dataset: &str, request: &Request<B>) -> Response<Full<Bytes>> {
    let mut state = state.lock().unwrap();
    let method = request.method().as_str().to_string();
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    state.requests.push(format!("{method} {path}?{query}"));
    let params: HashMap<&str, &str> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    let segments: Vec<&str> = path.trim_start_matches("/v1/").split('/').collect();
    // Routing first: a non-UUID id matches no route (404 before auth).
    let route = match (method.as_str(), segments.as_slice()) {
        ("GET", ["datasets", id]) if is_uuid(id) => ("detail", *id, None),
        ("GET", ["datasets", id, "documents"]) if is_uuid(id) => ("list", *id, None),
        ("DELETE", ["datasets", id, "documents", doc]) if is_uuid(id) && is_uuid(doc) => {
            ("delete", *id, Some(doc.to_string()))
        }
        _ => return route_miss(),
    };
    match request
        .headers()
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
    let mut ordered: Vec<&Doc> = state.docs.iter().collect();
    ordered.sort_by_key(|d| std::cmp::Reverse((d.created_at, d.position)));
    let data: Vec<Value> = ordered
        .iter()
        .skip(start)
        .take(per_page)
        .map(|d| {
            let display = match (d.status.as_str(), d.archived, d.enabled) {
                ("waiting", _, _) => "queuing",
                ("error", _, _) => "error",
                ("completed", true, _) => "archived",
                ("completed", false, true) => "available",
                ("completed", false, false) => "disabled",
                _ => "indexing",
            };
            json!({
                "id": d.id, "position": d.position, "data_source_type": "website_crawl",
                "data_source_info": d.item, "data_source_detail_dict": d.item,
                "dataset_process_rule_id": null, "name": d.item["title"], "created_from": "rag-pipeline",
                "created_by": "u1", "created_at": d.created_at, "tokens": 0, "indexing_status": d.status,
                "error": if d.status == "error" { json!("chunker failed") } else { json!(null) },
                "enabled": d.enabled, "disabled_at": null, "disabled_by": null, "archived": d.archived,
                "display_status": display, "word_count": d.content().len(), "hit_count": 0,
                "doc_form": "text_model", "doc_metadata": null, "summary_index_status": null, "need_summary": false,
            })
        })
        .collect();
    let body = json!({
        "has_more": data.len() as i64 == limit, "data": data, "limit": limit,
        "total": ordered.len(), "page": page,
    });
    respond(200, body.to_string().into_bytes(), "application/json")
}
