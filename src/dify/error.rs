//! What a Dify API call can end in: the kinds of failure a user must fix (a wrong key, no
//! such knowledge base, no published pipeline, …) and passing ones, each message naming
//! the endpoint, the status and the fix, never the key.

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiErrorKind {
    /// No answer: connection refused, DNS, timeout.
    Unreachable,
    /// 401: the key is wrong (or not a Knowledge API key).
    Unauthorized,
    /// 404 `Dataset not found.`: no such knowledge base in the key's workspace.
    NoKnowledgeBase,
    /// 403 `Dataset api access is not enabled.`
    ApiDisabled,
    /// The pipeline routes are missing: Dify older than 1.13.0.
    NoPipelineApi,
    /// The knowledge base has no pipeline, no published one, or none with our data source.
    NoPipeline,
    /// Dify refused the process-form inputs (a required one missing, a wrong type).
    InputRejected,
    /// An answer larger than one answer may be (32 MiB).
    TooLarge,
    /// Any other answer (429/5xx after the retries, a malformed body).
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub kind: ApiErrorKind,
    pub status: Option<u16>,
    pub message: String,
}

impl ApiError {
    /// A problem the user must fix in the configuration (as opposed to a passing fault).
    pub fn is_configuration(&self) -> bool {
        matches!(
            self.kind,
            ApiErrorKind::Unauthorized
                | ApiErrorKind::NoKnowledgeBase
                | ApiErrorKind::ApiDisabled
                | ApiErrorKind::NoPipelineApi
                | ApiErrorKind::NoPipeline
                | ApiErrorKind::InputRejected
        )
    }
}

/// The error a non-2xx answer means, with the fix it needs; `shown` is the API base as it
/// may be shown.
pub(super) fn status_error(endpoint: &str, status: u16, body: &[u8], shown: &str) -> ApiError {
    #[derive(Deserialize, Default)]
    struct Envelope {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let envelope: Envelope = serde_json::from_slice(body).unwrap_or_default();
    let said: String = envelope.message.chars().take(200).collect();
    let (kind, message) = match (status, envelope.code.as_str()) {
        (401, _) => (
            ApiErrorKind::Unauthorized,
            format!(
                "{endpoint} answered 401: the Dify API does not accept the Knowledge API key; \
                 create one in Dify under Knowledge → API (it starts with dataset-) and paste \
                 it into the authorization's dify_api_key"
            ),
        ),
        (404, "not_found") if said.starts_with("Dataset not found") => (
            ApiErrorKind::NoKnowledgeBase,
            format!(
                "{endpoint} answered 404: no such knowledge base in the key's workspace; copy \
                 the id from the knowledge base's URL (…/datasets/<id>/documents)"
            ),
        ),
        (403, _) if said.contains("api access is not enabled") => (
            ApiErrorKind::ApiDisabled,
            format!(
                "{endpoint} answered 403: API access is switched off for this knowledge \
                 base; switch it on under the knowledge base's API Access"
            ),
        ),
        (404, "") if endpoint.contains("/pipeline/") => (
            ApiErrorKind::NoPipelineApi,
            format!(
                "{endpoint} answered 404: this Dify has no knowledge-pipeline Service API; \
                 pushing documents needs Dify 1.13.0 or later (older versions import only \
                 through the UI)"
            ),
        ),
        (400, "invalid_param") if said.starts_with("Pipeline not found") => (
            ApiErrorKind::NoPipeline,
            format!(
                "{endpoint} answered 400 ({said}): the knowledge base is not a knowledge-pipeline \
                 knowledge base; create one in Dify with Knowledge → Create from Knowledge \
                 Pipeline, with Git Repository as its data source"
            ),
        ),
        (400, "invalid_param") if said.starts_with("Pipeline or workflow not found") => (
            ApiErrorKind::NoPipeline,
            format!(
                "{endpoint} answered 400 ({said}): the knowledge base's pipeline has never \
                 been published; open it in Dify and press Publish"
            ),
        ),
        (500, "pipeline_run_error") if said.contains("not published") => (
            ApiErrorKind::NoPipeline,
            format!(
                "{endpoint} answered 500 ({said}): publish the knowledge base's pipeline in Dify"
            ),
        ),
        (500, "pipeline_run_error") if said.contains("in input form") => (
            ApiErrorKind::InputRejected,
            format!(
                "{endpoint} answered 500, Dify says: {said}; give every required variable \
                 of the pipeline's Process form a default in the pipeline, or a value \
                 (sync: --input name=value)"
            ),
        ),
        (404, _) if envelope.code.is_empty() => (
            ApiErrorKind::Other,
            format!(
                "{endpoint} answered 404 without a Dify error: {} is not Dify's Knowledge API \
                 (it usually ends in /v1)",
                shown
            ),
        ),
        _ => (
            ApiErrorKind::Other,
            format!("{endpoint} answered {status} {}: {said}", envelope.code),
        ),
    };
    ApiError {
        kind,
        status: Some(status),
        message,
    }
}

/// A 2xx answer's body as `T`, or an error naming what was expected.
pub(super) fn parse<T: serde::de::DeserializeOwned>(
    endpoint: &str,
    body: &[u8],
    what: &str,
) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError {
        kind: ApiErrorKind::Other,
        status: Some(200),
        message: format!("{endpoint}: the answer is not {what}: {e}"),
    })
}
