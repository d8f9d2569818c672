//! Who sent a webhook and whether it was signed with the endpoint's secret, as each host
//! documents it:
//! - GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`;
//! - Gitea and Forgejo: `X-Gitea-Signature` / `X-Forgejo-Signature: <hex HMAC-SHA256>`;
//! - GitLab: `X-Gitlab-Token: <the secret token itself>`;
//! - Bitbucket (Cloud and Data Center): `X-Hub-Signature: sha256=<hex HMAC-SHA256>`.
//!
//! Every comparison takes the same time whatever matches.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use dify_plugin::endpoint::EndpointRequest;

/// The Git host a webhook comes from, by the headers it sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host {
    GitHub,
    Gitea,
    Forgejo,
    GitLab,
    Bitbucket,
}

impl Host {
    /// Gitea and Forgejo also send GitHub's headers, so they are asked first.
    pub fn of(request: &EndpointRequest) -> Option<Host> {
        let has = |name: &str| request.header(name).is_some();
        if has("X-Forgejo-Event") {
            Some(Host::Forgejo)
        } else if has("X-Gitea-Event") {
            Some(Host::Gitea)
        } else if has("X-Gitlab-Event") {
            Some(Host::GitLab)
        } else if has("X-Event-Key") {
            Some(Host::Bitbucket)
        } else if has("X-GitHub-Event") {
            Some(Host::GitHub)
        } else {
            None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Host::GitHub => "GitHub",
            Host::Gitea => "Gitea",
            Host::Forgejo => "Forgejo",
            Host::GitLab => "GitLab",
            Host::Bitbucket => "Bitbucket",
        }
    }

    /// The event the host names (`push`, `Push Hook`, `repo:push`, …).
    pub fn event(self, request: &EndpointRequest) -> String {
        let header = match self {
            Host::GitHub => "X-GitHub-Event",
            Host::Gitea => "X-Gitea-Event",
            Host::Forgejo => "X-Forgejo-Event",
            Host::GitLab => "X-Gitlab-Event",
            Host::Bitbucket => "X-Event-Key",
        };
        request.header(header).unwrap_or_default().to_string()
    }

    /// The id of this delivery (a redelivery keeps it).
    pub fn delivery(self, request: &EndpointRequest) -> Option<String> {
        let headers: &[&str] = match self {
            Host::GitHub => &["X-GitHub-Delivery"],
            Host::Gitea => &["X-Gitea-Delivery"],
            Host::Forgejo => &["X-Forgejo-Delivery", "X-Gitea-Delivery"],
            Host::GitLab => &["X-Gitlab-Event-UUID", "Idempotency-Key"],
            Host::Bitbucket => &["X-Request-UUID", "X-Request-Id"],
        };
        headers
            .iter()
            .find_map(|h| request.header(h))
            .map(|id| id.chars().filter(|c| !c.is_control()).take(128).collect())
            .filter(|id: &String| !id.is_empty())
    }

    /// Whether the request carries this host's proof of `secret`.
    pub fn verify(self, request: &EndpointRequest, secret: &str) -> Result<(), &'static str> {
        match self {
            Host::GitLab => {
                let token = request
                    .header("X-Gitlab-Token")
                    .ok_or("no X-Gitlab-Token")?;
                match same(&Sha256::digest(token), &Sha256::digest(secret)) {
                    true => Ok(()),
                    false => Err("the X-Gitlab-Token is not the endpoint's secret"),
                }
            }
            _ => {
                let (header, prefixed) = match self {
                    Host::GitHub => ("X-Hub-Signature-256", true),
                    Host::Bitbucket => ("X-Hub-Signature", true),
                    Host::Gitea => ("X-Gitea-Signature", false),
                    _ => ("X-Forgejo-Signature", false),
                };
                let sent = request.header(header).ok_or(match self {
                    Host::GitHub => "no X-Hub-Signature-256",
                    Host::Bitbucket => "no X-Hub-Signature",
                    Host::Gitea => "no X-Gitea-Signature",
                    _ => "no X-Forgejo-Signature",
                })?;
                let hex_part = match prefixed {
                    true => sent
                        .trim()
                        .strip_prefix("sha256=")
                        .ok_or("the signature is not sha256=…")?,
                    false => sent.trim(),
                };
                let sent = hex::decode(hex_part).map_err(|_| "the signature is not hex")?;
                let expected = hex::decode(sign(secret, &request.body)).expect("hex it wrote");
                match same(&expected, &sent) {
                    true => Ok(()),
                    false => Err("the signature does not match the body and the endpoint's secret"),
                }
            }
        }
    }
}

/// Equal bytes, compared in a time that depends on their length only.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The HMAC-SHA256 signature of `body` with `secret`, in hex, as the hosts compute it.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}
