//! libgit2 callbacks for one fetch: credentials (token, SSH key held in memory), SSH host key
//! verification (known_hosts or trust on first use) and TLS with an extra CA.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine;
use git2::{CertificateCheckStatus, Cred, CredentialType, RemoteCallbacks};
use sha2::{Digest, Sha256};
use ssh_key::known_hosts::{Entry, HostPatterns};

use super::url::{mask_url, origin_of, RepoUrl, Transport};
use super::GitError;
use crate::credentials::{check_kdf_rounds, normalize_private_key, GitCredentials};
use crate::EnvVars;

/// The user name sent with a token when none is configured: GitHub, GitLab and Gitea take
/// any name with a token; Bitbucket wants the account's user name (or `x-token-auth`).
pub const DEFAULT_TOKEN_USER: &str = "x-access-token";

/// Where SSH host keys seen on first use are remembered (the crawl backs it with plugin
/// storage). Keys are in OpenSSH public-key form, `ssh-ed25519 AAAA...`.
pub trait HostKeyStore: Send + Sync {
    fn recorded(&self, host: &str) -> Option<String>;
    fn record(&self, host: &str, public_key: &str);
}

/// A host key store in memory.
#[derive(Default)]
pub struct MemoryHostKeys(Mutex<HashMap<String, String>>);

impl HostKeyStore for MemoryHostKeys {
    fn recorded(&self, host: &str) -> Option<String> {
        self.0.lock().expect("host key lock").get(host).cloned()
    }

    fn record(&self, host: &str, public_key: &str) {
        self.0
            .lock()
            .expect("host key lock")
            .insert(host.to_string(), public_key.to_string());
    }
}

/// What the callbacks saw, for sorting a failure into the right kind.
#[derive(Default)]
pub struct AuthOutcome {
    pub attempts: u32,
    pub error: Option<GitError>,
}

pub struct Authenticator<'a> {
    pub url: &'a RepoUrl,
    pub credentials: &'a GitCredentials,
    pub host_keys: &'a dyn HostKeyStore,
    pub allow_insecure_http: bool,
    /// Names the variable that allows plain-http logins, in the refusal.
    pub env: EnvVars,
    pub outcome: RefCell<AuthOutcome>,
}

