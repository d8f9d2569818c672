//! Names compatible with the Python plugin: the config hash, storage keys, `source_url`;
//! plus the document title and description, and the document itself.

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::params::CrawlParams;
use git_remote::filters::split_list;

/// Dify stores a document name in `varchar(255)`.
pub const MAX_TITLE_CHARS: usize = 255;
const TITLE_MARKER: &str = "…";

/// `sha256("{repo_url}:{branch}:{subdir}:{extensions}")[:16]`, extensions lower-cased,
/// trimmed, blanks dropped, sorted and joined with `,` (the Python plugin's formula). Include
/// and exclude globs, when given, are appended canonically so different filters never share
/// state. The URL is taken without any user info typed into it, so rotating a token in the
/// URL keeps the state (the Python plugin hashed it as typed: see [`legacy_config_hash`]).
pub fn config_hash(params: &CrawlParams) -> String {
    hash_of(&without_user_info(&params.repo_url), params)
}

/// The hash of the URL as typed, where it differs from [`config_hash`] (a URL with user
/// info): state and documents made under it are still found.
pub fn legacy_config_hash(params: &CrawlParams) -> Option<String> {
    let bare = without_user_info(&params.repo_url);
    (bare != params.repo_url).then(|| hash_of(&params.repo_url, params))
}

/// `scheme://user:token@host/…` → `scheme://host/…`; any other form as it is.
fn without_user_info(url: &str) -> String {
    let Some(at) = url.find("://") else {
        return url.to_string();
    };
    let (head, rest) = url.split_at(at + 3);
    let end = rest.find('/').unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(user_end) => format!("{head}{}", &rest[user_end + 1..]),
        None => url.to_string(),
    }
}

fn hash_of(repo_url: &str, params: &CrawlParams) -> String {
    let mut extensions: Vec<String> = split_list(&params.extensions)
        .iter()
        .map(|e| e.to_lowercase())
        .collect();
    extensions.sort();
    let mut input = format!(
        "{}:{}:{}:{}",
        repo_url,
        params.branch,
        params.subdir,
        extensions.join(",")
    );
    for (name, list) in [("include", &params.include), ("exclude", &params.exclude)] {
        let mut globs = split_list(list);
        if !globs.is_empty() {
            globs.sort();
            globs.dedup();
            input.push_str(&format!(":{name}={}", globs.join(",")));
        }
    }
    hex::encode(&Sha256::digest(input.as_bytes())[..8])
}

/// The start of every document's description: where its content comes from.
pub fn description_head(masked_url: &str, branch: &str, commit: &str) -> String {
    format!("Repository {masked_url}, branch {branch}, commit {commit}")
}

/// A document's description: the head and the blob it holds (mirroring reads it back).
pub fn description(head: &str, blob: git2::Oid) -> String {
    format!("{head}, blob {blob}")
}

pub fn source_url(config_hash: &str, path: &str) -> String {
    format!("git:{config_hash}:{path}")
}

/// The path, shortened from the left with a marker when over 255 characters.
pub fn title(path: &str) -> String {
    let count = path.chars().count();
    if count <= MAX_TITLE_CHARS {
        return path.to_string();
    }
    let keep = MAX_TITLE_CHARS - TITLE_MARKER.chars().count();
    let tail: String = path.chars().skip(count - keep).collect();
    format!("{TITLE_MARKER}{tail}")
}

/// One document, as Dify's `WebSiteInfoDetail` wants it: four strings.
#[derive(Debug, Serialize)]
pub struct Document<'a> {
    pub source_url: &'a str,
    pub content: &'a str,
    pub title: &'a str,
    pub description: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repository::params::SyncMode;
    use proptest::prelude::*;

    fn params(
        url: &str,
        branch: &str,
        subdir: &str,
        ext: &str,
        include: &str,
        exclude: &str,
    ) -> CrawlParams {
        CrawlParams {
            repo_url: url.into(),
            branch: branch.into(),
            subdir: subdir.into(),
            extensions: ext.into(),
            include: include.into(),
            exclude: exclude.into(),
            sync_mode: SyncMode::Incremental,
            knowledge_base_id: None,
            push_rest: false,
        }
    }

    #[test]
    fn matches_the_python_plugin() {
        // hashlib.sha256(b"https://github.com/acme/docs.git:main:docs:.md,txt").hexdigest()[:16]
        let expected = hex::encode(
            &Sha256::digest(b"https://github.com/acme/docs.git:main:docs:.md,txt")[..8],
        );
        let p = params(
            "https://github.com/acme/docs.git",
            "main",
            "docs",
            " TXT, .md ,",
            "",
            "",
        );
        assert_eq!(config_hash(&p), expected);
        assert_eq!(config_hash(&p).len(), 16);
        assert_eq!(
            config_hash(&params("u", "main", "", "", "", "")),
            hex::encode(&Sha256::digest(b"u:main::")[..8])
        );
    }

    #[test]
    fn a_token_in_the_url_does_not_change_the_hash() {
        let plain = params("https://h.example/o/r.git", "main", "", "", "", "");
        let with = |token: &str| {
            params(
                &format!("https://u:{token}@h.example/o/r.git"),
                "main",
                "",
                "",
                "",
                "",
            )
        };
        assert_eq!(config_hash(&with("old")), config_hash(&plain));
        assert_eq!(config_hash(&with("new")), config_hash(&plain));
        assert_eq!(legacy_config_hash(&plain), None);
        let legacy = legacy_config_hash(&with("old")).unwrap();
        assert_eq!(
            legacy,
            hex::encode(&Sha256::digest(b"https://u:old@h.example/o/r.git:main::")[..8])
        );
    }

    #[test]
    fn filters_change_the_hash_canonically() {
        let base = config_hash(&params("u", "main", "", "", "", ""));
        let a = config_hash(&params("u", "main", "", "", "docs/**, *.md", ""));
        let b = config_hash(&params("u", "main", "", "", "*.md,docs/**", ""));
        let c = config_hash(&params("u", "main", "", "", "", "docs/**,*.md"));
        assert_ne!(base, a);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    proptest! {
        #[test]
        fn titles_fit_and_keep_the_end(path in "[a-zé/]{0,600}") {
            let t = title(&path);
            prop_assert!(t.chars().count() <= MAX_TITLE_CHARS);
            if path.chars().count() <= MAX_TITLE_CHARS {
                prop_assert_eq!(t, path);
            } else {
                prop_assert!(t.starts_with(TITLE_MARKER));
                let tail: String = t.chars().skip(1).collect();
                prop_assert!(path.ends_with(&tail));
            }
        }
    }
}
