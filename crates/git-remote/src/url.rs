//! Repository URLs: parsing, the cache key they normalize to, and the masked form that may
//! appear in messages.

use std::fmt;
use std::path::PathBuf;

use super::GitError;

/// How a repository is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    Https,
    Http,
    Ssh,
    Local,
}

/// A parsed repository URL. The text handed to libgit2 never carries credentials; any that
/// the user typed into the URL are kept apart and used like the token credential.
#[derive(Clone, PartialEq, Eq)]
pub struct RepoUrl {
    pub transport: Transport,
    /// What libgit2 fetches from: the URL without user info (SSH keeps its user name).
    fetch_url: String,
    /// The host (lower-cased) and port, for host keys and messages.
    pub host: String,
    pub port: Option<u16>,
    /// The SSH user (`git` when the URL names none).
    pub ssh_user: String,
    /// A user name and password (token) embedded in an HTTPS URL.
    embedded: Option<(String, String)>,
    /// The key that identifies the repository in the cache.
    normalized: String,
}

impl fmt::Debug for RepoUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RepoUrl({})", self.masked())
    }
}

impl fmt::Display for RepoUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl RepoUrl {
    pub fn parse(input: &str) -> Result<Self, GitError> {
        let text = input.trim();
        let invalid = |why: &str| GitError::InvalidUrl(mask_url(&format!("{text}: {why}")));
        if text.is_empty() {
            return Err(invalid("the repository URL is empty"));
        }
        if text.chars().any(|c| c.is_control() || c == ' ') {
            return Err(invalid("it contains spaces or control characters"));
        }
        if let Some((scheme, rest)) = text.split_once("://") {
            let transport = match scheme.to_ascii_lowercase().as_str() {
                "https" => Transport::Https,
                "http" => Transport::Http,
                "ssh" | "git+ssh" | "ssh+git" => Transport::Ssh,
                "file" => Transport::Local,
                other => {
                    return Err(invalid(&format!(
                    "the scheme {other}:// is not supported; use https://, ssh:// or git@host:path"
                )))
                }
            };
            if transport == Transport::Local {
                return Self::local(rest);
            }
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let (userinfo, hostport) = match authority.rsplit_once('@') {
                Some((userinfo, hostport)) => (Some(userinfo), hostport),
                None => (None, authority),
            };
            let (host, port) = split_host_port(hostport)
                .ok_or_else(|| invalid("the host or port is not valid"))?;
            let path = path.trim_end_matches('/');
            if path.is_empty() {
                return Err(invalid("it names no repository path"));
            }
            let (ssh_user, embedded) = match (&transport, userinfo) {
                (Transport::Ssh, Some(info)) => {
                    (info.split(':').next().unwrap_or("git").to_string(), None)
                }
                (Transport::Ssh, None) => ("git".to_string(), None),
                (_, Some(info)) => {
                    let (user, password) = info.split_once(':').unwrap_or((info, ""));
                    let (user, password) = (percent_decode(user), percent_decode(password));
                    match password.is_empty() {
                        // `https://TOKEN@host/...` is a token with no user name.
                        true => (String::new(), Some((String::new(), user))),
                        false => (String::new(), Some((user, password))),
                    }
                }
                (_, None) => (String::new(), None),
            };
            let bracketed = if host.contains(':') {
                format!("[{host}]")
            } else {
                host.clone()
            };
            let port_part = port.map(|p| format!(":{p}")).unwrap_or_default();
            let fetch_url = match transport {
                Transport::Ssh => format!("ssh://{ssh_user}@{bracketed}{port_part}{path}"),
                _ => format!(
                    "{}://{bracketed}{port_part}{path}",
                    scheme.to_ascii_lowercase()
                ),
            };
            let normalized = normalize(&transport, &host, port, path);
            return Ok(RepoUrl {
                transport,
                fetch_url,
                host,
                port,
                ssh_user,
                embedded,
                normalized,
            });
        }
        // scp-like `user@host:path`; a path with a colon before any slash.
        if let Some((before, path)) = text.split_once(':') {
            let scheme_like = ["http", "https", "ssh", "git", "file"]
                .iter()
                .any(|s| before.eq_ignore_ascii_case(s));
            if scheme_like {
                return Err(invalid(&format!(
                    "write the scheme as {before}:// (two slashes)"
                )));
            }
            if !before.contains('@') && path.split('/').next().unwrap_or("").contains('@') {
                // `user:token@host/repo`: a URL missing its scheme, not an SSH address.
                return Err(invalid(
                    "it looks like user:token@host without a scheme; write https://host/org/repo.git \
                     and put the token in the access_token credential",
                ));
            }
            if !before.contains('/')
                && !path.is_empty()
                && !path.starts_with("//")
                && before.len() > 1
            {
                let (user, host) = before.rsplit_once('@').unwrap_or(("git", before));
                if host.is_empty()
                    || !host
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c))
                {
                    return Err(invalid("the host is not valid"));
                }
                let host = host.to_ascii_lowercase();
                let path = format!("/{}", path.trim_start_matches('/').trim_end_matches('/'));
                let normalized = normalize(&Transport::Ssh, &host, None, &path);
                return Ok(RepoUrl {
                    transport: Transport::Ssh,
                    fetch_url: text.trim_end_matches('/').to_string(),
                    host,
                    port: None,
                    ssh_user: user.to_string(),
                    embedded: None,
                    normalized,
                });
            }
        }
        let looks_local = text.starts_with('/') || text.starts_with('.') || text.starts_with('~');
        if looks_local || std::path::Path::new(text).exists() {
            return Self::local(text);
        }
        Err(invalid(
            "use an https:// or ssh:// URL, or git@host:org/repo.git",
        ))
    }

    fn local(path: &str) -> Result<Self, GitError> {
        let path = if let Some(rest) = path.strip_prefix('~') {
            let home = std::env::var("HOME").unwrap_or_default();
            format!("{home}{rest}")
        } else {
            path.to_string()
        };
        let absolute = std::fs::canonicalize(&path)
            .map_err(|_| GitError::RepoNotFound(format!("{path}: no such directory")))?;
        let text = absolute.to_string_lossy().into_owned();
        Ok(RepoUrl {
            transport: Transport::Local,
            fetch_url: text.clone(),
            host: String::new(),
            port: None,
            ssh_user: String::new(),
            embedded: None,
            normalized: format!("file://{text}"),
        })
    }

    /// The URL libgit2 fetches from (no password or token in it).
    pub fn fetch_url(&self) -> &str {
        &self.fetch_url
    }

    /// The same repository whatever its spelling: scheme, lower-cased host, port, path
    /// without a trailing `.git` or `/`. Never contains credentials.
    pub fn normalized(&self) -> &str {
        &self.normalized
    }

    /// The URL as it may appear in messages.
    pub fn masked(&self) -> String {
        mask_url(&self.fetch_url)
    }

    /// A user name and token typed into the URL itself.
    pub fn embedded_credentials(&self) -> Option<(&str, &str)> {
        self.embedded
            .as_ref()
            .map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// `scheme://host:port` of an HTTP(S) URL, the port always written: what a credential
    /// is bound to. `None` for SSH and local repositories.
    pub fn origin(&self) -> Option<String> {
        let (scheme, default) = match self.transport {
            Transport::Https => ("https", 443),
            Transport::Http => ("http", 80),
            Transport::Ssh | Transport::Local => return None,
        };
        Some(format!(
            "{scheme}://{}:{}",
            self.host,
            self.port.unwrap_or(default)
        ))
    }

    /// The known_hosts name of the SSH host: `host` or `[host]:port`.
    pub fn known_hosts_name(&self) -> String {
        match self.port {
            Some(port) if port != 22 => format!("[{}]:{port}", self.host),
            _ => self.host.clone(),
        }
    }

    pub fn local_path(&self) -> Option<PathBuf> {
        (self.transport == Transport::Local).then(|| PathBuf::from(&self.fetch_url))
    }
}

