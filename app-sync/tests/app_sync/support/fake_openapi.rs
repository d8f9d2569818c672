//! Dify's OpenAPI (`/openapi/v1`, 1.15+ with `OPENAPI_ENABLED=true`) in the fake console, as
//! `api/controllers/openapi/` of 1.16.1 answers: unauthenticated `/_version`; the device flow
//! (`/oauth/device/code` for a known client id only, `/oauth/device/token` answering
//! `authorization_pending` until the person decides); `dfoa_` bearer tokens on everything
//! else (401 without one); `/workspaces`; apps listed up to 200 per page for a
//! `workspace_id`; DSL export (404 for an app without a draft); imports answering 200, 202
//! (pending) or 400 (failed) under `/workspaces/<ws>/apps/imports`; `…:confirm`;
//! `/apps/<id>/dependencies:check`; and its per-token rate limit (429 with `Retry-After`).

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::http::request::Parts;
use hyper::Response;
use serde_json::{json, Value};

use super::fake_console::{self, error, header, query, respond, ConsoleState, WORKSPACE};

pub const TOKEN: &str = "dfoa_0123456789abcdef0123456789abcdef";
pub const USER_CODE: &str = "WDJB-MJHT";

/// The OpenAPI's part of the fake's state.
pub struct OpenApiState {
    /// `OPENAPI_KNOWN_CLIENT_IDS`.
    pub known_clients: Vec<String>,
    /// Live account tokens.
    pub tokens: Vec<String>,
    /// The device code of the flow in progress.
    pub device: Option<String>,
    /// What the person decides, seen at the second poll: approve, or deny.
    pub approve: bool,
    pub polls: usize,
    /// Answer 429 (`Retry-After: 1`) once, after this many signed-in calls.
    pub limit_after: Option<usize>,
    pub signed_calls: usize,
}

impl Default for OpenApiState {
    fn default() -> OpenApiState {
        OpenApiState {
            known_clients: vec!["difyctl".into(), "app-git-sync".into()],
            tokens: vec![TOKEN.into()],
            device: None,
            approve: true,
            polls: 0,
            limit_after: None,
            signed_calls: 0,
        }
    }
}

fn not_found() -> Response<Full<Bytes>> {
    // Flask's own page: the blueprint is not registered when the OpenAPI is off.
    Response::builder()
        .status(404)
        .header("Content-Type", "text/html")
        .body(Full::new(Bytes::from_static(
            b"<!doctype html><title>404 Not Found</title><h1>Not Found</h1>",
        )))
        .unwrap()
}

pub fn answer(
    state: &mut ConsoleState,
    parts: &Parts,
    route: &str,
    body: &Bytes,
) -> Response<Full<Bytes>> {
    let Some(openapi) = state.openapi.as_mut() else {
        return not_found();
    };
    let json_body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let method = parts.method.as_str();
    match (method, route) {
        ("GET", "/_version") => {
            let version = state.version;
            return respond(
                200,
                json!({"version": format!("{}.{}.{}", version.0, version.1, version.2), "edition": "SELF_HOSTED"}),
            );
        }
        ("POST", "/oauth/device/code") => {
            let client = json_body["client_id"].as_str().unwrap_or_default();
            if !openapi.known_clients.iter().any(|c| c == client) {
                return respond(400, json!({"error": "unsupported_client"}));
            }
            let device_code = "dc-secret-device-code".to_string();
            openapi.device = Some(device_code.clone());
            openapi.polls = 0;
            return respond(
                200,
                json!({"device_code": device_code, "user_code": USER_CODE,
                       "verification_uri": "http://console.example/device", "expires_in": 900, "interval": 1}),
            );
        }
        ("POST", "/oauth/device/token") => {
            let Some(code) = openapi.device.clone() else {
                return respond(400, json!({"error": "expired_token"}));
            };
            if json_body["device_code"] != code.as_str() {
                return respond(400, json!({"error": "expired_token"}));
            }
            openapi.polls += 1;
            if openapi.polls < 2 {
                return respond(400, json!({"error": "authorization_pending"}));
            }
            openapi.device = None;
            return match openapi.approve {
                true => respond(
                    200,
                    json!({"token": TOKEN, "expires_at": "2027-01-01T00:00:00", "subject_type": "account",
                           "workspaces": [{"id": WORKSPACE, "name": "Owner's Workspace", "role": "owner"}],
                           "default_workspace_id": WORKSPACE, "token_id": "t-1"}),
                ),
                false => respond(400, json!({"error": "access_denied"})),
            };
        }
        _ => {}
    }
    let bearer = header(parts, "authorization").and_then(|h| h.strip_prefix("Bearer "));
    if !bearer.is_some_and(|t| openapi.tokens.iter().any(|k| k == t)) {
        return error(401, "unauthorized", "Invalid or expired token.");
    }
    openapi.signed_calls += 1;
    if openapi.limit_after == Some(openapi.signed_calls) {
        openapi.limit_after = None;
        let mut limited = error(429, "rate_limited", "Too many requests.");
        limited
            .headers_mut()
            .insert("Retry-After", "1".parse().unwrap());
        return limited;
    }
    let segments: Vec<&str> = route.trim_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        ("GET", ["workspaces"]) => respond(
            200,
            json!({"workspaces": [{"id": WORKSPACE, "name": "Owner's Workspace", "role": "owner", "status": "normal", "current": true}]}),
        ),
        ("GET", ["apps"]) => match query(parts, "workspace_id").as_deref() == Some(WORKSPACE) {
            true => fake_console::list_apps(state, parts),
            false => error(403, "forbidden", "Not a member of this workspace."),
        },
        ("GET", ["apps", id, "dsl"]) => match state.apps.get(*id) {
            Some(app) if app.no_draft && query(parts, "workflow_id").is_none() => {
                error(404, "not_found", "Workflow not found")
            }
            _ => fake_console::export(state, id, parts),
        },
        ("GET", ["apps", id, "dependencies:check"]) => fake_console::dependencies(state, id),
        ("POST", ["workspaces", workspace, "apps", "imports"]) if *workspace == WORKSPACE => {
            fake_console::import(state, &json_body)
        }
        ("POST", ["workspaces", workspace, "apps", "imports", confirm])
            if *workspace == WORKSPACE && confirm.ends_with(":confirm") =>
        {
            fake_console::confirm(state, confirm.trim_end_matches(":confirm"))
        }
        _ => error(
            404,
            "not_found",
            "The requested URL was not found on the server.",
        ),
    }
}
