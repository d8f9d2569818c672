//! One page of a folder as the browser lists it: the folder's own tree at the listed commit,
//! read from a position on, its sub-folders and the files that pass the filters and are
//! text (binary, LFS pointers, files over the size limit and unsafe names are left out, as
//! the crawl leaves them out). A page ends at its byte budget or entry count: memory and
//! time follow the page, never the repository.

use git2::{ObjectType, Repository};

use super::file_id::{FileId, FolderId};
use super::seal::Seal;
use git_remote::blob::inspect_blob;
use git_remote::filters::check_path;
use git_remote::{GitError, PathFilter};

/// A page holds at most this many entries, whatever Dify asks for (it asks for 20; its
/// folder pick reads only a folder's first page, so a page is as large as it may be).
pub const MAX_PAGE_ENTRIES: usize = 10_000;

/// What one entry of a page costs in the message beyond its id and name.
const ENTRY_OVERHEAD: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageEntry {
    pub id: String,
    pub name: String,
    pub size: u64,
    pub folder: bool,
}

#[derive(Debug, Default)]
pub struct Page {
    pub entries: Vec<PageEntry>,
    /// Where the next page starts in the folder's tree, when there is one.
    pub next: Option<usize>,
    /// Files of this page left out as not text (or too large).
    pub skipped: usize,
}

/// How a page's ids are made: the configuration's hash, sealed for these credentials.
pub struct IdMaker<'a> {
    pub seal: &'a Seal,
    pub who: &'a str,
}

/// What bounds a page and the files on it.
#[derive(Debug, Clone, Copy)]
pub struct PageLimits {
    pub bytes: usize,
    pub entries: usize,
    pub max_file_bytes: u64,
    /// Reading its files (each is read to know it is text) ends by this time; a folder of
    /// many large or binary files then takes more pages, some perhaps empty.
    pub time: std::time::Duration,
}

/// The page of `folder` that starts at tree position `from`.
pub fn folder_page(
    repo: &Repository,
    folder: &FolderId,
    from: usize,
    filter: &PathFilter,
    limits: PageLimits,
    ids: &IdMaker<'_>,
) -> Result<Page, GitError> {
    let read_error =
        |e: git2::Error| GitError::Read(format!("commit {}: {}", folder.commit, e.message()));
    let root = repo
        .find_commit(folder.commit)
        .and_then(|c| c.tree())
        .map_err(read_error)?;
    let tree = match folder.dir.as_str() {
        "" => root,
        dir => match root.get_path(std::path::Path::new(dir)) {
            Ok(entry) if entry.kind() == Some(ObjectType::Tree) => {
                repo.find_tree(entry.id()).map_err(read_error)?
            }
            _ => {
                return Err(GitError::RefNotFound(format!(
                    "the folder {dir} is not in commit {}",
                    folder.commit
                )))
            }
        },
    };
    let mut page = Page::default();
    let mut bytes = 0;
    let started = std::time::Instant::now();
    for (position, entry) in tree.iter().enumerate().skip(from) {
        // Every page moves on by one entry at least.
        if position > from && started.elapsed() >= limits.time {
            page.next = Some(position);
            break;
        }
        let Ok(name) = std::str::from_utf8(entry.name_bytes()) else {
            continue;
        };
        let path = match folder.dir.as_str() {
            "" => name.to_string(),
            dir => format!("{dir}/{name}"),
        };
        if check_path(&path).is_err() {
            continue;
        }
        let listed = match entry.kind() {
            Some(ObjectType::Tree) if filter.may_enter(&path) => {
                let id = FolderId {
                    hash: folder.hash.clone(),
                    dir: path,
                    commit: folder.commit,
                };
                Some(PageEntry {
                    id: id.sealed(ids.seal, ids.who),
                    name: name.to_string(),
                    size: 0,
                    folder: true,
                })
            }
            Some(ObjectType::Blob)
                if matches!(entry.filemode(), 0o100644 | 0o100755) && filter.matches(&path) =>
            {
                match inspect_blob(repo, entry.id(), limits.max_file_bytes, str::len) {
                    Ok(size) => {
                        let id = FileId {
                            hash: folder.hash.clone(),
                            path,
                            commit: folder.commit,
                            blob: entry.id(),
                        };
                        Some(PageEntry {
                            name: crate::repository::identity::title(&id.path),
                            id: id.sealed(ids.seal, ids.who),
                            size: size as u64,
                            folder: false,
                        })
                    }
                    Err(_) => {
                        page.skipped += 1;
                        None
                    }
                }
            }
            _ => None,
        };
        let Some(listed) = listed else {
            continue;
        };
        let cost = json_len(&listed.id) + json_len(&listed.name) + ENTRY_OVERHEAD;
        if !page.entries.is_empty()
            && (bytes + cost > limits.bytes || page.entries.len() >= limits.entries)
        {
            page.next = Some(position);
            break;
        }
        bytes += cost;
        page.entries.push(listed);
    }
    Ok(page)
}