fn split_host_port(hostport: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(port) => Some(port.parse().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        (host.to_string(), port)
    } else {
        match hostport.rsplit_once(':') {
            Some((host, port)) => (host.to_string(), Some(port.parse().ok()?)),
            None => (hostport.to_string(), None),
        }
    };
    let valid = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_:".contains(c));
    valid.then(|| (host.to_ascii_lowercase(), port))
}

fn normalize(transport: &Transport, host: &str, port: Option<u16>, path: &str) -> String {
    let scheme = match transport {
        Transport::Https | Transport::Http => "https",
        Transport::Ssh => "ssh",
        Transport::Local => "file",
    };
    let port = match (transport, port) {
        (Transport::Https, Some(443))
        | (Transport::Http, Some(80))
        | (Transport::Ssh, Some(22)) => String::new(),
        (_, Some(port)) => format!(":{port}"),
        (_, None) => String::new(),
    };
    let path = path.trim_end_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    format!("{scheme}://{host}{port}{path}")
}

/// `scheme://host:port` of an HTTP(S) URL as libgit2 reports it (user info dropped, the port
/// always written), for comparing with [`RepoUrl::origin`].
pub fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default = match scheme.as_str() {
        "https" => 443,
        "http" => 80,
        _ => return None,
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    let hostport = authority.rsplit('@').next()?;
    let (host, port) = split_host_port(hostport)?;
    Some(format!("{scheme}://{host}:{}", port.unwrap_or(default)))
}

