//! The knowledge base's documents as mirroring sees them: which are ours (their `source_url`
//! is `git:<config hash>:<path>`, or for the browser's their file id begins with it), the
//! blob each holds, where its indexing stands, and whether
//! it carries its Git metadata.

use git2::Oid;
use serde::{Deserialize, Serialize};

use crate::browse::file_id::FileId;
use crate::dify::knowledge::RawDocument;
use crate::repository::identity;

/// Where a document's indexing stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DocState {
    /// `completed` (enabled or not, archived or not).
    Indexed,
    /// `waiting`, `parsing`, …, `paused`, or a status we do not know: never deleted.
    Indexing,
    /// `error`: counts as absent, and goes once a good copy is indexed.
    Failed,
}

impl DocState {
    pub fn from_status(status: Option<&str>) -> DocState {
        match status {
            Some("completed") => DocState::Indexed,
            Some("error") => DocState::Failed,
            _ => DocState::Indexing,
        }
    }

    /// Indexed or on its way there: the file needs no new document.
    pub fn is_live(self) -> bool {
        self != DocState::Failed
    }
}

/// One document of the knowledge base: its id, and for ours what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KbDocument {
    pub id: String,
    /// `None` for a document another configuration (or someone else) made.
    pub ours: Option<OurDocument>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OurDocument {
    pub path: String,
    /// The blob it holds: from our description, else the git hash of its content.
    pub blob: Option<String>,
    pub state: DocState,
    pub archived: bool,
    /// Newer documents sort higher: (created_at, position).
    pub created_at: i64,
    pub position: i64,
    /// Whether its content hashes to the blob its description claims: `Some(false)` for a
    /// document someone made to look like ours with other content; `None` when there is no
    /// description to check (the blob is then the content's) or no content.
    #[serde(default)]
    pub genuine: Option<bool>,
    /// Whether it carries its Git metadata (`git_path` its path, a `git_commit`).
    #[serde(default)]
    pub tagged: bool,
}

/// The source URL prefix of this configuration's documents.
pub fn url_prefix(config_hash: &str) -> String {
    format!("git:{config_hash}:")
}

/// Reads one listed document; `prefixes` are the [`url_prefix`]es of this configuration
/// (its hash, and the hash an older spelling of it had).
pub fn classify(raw: &RawDocument, prefixes: &[String]) -> KbDocument {
    let info = raw.data_source_info.as_ref();
    let text = |key: &str| info.and_then(|i| i.get(key)).and_then(|v| v.as_str());
    // The browser's documents: the file id begins with the source URL and names the blob.
    let browsed = match text("source_url") {
        Some(_) => None,
        None => text("id").and_then(FileId::parse).map(|(file, _)| file),
    };
    let browsed_url = browsed
        .as_ref()
        .map(|file| identity::source_url(&file.hash, &file.path));
    // A document whose id is not a UUID cannot be ours (Dify made it, so it has one), and is
    // never deleted: its id would go into a URL path.
    let ours = text("source_url")
        .or(browsed_url.as_deref())
        .filter(|_| crate::dify::knowledge::is_uuid(&raw.id))
        .and_then(|url| prefixes.iter().find_map(|p| url.strip_prefix(p.as_str())))
        .filter(|path| !path.is_empty())
        .map(|path| {
            let described = text("description")
                .and_then(blob_in_description)
                .or_else(|| browsed.as_ref().map(|file| file.blob.to_string()));
            let content = text("content").map(|c| content_blob(c).to_string());
            OurDocument {
                path: path.to_string(),
                genuine: match (&described, &content) {
                    (Some(described), Some(content)) => Some(described == content),
                    _ => None,
                },
                blob: described.or(content),
                state: DocState::from_status(raw.indexing_status.as_deref()),
                archived: raw.archived,
                created_at: raw.created_at,
                position: raw.position,
                tagged: tagged(raw.doc_metadata.as_ref(), path),
            }
        });
    KbDocument {
        id: raw.id.clone(),
        ours,
    }
}

/// Whether a document's metadata (`[{name, value, …}]`) names `path` as its `git_path` and
/// has a `git_commit`.
fn tagged(metadata: Option<&serde_json::Value>, path: &str) -> bool {
    let Some(values) = metadata.and_then(|m| m.as_array()) else {
        return false;
    };
    let value = |name: &str| {
        values
            .iter()
            .find(|v| v["name"] == name)
            .and_then(|v| v["value"].as_str())
    };
    value("git_path") == Some(path) && value("git_commit").is_some_and(|c| !c.is_empty())
}

