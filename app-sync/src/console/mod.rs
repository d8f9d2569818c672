//! A client of the Dify API that exports and imports app DSL: the console API (`/console/api`),
//! or Dify's OpenAPI (`/openapi/v1`, 1.15+) when signed in with its token. It signs in on first
//! use, renews an expired session once per call (refresh token, or a new login with a password)
//! and never shows a secret: errors name the route and Dify's own message.

pub mod apps;
pub mod openapi;
pub mod sign_in;
pub mod workspace;

use dify_plugin::dify_http;
use reqwest::header::{HeaderMap, AUTHORIZATION, CONTENT_TYPE, COOKIE, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::sync::Mutex;

use sign_in::{login_password, CookieSet, Credential, DifyVersion, SignIn};

/// The most one answer may hold (a DSL is at most 10 MB).
const MAX_ANSWER_BYTES: usize = 32 * 1024 * 1024;
/// How often one call waits out a 429 (the OpenAPI allows 60 calls a minute per token), and
/// the longest wait it accepts.
const RATE_LIMIT_RETRIES: u32 = 3;
const LONGEST_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(60);
/// Dify's API as the plugin daemon's container reaches it in Dify's docker compose.
pub const DEFAULT_CONSOLE_URL: &str = "http://api:5001";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsoleError {
    #[error("cannot reach Dify's console API at {url}: {why}; check the console URL (from the plugin daemon's container Dify's API is http://api:5001)")]
    Unreachable { url: String, why: String },
    #[error("signing in to Dify failed: {0}")]
    SignIn(String),
    #[error("Dify answered {status} to {route}: {message}{}", code_note(.code))]
    Refused {
        status: u16,
        route: String,
        code: String,
        message: String,
    },
    #[error("Dify's answer to {route} cannot be read: {why}")]
    Malformed { route: String, why: String },
    #[error("{0}")]
    Redirected(String),
    /// Something this sign-in's API cannot do (the OpenAPI has no publish route, say).
    #[error("{0}")]
    Unsupported(String),
}

impl ConsoleError {
    /// The error with every one of `secrets` (four characters or more) replaced by `[hidden]`.
    fn hiding(self, secrets: &[String]) -> ConsoleError {
        let hide = |mut text: String| {
            for secret in secrets.iter().filter(|s| s.chars().count() >= 4) {
                text = text.replace(secret.as_str(), "[hidden]");
            }
            text
        };
        match self {
            ConsoleError::Unreachable { url, why } => ConsoleError::Unreachable {
                url: hide(url),
                why: hide(why),
            },
            ConsoleError::SignIn(message) => ConsoleError::SignIn(hide(message)),
            ConsoleError::Refused {
                status,
                route,
                code,
                message,
            } => ConsoleError::Refused {
                status,
                route: hide(route),
                code: hide(code),
                message: hide(message),
            },
            ConsoleError::Malformed { route, why } => ConsoleError::Malformed {
                route: hide(route),
                why: hide(why),
            },
            ConsoleError::Redirected(message) => ConsoleError::Redirected(hide(message)),
            ConsoleError::Unsupported(message) => ConsoleError::Unsupported(hide(message)),
        }
    }
}

/// Whether the server answered, but with a head HTTP cannot parse (hyper's limits on the
/// number and size of headers).
fn unreadable_head(error: &reqwest::Error) -> bool {
    let mut source: Option<&dyn std::error::Error> = Some(error);
    while let Some(current) = source {
        let text = current.to_string().to_ascii_lowercase();
        if text.contains("too large") || text.contains("too many headers") || text.contains("parse")
        {
            return true;
        }
        source = current.source();
    }
    false
}

/// Dify's error code, when it sent one: ` (app_not_found)`.
fn code_note(code: &str) -> String {
    match code.is_empty() {
        true => String::new(),
        false => format!(" ({code})"),
    }
}

struct Signed {
    credential: Credential,
    version: Option<DifyVersion>,
    surface: Surface,
}

/// Which of Dify's APIs a signed-in client speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Surface {
    /// `/console/api`, as the web app.
    Console {
        /// Whether a token's OpenAPI was tried first and is off on this server.
        openapi_off: bool,
    },
    /// `/openapi/v1`, for one workspace.
    OpenApi {
        workspace_id: String,
        workspace_name: String,
    },
}

