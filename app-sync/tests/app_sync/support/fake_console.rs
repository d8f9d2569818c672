//! A fake of Dify's console API on loopback, following `../shared/docs/app-dsl.md`: sign-in
//! by version (JSON tokens before 1.9.2; cookies and a CSRF token checked on every call from
//! 1.9.2, `__Host-` names when configured for https from 1.10.0; a base64 password from
//! 1.11.2; the admin API key with `X-WORKSPACE-ID` from 1.11.0), token refresh, apps listed
//! 100 per page at most, DSL exported without secrets (the draft, or a published version by
//! `workflow_id`), imports that overwrite only workflow and chatflow apps, keep a secret only
//! for `[__HIDDEN__]` under the same variable id and wipe it for anything else, go pending
//! for a DSL newer than the server's for 10 minutes until confirmed, and publishing. What apps
//! refer to: knowledge bases (exported with their ids encrypted for the workspace, plain in the
//! draft graph; an import keeps plain ids and drops another workspace's), workflow tools, tool
//! credentials and installed plugins, each listed as Dify lists them. Deleting an app (an editor's).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::http::request::Parts;
use hyper::Response;
use serde_json::{json, Value};

use super::fake_openapi::OpenApiState;
use super::loopback_http::LoopbackServer;

pub const EMAIL: &str = "owner@example.com";
pub const PASSWORD: &str = "correct horse battery staple";
pub const ADMIN_KEY: &str = "admin-key-0123456789abcdef";
pub const WORKSPACE: &str = "8b0b5ad2-9e4b-4d43-a7a4-0f3c1d2e3f40";
pub const HIDDEN: &str = "[__HIDDEN__]";

/// One app as the console keeps it.
#[derive(Debug, Clone)]
pub struct FakeApp {
    pub id: String,
    pub name: String,
    pub mode: String,
    pub graph: Value,
    pub features: Value,
    /// `{id, name, value_type, value}`, secrets with their real values.
    pub environment_variables: Vec<Value>,
    /// Published versions: (workflow id, snapshot of graph, features, variables).
    pub published: Vec<(String, Value, Value, Vec<Value>)>,
    /// For chat apps: the model config.
    pub model_config: Value,
    pub dependencies: Vec<Value>,
    /// A workflow app nobody has opened yet: Dify has no draft to export.
    pub no_draft: bool,
}

/// A request as the console saw it.
pub struct SeenRequest {
    pub method: String,
    /// Path and query.
    pub target: String,
    pub headers: Vec<(String, String)>,
}

impl SeenRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

pub struct Pending {
    yaml: Value,
    app_id: Option<String>,
    at: Instant,
}

pub struct ConsoleState {
    pub version: (u32, u32, u32),
    pub dsl_version: String,
    /// Cookie names get `__Host-` (a https deployment; honoured from 1.10.0).
    pub host_prefix: bool,
    pub admin_key_enabled: bool,
    pub apps: BTreeMap<String, FakeApp>,
    /// Plugins installed in the workspace (others are reported missing).
    pub installed_plugins: Vec<String>,
    /// The tenant id: the key of the dataset ids an export encrypts.
    pub workspace: String,
    /// (id, name) of each knowledge base.
    pub knowledge_bases: Vec<(String, String)>,
    /// (provider id, name) of each workflow tool.
    pub workflow_tools: Vec<(String, String)>,
    /// Credentials by tool provider: (id, name).
    pub tool_credentials: BTreeMap<String, Vec<(String, String)>>,
    pub pending: BTreeMap<String, Pending>,
    /// Access tokens issued, with the CSRF token of their session; expired ones are gone.
    pub sessions: Vec<(String, String)>,
    pub refresh_tokens: Vec<String>,
    pub logins: usize,
    pub refreshes: usize,
    pub requests: Vec<SeenRequest>,
    /// Every request body.
    pub bodies: Vec<String>,
    pub pending_ttl: Duration,
    /// A hostile server (or proxy): every error answer quotes the whole request back.
    pub echo_requests: bool,
    /// Dify's OpenAPI (`OPENAPI_ENABLED=true`); `None`: off, `/openapi/v1` is not found.
    pub openapi: Option<OpenApiState>,
    /// The account may edit apps (an editor, admin or owner): deleting one needs it.
    pub can_edit: bool,
    next: u64,
}

