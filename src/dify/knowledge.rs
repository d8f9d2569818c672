//! A client of Dify's Knowledge (dataset) Service API: list a knowledge base's documents a
//! page at a time, delete one, and check a key. Errors name the endpoint and the status,
//! never the key; 429 and 5xx are retried with backoff.

use std::time::Duration;

use dify_plugin::dify_http;
use serde::Deserialize;

use super::error::{parse, status_error};
pub use super::error::{ApiError, ApiErrorKind};

/// Dify answers at most this many documents per page, whatever `limit` says.
pub const MAX_PAGE: usize = 100;
/// The most one answer may hold. A page of the document list carries each document's content
/// twice, so a page of large documents can pass it: the listing then reads that page in
/// smaller ones (`listing.rs`); no single document of ours comes near it.
const MAX_ANSWER_BYTES: usize = 32 << 20;
/// Tries of one call when the API answers 429/5xx or cannot be reached.
const ATTEMPTS: u32 = 4;
/// The wait before the first retry; it doubles each try.
pub const DEFAULT_FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// An id no knowledge base has: asking for it proves a key without reading anything.
const NIL_ID: &str = "00000000-0000-0000-0000-000000000000";
const COMPOSE_HINT: &str = "from the plugin daemon's container Dify's API is usually \
     http://api:5001/v1 (docker compose); the URL the browser shows (e.g. http://localhost/v1) \
     does not work there";

/// Whether `id` is a UUID, as Dify's document and knowledge base ids are.
pub fn is_uuid(id: &str) -> bool {
    id.len() == 36
        && id.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// One page of `GET /datasets/{id}/documents`.
#[derive(Debug, Deserialize)]
pub struct Page {
    pub data: Vec<RawDocument>,
    pub total: usize,
}

/// A document as the list returns it; only the fields mirroring reads.
#[derive(Debug, Clone, Deserialize)]
pub struct RawDocument {
    pub id: String,
    #[serde(default)]
    pub data_source_info: Option<serde_json::Value>,
    #[serde(default)]
    pub indexing_status: Option<String>,
    /// `queuing`, `indexing`, `paused`, `error`, `available`, `disabled` or `archived`.
    #[serde(default)]
    pub display_status: Option<String>,
    #[serde(default)]
    pub archived: bool,
    #[serde(default)]
    pub created_at: i64,
    #[serde(default)]
    pub position: i64,
    /// The document's metadata values: `[{id, name, type, value}]` (`null` or `[]` without).
    #[serde(default)]
    pub doc_metadata: Option<serde_json::Value>,
}

/// Which failures a call tries again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Retry {
    /// Reads and deletes: 429, 5xx and no answer.
    Always,
    /// A call that creates something: only when it surely created nothing (no connection,
    /// 429, 503), since Dify may have acted before failing.
    WhenNotDone,
}

/// What a delete ended in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    Done,
    /// 404: someone (or an earlier try) deleted it already.
    AlreadyGone,
    /// 403 `archived_document_immutable`: archived documents are left alone.
    Archived,
}

#[derive(Clone)]
pub struct KnowledgeApi {
    http: reqwest::Client,
    /// The base URL up to and including `/v1`, without a trailing slash.
    base: String,
    /// The base with any user-info removed, for messages.
    shown: String,
    key: String,
    retry_base: Duration,
}

impl std::fmt::Debug for KnowledgeApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnowledgeApi")
            .field("base", &self.shown)
            .finish_non_exhaustive()
    }
}

/// Checks and normalizes an API base URL: http(s) only; a URL with no path gets `/v1`.
pub fn normalize_base(url: &str) -> Result<String, String> {
    let url = url.trim();
    let parsed = reqwest::Url::parse(url).map_err(|_| {
        "dify_api_url must be a URL such as http://api:5001/v1 (the Knowledge API's base URL)"
            .to_string()
    })?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err("dify_api_url must start with http:// or https:// and name a host".into());
    }
    dify_http::refuse_user_info(url, "dify_api_url")?;
    let mut base = url.trim_end_matches('/').to_string();
    if parsed.path().trim_matches('/').is_empty() {
        base.push_str("/v1");
    }
    Ok(base)
}