impl Surface {
    fn prefix(&self) -> &'static str {
        match self {
            Surface::Console { .. } => "/console/api",
            Surface::OpenApi { .. } => "/openapi/v1",
        }
    }
}

/// The console API of one Dify, signed in one way. Sessions live in memory only.
pub struct Console {
    http: reqwest::Client,
    base: String,
    /// `base` without user info, for messages.
    shown: String,
    sign_in: SignIn,
    signed: Mutex<Option<Signed>>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("base", &self.shown)
            .field("sign_in", &self.sign_in)
            .finish_non_exhaustive()
    }
}

/// Checks a console URL: http(s) with a host; a trailing `/` and `/console/api` are dropped.
pub fn normalize_console_url(url: &str) -> Result<String, String> {
    let url = match url.trim() {
        "" => DEFAULT_CONSOLE_URL,
        url => url,
    };
    let parsed = reqwest::Url::parse(url).map_err(|_| {
        "console_url must be a URL such as http://api:5001 or https://dify.example.com".to_string()
    })?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err("console_url must start with http:// or https:// and name a host".into());
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err("console_url must not have a query or a fragment".into());
    }
    dify_http::refuse_user_info(url, "console_url")?;
    let base = url.trim_end_matches('/');
    let base = base.strip_suffix("/console/api").unwrap_or(base);
    Ok(base.to_string())
}

impl Console {
    pub fn new(console_url: &str, sign_in: SignIn) -> Result<Console, String> {
        let base = normalize_console_url(console_url)?;
        let http = dify_http::client()?;
        Ok(Console {
            http,
            shown: dify_http::without_user_info(&base),
            base,
            sign_in,
            signed: Mutex::new(None),
        })
    }

    /// The server's version, once signed in (from `X-Version`).
    pub async fn version(&self) -> Option<DifyVersion> {
        self.signed.lock().await.as_ref().and_then(|s| s.version)
    }

    /// Signs in (if not yet) and proves the session by listing one app.
    pub async fn check(&self) -> Result<Option<DifyVersion>, ConsoleError> {
        let route = self.apps_page(1, 1).await?;
        self.get(&route).await?;
        Ok(self.version().await)
    }

    /// The API this client speaks, signing in first if it has not.
    pub async fn surface(&self) -> Result<Surface, ConsoleError> {
        let mut signed = self.signed.lock().await;
        if signed.is_none() {
            let outcome = self.sign_in().await;
            *signed = Some(outcome.map_err(|e| e.hiding(&self.sign_in.secrets()))?);
        }
        Ok(signed.as_ref().expect("signed in above").surface.clone())
    }

    /// Which API and sign-in a run used, for its report: never a secret.
    pub async fn signed_in_through(&self) -> Option<String> {
        let signed = self.signed.lock().await;
        let signed = signed.as_ref()?;
        let version = signed
            .version
            .map(|v| format!("Dify {v}"))
            .unwrap_or_else(|| "Dify".into());
        Some(match (&signed.surface, &self.sign_in) {
            (Surface::OpenApi { workspace_name, .. }, _) => format!(
                "{version}'s OpenAPI (/openapi/v1) with an OpenAPI token, workspace {workspace_name:?}"
            ),
            (Surface::Console { openapi_off: true }, SignIn::OpenApi { fallback: Some(f), .. }) => format!(
                "{version}'s console API with {}: this Dify's OpenAPI is off (OPENAPI_ENABLED)",
                f.describe()
            ),
            (Surface::Console { .. }, sign_in) => {
                format!("{version}'s console API with {}", sign_in.describe())
            }
        })
    }

    pub async fn get(&self, route: &str) -> Result<Value, ConsoleError> {
        self.call(Method::GET, route, None).await
    }

    pub async fn post(&self, route: &str, body: &Value) -> Result<Value, ConsoleError> {
        self.call(Method::POST, route, Some(body)).await
    }

