//! The mirror plan: the branch's files against this configuration's documents. Offer a file
//! whose current blob is not live in the knowledge base; delete documents of paths the branch
//! no longer delivers, and every other document of a path once its current blob is indexed.
//! Indexing and archived documents are never deleted.

use super::documents::{DocState, KbDocument, OurDocument};
use crate::store::snapshot::Entries;
use git_remote::FileEntry;

/// Deletions of gone files above this count, and above half of this configuration's
/// searchable documents, are held back unless the guard says otherwise.
pub const MASS_DELETE_FLOOR: usize = 20;

/// When deletions of files gone from the branch are held back (a wrong branch or filter
/// would otherwise empty the knowledge base). Superseded copies are never held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteGuard {
    /// More than [`MASS_DELETE_FLOOR`] and more than half of this configuration's searchable
    /// (indexed) documents.
    Default,
    /// More than this many (like rclone's `--max-delete`).
    AtMost(usize),
    /// Never.
    Off,
}

impl DeleteGuard {
    pub fn holds(self, gone: usize, searchable: usize) -> bool {
        match self {
            DeleteGuard::Default => gone > MASS_DELETE_FLOOR && gone * 2 > searchable,
            DeleteGuard::AtMost(most) => gone > most,
            DeleteGuard::Off => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    pub id: String,
    pub path: String,
    pub why: DeleteReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteReason {
    /// The branch no longer delivers the path (deleted, renamed, filtered out, now skipped).
    Gone,
    /// Another document of the path holds its current blob, indexed.
    Superseded,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MirrorPlan {
    /// Files to read and deliver, in path order.
    pub offer: Vec<FileEntry>,
    /// Files whose current blob is indexed: nothing to do.
    pub kept: usize,
    /// Documents of this configuration still indexing (never deleted).
    pub indexing: usize,
    pub delete: Vec<Deletion>,
    /// Deletions of gone files held back by the mass-delete guard.
    pub held: Vec<Deletion>,
    /// This configuration's documents in the knowledge base.
    pub ours: usize,
    /// Of those, the ones searchable now (indexed): the guard's base.
    pub searchable: usize,
    /// The indexed documents of current files without their Git metadata: `(id, path)`.
    pub untagged: Vec<(String, String)>,
}

impl MirrorPlan {
    /// Nothing left to offer, delete, hold back, wait for or label: the knowledge base
    /// mirrors the branch.
    pub fn nothing_left(&self) -> bool {
        self.offer.is_empty()
            && self.delete.is_empty()
            && self.held.is_empty()
            && self.indexing == 0
            && self.untagged.is_empty()
    }
}

/// `files` is the branch's listing; `skipped` the (path, blob) pairs known to be permanently
/// skipped (binary, too large, …); `full` offers every file again and lifts the guard.
pub fn plan(
    files: &[FileEntry],
    docs: &[KbDocument],
    skipped: &Entries,
    full: bool,
    guard: DeleteGuard,
) -> MirrorPlan {
    // This configuration's documents in path order (listing order within a path), so a
    // path's documents are one run of the list: one allocation, whatever the repository.
    let mut ours: Vec<(&str, &OurDocument)> = docs
        .iter()
        .filter_map(|doc| Some((doc.id.as_str(), doc.ours.as_ref()?)))
        .collect();
    ours.sort_by(|a, b| a.1.path.cmp(&b.1.path));
    let of_path = |path: &str| {
        let from = ours.partition_point(|(_, d)| d.path.as_str() < path);
        from..from + ours[from..].partition_point(|(_, d)| d.path == path)
    };
    // Which of them are of a path the branch delivers.
    let mut delivered = vec![false; ours.len()];
    let mut plan = MirrorPlan {
        ours: ours.len(),
        indexing: ours
            .iter()
            .filter(|(_, d)| d.state == DocState::Indexing)
            .count(),
        searchable: ours
            .iter()
            .filter(|(_, d)| d.state == DocState::Indexed)
            .count(),
        ..MirrorPlan::default()
    };
    for file in files {
        if skipped.get(&file.path) == Some(&file.oid) {
            continue;
        }
        let mut hex = [0u8; 40];
        hex::encode_to_slice(file.oid.as_bytes(), &mut hex).expect("40 hex digits for 20 bytes");
        let blob = std::str::from_utf8(&hex).expect("hex is ASCII");
        let range = of_path(&file.path);
        delivered[range.clone()].fill(true);
        let docs = &ours[range];
        let current = |d: &&(&str, &OurDocument)| d.1.blob.as_deref() == Some(blob);
        let live = docs.iter().filter(current).any(|(_, d)| d.state.is_live());
        if full || !live {
            plan.offer.push(file.clone());
        }
        // The newest indexed copy, a genuine one (its content hashes to the blob) before one
        // that only claims the blob in its description.
        let keeper = docs
            .iter()
            .filter(current)
            .filter(|(_, d)| d.state == DocState::Indexed)
            .max_by_key(|(id, d)| (d.genuine != Some(false), d.created_at, d.position, *id));
        let Some((keeper, kept)) = keeper else {
            continue;
        };
        if !full {
            plan.kept += 1;
        }
        if !kept.tagged && !kept.archived {
            plan.untagged.push((keeper.to_string(), file.path.clone()));
        }
        for (id, doc) in docs {
            if id != keeper && deletable(doc) {
                plan.delete
                    .push(deletion(id, doc, DeleteReason::Superseded));
            }
        }
    }
    // Documents of gone files still indexing: deleted by a later run, but their loss counts
    // now, or a re-push in progress would hide a mass deletion from the guard.
    let mut gone_indexing = 0;
    let mut gone = Vec::new();
    for ((id, doc), _) in ours.iter().zip(&delivered).filter(|(_, kept)| !**kept) {
        if doc.state == DocState::Indexing {
            gone_indexing += 1;
        }
        if deletable(doc) {
            gone.push(deletion(id, doc, DeleteReason::Gone));
        }
    }
    if !full && guard.holds(gone.len() + gone_indexing, plan.searchable) {
        plan.held = gone;
    } else {
        plan.delete.extend(gone);
    }
    plan
}

fn deletable(doc: &OurDocument) -> bool {
    doc.state != DocState::Indexing && !doc.archived
}

fn deletion(id: &str, doc: &OurDocument, why: DeleteReason) -> Deletion {
    Deletion {
        id: id.to_string(),
        path: doc.path.clone(),
        why,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use git2::Oid;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

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

    fn doc(id: &str, path: &str, n: u8, state: DocState, at: i64) -> KbDocument {
        KbDocument {
            id: id.into(),
            ours: Some(OurDocument {
                path: path.into(),
                blob: Some(oid(n).to_string()),
                state,
                archived: false,
                created_at: at,
                position: 0,
                genuine: None,
                tagged: true,
            }),
        }
    }

    fn ids(deletions: &[Deletion]) -> Vec<&str> {
        let mut ids: Vec<&str> = deletions.iter().map(|d| d.id.as_str()).collect();
        ids.sort();
        ids
    }

    #[test]
    fn only_the_kept_copy_of_a_current_file_is_labelled() {
        use DocState::*;
        let files = [file("a", 1), file("b", 2), file("c", 3)];
        let untagged = |mut d: KbDocument| {
            d.ours.as_mut().unwrap().tagged = false;
            d
        };
        let docs = [
            untagged(doc("a-new", "a", 1, Indexed, 2)),
            untagged(doc("a-dup", "a", 1, Indexed, 1)),
            untagged(doc("b-old", "b", 9, Indexed, 1)),
            untagged(doc("c-wait", "c", 3, Indexing, 1)),
            doc("b-new", "b", 2, Indexed, 2),
        ];
        let plan = plan(&files, &docs, &Entries::new(), false, DeleteGuard::Default);
        assert_eq!(plan.untagged, [("a-new".to_string(), "a".to_string())]);
        assert!(!plan.nothing_left());
    }

    #[test]
    fn offers_missing_and_failed_deletes_superseded_and_gone() {
        use DocState::*;
        let files = [
            file("a", 1),
            file("b", 2),
            file("c", 3),
            file("d", 4),
            file("bin", 5),
        ];
        let docs = [
            doc("a-old", "a", 9, Indexed, 1),
            doc("a-new", "a", 1, Indexed, 2),
            doc("a-dup", "a", 1, Indexed, 1),
            doc("a-err", "a", 1, Failed, 3),
            doc("b-wait", "b", 2, Indexing, 2),
            doc("b-old", "b", 8, Indexed, 1),
            doc("c-err", "c", 3, Failed, 1),
            doc("gone", "x", 7, Indexed, 1),
            doc("gone-wait", "y", 7, Indexing, 1),
            KbDocument {
                id: "theirs".into(),
                ours: None,
            },
        ];
        let skipped: Entries = [("bin".to_string(), oid(5))].into_iter().collect();
        let plan = plan(&files, &docs, &skipped, false, DeleteGuard::Default);
        let offered: Vec<&str> = plan.offer.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(offered, ["c", "d"]);
        assert_eq!(ids(&plan.delete), ["a-dup", "a-err", "a-old", "gone"]);
        assert_eq!((plan.kept, plan.indexing, plan.ours), (1, 2, 9));
        assert!(plan.held.is_empty());
    }

    #[test]
    fn a_mass_deletion_is_held_unless_full() {
        let files = [file("keep", 1)];
        let mut docs = vec![doc("k", "keep", 1, DocState::Indexed, 1)];
        docs.extend(
            (0..21).map(|i| doc(&format!("g{i}"), &format!("g{i}"), 2, DocState::Indexed, 1)),
        );
        let held = plan(&files, &docs, &Entries::new(), false, DeleteGuard::Default);
        assert!(held.delete.is_empty());
        assert_eq!(held.held.len(), 21);
        let full = plan(&files, &docs, &Entries::new(), true, DeleteGuard::Default);
        assert_eq!(full.delete.len(), 21);
        assert_eq!(full.offer.len(), 1);
        // 20 gone files are not a mass deletion.
        let plan = plan(
            &files,
            &docs[..21],
            &Entries::new(),
            false,
            DeleteGuard::Default,
        );
        assert_eq!(plan.delete.len(), 20);
    }

    /// A re-push in progress (every file's new copy still indexing) does not double the
    /// guard's base: dropping 90 of 100 files is held, whatever is indexing.
    #[test]
    fn the_guard_counts_what_is_searchable_now() {
        let files: Vec<FileEntry> = (0..10).map(|i| file(&format!("f{i}"), 1)).collect();
        let mut docs = Vec::new();
        for i in 0..100 {
            let path = format!("f{i}");
            docs.push(doc(&format!("old{i}"), &path, 1, DocState::Indexed, 1));
            docs.push(doc(&format!("new{i}"), &path, 1, DocState::Indexing, 2));
        }
        let plan = plan(&files, &docs, &Entries::new(), false, DeleteGuard::Default);
        assert!(
            plan.delete.iter().all(|d| d.why != DeleteReason::Gone),
            "{} gone-file deletions made",
            plan.delete.len()
        );
        assert_eq!(plan.held.len(), 90);
        assert_eq!(plan.searchable, 100);
    }

    /// Someone adds a newer document with our source_url and description but other content:
    /// the genuine copy stays and the impostor goes.
    #[test]
    fn an_impostor_never_supersedes_the_genuine_copy() {
        let files = [file("a", 1)];
        let genuine = |id: &str, at: i64, genuine: Option<bool>| {
            let mut d = doc(id, "a", 1, DocState::Indexed, at);
            d.ours.as_mut().unwrap().genuine = genuine;
            d
        };
        let docs = [
            genuine("real", 1, Some(true)),
            genuine("fake", 2, Some(false)),
        ];
        let plan = plan(&files, &docs, &Entries::new(), false, DeleteGuard::Default);
        assert_eq!(ids(&plan.delete), ["fake"]);
        assert!(plan.offer.is_empty());
    }

    proptest! {
        /// Never deletes a live document of the current blob that is the only one, never an
        /// indexing one; offers exactly the files without a live current document.
        #[test]
        fn deletes_only_what_a_kept_document_replaces(
            files in prop::collection::btree_map("[a-d]", 0u8..3, 0..4),
            docs in prop::collection::vec(("[a-e]", 0u8..3, 0usize..3, 0i64..4), 0..12),
        ) {
            let files: Vec<FileEntry> = files.iter().map(|(p, n)| file(p, *n)).collect();
            let states = [DocState::Indexed, DocState::Indexing, DocState::Failed];
            let docs: Vec<KbDocument> = docs.iter().enumerate()
                .map(|(i, (p, n, s, at))| doc(&format!("{i}"), p, *n, states[*s], *at))
                .collect();
            let plan = plan(&files, &docs, &Entries::new(), false, DeleteGuard::Default);
            let deleted: BTreeSet<&str> = plan.delete.iter().map(|d| d.id.as_str()).collect();
            for d in &docs {
                let ours = d.ours.as_ref().unwrap();
                if ours.state == DocState::Indexing { prop_assert!(!deleted.contains(d.id.as_str())); }
            }
            for f in &files {
                let current: Vec<&KbDocument> = docs.iter().filter(|d| {
                    let o = d.ours.as_ref().unwrap();
                    o.path == f.path && o.blob == Some(f.oid.to_string())
                }).collect();
                let live = current.iter().any(|d| d.ours.as_ref().unwrap().state.is_live());
                prop_assert_eq!(plan.offer.iter().any(|o| o.path == f.path), !live);
                let indexed_left = current.iter()
                    .filter(|d| d.ours.as_ref().unwrap().state == DocState::Indexed)
                    .filter(|d| !deleted.contains(d.id.as_str()))
                    .count();
                let any_indexed = current.iter().any(|d| d.ours.as_ref().unwrap().state == DocState::Indexed);
                prop_assert_eq!(indexed_left, usize::from(any_indexed));
            }
        }
    }
}