impl ConsoleState {
    pub fn id(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix:0>8}-0000-4000-8000-{:012x}", self.next)
    }

    pub fn at_least(&self, v: (u32, u32, u32)) -> bool {
        self.version >= v
    }

    fn cookie_name(&self, base: &str) -> String {
        match self.host_prefix && self.at_least((1, 10, 0)) {
            true => format!("__Host-{base}"),
            false => base.to_string(),
        }
    }

    /// Ends every session: the next call with their tokens gets a 401.
    pub fn expire_sessions(&mut self) {
        self.sessions.clear();
    }

    pub fn app(&self, name: &str) -> &FakeApp {
        self.apps
            .values()
            .find(|a| a.name == name)
            .expect("an app of that name")
    }

    pub fn app_mut(&mut self, name: &str) -> &mut FakeApp {
        self.apps
            .values_mut()
            .find(|a| a.name == name)
            .expect("an app of that name")
    }
}

pub struct FakeConsole {
    pub url: String,
    state: Arc<Mutex<ConsoleState>>,
    _server: LoopbackServer,
}

impl FakeConsole {
    /// A console of Dify `version` (`"1.13.2"`).
    pub fn start(version: &str) -> FakeConsole {
        let parts: Vec<u32> = version.split('.').map(|p| p.parse().unwrap()).collect();
        let state = Arc::new(Mutex::new(ConsoleState {
            version: (parts[0], parts[1], parts[2]),
            // 1.16 writes DSL 0.7.0 (`app_dsl_service.py` CURRENT_DSL_VERSION).
            dsl_version: match (parts[0], parts[1]) >= (1, 16) {
                true => "0.7.0",
                false => "0.5.0",
            }
            .into(),
            host_prefix: false,
            admin_key_enabled: true,
            apps: BTreeMap::new(),
            installed_plugins: Vec::new(),
            workspace: WORKSPACE.into(),
            knowledge_bases: Vec::new(),
            workflow_tools: Vec::new(),
            tool_credentials: BTreeMap::new(),
            pending: BTreeMap::new(),
            sessions: Vec::new(),
            refresh_tokens: Vec::new(),
            logins: 0,
            refreshes: 0,
            requests: Vec::new(),
            bodies: Vec::new(),
            pending_ttl: Duration::from_secs(600),
            echo_requests: false,
            openapi: None,
            can_edit: true,
            next: 0,
        }));
        let served = state.clone();
        let server = LoopbackServer::start(Arc::new(move |parts, body| {
            let mut state = served.lock().unwrap();
            let mut response = answer(&mut state, parts, body);
            if state.echo_requests && response.status().as_u16() >= 400 {
                let quoted = format!("{:?} {}", parts.headers, String::from_utf8_lossy(body));
                let status = response.status().as_u16();
                response = error(status, "echo", &quoted);
            }
            let version = format!(
                "{}.{}.{}",
                state.version.0, state.version.1, state.version.2
            );
            response
                .headers_mut()
                .insert("X-Version", version.parse().unwrap());
            response
        }));
        FakeConsole {
            url: format!("http://127.0.0.1:{}", server.port),
            state,
            _server: server,
        }
    }

