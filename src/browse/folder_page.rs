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
    for (position, entry) in tree.iter().enumerate().skip(from) {
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