impl<'a> Authenticator<'a> {
    pub fn callbacks(&'a self) -> RemoteCallbacks<'a> {
        let mut callbacks = RemoteCallbacks::new();
        callbacks.credentials(move |url, username, allowed| {
            self.check_origin(url)?;
            self.credentials_for(username, allowed)
        });
        callbacks.certificate_check(move |cert, host| self.check_certificate(cert, host));
        callbacks
    }

    fn fail(&self, error: GitError) -> git2::Error {
        let message = error.to_string();
        self.outcome.borrow_mut().error = Some(error);
        git2::Error::from_str(&message)
    }

    /// Credentials go only to the origin (scheme, host and port) of the configured URL: a
    /// server that redirected libgit2 elsewhere gets nothing, and the error names both.
    fn check_origin(&self, asking: &str) -> Result<(), git2::Error> {
        let Some(configured) = self.url.origin() else {
            return Ok(());
        };
        let asking = origin_of(asking).unwrap_or_else(|| mask_url(asking));
        if asking == configured {
            return Ok(());
        }
        Err(self.fail(GitError::NotAllowed(format!(
            "{} redirected to another origin, {asking}, which asks for credentials; they are sent only to \
             {configured}, the origin of the configured URL, so nothing was sent. If the repository \
             really moved there, configure its new URL",
            self.url.masked()
        ))))
    }

    fn token(&self) -> Option<(String, String)> {
        let c = self.credentials;
        if !c.access_token.is_empty() {
            let user = if c.username.is_empty() {
                DEFAULT_TOKEN_USER
            } else {
                &c.username
            };
            return Some((user.to_string(), c.access_token.clone()));
        }
        let (user, token) = self.url.embedded_credentials()?;
        let user = if !c.username.is_empty() {
            c.username.as_str()
        } else if user.is_empty() {
            DEFAULT_TOKEN_USER
        } else {
            user
        };
        Some((user.to_string(), token.to_string()))
    }

    fn credentials_for(
        &self,
        username: Option<&str>,
        allowed: CredentialType,
    ) -> Result<Cred, git2::Error> {
        let attempt = {
            let mut outcome = self.outcome.borrow_mut();
            outcome.attempts += 1;
            outcome.attempts
        };
        let url = self.url.masked();
        if allowed.contains(CredentialType::USERNAME) {
            return Cred::username(username.unwrap_or(&self.url.ssh_user));
        }
        // libgit2 asks again after a rejection; one rejection is the answer.
        if attempt > 2 {
            return Err(self.fail(GitError::AuthFailed(format!(
                "{url} (the server refused the credentials; check the access token and user name, or the SSH key)"
            ))));
        }
        if allowed.contains(CredentialType::SSH_KEY) {
            let key = &self.credentials.ssh_private_key;
            if key.trim().is_empty() {
                return Err(self.fail(GitError::AuthFailed(format!(
                    "{url} (the server wants an SSH key: add ssh_private_key to the authorization)"
                ))));
            }
            let user = username.unwrap_or(&self.url.ssh_user);
            let passphrase =
                Some(self.credentials.ssh_passphrase.as_str()).filter(|p| !p.is_empty());
            let key = normalize_private_key(key);
            if let Err(problem) = check_kdf_rounds(&key) {
                return Err(self.fail(GitError::AuthFailed(format!(
                    "{url} (ssh_private_key {problem})"
                ))));
            }
            return Cred::ssh_key_from_memory(user, None, &key, passphrase).map_err(|_| {
                self.fail(GitError::AuthFailed(format!(
                    "{url} (ssh_private_key could not be used; check the key and ssh_passphrase)"
                )))
            });
        }
        if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
            let Some((user, token)) = self.token() else {
                return Err(self.fail(GitError::AuthFailed(format!(
                    "{url} (the repository needs a login: add an access_token to the authorization)"
                ))));
            };
            if self.url.transport == Transport::Http && !self.allow_insecure_http {
                return Err(self.fail(GitError::NotAllowed(format!(
                    "{url} asks for a login, but a token is never sent over plain http://; use https:// \
                     or have the operator set {}=1",
                    self.env.name("ALLOW_INSECURE_HTTP")
                ))));
            }
            return Cred::userpass_plaintext(&user, &token);
        }
        Err(self.fail(GitError::AuthFailed(format!(
            "{url} (no supported way to log in)"
        ))))
    }

    fn check_certificate(
        &self,
        cert: &git2::cert::Cert<'_>,
        _host: &str,
    ) -> Result<CertificateCheckStatus, git2::Error> {
        if let Some(hostkey) = cert.as_hostkey() {
            let Some(blob) = hostkey.hostkey() else {
                return Err(self.fail(GitError::HostKeyUnknown(format!(
                    "{}: the SSH server did not show its host key",
                    self.url.masked()
                ))));
            };
            return self
                .check_host_key(blob)
                .map(|()| CertificateCheckStatus::CertificateOk);
        }
        if let Some(x509) = cert.as_x509() {
            crate::nodelay::on_connections_to(self.url.port.unwrap_or(443));
            let ca = &self.credentials.ca_certificate;
            if !ca.trim().is_empty() && verify_with_ca(x509.data(), ca, &self.url.host) {
                return Ok(CertificateCheckStatus::CertificateOk);
            }
        }
        Ok(CertificateCheckStatus::CertificatePassthrough)
    }