    pub fn state(&self) -> MutexGuard<'_, ConsoleState> {
        self.state.lock().unwrap()
    }

    /// Adds an app; workflow and chatflow apps get a small graph and the given variables.
    pub fn add_app(&self, name: &str, mode: &str, variables: Vec<Value>) -> String {
        let mut state = self.state();
        let id = state.id("a");
        let graph = json!({
            "nodes": [
                {"id": "start", "type": "custom", "position": {"x": 30, "y": 200}, "data": {"type": "start", "title": "Start", "variables": []}},
                {"id": "end", "type": "custom", "position": {"x": 400, "y": 200}, "data": {"type": "end", "title": "End", "outputs": []}},
            ],
            "edges": [{"id": "start-end", "source": "start", "target": "end"}],
            "viewport": {"x": 0, "y": 0, "zoom": 1},
        });
        state.apps.insert(
            id.clone(),
            FakeApp {
                id: id.clone(),
                name: name.into(),
                mode: mode.into(),
                graph,
                features: json!({"opening_statement": ""}),
                environment_variables: variables,
                published: Vec::new(),
                model_config: json!({"model": {"provider": "openai", "name": "gpt-4o"}, "pre_prompt": "You are helpful."}),
                dependencies: Vec::new(),
                no_draft: false,
            },
        );
        id
    }

    pub fn add_knowledge_base(&self, name: &str) -> String {
        let mut state = self.state();
        let id = state.id("d");
        state.knowledge_bases.push((id.clone(), name.into()));
        id
    }

    pub fn add_workflow_tool(&self, name: &str) -> String {
        let mut state = self.state();
        let id = state.id("f");
        state.workflow_tools.push((id.clone(), name.into()));
        id
    }

    pub fn add_tool_credential(&self, provider: &str, name: &str) -> String {
        let mut state = self.state();
        let id = state.id("c");
        state
            .tool_credentials
            .entry(provider.into())
            .or_default()
            .push((id.clone(), name.into()));
        id
    }

    /// An edit in Dify's editor: the title of the End node.
    pub fn retitle(&self, app: &str, title: &str) {
        let mut state = self.state();
        let app = state.app_mut(app);
        app.graph["nodes"][1]["data"]["title"] = json!(title);
    }

    /// A canvas-only change: a node moved.
    pub fn move_node(&self, app: &str, x: i64) {
        let mut state = self.state();
        state.app_mut(app).graph["nodes"][0]["position"]["x"] = json!(x);
    }
}

pub fn respond(status: u16, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("Content-Type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

pub fn error(status: u16, code: &str, message: &str) -> Response<Full<Bytes>> {
    respond(
        status,
        json!({"code": code, "message": message, "status": status}),
    )
}

pub fn header<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts.headers.get(name).and_then(|v| v.to_str().ok())
}

fn cookies(parts: &Parts) -> Vec<(String, String)> {
    parts
        .headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| {
            let (name, value) = pair.split_once('=')?;
            Some((name.trim().to_string(), value.trim().to_string()))
        })
        .collect()
}

fn cookie(parts: &Parts, name: &str) -> Option<String> {
    cookies(parts)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
}

pub fn query(parts: &Parts, key: &str) -> Option<String> {
    parts.uri.query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| v.to_string())
    })
}

/// Issues a session: access, refresh and CSRF tokens.
fn issue(state: &mut ConsoleState) -> (String, String, String) {
    let access = format!("acc-{}", state.id("t"));
    let refresh = format!("ref-{}", state.id("r"));
    let csrf = format!("csrf-{}", state.id("c"));
    state.sessions.push((access.clone(), csrf.clone()));
    state.refresh_tokens.push(refresh.clone());
    (access, refresh, csrf)
}

fn with_session_cookies(
    state: &ConsoleState,
    mut response: Response<Full<Bytes>>,
    (access, refresh, csrf): (String, String, String),
) -> Response<Full<Bytes>> {
    let secure = match state.host_prefix {
        true => "; Secure",
        false => "",
    };
    for (base, value, path) in [
        ("access_token", access, "/"),
        ("refresh_token", refresh, "/console/api/refresh-token"),
        ("csrf_token", csrf, "/"),
    ] {
        let line = format!(
            "{}={value}; Path={path}; HttpOnly; SameSite=Lax{secure}",
            state.cookie_name(base)
        );
        response
            .headers_mut()
            .append("Set-Cookie", line.parse().unwrap());
    }
    response
}