    /// A signed-in call, its JSON answer (`null` when empty); a 401 renews the session once
    /// and tries again. Answers of 400 and above (other than that 401) are errors.
    pub async fn call(
        &self,
        method: Method,
        route: &str,
        body: Option<&Value>,
    ) -> Result<Value, ConsoleError> {
        let mut signed = self.signed.lock().await;
        let outcome = self.signed_call(&mut signed, method, route, body).await;
        // Whatever a server (or a proxy in front of it) put in its answer, no credential of
        // this console leaves in an error.
        outcome.map_err(|error| error.hiding(&self.secrets(signed.as_ref())))
    }

    async fn signed_call(
        &self,
        signed: &mut Option<Signed>,
        method: Method,
        route: &str,
        body: Option<&Value>,
    ) -> Result<Value, ConsoleError> {
        if signed.is_none() {
            *signed = Some(self.sign_in().await?);
        }
        let mut renewed = false;
        let mut waited = 0;
        loop {
            let current = signed.as_ref().expect("signed in above");
            let headers = auth_headers(&current.credential);
            let path = format!("{}{route}", current.surface.prefix());
            let (status, response_headers, value) = self
                .send(method.clone(), &path, route, headers, body)
                .await?;
            if status == StatusCode::TOO_MANY_REQUESTS && waited < RATE_LIMIT_RETRIES {
                // Waited out when Dify means it (up to a minute); a longer wait is reported.
                let wait = dify_http::retry_after(&response_headers)
                    .map(|wait| wait.max(std::time::Duration::from_secs(1)))
                    .filter(|wait| *wait <= LONGEST_RETRY_AFTER);
                if let Some(wait) = wait {
                    waited += 1;
                    tracing::info!(
                        "Dify limits calls: waiting {wait:?} before {}",
                        route_name(route)
                    );
                    tokio::time::sleep(wait).await;
                    continue;
                }
            }
            if status == StatusCode::UNAUTHORIZED && !renewed {
                renewed = true;
                let why = dify_message(&value);
                let previous = signed.take().expect("signed in");
                *signed = Some(self.renew(previous, &why).await?);
                continue;
            }
            if let Some(version) = header_version(&response_headers) {
                if let Some(current) = signed.as_mut() {
                    current.version = Some(version);
                }
            }
            if status.as_u16() >= 400 {
                return Err(refusal(status, route, &value));
            }
            return Ok(value);
        }
    }

