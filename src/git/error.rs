//! Git failures sorted into the kinds a user can act on. Messages carry masked URLs only.

use super::url::mask_url;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GitError {
    #[error("invalid repository URL {0}")]
    InvalidUrl(String),
    #[error("{0}")]
    NotAllowed(String),
    #[error("authentication failed for {0}")]
    AuthFailed(String),
    #[error("repository not found: {0}")]
    RepoNotFound(String),
    #[error("{0}")]
    RefNotFound(String),
    #[error("{0}")]
    HostKeyMismatch(String),
    #[error("{0}")]
    HostKeyUnknown(String),
    #[error("TLS certificate problem with {0}")]
    Tls(String),
    #[error("network problem reaching {0}")]
    Network(String),
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("the repository cache failed: {0}")]
    Cache(String),
    #[error("reading the repository failed: {0}")]
    Read(String),
}

impl GitError {
    /// Worth another try: the network hiccuped.
    pub fn is_transient(&self) -> bool {
        matches!(self, GitError::Network(_) | GitError::Timeout(_))
    }

    /// A short name for the kind, for logs and error types.
    pub fn kind(&self) -> &'static str {
        match self {
            GitError::InvalidUrl(_) => "invalid_url",
            GitError::NotAllowed(_) => "not_allowed",
            GitError::AuthFailed(_) => "auth_failed",
            GitError::RepoNotFound(_) => "repo_not_found",
            GitError::RefNotFound(_) => "ref_not_found",
            GitError::HostKeyMismatch(_) => "host_key_mismatch",
            GitError::HostKeyUnknown(_) => "host_key_unknown",
            GitError::Tls(_) => "tls",
            GitError::Network(_) => "network",
            GitError::Timeout(_) => "timeout",
            GitError::Cache(_) => "cache",
            GitError::Read(_) => "read",
        }
    }

    /// Sorts a libgit2 error from talking to `url` (already masked) into a kind.
    pub fn from_remote(error: &git2::Error, url: &str) -> GitError {
        let message = mask_url(error.message());
        let lower = message.to_ascii_lowercase();
        let with = |text: &str| format!("{url} ({text})");
        use git2::{ErrorClass as C, ErrorCode as E};
        if error.code() == E::Auth
            || lower.contains("authenticat")
            || lower.contains("private key")
            || lower.contains("401")
            || lower.contains("403")
            || lower.contains("permission denied")
            || lower.contains("credentials")
        {
            return GitError::AuthFailed(with(
                "check the access token (and user name), or the SSH key and its passphrase",
            ));
        }
        if error.code() == E::Certificate
            || error.class() == C::Ssl
            || lower.contains("certificate")
        {
            return GitError::Tls(with(&format!(
                "{message}; for a self-hosted server add its CA as the ca_certificate credential"
            )));
        }
        if lower.contains("404")
            || lower.contains("not found")
            || lower.contains("does not appear to be a git repository")
            || lower.contains("no such file")
            || lower.contains("could not find repository")
        {
            return GitError::RepoNotFound(with(
                "check the URL; private repositories also need a credential",
            ));
        }
        if lower.contains("timed out") || lower.contains("timeout") {
            return GitError::Timeout(with(&message));
        }
        if matches!(error.class(), C::Net | C::Os | C::Ssh | C::Http)
            || lower.contains("failed to resolve")
            || lower.contains("connection")
            || lower.contains("unreachable")
        {
            return GitError::Network(with(&message));
        }
        GitError::Read(with(&message))
    }
}