/// The blob id our description ends with (`…, blob <40 hex>`).
pub fn blob_in_description(description: &str) -> Option<String> {
    let at = description.rfind("blob ")?;
    let hex = description[at + 5..].trim_end();
    (hex.len() == 40 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| hex.to_ascii_lowercase())
}

/// The git blob id of a text, as `git hash-object` computes it.
pub fn content_blob(content: &str) -> Oid {
    Oid::hash_object(git2::ObjectType::Blob, content.as_bytes()).expect("hashing never fails")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn raw(info: serde_json::Value, status: &str) -> RawDocument {
        serde_json::from_value(json!({
            "id": "3f2a9c1e-0b4d-4e6f-8a7b-9c0d1e2f3a4b", "data_source_info": info, "indexing_status": status,
            "archived": false, "created_at": 5, "position": 2
        }))
        .unwrap()
    }

    #[test]
    fn ours_with_the_blob_from_the_description_or_the_content() {
        let blob = "0123456789abcdef0123456789abcdef01234567";
        let doc = classify(
            &raw(
                json!({"source_url": "git:h1:docs/a.md", "content": "x",
                       "description": format!("Repository r, branch main, commit c, blob {blob}")}),
                "completed",
            ),
            &[url_prefix("h1")],
        );
        let ours = doc.ours.unwrap();
        assert_eq!(
            (ours.path.as_str(), ours.state),
            ("docs/a.md", DocState::Indexed)
        );
        assert_eq!(ours.blob.as_deref(), Some(blob));

        // The Python plugin's documents: hash the content like `git hash-object`.
        let doc = classify(
            &raw(
                json!({"source_url": "git:h1:b.md", "content": "hello\n", "description": "b.md"}),
                "error",
            ),
            &[url_prefix("h0"), url_prefix("h1")],
        );
        let ours = doc.ours.unwrap();
        assert_eq!(
            ours.blob.as_deref(),
            Some("ce013625030ba8dba906f756967f9e9ca394464a")
        );
        assert_eq!(ours.state, DocState::Failed);
    }

    #[test]
    fn a_description_whose_blob_the_content_does_not_hash_to_is_not_genuine() {
        let hello = "ce013625030ba8dba906f756967f9e9ca394464a";
        let described = |content: &str| {
            classify(
                &raw(
                    json!({"source_url": "git:h1:a.md", "content": content,
                           "description": format!("Repository r, branch main, commit c, blob {hello}")}),
                    "completed",
                ),
                &[url_prefix("h1")],
            )
            .ours
            .unwrap()
        };
        assert_eq!(described("hello\n").genuine, Some(true));
        let impostor = described("something else");
        assert_eq!(impostor.genuine, Some(false));
        assert_eq!(impostor.blob.as_deref(), Some(hello), "it claims the blob");
    }

    #[test]
    fn a_browsed_document_is_known_by_its_file_id() {
        let blob = git2::Oid::from_bytes(&[7; 20]).unwrap();
        let file = FileId {
            hash: "ab12".into(),
            path: "docs/a.md".into(),
            commit: git2::Oid::from_bytes(&[1; 20]).unwrap(),
            blob,
        };
        let id = file.sealed(&crate::browse::seal::Seal::new(), "someone");
        let doc = classify(
            &raw(
                json!({"id": id, "name": "docs/a.md", "bucket": null}),
                "completed",
            ),
            &[url_prefix("ab12")],
        );
        let ours = doc.ours.unwrap();
        assert_eq!(ours.path, "docs/a.md");
        assert_eq!(ours.blob, Some(blob.to_string()));
        let other = classify(
            &raw(json!({"id": id, "name": "docs/a.md"}), "completed"),
            &[url_prefix("cd34")],
        );
        assert_eq!(other.ours, None);
    }

    #[test]
    fn an_id_that_is_no_uuid_is_never_ours() {
        let mut document = raw(
            json!({"source_url": "git:h1:a.md", "content": "x"}),
            "completed",
        );
        document.id = "../../0e1d2c3b-4a59-4687-9a0b-1c2d3e4f5a6b/documents/x".into();
        assert_eq!(classify(&document, &[url_prefix("h1")]).ours, None);
    }

    #[test]
    fn others_are_not_ours() {
        for info in [
            json!({"source_url": "git:h2:a.md", "content": "x"}),
            json!({"source_url": "https://example.com", "content": "x"}),
            json!({"upload_file_id": "f"}),
            json!(null),
            json!("text"),
        ] {
            assert_eq!(
                classify(&raw(info, "waiting"), &[url_prefix("h1")]).ours,
                None
            );
        }
        assert_eq!(DocState::from_status(Some("parsing")), DocState::Indexing);
        assert_eq!(DocState::from_status(None), DocState::Indexing);
    }
}