fn answer(state: &mut ConsoleState, parts: &Parts, body: &Bytes) -> Response<Full<Bytes>> {
    let path = parts.uri.path().to_string();
    let headers = parts
        .headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_string()))
        .collect();
    let target = parts.uri.to_string();
    state.requests.push(SeenRequest {
        method: parts.method.to_string(),
        target,
        headers,
    });
    state
        .bodies
        .push(String::from_utf8_lossy(body).into_owned());
    if let Some(route) = path.strip_prefix("/openapi/v1") {
        return super::fake_openapi::answer(state, parts, route, body);
    }
    let Some(route) = path.strip_prefix("/console/api") else {
        return error(
            404,
            "not_found",
            "The requested URL was not found on the server.",
        );
    };
    let json_body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let method = parts.method.as_str();
    match (method, route) {
        ("GET", "/system-features") => {
            return respond(200, json!({"enable_email_password_login": true}))
        }
        ("POST", "/login") => return login(state, &json_body),
        ("POST", "/refresh-token") => return refresh(state, parts, &json_body),
        _ => {}
    }
    if let Some(refusal) = refusal(state, parts, route) {
        return refusal;
    }
    let segments: Vec<&str> = route.trim_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        ("GET", ["apps"]) => list_apps(state, parts),
        ("GET", ["apps", id, "export"]) => export(state, id, parts),
        // `AppApi.delete`: 204 with no body; 403 without edit permission.
        ("DELETE", ["apps", id]) if !state.can_edit => match state.apps.contains_key(*id) {
            true => error(403, "forbidden", "You don't have the permission to access the requested resource. It is either read-protected or not readable by the server."),
            false => error(404, "app_not_found", "App not found."),
        },
        ("DELETE", ["apps", id]) => match state.apps.remove(*id) {
            None => error(404, "app_not_found", "App not found."),
            Some(_) => Response::builder()
                .status(204)
                .body(Full::new(Bytes::new()))
                .unwrap(),
        },
        ("POST", ["apps", "imports"]) => import(state, &json_body),
        ("POST", ["apps", "imports", id, "confirm"]) => confirm(state, id),
        ("GET", ["apps", "imports", id, "check-dependencies"]) => dependencies(state, id),
        ("GET", ["apps", id, "workflows", "draft"]) => match state.apps.get(*id) {
            None => error(404, "app_not_found", "App not found."),
            Some(app) => respond(200, json!({"graph": app.graph, "features": app.features})),
        },
        ("GET", ["datasets"]) => datasets(state, parts),
        ("GET", ["workspaces", "current", "tools", "workflow"]) => respond(
            200,
            state
                .workflow_tools
                .iter()
                // The provider's `name` is the label; the tool's is its name.
                .map(|(id, name)| json!({"id": id, "name": format!("Label of {name}"), "type": "workflow", "label": {"en_US": format!("Label of {name}")}, "tools": [{"name": name}]}))
                .collect(),
        ),
        ("GET", ["workspaces", "current", "tool-provider", "builtin", provider @ .., "credentials"]) => {
            let provider = provider.join("/");
            respond(
                200,
                state
                    .tool_credentials
                    .get(&provider)
                    .into_iter()
                    .flatten()
                    .map(|(id, name)| json!({"id": id, "name": name, "provider": provider, "credential_type": "api-key", "is_default": false}))
                    .collect(),
            )
        }
        ("GET", ["workspaces", "current", "plugin", "list"]) => {
            let plugins: Vec<Value> = state
                .installed_plugins
                .iter()
                .map(|p| json!({"plugin_id": p.split(':').next().unwrap(), "plugin_unique_identifier": p}))
                .collect();
            respond(200, json!({"total": plugins.len(), "plugins": plugins}))
        }
        ("GET", ["apps", id, "workflows", "publish"]) => match state.apps.get(*id) {
            None => error(404, "app_not_found", "App not found."),
            Some(app) => match app.published.last() {
                None => respond(200, Value::Null),
                Some((wid, ..)) => respond(200, json!({"id": wid, "version": wid})),
            },
        },
        ("POST", ["apps", id, "workflows", "publish"]) => publish(state, id, &json_body),
        ("GET", ["apps", id, "workflows"]) => match state.apps.get(*id) {
            None => error(404, "app_not_found", "App not found."),
            Some(app) => {
                let mut items =
                    vec![json!({"id": "draft-id", "version": "draft", "marked_name": ""})];
                for (i, (wid, ..)) in app.published.iter().enumerate().rev() {
                    items.push(json!({"id": wid, "version": format!("2026-12-0{} 10:00:00", i + 1), "marked_name": format!("v{}", i + 1), "created_at": 1_790_000_000 + i as i64}));
                }
                respond(
                    200,
                    json!({"items": items, "page": 1, "limit": 20, "has_more": false}),
                )
            }
        },
        _ => error(
            404,
            "not_found",
            "The requested URL was not found on the server.",
        ),
    }
}