    /// One HTTP exchange with `path` (`/console/api/…`, `/openapi/v1/…`); `route` names it in
    /// messages.
    async fn send(
        &self,
        method: Method,
        path: &str,
        route: &str,
        headers: HeaderMap,
        body: Option<&Value>,
    ) -> Result<(StatusCode, HeaderMap, Value), ConsoleError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url).headers(headers);
        if let Some(body) = body {
            request = request
                .header(CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.map_err(|e| self.unreachable(&e))?;
        if let Some(refusal) = dify_http::redirect_refusal(&response) {
            return Err(ConsoleError::Redirected(refusal));
        }
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = dify_http::read_capped(response, MAX_ANSWER_BYTES)
            .await
            .map_err(|e| self.unreachable(&e))?
            .ok_or_else(|| ConsoleError::Malformed {
                route: route_name(route),
                why: format!("the answer is over {MAX_ANSWER_BYTES} bytes"),
            })?;
        let value = match bytes.iter().all(u8::is_ascii_whitespace) {
            true => Value::Null,
            false => match serde_json::from_slice(&bytes) {
                Ok(value) => value,
                // An error page (a proxy's, say) is not repeated: it may quote the request.
                Err(_) if status.as_u16() >= 400 => json!({
                    "message": format!("an answer that is not JSON ({} bytes); is {} Dify's API?", bytes.len(), self.shown)
                }),
                Err(e) => {
                    return Err(ConsoleError::Malformed {
                        route: route_name(route),
                        why: format!("not JSON ({e}); is {} Dify's API?", self.shown),
                    })
                }
            },
        };
        Ok((status, headers, value))
    }

    /// Every credential this console holds or was given, as it could appear in text.
    fn secrets(&self, signed: Option<&Signed>) -> Vec<String> {
        let mut secrets = self.sign_in.secrets();
        match signed.map(|s| &s.credential) {
            Some(Credential::Bearer {
                token,
                refresh_token,
                ..
            }) => {
                secrets.push(token.clone());
                secrets.extend(refresh_token.clone());
            }
            Some(Credential::Cookies(cookies)) => {
                secrets.extend(cookies.cookies.iter().map(|(_, value)| value.clone()));
            }
            None => {}
        }
        secrets
    }

    fn unreachable(&self, error: &reqwest::Error) -> ConsoleError {
        let why = match (error.is_timeout(), error.is_connect()) {
            (true, _) => "timed out".to_string(),
            (_, true) => "cannot connect".to_string(),
            _ if unreadable_head(error) => {
                return ConsoleError::Malformed {
                    route: "the console".into(),
                    why: format!(
                        "the server answered with headers that cannot be read (too many, or too large); is {} Dify's API?",
                        self.shown
                    ),
                }
            }
            _ => "the connection failed".to_string(),
        };
        ConsoleError::Unreachable {
            url: self.shown.clone(),
            why,
        }
    }

    /// The server's version without signing in: `X-Version` of `/system-features`.
    async fn probe_version(&self) -> Result<Option<DifyVersion>, ConsoleError> {
        let (_, headers, _) = self
            .send(
                Method::GET,
                "/console/api/system-features",
                "/system-features",
                HeaderMap::new(),
                None,
            )
            .await?;
        Ok(header_version(&headers))
    }

    /// Signs in: through the OpenAPI with a token (or, where it is off, the console API with
    /// the fallback), else through the console API.
    async fn sign_in(&self) -> Result<Signed, ConsoleError> {
        let SignIn::OpenApi {
            token,
            workspace_id,
            fallback,
        } = &self.sign_in
        else {
            return self.console_sign_in(&self.sign_in, false).await;
        };
        if let Some(signed) = self.open_api_sign_in(token, workspace_id).await? {
            return Ok(signed);
        }
        match fallback {
            Some(fallback) => self.console_sign_in(fallback, true).await,
            None => Err(ConsoleError::SignIn(format!(
                "{} has no OpenAPI (/openapi/v1): it needs Dify 1.15 or later with OPENAPI_ENABLED=true; \
                 enable it, or sign in to the console API with e-mail and password (given with the \
                 token, they are used where the OpenAPI is off)",
                self.shown
            ))),
        }
    }

    /// The sign-in the console API uses: the given one, or a token's fallback.
    fn console_method(&self) -> &SignIn {
        match &self.sign_in {
            SignIn::OpenApi {
                fallback: Some(fallback),
                ..
            } => fallback,
            sign_in => sign_in,
        }
    }

    async fn console_sign_in(
        &self,
        sign_in: &SignIn,
        openapi_off: bool,
    ) -> Result<Signed, ConsoleError> {
        let version = self.probe_version().await?;
        let credential = match sign_in {
            SignIn::AdminKey { key, workspace_id } => {
                if let Some(v) = version.filter(|v| *v < DifyVersion::ADMIN_KEY) {
                    return Err(ConsoleError::SignIn(format!(
                        "this Dify is {v}; the admin API key exists from 1.11.0 on. Sign in with e-mail and password instead"
                    )));
                }
                Credential::Bearer {
                    token: key.clone(),
                    workspace_id: Some(workspace_id.clone()),
                    refresh_token: None,
                }
            }
            SignIn::Password { email, password } => self.login(email, password, version).await?,
            SignIn::Session {
                access_token,
                refresh_token,
                csrf_token,
            } => match version {
                Some(v) if v < DifyVersion::COOKIES => Credential::Bearer {
                    token: access_token.clone(),
                    workspace_id: None,
                    refresh_token: Some(refresh_token.clone()).filter(|t| !t.is_empty()),
                },
                _ => {
                    Credential::Cookies(CookieSet::pasted(access_token, refresh_token, csrf_token))
                }
            },
            SignIn::OpenApi { .. } => {
                return Err(ConsoleError::SignIn(
                    "an OpenAPI token cannot sign in to the console API".into(),
                ))
            }
        };
        Ok(Signed {
            credential,
            version,
            surface: Surface::Console { openapi_off },
        })
    }

    async fn login(
        &self,
        email: &str,
        password: &str,
        version: Option<DifyVersion>,
    ) -> Result<Credential, ConsoleError> {
        let body = json!({
            "email": email,
            "password": login_password(password, version),
            "remember_me": true,
        });
        let (status, headers, value) = self
            .send(
                Method::POST,
                "/console/api/login",
                "/login",
                HeaderMap::new(),
                Some(&body),
            )
            .await?;
        if status.as_u16() >= 400 || value["result"] != "success" {
            let message = dify_message(&value);
            let hint = match status.as_u16() {
                429 => " (Dify limits failed logins; wait before trying again)",
                _ => "",
            };
            return Err(ConsoleError::SignIn(format!(
                "{} refused the login for {email}: {message}{hint}",
                self.shown
            )));
        }
        if let Some(token) = value["data"]["access_token"].as_str() {
            return Ok(Credential::Bearer {
                token: token.to_string(),
                workspace_id: None,
                refresh_token: value["data"]["refresh_token"].as_str().map(str::to_owned),
            });
        }
        let cookies = CookieSet::from_set_cookie(
            headers
                .get_all(SET_COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok()),
        );
        if cookies.get("access_token").is_none() {
            return Err(ConsoleError::SignIn(format!(
                "{} accepted the login but sent no access token (neither in the answer nor as a cookie)",
                self.shown
            )));
        }
        Ok(Credential::Cookies(cookies))
    }

    /// After a 401: the refresh token when there is one, else (or when it fails) a new login
    /// with the password; a key or a session without a refresh token cannot be renewed.
    async fn renew(&self, previous: Signed, why: &str) -> Result<Signed, ConsoleError> {
        if let Surface::OpenApi { .. } = previous.surface {
            return Err(ConsoleError::SignIn(format!(
                "Dify refused the OpenAPI token ({why}): it has expired or was revoked; sign in \
                 again by the device flow (the command line with no token) or paste a new token"
            )));
        }
        if let Some(credential) = self.refresh(&previous.credential).await? {
            return Ok(Signed {
                credential,
                version: previous.version,
                surface: previous.surface,
            });
        }
        match self.console_method() {
            sign_in @ SignIn::Password { .. } => {
                let openapi_off = previous.surface == Surface::Console { openapi_off: true };
                self.console_sign_in(sign_in, openapi_off).await
            }
            SignIn::AdminKey { .. } => Err(ConsoleError::SignIn(
                "the admin API key was refused: check that ADMIN_API_KEY_ENABLE=true and ADMIN_API_KEY on the server match the key, and that the workspace id exists".into(),
            )),
            SignIn::Session { .. } if why.contains("CSRF") => Err(ConsoleError::SignIn(format!(
                "Dify refused the pasted session: {why} Paste the csrf_token cookie of the same browser session too"
            ))),
            SignIn::Session { .. } => Err(ConsoleError::SignIn(
                "the pasted session has expired and could not be renewed; sign in to the console in a browser and paste its access_token, refresh_token and csrf_token cookies again".into(),
            )),
            SignIn::OpenApi { .. } => Err(ConsoleError::SignIn(format!(
                "Dify refused the sign-in: {why}"
            ))),
        }
    }

    async fn refresh(&self, credential: &Credential) -> Result<Option<Credential>, ConsoleError> {
        match credential {
            Credential::Cookies(cookies) => {
                if cookies.get("refresh_token").is_none() {
                    return Ok(None);
                }
                let mut headers = HeaderMap::new();
                if let Ok(value) = cookies.header(&["refresh_token"]).parse() {
                    headers.insert(COOKIE, value);
                }
                let (status, answer_headers, _) = self
                    .send(
                        Method::POST,
                        "/console/api/refresh-token",
                        "/refresh-token",
                        headers,
                        Some(&json!({})),
                    )
                    .await?;
                let renewed = CookieSet::from_set_cookie(
                    answer_headers
                        .get_all(SET_COOKIE)
                        .iter()
                        .filter_map(|v| v.to_str().ok()),
                );
                if !status.is_success() || renewed.get("access_token").is_none() {
                    return Ok(None);
                }
                let mut merged = cookies.clone();
                merged.merge(&renewed);
                Ok(Some(Credential::Cookies(merged)))
            }
            Credential::Bearer {
                refresh_token: Some(refresh_token),
                ..
            } => {
                let body = json!({"refresh_token": refresh_token});
                let (status, _, value) = self
                    .send(
                        Method::POST,
                        "/console/api/refresh-token",
                        "/refresh-token",
                        HeaderMap::new(),
                        Some(&body),
                    )
                    .await?;
                match value["data"]["access_token"].as_str() {
                    Some(token) if status.is_success() => Ok(Some(Credential::Bearer {
                        token: token.to_string(),
                        workspace_id: None,
                        refresh_token: value["data"]["refresh_token"].as_str().map(str::to_owned),
                    })),
                    _ => Ok(None),
                }
            }
            Credential::Bearer { .. } => Ok(None),
        }
    }
}