/// The length of `text` as a JSON string's content: quotes and backslashes take two bytes,
/// control characters up to six.
fn json_len(text: &str) -> usize {
    text.bytes()
        .map(|b| match b {
            b'"' | b'\\' => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A repository of `files` at one commit: its handle and the commit.
    fn repo(dir: &std::path::Path, files: &[(&str, &[u8])]) -> (Repository, git2::Oid) {
        let repo = Repository::init_bare(dir).unwrap();
        let mut index = git2::Index::new().unwrap();
        for (path, content) in files {
            let blob = repo.blob(content).unwrap();
            let mut entry = git2::IndexEntry {
                ctime: git2::IndexTime::new(0, 0),
                mtime: git2::IndexTime::new(0, 0),
                dev: 0,
                ino: 0,
                mode: 0o100644,
                uid: 0,
                gid: 0,
                file_size: content.len() as u32,
                id: blob,
                flags: 0,
                flags_extended: 0,
                path: path.as_bytes().to_vec(),
            };
            entry.flags = path.len() as u16;
            index.add(&entry).unwrap();
        }
        let tree = repo.find_tree(index.write_tree_to(&repo).unwrap()).unwrap();
        let who = git2::Signature::now("t", "t@example.com").unwrap();
        let commit = repo.commit(None, &who, &who, "c", &tree, &[]).unwrap();
        drop(tree);
        (repo, commit)
    }

    fn pages(repo: &Repository, folder: &FolderId, limits: PageLimits) -> Vec<Vec<String>> {
        let seal = Seal::new();
        let ids = IdMaker {
            seal: &seal,
            who: "w",
        };
        let filter = PathFilter::new("", "", "", "").unwrap();
        let mut all = Vec::new();
        let mut from = 0;
        loop {
            let page = folder_page(repo, folder, from, &filter, limits, &ids).unwrap();
            all.push(page.entries.iter().map(|e| e.name.clone()).collect());
            match page.next {
                Some(next) => {
                    assert!(next > from, "a page moves on");
                    from = next;
                }
                None => return all,
            }
        }
    }

    #[test]
    fn pages_end_at_their_count_bytes_or_time_and_always_move_on() {
        let dir = tempfile::tempdir().unwrap();
        let (repo, commit) = repo(
            dir.path(),
            &[
                ("a.md", b"a"),
                ("b.bin", b"\0\0binary"),
                ("c.md", b"c"),
                ("d/e.md", b"e"),
            ],
        );
        let top = FolderId {
            hash: "ab".into(),
            dir: String::new(),
            commit,
        };
        let roomy = PageLimits {
            bytes: 1 << 20,
            entries: 100,
            max_file_bytes: 1000,
            time: Duration::from_secs(60),
        };
        assert_eq!(pages(&repo, &top, roomy), [["a.md", "c.md", "d"]]);
        let two = PageLimits {
            entries: 2,
            ..roomy
        };
        assert_eq!(pages(&repo, &top, two), [vec!["a.md", "c.md"], vec!["d"]]);
        // No time at all: one entry a page, a skipped one giving an empty page.
        let no_time = PageLimits {
            time: Duration::ZERO,
            ..roomy
        };
        let one_by_one = pages(&repo, &top, no_time);
        assert_eq!(one_by_one.concat(), ["a.md", "c.md", "d"]);
        assert_eq!(one_by_one.len(), 4);
        let inside = FolderId {
            dir: "d".into(),
            ..top.clone()
        };
        assert_eq!(pages(&repo, &inside, roomy), [["d/e.md"]]);
        let missing = FolderId {
            dir: "nope".into(),
            ..top
        };
        let seal = Seal::new();
        let ids = IdMaker {
            seal: &seal,
            who: "w",
        };
        let filter = PathFilter::default();
        assert!(folder_page(&repo, &missing, 0, &filter, roomy, &ids).is_err());
    }
}