/// A new session, answered as the version does: JSON tokens before 1.9.2, cookies after.
fn new_session(state: &mut ConsoleState) -> Response<Full<Bytes>> {
    let tokens = issue(state);
    match state.at_least((1, 9, 2)) {
        false => respond(
            200,
            json!({"result": "success", "data": {"access_token": tokens.0, "refresh_token": tokens.1}}),
        ),
        true => with_session_cookies(state, respond(200, json!({"result": "success"})), tokens),
    }
}

fn login(state: &mut ConsoleState, body: &Value) -> Response<Full<Bytes>> {
    let sent = body["password"].as_str().unwrap_or_default();
    let password = match state.at_least((1, 11, 2)) {
        true => base64::engine::general_purpose::STANDARD
            .decode(sent)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_default(),
        false => sent.to_string(),
    };
    if body["email"] != EMAIL || password != PASSWORD {
        return error(
            401,
            "email_or_password_mismatch",
            "The email or password is incorrect.",
        );
    }
    state.logins += 1;
    new_session(state)
}

fn refresh(state: &mut ConsoleState, parts: &Parts, body: &Value) -> Response<Full<Bytes>> {
    let given = match state.at_least((1, 9, 2)) {
        // From 1.9.2 the refresh token is read from its cookie only.
        true => cookie(parts, &state.cookie_name("refresh_token")),
        false => body["refresh_token"].as_str().map(str::to_owned),
    };
    let Some(given) = given.filter(|t| state.refresh_tokens.contains(t)) else {
        return error(401, "unauthorized", "Invalid refresh token.");
    };
    state.refresh_tokens.retain(|t| *t != given);
    state.refreshes += 1;
    new_session(state)
}

/// Why the request is not signed in, as Dify answers it; `None` when it is.
fn refusal(state: &ConsoleState, parts: &Parts, route: &str) -> Option<Response<Full<Bytes>>> {
    let bearer = header(parts, "authorization").and_then(|h| h.strip_prefix("Bearer "));
    if state.at_least((1, 11, 0)) && state.admin_key_enabled && bearer == Some(ADMIN_KEY) {
        return match header(parts, "x-workspace-id") == Some(WORKSPACE) {
            true => None,
            false => Some(error(401, "unauthorized", "Invalid workspace.")),
        };
    }
    let unauthorized = || error(401, "unauthorized", "Unauthorized.");
    if !state.at_least((1, 9, 2)) {
        return match bearer.is_some_and(|t| state.sessions.iter().any(|(a, _)| a == t)) {
            true => None,
            false => Some(unauthorized()),
        };
    }
    // The cookie first, then the header (`extract_access_token`).
    let access = cookie(parts, &state.cookie_name("access_token")).or(bearer.map(str::to_owned));
    let Some((_, csrf)) = access
        .as_ref()
        .and_then(|a| state.sessions.iter().find(|(t, _)| t == a))
    else {
        return Some(unauthorized());
    };
    let exempt = route.starts_with("/apps/") && route.contains("/workflows/draft");
    let csrf_cookie = cookie(parts, &state.cookie_name("csrf_token"));
    let csrf_header = header(parts, "x-csrf-token");
    let valid =
        csrf_header.is_some() && csrf_header == csrf_cookie.as_deref() && csrf_header == Some(csrf);
    match exempt || valid {
        true => None,
        false => Some(error(
            401,
            "unauthorized",
            "CSRF token is missing or invalid.",
        )),
    }
}

/// The `page` and `limit` of a list request (Dify's defaults: 1 and 20).
fn page_and_limit(parts: &Parts) -> (usize, usize) {
    let number = |key: &str, default: usize| {
        query(parts, key)
            .and_then(|p| p.parse().ok())
            .unwrap_or(default)
    };
    (number("page", 1), number("limit", 20))
}

