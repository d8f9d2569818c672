//! A link to a file at a commit in its Git host's web UI, for the hosts whose link form is
//! known: GitHub (and GitHub Enterprise), GitLab, Gitea and Forgejo, Bitbucket Cloud. Any
//! other host gets none; a link never carries a credential (it is built from the host and
//! the repository path only).

use git_remote::url::{RepoUrl, Transport};

/// How a host links to a file at a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Host {
    GitHub,
    GitLab,
    Gitea,
    Bitbucket,
}

/// Where a repository's files are shown: `https://host/owner/repo` and how the host links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebRepository {
    base: String,
    host: Host,
}

impl WebRepository {
    /// The web home of `url`'s repository, when its host is one whose links are known.
    pub fn of(url: &RepoUrl) -> Option<WebRepository> {
        let path = match url.transport {
            Transport::Https | Transport::Http | Transport::Ssh => url
                .normalized()
                .split_once("://")
                .and_then(|(_, rest)| rest.find('/').map(|at| rest[at..].to_string()))?,
            Transport::Local => return None,
        };
        let name = url.host.as_str();
        let first = name.split('.').next().unwrap_or_default();
        let host = match (name, first) {
            ("github.com", _) | (_, "github") => Host::GitHub,
            ("gitlab.com", _) | (_, "gitlab") => Host::GitLab,
            ("bitbucket.org", _) => Host::Bitbucket,
            ("codeberg.org" | "gitea.com", _) | (_, "gitea" | "forgejo") => Host::Gitea,
            _ => return None,
        };
        // The web UI answers on the HTTPS port the clone URL names; an SSH port is not it.
        let port = match (&url.transport, url.port) {
            (Transport::Https, Some(port)) if port != 443 => format!(":{port}"),
            _ => String::new(),
        };
        let segments = path.trim_matches('/').split('/').count();
        let well_formed = segments >= 2 && !path.contains("..") && path.len() <= 512;
        well_formed.then(|| WebRepository {
            base: format!("https://{name}{port}{}", path.trim_end_matches('/')),
            host,
        })
    }

    /// The link to `path` as it is at `commit`.
    pub fn file_at(&self, commit: &str, path: &str) -> String {
        let path = encode_path(path);
        let base = &self.base;
        match self.host {
            Host::GitHub => format!("{base}/blob/{commit}/{path}"),
            Host::GitLab => format!("{base}/-/blob/{commit}/{path}"),
            Host::Gitea => format!("{base}/src/commit/{commit}/{path}"),
            Host::Bitbucket => format!("{base}/src/{commit}/{path}"),
        }
    }
}

/// Percent-encodes each segment of a path (the slashes stay).
fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn link(url: &str) -> Option<String> {
        let url = RepoUrl::parse(url).unwrap();
        WebRepository::of(&url).map(|web| web.file_at("abc123", "docs/a b/ü.md"))
    }

    #[test]
    fn each_host_links_its_own_way() {
        let encoded = "docs/a%20b/%C3%BC.md";
        assert_eq!(
            link("https://x-access-token:ghp_secret@github.com/acme/docs.git").unwrap(),
            format!("https://github.com/acme/docs/blob/abc123/{encoded}")
        );
        assert_eq!(
            link("git@github.com:acme/docs.git").unwrap(),
            format!("https://github.com/acme/docs/blob/abc123/{encoded}")
        );
        assert_eq!(
            link("https://gitlab.com/group/sub/docs").unwrap(),
            format!("https://gitlab.com/group/sub/docs/-/blob/abc123/{encoded}")
        );
        assert_eq!(
            link("ssh://git@gitlab.example.com:2222/group/docs.git").unwrap(),
            format!("https://gitlab.example.com/group/docs/-/blob/abc123/{encoded}")
        );
        assert_eq!(
            link("https://codeberg.org/team/docs.git").unwrap(),
            format!("https://codeberg.org/team/docs/src/commit/abc123/{encoded}")
        );
        assert_eq!(
            link("https://gitea.example.com:3000/team/docs.git").unwrap(),
            format!("https://gitea.example.com:3000/team/docs/src/commit/abc123/{encoded}")
        );
        assert_eq!(
            link("https://bitbucket.org/ws/docs.git").unwrap(),
            format!("https://bitbucket.org/ws/docs/src/abc123/{encoded}")
        );
        assert_eq!(link("https://git.example.com/team/docs.git"), None);
        assert_eq!(link("https://github.com/just-one-segment"), None);
    }

    proptest! {
        /// Whatever the URL holds, a link never carries its user info.
        #[test]
        fn links_never_carry_credentials(user in "[a-z]{1,8}", token in "[A-Za-z0-9_]{8,20}", path in "[a-z/]{1,30}") {
            let url = RepoUrl::parse(&format!("https://{user}:{token}@github.com/acme/{path}x.git")).unwrap();
            if let Some(web) = WebRepository::of(&url) {
                let link = web.file_at("c0ffee", "a.md");
                prop_assert!(!link.contains(&token) && !link.contains('@'), "{}", link);
            }
        }
    }
}
