//! Git failures sorted into the kinds a user can act on. Every message is shown through
//! [`mask_url`], so no user info reaches a log or an error, whatever the input looked like.

use super::url::mask_url;

#[derive(Clone, PartialEq, Eq, thiserror::Error)]
pub enum GitError {
    #[error("invalid repository URL {}", mask_url(.0))]
    InvalidUrl(String),
    #[error("{}", mask_url(.0))]
    NotAllowed(String),
    #[error("authentication failed for {}", mask_url(.0))]
    AuthFailed(String),
    #[error("repository not found: {}", mask_url(.0))]
    RepoNotFound(String),
    #[error("{}", mask_url(.0))]
    RefNotFound(String),
    #[error("{}", mask_url(.0))]
    HostKeyMismatch(String),
    #[error("{}", mask_url(.0))]
    HostKeyUnknown(String),
    #[error("TLS certificate problem with {}", mask_url(.0))]
    Tls(String),
    #[error("network problem reaching {}", mask_url(.0))]
    Network(String),
    #[error("timed out: {}", mask_url(.0))]
    Timeout(String),
    #[error("the repository cache failed: {}", mask_url(.0))]
    Cache(String),
    #[error("reading the repository failed: {}", mask_url(.0))]
    Read(String),
    #[error("the push was refused: {}", mask_url(.0))]
    Rejected(String),
    #[error("writing the commit failed: {}", mask_url(.0))]
    Write(String),
}

/// Debug output is masked like the message.
impl std::fmt::Debug for GitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GitError({}: {self})", self.kind())
    }
}

/// Whose fix an error needs, for callers that sort errors into kinds of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The URL, the reference, a host key, a setting, a branch that moved: the user's to fix.
    Input,
    /// The server refused the credentials.
    Credentials,
    /// The server could not be reached, TLS failed, or time ran out.
    Network,
    /// The server or the local cache failed.
    Server,
}

impl GitError {
    /// Whose fix this error needs.
    pub fn fault(&self) -> Fault {
        match self {
            GitError::InvalidUrl(_)
            | GitError::NotAllowed(_)
            | GitError::RepoNotFound(_)
            | GitError::RefNotFound(_)
            | GitError::HostKeyMismatch(_)
            | GitError::HostKeyUnknown(_)
            | GitError::Rejected(_) => Fault::Input,
            GitError::AuthFailed(_) => Fault::Credentials,
            GitError::Tls(_) | GitError::Network(_) | GitError::Timeout(_) => Fault::Network,
            GitError::Cache(_) | GitError::Read(_) | GitError::Write(_) => Fault::Server,
        }
    }

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
            GitError::Rejected(_) => "push_rejected",
            GitError::Write(_) => "write",
        }
    }

    /// Sorts a libgit2 error from talking to `url` (already masked) into a kind.
    pub fn from_remote(error: &git2::Error, url: &str) -> GitError {
        let message = mask_url(error.message());
        let lower = message.to_ascii_lowercase();
        let with = |text: &str| format!("{url} ({text})");
        use git2::{ErrorClass as C, ErrorCode as E};
        // libgit2 follows no redirect to another host (`RemoteRedirect::None`) and says so.
        if lower.contains("cannot redirect from") {
            return GitError::NotAllowed(with(&format!(
                "the server redirected to another origin, refused: {message}; requests and \
                 credentials go only to the origin of the configured URL. If the repository \
                 really moved, configure its new URL"
            )));
        }
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
