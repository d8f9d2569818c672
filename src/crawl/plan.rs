//! The change set of a run: the current tree against what has been delivered.

use std::collections::{BTreeMap, BTreeSet};

use crate::store::snapshot::Entries;
use git_remote::FileEntry;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Files to read and deliver, in path order: new or changed content, and earlier
    /// transient failures that still match the filters.
    pub candidates: Vec<FileEntry>,
    /// Paths of the snapshot that are gone (renames excepted).
    pub deleted: Vec<String>,
    /// `(from, to)`: a path of the snapshot gone, its exact content now at a new path.
    pub renamed: Vec<(String, String)>,
}

/// `current` is the sorted tree listing; `delivered` is the snapshot with any pending
/// part of an unfinished change set laid over it; `snapshot` alone tells deletions.
pub fn plan(
    current: &[FileEntry],
    delivered: &Entries,
    snapshot: &Entries,
    failed: &[String],
) -> Plan {
    let failed: BTreeSet<&str> = failed.iter().map(String::as_str).collect();
    let candidates: Vec<FileEntry> = current
        .iter()
        .filter(|f| delivered.get(&f.path) != Some(&f.oid) || failed.contains(f.path.as_str()))
        .cloned()
        .collect();
    let present: BTreeSet<&str> = current.iter().map(|f| f.path.as_str()).collect();
    let gone: Vec<(&String, &git2::Oid)> = snapshot
        .iter()
        .filter(|(p, _)| !present.contains(p.as_str()))
        .collect();
    let mut new_by_content: BTreeMap<git2::Oid, Vec<&str>> = BTreeMap::new();
    for file in current.iter().filter(|f| !snapshot.contains_key(&f.path)) {
        new_by_content.entry(file.oid).or_default().push(&file.path);
    }
    let mut deleted = Vec::new();
    let mut renamed = Vec::new();
    for (path, oid) in gone {
        match new_by_content
            .get_mut(oid)
            .and_then(|paths| (!paths.is_empty()).then(|| paths.remove(0)))
        {
            Some(to) => renamed.push((path.clone(), to.to_string())),
            None => deleted.push(path.clone()),
        }
    }
    Plan {
        candidates,
        deleted,
        renamed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use git2::Oid;
    use proptest::prelude::*;

    fn oid(n: u8) -> Oid {
        Oid::from_bytes(&[n; 20]).unwrap()
    }

    fn file(path: &str, n: u8) -> FileEntry {
        FileEntry {
            path: path.into(),
            oid: oid(n),
            size: None,
            mode: 0o100644,
        }
    }

    #[test]
    fn adds_changes_deletions_renames_and_retries() {
        let snapshot: Entries = [("a", 1), ("b", 2), ("c", 3), ("old", 4), ("keep", 5)]
            .iter()
            .map(|(p, n)| (p.to_string(), oid(*n)))
            .collect();
        let current = vec![
            file("a", 1),
            file("b", 9),
            file("keep", 5),
            file("new", 7),
            file("renamed", 4),
        ];
        let plan = plan(
            &current,
            &snapshot,
            &snapshot,
            &["keep".to_string(), "gone".to_string()],
        );
        let paths: Vec<&str> = plan.candidates.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["b", "keep", "new", "renamed"]);
        assert_eq!(plan.deleted, ["c"]);
        assert_eq!(plan.renamed, [("old".to_string(), "renamed".to_string())]);
    }

    proptest! {
        #[test]
        fn candidates_are_exactly_the_undelivered(
            current in prop::collection::btree_map("[a-e]{1,3}", 0u8..4, 0..40),
            delivered in prop::collection::btree_map("[a-e]{1,3}", 0u8..4, 0..40),
        ) {
            let files: Vec<FileEntry> = current.iter().map(|(p, n)| file(p, *n)).collect();
            let delivered: Entries = delivered.iter().map(|(p, n)| (p.clone(), oid(*n))).collect();
            let plan = plan(&files, &delivered, &delivered, &[]);
            for f in &files {
                let expected = delivered.get(&f.path) != Some(&f.oid);
                prop_assert_eq!(plan.candidates.iter().any(|c| c.path == f.path), expected);
            }
            let gone = delivered.keys().filter(|p| !current.contains_key(*p)).count();
            prop_assert_eq!(plan.deleted.len() + plan.renamed.len(), gone);
        }
    }
}