pub fn list_apps(state: &ConsoleState, parts: &Parts) -> Response<Full<Bytes>> {
    let (page, limit) = page_and_limit(parts);
    let most = match parts.uri.path().starts_with("/openapi/v1") {
        true => 200,
        false => 100,
    };
    if !(1..=most).contains(&limit) || page == 0 {
        return error(
            400,
            "invalid_param",
            &format!("limit must be between 1 and {most}"),
        );
    }
    let apps: Vec<&FakeApp> = state.apps.values().collect();
    let data: Vec<Value> = apps
        .iter()
        .skip((page - 1) * limit)
        .take(limit)
        .map(|a| json!({"id": a.id, "name": a.name, "mode": a.mode, "icon": "🤖"}))
        .collect();
    respond(
        200,
        json!({"page": page, "limit": limit, "total": apps.len(), "has_more": page * limit < apps.len(), "data": data}),
    )
}

/// One page of knowledge bases; `has_more` is true whenever the page is full, as Dify says it.
fn datasets(state: &ConsoleState, parts: &Parts) -> Response<Full<Bytes>> {
    let (page, limit) = page_and_limit(parts);
    let data: Vec<Value> = state
        .knowledge_bases
        .iter()
        .skip((page.max(1) - 1) * limit)
        .take(limit)
        .map(|(id, name)| json!({"id": id, "name": name, "indexing_technique": "economy"}))
        .collect();
    respond(
        200,
        json!({"data": data, "has_more": data.len() == limit, "limit": limit, "page": page, "total": state.knowledge_bases.len()}),
    )
}

/// A dataset id as an export writes it: sealed for the workspace (Dify: AES with the
/// tenant's key), opaque to any other.
fn encrypt_dataset_id(workspace: &str, id: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{workspace}|{id}"))
}

/// What an import keeps of a dataset id: a plain UUID as it is, one sealed for this
/// workspace opened, nothing else.
fn decrypt_dataset_id(workspace: &str, text: &str) -> Option<String> {
    if uuid_like(text) {
        return Some(text.to_string());
    }
    let opened = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    let opened = String::from_utf8(opened).ok()?;
    let (tenant, id) = opened.split_once('|')?;
    (tenant == workspace).then(|| id.to_string())
}

