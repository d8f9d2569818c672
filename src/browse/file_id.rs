//! The ids the browser hands Dify, each naming the commit it was listed at and sealed for
//! the credentials that listed it:
//!
//! - a folder: `git:<config hash>:<dir>/@<commit>:<seal>` (the top folder's `<dir>/` is `/`);
//! - a file: `git:<config hash>:<path>@<commit>:<blob>:<seal>`.
//!
//! A file's id begins with the crawl's `source_url` (`git:<config hash>:<path>`): Dify keeps
//! it as the document's `data_source_info.id`, and mirroring and `sync` know the document as
//! theirs, holding that blob. The parts after the path have fixed widths, so an id is read
//! from its end and a path may hold any character.

use git2::Oid;

use super::seal::{Seal, SEAL_HEX};
use crate::repository::identity::source_url;

const OID_HEX: usize = 40;

/// A file as listed: where it is, and the exact content the listing saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileId {
    pub hash: String,
    pub path: String,
    pub commit: Oid,
    pub blob: Oid,
}

/// A folder as listed: its path (empty for the top of the repository) at one commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderId {
    pub hash: String,
    pub dir: String,
    pub commit: Oid,
}

impl FileId {
    /// What the seal covers: everything but the seal.
    fn body(&self) -> String {
        format!(
            "{}@{}:{}",
            source_url(&self.hash, &self.path),
            self.commit,
            self.blob
        )
    }

    pub fn sealed(&self, seal: &Seal, who: &str) -> String {
        let body = self.body();
        let signature = seal.sign(who, &body);
        format!("{body}:{signature}")
    }

    /// Reads an id; `Some(seal)` with it.
    pub fn parse(id: &str) -> Option<(FileId, &str)> {
        let (body, seal) = split_seal(id)?;
        let (rest, blob) = split_oid(body, ':')?;
        let (url, commit) = split_oid(rest, '@')?;
        let (hash, path) = split_source_url(url)?;
        (!path.is_empty() && !path.ends_with('/')).then_some(())?;
        let id = FileId {
            hash: hash.to_string(),
            path: path.to_string(),
            commit,
            blob,
        };
        Some((id, seal))
    }

    pub fn verify(&self, seal: &Seal, who: &str, signature: &str) -> bool {
        seal.verify(who, &self.body(), signature)
    }
}

impl FolderId {
    fn body(&self) -> String {
        format!("{}/@{}", source_url(&self.hash, &self.dir), self.commit)
    }

    pub fn sealed(&self, seal: &Seal, who: &str) -> String {
        let body = self.body();
        let signature = seal.sign(who, &body);
        format!("{body}:{signature}")
    }

    pub fn parse(id: &str) -> Option<(FolderId, &str)> {
        let (body, seal) = split_seal(id)?;
        let (url, commit) = split_oid(body, '@')?;
        let (hash, dir) = split_source_url(url)?;
        let dir = dir.strip_suffix('/')?;
        let id = FolderId {
            hash: hash.to_string(),
            dir: dir.to_string(),
            commit,
        };
        Some((id, seal))
    }

    pub fn verify(&self, seal: &Seal, who: &str, signature: &str) -> bool {
        seal.verify(who, &self.body(), signature)
    }
}

/// `…:<seal>` → (`…`, seal).
fn split_seal(id: &str) -> Option<(&str, &str)> {
    let at = id.len().checked_sub(SEAL_HEX + 1)?;
    let (body, seal) = (id.get(..at)?, id.get(at + 1..)?);
    (id.as_bytes()[at] == b':').then_some((body, seal))
}

/// `…<sep><40 hex>` → (`…`, oid).
fn split_oid(text: &str, separator: char) -> Option<(&str, Oid)> {
    let at = text.len().checked_sub(OID_HEX + 1)?;
    let (rest, hex) = (text.get(..at)?, text.get(at + 1..)?);
    let hex_only = hex.bytes().all(|b| b.is_ascii_hexdigit());
    (text.as_bytes()[at] == separator as u8 && hex_only).then_some(())?;
    Some((rest, Oid::from_str(hex).ok()?))
}

/// `git:<hash>:<path>` → (hash, path).
fn split_source_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("git:")?;
    let (hash, path) = rest.split_once(':')?;
    (!hash.is_empty() && hash.bytes().all(|b| b.is_ascii_hexdigit())).then_some((hash, path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn oid(byte: u8) -> Oid {
        Oid::from_bytes(&[byte; 20]).unwrap()
    }

    #[test]
    fn a_file_id_begins_with_the_crawls_source_url() {
        let seal = Seal::new();
        let file = FileId {
            hash: "0123456789abcdef".into(),
            path: "docs/a b@c:d.md".into(),
            commit: oid(1),
            blob: oid(2),
        };
        let id = file.sealed(&seal, "me");
        assert!(
            id.starts_with("git:0123456789abcdef:docs/a b@c:d.md@"),
            "{id}"
        );
        let (parsed, signature) = FileId::parse(&id).unwrap();
        assert_eq!(parsed, file);
        assert!(parsed.verify(&seal, "me", signature));
        assert!(!parsed.verify(&seal, "someone else", signature));
        // A folder's id is no file's, and the other way round.
        assert_eq!(FolderId::parse(&id), None);
        let top = FolderId {
            hash: file.hash.clone(),
            dir: String::new(),
            commit: oid(1),
        };
        let folder = top.sealed(&seal, "me");
        assert!(folder.starts_with("git:0123456789abcdef:/@"), "{folder}");
        assert_eq!(FolderId::parse(&folder).unwrap().0, top);
        assert_eq!(FileId::parse(&folder), None);
    }

    #[test]
    fn a_changed_part_breaks_the_seal() {
        let seal = Seal::new();
        let file = FileId {
            hash: "ab".into(),
            path: "a.md".into(),
            commit: oid(1),
            blob: oid(2),
        };
        let id = file.sealed(&seal, "me");
        let other = id.replace("a.md", "b.md");
        let (parsed, signature) = FileId::parse(&other).unwrap();
        assert!(!parsed.verify(&seal, "me", signature));
    }

    proptest! {
        #[test]
        fn any_path_and_dir_round_trip(path in "[^\u{0}]{1,60}", dir in "[^\u{0}]{0,60}") {
            let seal = Seal::new();
            let path = format!("{}x", path.trim_end_matches('/'));
            let file = FileId { hash: "ff".into(), path, commit: oid(3), blob: oid(4) };
            let id = file.sealed(&seal, "w");
            let (parsed, signature) = FileId::parse(&id).unwrap();
            prop_assert!(parsed.verify(&seal, "w", signature));
            prop_assert_eq!(parsed, file);
            let folder = FolderId { hash: "ff".into(), dir, commit: oid(3) };
            let id = folder.sealed(&seal, "w");
            let (parsed, signature) = FolderId::parse(&id).unwrap();
            prop_assert!(parsed.verify(&seal, "w", signature));
            prop_assert_eq!(parsed, folder);
        }

        #[test]
        fn any_text_parses_or_not_without_panicking(text in ".{0,200}") {
            let _ = FileId::parse(&text);
            let _ = FolderId::parse(&text);
        }
    }
}