/// The headers that sign a request in.
fn auth_headers(credential: &Credential) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let mut put = |name: reqwest::header::HeaderName, value: String| {
        if let Ok(value) = value.parse() {
            headers.insert(name, value);
        }
    };
    match credential {
        Credential::Bearer {
            token,
            workspace_id,
            ..
        } => {
            put(AUTHORIZATION, format!("Bearer {token}"));
            if let Some(workspace) = workspace_id {
                put(
                    reqwest::header::HeaderName::from_static("x-workspace-id"),
                    workspace.clone(),
                );
            }
        }
        Credential::Cookies(cookies) => {
            put(COOKIE, cookies.header(&["access_token", "csrf_token"]));
            if let Some(csrf) = cookies.get("csrf_token") {
                put(
                    reqwest::header::HeaderName::from_static("x-csrf-token"),
                    csrf.to_string(),
                );
            }
        }
    }
    headers
}

fn header_version(headers: &HeaderMap) -> Option<DifyVersion> {
    headers
        .get("x-version")
        .and_then(|v| v.to_str().ok())
        .and_then(DifyVersion::parse)
}

/// Dify's `message` (or `code`, or the body) of an error answer, shortened.
fn dify_message(value: &Value) -> String {
    let text = value["message"]
        .as_str()
        .or_else(|| value["error"].as_str())
        .or_else(|| value["code"].as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| value.to_string());
    text.chars().take(300).collect()
}

fn refusal(status: StatusCode, route: &str, value: &Value) -> ConsoleError {
    ConsoleError::Refused {
        status: status.as_u16(),
        route: route_name(route),
        code: value["code"].as_str().unwrap_or_default().to_string(),
        message: dify_message(value),
    }
}

/// The route without its query, for messages.
fn route_name(route: &str) -> String {
    route.split('?').next().unwrap_or(route).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_urls_are_normalized() {
        assert_eq!(normalize_console_url("").unwrap(), DEFAULT_CONSOLE_URL);
        assert_eq!(
            normalize_console_url("https://dify.example.com/console/api/").unwrap(),
            "https://dify.example.com"
        );
        assert!(normalize_console_url("api:5001").is_err());
        assert!(normalize_console_url("ftp://x").is_err());
    }

    #[test]
    fn a_url_with_user_info_is_refused_without_showing_it() {
        let refused = Console::new(
            "https://user:pw-secret@dify.example.com",
            SignIn::Password {
                email: "a@b.c".into(),
                password: "p".into(),
            },
        )
        .unwrap_err();
        assert!(
            refused.contains("console_url") && !refused.contains("pw-secret"),
            "{refused}"
        );
    }
}
