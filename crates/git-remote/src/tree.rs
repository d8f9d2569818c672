//! Walking a commit's tree (filtered while walking, nothing checked out) and diffing two
//! commits' trees.

use git2::{Delta, DiffFindOptions, DiffOptions, ObjectType, Oid, Repository, Tree};

use super::filters::{check_path, PathFilter};
use super::GitError;

const MODE_SYMLINK: i32 = 0o120000;
const MODE_SUBMODULE: i32 = 0o160000;

/// A file of the tree that passed the filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub path: String,
    pub oid: Oid,
    /// The blob's size from its object header; `None` until [`fill_sizes`] reads it (the
    /// walk itself reads no object but trees, and a blob's header is checked anyway before
    /// it is read).
    pub size: Option<u64>,
    pub mode: i32,
}

/// Why a file is not delivered. All of these are permanent: retrying will not help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    Binary,
    NotUtf8,
    TooLarge { size: u64, limit: u64 },
    LfsPointer,
    Symlink,
    Submodule,
    UnsafePath(&'static str),
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipReason::Binary => f.write_str("binary"),
            SkipReason::NotUtf8 => f.write_str("not UTF-8 text"),
            SkipReason::TooLarge { size, limit } => {
                write!(f, "too large ({size} bytes; the limit is {limit})")
            }
            SkipReason::LfsPointer => f.write_str("a Git LFS pointer"),
            SkipReason::Symlink => f.write_str("a symbolic link"),
            SkipReason::Submodule => f.write_str("a submodule"),
            SkipReason::UnsafePath(why) => write!(f, "an unsafe path ({why})"),
        }
    }
}

impl SkipReason {
    /// A short stable name, for summaries.
    pub fn name(&self) -> &'static str {
        match self {
            SkipReason::Binary => "binary",
            SkipReason::NotUtf8 => "not_utf8",
            SkipReason::TooLarge { .. } => "too_large",
            SkipReason::LfsPointer => "lfs_pointer",
            SkipReason::Symlink => "symlink",
            SkipReason::Submodule => "submodule",
            SkipReason::UnsafePath(_) => "unsafe_path",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub path: String,
    pub reason: SkipReason,
}

/// The files of a tree that passed the filters (sorted by path), and what was skipped.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TreeListing {
    pub files: Vec<FileEntry>,
    pub skipped: Vec<Skipped>,
}

/// Lists the files of `commit` that pass `filter`. Symlinks and submodules are reported as
/// skipped, never followed; `.git` directories and unsafe names are skipped whole.
pub fn list_files(
    repo: &Repository,
    commit: Oid,
    filter: &PathFilter,
) -> Result<TreeListing, GitError> {
    let read_error = |e: git2::Error| GitError::Read(format!("commit {commit}: {}", e.message()));
    let root = repo
        .find_commit(commit)
        .and_then(|c| c.tree())
        .map_err(read_error)?;
    let mut listing = TreeListing::default();
    let (start, prefix) = if filter.subdir().is_empty() {
        (root, String::new())
    } else {
        match root.get_path(std::path::Path::new(filter.subdir())) {
            Ok(entry) if entry.kind() == Some(ObjectType::Tree) => (
                repo.find_tree(entry.id()).map_err(read_error)?,
                filter.subdir().to_string(),
            ),
            _ => return Ok(listing),
        }
    };
    walk(repo, &start, &prefix, filter, &mut listing).map_err(read_error)?;
    listing.files.sort_by(|a, b| a.path.cmp(&b.path));
    listing.skipped.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(listing)
}