    fn check_host_key(&self, blob: &[u8]) -> Result<(), git2::Error> {
        let host = self.url.known_hosts_name();
        let seen = fingerprint(blob);
        let known_hosts = self.credentials.ssh_known_hosts.trim();
        if !known_hosts.is_empty() {
            let keys = known_keys_for(known_hosts, &self.url.host, self.url.port);
            if keys.iter().any(|key| key == blob) {
                return Ok(());
            }
            let error = if keys.is_empty() {
                GitError::HostKeyUnknown(format!(
                    "the SSH host {host} is not in ssh_known_hosts (its key is {seen}); add the output of \
                     `ssh-keyscan{} {}` to ssh_known_hosts",
                    self.url.port.filter(|p| *p != 22).map(|p| format!(" -p {p}")).unwrap_or_default(),
                    self.url.host,
                ))
            } else {
                GitError::HostKeyMismatch(format!(
                    "the SSH host key of {host} ({seen}) is not the one in ssh_known_hosts; if the server's \
                     key really changed, update ssh_known_hosts, otherwise the connection may be intercepted"
                ))
            };
            return Err(self.fail(error));
        }
        let presented = ssh_key::PublicKey::from_bytes(blob)
            .and_then(|key| key.to_openssh())
            .map_err(|_| {
                self.fail(GitError::HostKeyUnknown(format!(
                    "{host}: unreadable SSH host key"
                )))
            })?;
        match self.host_keys.recorded(&host) {
            None => {
                tracing::info!("trusting the SSH host key of {host} on first use: {seen}");
                self.host_keys.record(&host, &presented);
                Ok(())
            }
            Some(recorded) if same_key(&recorded, blob) => Ok(()),
            Some(recorded) => {
                let was = ssh_key::PublicKey::from_openssh(&recorded)
                    .ok()
                    .and_then(|key| key.to_bytes().ok())
                    .map(|blob| fingerprint(&blob))
                    .unwrap_or_else(|| "unreadable".into());
                Err(self.fail(GitError::HostKeyMismatch(format!(
                    "the SSH host key of {host} changed since it was first trusted (was {was}, now {seen}); \
                     if the server's key really changed, put its new key in ssh_known_hosts (ssh-keyscan), \
                     otherwise the connection may be intercepted"
                ))))
            }
        }
    }
}

fn same_key(openssh: &str, blob: &[u8]) -> bool {
    ssh_key::PublicKey::from_openssh(openssh)
        .ok()
        .and_then(|key| key.to_bytes().ok())
        .is_some_and(|recorded| recorded == blob)
}

/// OpenSSH's `SHA256:...` fingerprint of a key blob.
pub fn fingerprint(blob: &[u8]) -> String {
    let digest = Sha256::digest(blob);
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
    )
}

/// The key blobs `known_hosts` lists for a host (plain, wildcard, `[host]:port` and hashed
/// names; negated patterns exclude; `@revoked` and `@cert-authority` lines are not keys).
fn known_keys_for(known_hosts: &str, host: &str, port: Option<u16>) -> Vec<Vec<u8>> {
    let port = port.unwrap_or(22);
    let name = if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    };
    known_hosts
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.parse::<Entry>().ok())
        .filter(|entry| entry.marker().is_none())
        .filter(|entry| match entry.host_patterns() {
            HostPatterns::Patterns(patterns) => {
                let mut matched = false;
                for pattern in patterns {
                    if let Some(negated) = pattern.strip_prefix('!') {
                        if wildcard_match(&negated.to_ascii_lowercase(), &name) {
                            return false;
                        }
                    } else if wildcard_match(&pattern.to_ascii_lowercase(), &name) {
                        matched = true;
                    }
                }
                matched
            }
            HostPatterns::HashedName { salt, hash } => hashed_name_matches(salt, hash, &name),
        })
        .filter_map(|entry| entry.public_key().to_bytes().ok())
        .collect()
}

fn hashed_name_matches(salt: &[u8], hash: &[u8; 20], name: &str) -> bool {
    let Ok(key) = openssl::pkey::PKey::hmac(salt) else {
        return false;
    };
    let Ok(mut signer) = openssl::sign::Signer::new(openssl::hash::MessageDigest::sha1(), &key)
    else {
        return false;
    };
    signer
        .sign_oneshot_to_vec(name.as_bytes())
        .is_ok_and(|mac| mac == hash)
}