impl KnowledgeApi {
    /// `base_url` as the user typed it (normalized here) and a `dataset-…` key, with a
    /// client of its own.
    pub fn new(base_url: &str, key: &str) -> Result<Self, String> {
        Self::with_client(dify_http::client()?, base_url, key)
    }

    /// The same over a shared client (its connection pool), as a long-lived process keeps.
    pub fn with_client(http: reqwest::Client, base_url: &str, key: &str) -> Result<Self, String> {
        let base = normalize_base(base_url)?;
        Ok(KnowledgeApi {
            http,
            shown: dify_http::without_user_info(&base),
            base,
            key: key.trim().to_string(),
            retry_base: DEFAULT_FIRST_BACKOFF,
        })
    }

    /// The first backoff before a retry (500 ms unless set; it doubles each try).
    pub fn with_first_backoff(mut self, first: Duration) -> Self {
        self.retry_base = first;
        self
    }

    /// The base URL as it may be shown (no user-info).
    pub fn shown_base(&self) -> &str {
        &self.shown
    }

    /// Who asks, without the key: its SHA-256, shortened. What one workspace's key set going
    /// (a watcher, a remembered listing) is never reached with another's.
    pub fn key_fingerprint(&self) -> String {
        use sha2::Digest;
        hex::encode(&sha2::Sha256::digest(self.key.as_bytes())[..8])
    }

    /// Proves the key with a call that reads nothing: a knowledge base no one has.
    pub async fn check_key(&self) -> Result<(), ApiError> {
        let path = format!("/datasets/{NIL_ID}");
        match self.call(reqwest::Method::GET, &path, "").await {
            Err(error) if error.kind == ApiErrorKind::NoKnowledgeBase => Ok(()),
            Err(error) => Err(error),
            Ok(_) => Ok(()),
        }
    }

    /// One page of the knowledge base's documents, newest first.
    pub async fn list(&self, dataset: &str, page: usize, limit: usize) -> Result<Page, ApiError> {
        self.list_page(dataset, page, limit, "").await
    }

    /// One page of the documents of one display status (`queuing`, `indexing`, …), newest
    /// first. Dify before 1.10.1 ignores the filter and answers the whole list.
    pub async fn list_by_status(
        &self,
        dataset: &str,
        status: &str,
        page: usize,
    ) -> Result<Page, ApiError> {
        self.list_page(dataset, page, MAX_PAGE, &format!("&status={status}"))
            .await
    }

    async fn list_page(
        &self,
        dataset: &str,
        page: usize,
        limit: usize,
        filter: &str,
    ) -> Result<Page, ApiError> {
        let path = format!("/datasets/{dataset}/documents");
        let query = format!("?page={page}&limit={}{filter}", limit.clamp(1, MAX_PAGE));
        let body = self.call(reqwest::Method::GET, &path, &query).await?;
        parse(&format!("GET {path}"), &body, "a document list")
    }

    pub async fn delete(&self, dataset: &str, document: &str) -> Result<Deleted, ApiError> {
        // An id from a listing goes into the path: anything but a UUID (`../../<other
        // knowledge base>/documents/<id>`, say) would send the DELETE elsewhere.
        if !is_uuid(document) || !is_uuid(dataset) {
            return Err(ApiError {
                kind: ApiErrorKind::Other,
                status: None,
                message: format!(
                    "not deleting {:?}: a Dify document id is a UUID, and the Knowledge API listed \
                     something else",
                    document.chars().take(60).collect::<String>()
                ),
            });
        }
        let path = format!("/datasets/{dataset}/documents/{document}");
        match self.call(reqwest::Method::DELETE, &path, "").await {
            Ok(_) => Ok(Deleted::Done),
            Err(e) if e.status == Some(404) => Ok(Deleted::AlreadyGone),
            Err(e) if e.status == Some(403) && e.kind != ApiErrorKind::ApiDisabled => {
                Ok(Deleted::Archived)
            }
            Err(e) => Err(e),
        }
    }