/// `%XX` decoding over bytes: never splits a character, never panics.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((high * 16 + low) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The one way a URL (or any text holding one) is shown: whatever its shape, everything
/// between the start of a word (after a space, a slash, a quote) and an `@` is user info and
/// becomes `***`, but for the usual SSH user `git`. A malformed URL (`https:/u:t@h`,
/// `u:t@h/r`, `http//u:t@h`) is masked as well as a good one.
pub fn mask_url(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let is_boundary =
        |c: char| c.is_whitespace() || matches!(c, '/' | '"' | '\'' | '(' | '<' | ',');
    for c in text.chars() {
        if c == '@' {
            out.push_str(if word == "git" { "git" } else { "***" });
            out.push('@');
            word.clear();
        } else if is_boundary(c) {
            out.push_str(&word);
            out.push(c);
            word.clear();
        } else {
            word.push(c);
        }
    }
    out.push_str(&word);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn spellings_of_one_repository_share_a_key() {
        let keys: Vec<String> = [
            "https://GitHub.com/acme/docs.git",
            "https://github.com/acme/docs",
            "https://github.com:443/acme/docs/",
            "https://user:tok@github.com/acme/docs.git",
            "http://github.com/acme/docs.git",
        ]
        .iter()
        .map(|u| RepoUrl::parse(u).unwrap().normalized().to_string())
        .collect();
        assert!(
            keys.iter().all(|k| k == "https://github.com/acme/docs"),
            "{keys:?}"
        );
        let ssh = [
            "git@github.com:acme/docs.git",
            "ssh://git@github.com/acme/docs",
            "ssh://git@github.com:22/acme/docs.git",
        ];
        for url in ssh {
            assert_eq!(
                RepoUrl::parse(url).unwrap().normalized(),
                "ssh://github.com/acme/docs",
                "{url}"
            );
        }
    }

    #[test]
    fn credentials_in_urls_are_kept_apart() {
        let url = RepoUrl::parse("https://alice:s3cr%40t@git.example.com/a/b.git").unwrap();
        assert_eq!(url.fetch_url(), "https://git.example.com/a/b.git");
        assert_eq!(url.embedded_credentials(), Some(("alice", "s3cr@t")));
        assert!(!format!("{url} {url:?}").contains("s3cr"));
        let token_only = RepoUrl::parse("https://ghp_abc@github.com/a/b").unwrap();
        assert_eq!(token_only.embedded_credentials(), Some(("", "ghp_abc")));
    }

    #[test]
    fn ssh_forms_parse() {
        let scp = RepoUrl::parse("deploy@git.example.com:team/repo.git").unwrap();
        assert_eq!(
            (
                scp.transport.clone(),
                scp.ssh_user.as_str(),
                scp.host.as_str()
            ),
            (Transport::Ssh, "deploy", "git.example.com")
        );
        let with_port = RepoUrl::parse("ssh://git@127.0.0.1:2222/srv/repo.git").unwrap();
        assert_eq!(with_port.known_hosts_name(), "[127.0.0.1]:2222");
        assert_eq!(
            with_port.fetch_url(),
            "ssh://git@127.0.0.1:2222/srv/repo.git"
        );
    }

    #[test]
    fn an_existing_relative_path_is_local() {
        // Tests run in the package directory, which has `src`.
        let url = RepoUrl::parse("src").unwrap();
        assert_eq!(url.transport, Transport::Local);
        assert!(url.local_path().unwrap().is_absolute());
    }

    #[test]
    fn bad_urls_say_why() {
        for url in [
            "",
            "ftp://host/repo",
            "https://",
            "https://host",
            "not a url",
            "https://ho st/x",
            "https://host:99999/x",
        ] {
            let error = RepoUrl::parse(url).unwrap_err();
            assert!(matches!(error, GitError::InvalidUrl(_)), "{url}: {error:?}");
        }
    }

    #[test]
    fn masking_hides_user_info() {
        assert_eq!(
            mask_url("failed https://bob:tok@h.example/x and ssh://git@h2/y"),
            "failed https://***@h.example/x and ssh://git@h2/y"
        );
    }

    #[test]
    fn malformed_urls_are_refused_without_their_secret() {
        for url in [
            "https:/user:TOKEN123@host/repo",
            "user:TOKEN123@host/repo",
            "http//user:TOKEN123@host/repo",
            "https:user:TOKEN123@host/repo",
            "https://user:%e9TOKEN123@host/repo",
            "https://user:TOKEN123%\u{e9}@host/repo",
            "https://user:TOKEN123%\u{1F600}x@host/repo",
        ] {
            let shown = match RepoUrl::parse(url) {
                Ok(parsed) => format!("{parsed} {parsed:?} {}", parsed.fetch_url()),
                Err(error) => error.to_string(),
            };
            assert!(!shown.contains("TOKEN123"), "{url} -> {shown}");
        }
    }

    proptest! {
        #[test]
        fn normalized_keys_never_hold_secrets(user in "[a-z]{1,8}", secret in "[A-Za-z0-9]{12,20}", path in "[a-z]{1,8}(/[a-z]{1,8}){0,3}") {
            let url = format!("https://{user}:{secret}@git.example.com/{path}.git");
            let parsed = RepoUrl::parse(&url).unwrap();
            prop_assert!(!parsed.normalized().contains(&secret));
            prop_assert!(!parsed.fetch_url().contains(&secret));
            prop_assert!(!mask_url(&url).contains(&secret));
        }

        /// Whatever the shape around it, a secret right before an `@` is never shown, and
        /// parsing never panics.
        #[test]
        fn no_shape_shows_user_info(
            head in "(https?:/{0,3}|ssh:/{0,2}|git\\+ssh://|[a-z]{0,5}[:/]{0,3})",
            user in "([a-z]{1,6}:)?",
            secret in "[A-Za-z0-9%\u{e9}\u{1F600}]{12,20}",
            tail in "[a-z.]{1,10}(:[0-9]{1,5})?[/:][a-z/]{0,10}",
        ) {
            let url = format!("{head}{user}{secret}@{tail}");
            prop_assert!(!mask_url(&url).contains(&secret));
            let shown = match RepoUrl::parse(&url) {
                Ok(parsed) => format!("{parsed} {parsed:?}"),
                Err(error) => error.to_string(),
            };
            prop_assert!(!shown.contains(&secret), "{} -> {}", url, shown);
        }
    }
}