fn walk(
    repo: &Repository,
    tree: &Tree<'_>,
    prefix: &str,
    filter: &PathFilter,
    out: &mut TreeListing,
) -> Result<(), git2::Error> {
    for entry in tree.iter() {
        let name = String::from_utf8_lossy(entry.name_bytes());
        let path = if prefix.is_empty() {
            name.into_owned()
        } else {
            format!("{prefix}/{name}")
        };
        let is_tree = entry.kind() == Some(ObjectType::Tree);
        if std::str::from_utf8(entry.name_bytes()).is_err() {
            if is_tree || filter.matches(&path) {
                out.skipped.push(Skipped {
                    path,
                    reason: SkipReason::UnsafePath("the name is not UTF-8"),
                });
            }
            continue;
        }
        if let Err(why) = check_path(&path) {
            if is_tree || filter.matches(&path) {
                out.skipped.push(Skipped {
                    path,
                    reason: SkipReason::UnsafePath(why),
                });
            }
            continue;
        }
        if is_tree {
            if filter.may_enter(&path) {
                walk(repo, &repo.find_tree(entry.id())?, &path, filter, out)?;
            }
            continue;
        }
        if !filter.matches(&path) {
            continue;
        }
        let mode = entry.filemode();
        let reason = match mode {
            MODE_SYMLINK => Some(SkipReason::Symlink),
            MODE_SUBMODULE => Some(SkipReason::Submodule),
            _ => None,
        };
        match reason {
            Some(reason) => out.skipped.push(Skipped { path, reason }),
            None => out.files.push(FileEntry {
                path,
                oid: entry.id(),
                size: None,
                mode,
            }),
        }
    }
    Ok(())
}

/// Reads the size of every entry's blob from its object header.
pub fn fill_sizes(repo: &Repository, files: &mut [FileEntry]) -> Result<(), GitError> {
    let odb = repo
        .odb()
        .map_err(|e| GitError::Read(e.message().to_string()))?;
    for file in files {
        let (size, _) = odb
            .read_header(file.oid)
            .map_err(|e| GitError::Read(format!("{}: {}", file.path, e.message())))?;
        file.size = Some(size as u64);
    }
    Ok(())
}

/// One difference between two trees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Added(String),
    Modified(String),
    Deleted(String),
    Renamed { from: String, to: String },
}

/// The changes from `old` to `new` under `filter`, renames detected. A rename across the
/// filter's edge becomes a deletion or an addition.
pub fn diff_commits(
    repo: &Repository,
    old: Oid,
    new: Oid,
    filter: &PathFilter,
) -> Result<Vec<Change>, GitError> {
    let read_error = |e: git2::Error| GitError::Read(format!("diff {old}..{new}: {}", e.message()));
    let old_tree = repo
        .find_commit(old)
        .and_then(|c| c.tree())
        .map_err(read_error)?;
    let new_tree = repo
        .find_commit(new)
        .and_then(|c| c.tree())
        .map_err(read_error)?;
    let mut options = DiffOptions::new();
    if !filter.subdir().is_empty() {
        options.pathspec(format!("{}/", filter.subdir()));
    }
    let mut diff = repo
        .diff_tree_to_tree(Some(&old_tree), Some(&new_tree), Some(&mut options))
        .map_err(read_error)?;
    diff.find_similar(Some(DiffFindOptions::new().renames(true)))
        .map_err(read_error)?;
    let path_of =
        |file: git2::DiffFile<'_>| file.path().map(|p| p.to_string_lossy().replace('\\', "/"));
    let mut changes = Vec::new();
    for delta in diff.deltas() {
        let old_path =
            path_of(delta.old_file()).filter(|p| filter.matches(p) && check_path(p).is_ok());
        let new_path =
            path_of(delta.new_file()).filter(|p| filter.matches(p) && check_path(p).is_ok());
        let change = match (delta.status(), old_path, new_path) {
            (Delta::Added | Delta::Copied, _, Some(new)) => Change::Added(new),
            (Delta::Deleted, Some(old), _) => Change::Deleted(old),
            (Delta::Modified | Delta::Typechange, _, Some(new)) => Change::Modified(new),
            (Delta::Renamed, Some(from), Some(to)) => Change::Renamed { from, to },
            (Delta::Renamed, Some(from), None) => Change::Deleted(from),
            (Delta::Renamed, None, Some(to)) => Change::Added(to),
            _ => continue,
        };
        changes.push(change);
    }
    Ok(changes)
}