    /// One call with retries; the body of a 2xx answer.
    pub(super) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &str,
    ) -> Result<Vec<u8>, ApiError> {
        self.send(method, path, query, None, Retry::Always).await
    }

    /// One call with a JSON `body` (sent as it is), retried as `retry` says.
    pub(super) async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &str,
        body: Option<&[u8]>,
        retry: Retry,
    ) -> Result<Vec<u8>, ApiError> {
        let endpoint = format!("{method} {path}");
        let mut delay = self.retry_base;
        let mut attempt = 1;
        loop {
            let mut request = self
                .http
                .request(method.clone(), format!("{}{path}{query}", self.base))
                .bearer_auth(&self.key);
            if let Some(body) = body {
                request = request
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.to_vec());
            }
            let sent = request.send().await;
            let error = match sent {
                Ok(response) => {
                    let status = response.status().as_u16();
                    if let Some(refusal) = dify_http::redirect_refusal(&response) {
                        return Err(ApiError {
                            kind: ApiErrorKind::Other,
                            status: Some(status),
                            message: format!("{endpoint}: {refusal}"),
                        });
                    }
                    let retry_after = dify_http::retry_after(response.headers())
                        .map(|wait| wait.min(Duration::from_secs(30)));
                    match dify_http::read_capped(response, MAX_ANSWER_BYTES).await {
                        Ok(None) => {
                            return Err(ApiError {
                                kind: ApiErrorKind::TooLarge,
                                status: Some(status),
                                message: format!(
                                    "{endpoint}: the answer is over {MAX_ANSWER_BYTES} bytes",
                                ),
                            })
                        }
                        Ok(Some(body)) if (200..300).contains(&status) => return Ok(body),
                        Ok(Some(body)) => {
                            let error = status_error(&endpoint, status, &body, &self.shown);
                            let again = match retry {
                                Retry::Always => status == 429 || status >= 500,
                                Retry::WhenNotDone => status == 429 || status == 503,
                            };
                            if again {
                                delay = retry_after.unwrap_or(delay);
                                error
                            } else {
                                return Err(error);
                            }
                        }
                        Err(e) if retry == Retry::WhenNotDone => {
                            return Err(self.unreachable(&endpoint, &e))
                        }
                        Err(e) => self.unreachable(&endpoint, &e),
                    }
                }
                Err(e) if retry == Retry::WhenNotDone && !e.is_connect() => {
                    return Err(self.unreachable(&endpoint, &e))
                }
                Err(e) => self.unreachable(&endpoint, &e),
            };
            if attempt >= ATTEMPTS {
                return Err(error);
            }
            tracing::debug!("{endpoint}: {error}; trying again in {delay:?}");
            tokio::time::sleep(delay).await;
            delay *= 2;
            attempt += 1;
        }
    }

    fn unreachable(&self, endpoint: &str, error: &reqwest::Error) -> ApiError {
        let why = if error.is_timeout() {
            "no answer in time".to_string()
        } else if error.is_connect() {
            "connection failed".to_string()
        } else {
            // reqwest's own text names the URL; ours names only the endpoint.
            "the connection broke".to_string()
        };
        ApiError {
            kind: ApiErrorKind::Unreachable,
            status: None,
            message: format!(
                "{endpoint}: cannot reach the Dify API at {} ({why}); {COMPOSE_HINT}",
                self.shown
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        assert_eq!(
            normalize_base("http://api:5001").unwrap(),
            "http://api:5001/v1"
        );
        assert_eq!(
            normalize_base("http://api:5001/").unwrap(),
            "http://api:5001/v1"
        );
        assert_eq!(
            normalize_base(" https://dify.example.com/v1/ ").unwrap(),
            "https://dify.example.com/v1"
        );
        assert!(normalize_base("api:5001").is_err());
        assert!(normalize_base("ftp://x/v1").is_err());
        assert!(normalize_base("").is_err());
        assert!(normalize_base("https://u:dataset-key@dify.example.com/v1").is_err());
    }

    #[test]
    fn user_info_is_refused_and_the_key_never_shown() {
        // Sent as `Authorization: Basic` before the Bearer key, Dify would read the wrong one.
        let refused =
            KnowledgeApi::new("https://user:s3cret@dify.example.com/v1", "dataset-x").unwrap_err();
        assert!(refused.contains("user name or password") && !refused.contains("s3cret"));
        let api = KnowledgeApi::new("https://dify.example.com/v1", "dataset-x").unwrap();
        assert_eq!(api.shown_base(), "https://dify.example.com/v1");
        assert!(!format!("{api:?}").contains("dataset-x"));
    }
}