/// Longer known_hosts patterns never match (a host name has at most 255 characters).
const MAX_PATTERN: usize = 1024;

/// `*` and `?` globbing as in known_hosts patterns, without backtracking blow-up: one pass
/// that returns to the last `*` only, so at most |pattern| × |text| steps whatever the
/// pattern (a line of many `*` cannot pin a core).
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    if p.len() > MAX_PATTERN {
        return false;
    }
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == b'?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((star_pi, star_ti)) => {
                    pi = star_pi + 1;
                    ti = star_ti + 1;
                    star = Some((star_pi, star_ti + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Whether a server certificate (DER) chains to the given CA(s) and names `host`.
fn verify_with_ca(der: &[u8], ca_pem: &str, host: &str) -> bool {
    use openssl::x509::store::X509StoreBuilder;
    use openssl::x509::{X509StoreContext, X509};
    let Ok(leaf) = X509::from_der(der) else {
        return false;
    };
    let Ok(cas) = X509::stack_from_pem(ca_pem.replace("\\n", "\n").as_bytes()) else {
        return false;
    };
    let Ok(mut builder) = X509StoreBuilder::new() else {
        return false;
    };
    for ca in cas {
        if builder.add_cert(ca).is_err() {
            return false;
        }
    }
    let mut param = openssl::x509::verify::X509VerifyParam::new().expect("verify params");
    let host_set = if host.parse::<std::net::IpAddr>().is_ok() {
        param.set_ip(host.parse().expect("checked"))
    } else {
        param.set_host(host)
    };
    if host_set.is_err() || builder.set_param(&param).is_err() {
        return false;
    }
    let store = builder.build();
    let Ok(chain) = openssl::stack::Stack::new() else {
        return false;
    };
    let Ok(mut context) = X509StoreContext::new() else {
        return false;
    };
    context
        .init(&store, &leaf, &chain, |ctx| ctx.verify_cert())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*.example.com", "git.example.com"));
        assert!(wildcard_match("git?.example.com", "git1.example.com"));
        assert!(!wildcard_match("*.example.com", "example.org"));
        assert!(wildcard_match("[127.0.0.1]:2222", "[127.0.0.1]:2222"));
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("a*b*c", "aXbYbZc"));
        assert!(!wildcard_match("a*b*c", "aXbYbZ"));
        assert!(!wildcard_match("?", ""));
    }

    /// The review's hostile line: many `*` against a long name that does not match. The
    /// old recursive matcher took exponential time here; this one answers at once.
    #[test]
    fn many_stars_take_no_time() {
        let pattern = format!("{}x", "*".repeat(200));
        let name = "a".repeat(255);
        let started = std::time::Instant::now();
        assert!(!wildcard_match(&pattern, &name));
        let line = format!("{pattern},{}x ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl", "*?".repeat(100));
        assert!(known_keys_for(&line, &name, None).is_empty());
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    proptest::proptest! {
        /// The same answers as a plain recursive matcher, on inputs small enough for it.
        #[test]
        fn matches_like_the_definition(pattern in "[ab*?]{0,8}", text in "[ab]{0,8}") {
            fn reference(p: &[u8], t: &[u8]) -> bool {
                match (p.first(), t.first()) {
                    (None, None) => true,
                    (Some(b'*'), _) => reference(&p[1..], t) || (!t.is_empty() && reference(p, &t[1..])),
                    (Some(b'?'), Some(_)) => reference(&p[1..], &t[1..]),
                    (Some(a), Some(b)) if a == b => reference(&p[1..], &t[1..]),
                    _ => false,
                }
            }
            proptest::prop_assert_eq!(wildcard_match(&pattern, &text), reference(pattern.as_bytes(), text.as_bytes()));
        }
    }
}