fn uuid_like(text: &str) -> bool {
    text.len() == 36 && text.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

/// Every Knowledge Retrieval node's dataset ids through `f`, the ids it drops dropped.
fn map_dataset_ids(graph: &mut Value, f: impl Fn(&str) -> Option<String>) {
    for node in graph["nodes"].as_array_mut().into_iter().flatten() {
        if node["data"]["type"] != "knowledge-retrieval" {
            continue;
        }
        if let Some(ids) = node["data"]["dataset_ids"].as_array_mut() {
            *ids = ids
                .iter()
                .filter_map(|id| f(id.as_str()?).map(Value::String))
                .collect();
        }
    }
}

/// The DSL of `app` (or of one of its published versions), secrets emptied.
fn dsl(
    state: &ConsoleState,
    app: &FakeApp,
    workflow: Option<&(String, Value, Value, Vec<Value>)>,
) -> String {
    let mut doc = json!({
        "app": {"name": app.name, "mode": app.mode, "icon": "🤖", "icon_type": "emoji", "description": ""},
        "kind": "app",
        "version": state.dsl_version,
        "dependencies": app.dependencies,
    });
    if ["workflow", "advanced-chat"].contains(&app.mode.as_str()) {
        let (graph, features, variables) = match workflow {
            Some((_, g, f, v)) => (g.clone(), f.clone(), v.clone()),
            None => (
                app.graph.clone(),
                app.features.clone(),
                app.environment_variables.clone(),
            ),
        };
        let mut graph = graph;
        map_dataset_ids(&mut graph, |id| {
            Some(encrypt_dataset_id(&state.workspace, id))
        });
        // Tool nodes go without their credential (`include_secret=false`).
        for node in graph["nodes"].as_array_mut().into_iter().flatten() {
            if node["data"]["type"] == "tool" {
                if let Some(data) = node["data"].as_object_mut() {
                    data.remove("credential_id");
                }
            }
        }
        let variables: Vec<Value> = variables
            .into_iter()
            .map(|mut v| {
                if v["value_type"] == "secret" {
                    v["value"] = json!("");
                }
                v
            })
            .collect();
        doc["workflow"] = json!({"graph": graph, "features": features, "environment_variables": variables, "conversation_variables": []});
    } else {
        doc["model_config"] = app.model_config.clone();
    }
    serde_yaml::to_string(&doc).unwrap()
}

pub fn export(state: &ConsoleState, id: &str, parts: &Parts) -> Response<Full<Bytes>> {
    let Some(app) = state.apps.get(id) else {
        return error(404, "app_not_found", "App not found.");
    };
    if app.no_draft && query(parts, "workflow_id").is_none() {
        // 1.16 lets the missing draft surface as a server error.
        return match state.at_least((1, 16, 0)) {
            true => error(500, "internal_server_error", "Internal Server Error"),
            false => error(400, "draft_workflow_not_exist", "Draft workflow not found"),
        };
    }
    let workflow = match query(parts, "workflow_id") {
        None => None,
        Some(wid) => match app.published.iter().find(|(w, ..)| *w == wid) {
            Some(found) => Some(found),
            None => return error(404, "workflow_not_found", "Workflow not found."),
        },
    };
    respond(200, json!({"data": dsl(state, app, workflow)}))
}

fn version_tuple(text: &str) -> (u32, u32, u32) {
    let parts: Vec<u32> = text.split('.').map(|p| p.parse().unwrap_or(0)).collect();
    (
        parts.first().copied().unwrap_or(0),
        parts.get(1).copied().unwrap_or(0),
        parts.get(2).copied().unwrap_or(0),
    )
}

pub fn import(state: &mut ConsoleState, body: &Value) -> Response<Full<Bytes>> {
    let failed = |message: &str| {
        respond(
            400,
            json!({"id": "", "status": "failed", "app_id": null, "error": message}),
        )
    };
    if body["mode"] != "yaml-content" {
        return failed("Invalid import_mode");
    }
    let Ok(yaml) = serde_yaml::from_str::<serde_yaml::Value>(
        body["yaml_content"].as_str().unwrap_or_default(),
    ) else {
        return failed("Invalid YAML format");
    };
    let yaml: Value = serde_json::to_value(yaml).unwrap();
    let app_id = body["app_id"].as_str().map(str::to_owned);
    if let Some(id) = &app_id {
        let Some(app) = state.apps.get(id) else {
            return failed("App not found");
        };
        if !["workflow", "advanced-chat"].contains(&app.mode.as_str()) {
            return failed("Only workflow or advanced chat apps can be overwritten");
        }
    }
    let imported = version_tuple(yaml["version"].as_str().unwrap_or("0.1.0"));
    let current = version_tuple(&state.dsl_version);
    let import_id = state.id("i");
    if imported > current || imported.0 < current.0 {
        state.pending.insert(
            import_id.clone(),
            Pending {
                yaml,
                app_id,
                at: Instant::now(),
            },
        );
        return respond(
            202,
            json!({"id": import_id, "status": "pending", "app_id": null, "current_dsl_version": state.dsl_version, "imported_dsl_version": format!("{}.{}.{}", imported.0, imported.1, imported.2), "error": ""}),
        );
    }
    let status = match imported.1 < current.1 {
        true => "completed-with-warnings",
        false => "completed",
    };
    let id = apply(state, &yaml, app_id);
    let mut answer = json!({"id": import_id, "status": status, "app_id": id, "current_dsl_version": state.dsl_version, "imported_dsl_version": yaml["version"], "error": ""});
    // 1.16 answers with `permission_keys` and `warnings` ({code, path, message}).
    if state.at_least((1, 16, 0)) {
        answer["permission_keys"] = json!([]);
        answer["warnings"] = match status {
            "completed-with-warnings" => json!([{"code": "dsl_version_older", "path": "version",
                "message": format!("DSL {} is older than {}", yaml["version"].as_str().unwrap_or("?"), state.dsl_version),
                "details": {}}]),
            _ => json!([]),
        };
    }
    respond(200, answer)
}

/// Writes an imported DSL: over the app in place, or as a new app.
fn apply(state: &mut ConsoleState, yaml: &Value, app_id: Option<String>) -> String {
    let id = match app_id {
        Some(id) => id,
        None => {
            let id = state.id("a");
            state.apps.insert(
                id.clone(),
                FakeApp {
                    id: id.clone(),
                    name: String::new(),
                    mode: yaml["app"]["mode"]
                        .as_str()
                        .unwrap_or("workflow")
                        .to_string(),
                    graph: json!({}),
                    features: json!({}),
                    environment_variables: Vec::new(),
                    published: Vec::new(),
                    model_config: json!({}),
                    dependencies: Vec::new(),
                    no_draft: false,
                },
            );
            id
        }
    };
    let app = state.apps.get_mut(&id).unwrap();
    app.name = yaml["app"]["name"].as_str().unwrap_or_default().to_string();
    app.dependencies = yaml["dependencies"].as_array().cloned().unwrap_or_default();
    if let Some(workflow) = yaml.get("workflow") {
        app.graph = workflow["graph"].clone();
        let workspace = state.workspace.clone();
        map_dataset_ids(&mut app.graph, |id| decrypt_dataset_id(&workspace, id));
        app.features = workflow["features"].clone();
        let old = std::mem::take(&mut app.environment_variables);
        app.environment_variables = workflow["environment_variables"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|mut v| {
                // The setter keeps the stored secret only for [__HIDDEN__] under the same id.
                if v["value"] == HIDDEN {
                    let kept = old
                        .iter()
                        .find(|o| o["id"] == v["id"])
                        .map(|o| o["value"].clone());
                    v["value"] = kept.unwrap_or(json!(""));
                }
                v
            })
            .collect();
    } else if let Some(config) = yaml.get("model_config") {
        app.model_config = config.clone();
    }
    id
}

pub fn confirm(state: &mut ConsoleState, import_id: &str) -> Response<Full<Bytes>> {
    let ttl = state.pending_ttl;
    match state.pending.remove(import_id) {
        Some(pending) if pending.at.elapsed() < ttl => {
            let id = apply(state, &pending.yaml, pending.app_id);
            respond(
                200,
                json!({"id": import_id, "status": "completed", "app_id": id, "current_dsl_version": state.dsl_version, "imported_dsl_version": pending.yaml["version"], "error": ""}),
            )
        }
        _ => respond(
            400,
            json!({"id": import_id, "status": "failed", "error": "Import information expired or does not exist"}),
        ),
    }
}

pub fn dependencies(state: &ConsoleState, app_id: &str) -> Response<Full<Bytes>> {
    let Some(app) = state.apps.get(app_id) else {
        return error(404, "app_not_found", "App not found.");
    };
    let leaked: Vec<Value> = app
        .dependencies
        .iter()
        .filter(|d| {
            let value = &d["value"];
            let id = value["marketplace_plugin_unique_identifier"]
                .as_str()
                .or(value["github_plugin_unique_identifier"].as_str())
                .or(value["plugin_unique_identifier"].as_str())
                .unwrap_or_default();
            !state.installed_plugins.iter().any(|p| p == id)
        })
        .cloned()
        .collect();
    respond(200, json!({"leaked_dependencies": leaked}))
}

fn publish(state: &mut ConsoleState, id: &str, body: &Value) -> Response<Full<Bytes>> {
    if !body.is_object() {
        return error(400, "invalid_param", "The body must be a JSON object.");
    }
    let wid = state.id("w");
    let Some(app) = state.apps.get_mut(id) else {
        return error(404, "app_not_found", "App not found.");
    };
    let snapshot = (
        wid,
        app.graph.clone(),
        app.features.clone(),
        app.environment_variables.clone(),
    );
    app.published.push(snapshot);
    respond(
        200,
        json!({"result": "success", "created_at": 1_790_000_000}),
    )
}
