//! Git metadata on this configuration's documents, for filtered retrieval (a Knowledge
//! Retrieval node that searches only `git_directory` `api`, say): the fields, found or created
//! as string fields of the knowledge base; the values of one document; and tagging the
//! indexed documents that lack them, many per request. Only our documents are written, and
//! only the fields named here (the values of other fields stay).

use serde::Serialize;

use crate::dify::knowledge::{ApiError, KnowledgeApi};
use crate::dify::metadata::{DocumentValues, MetadataField};
use crate::repository::web_link::WebRepository;
use git_remote::url::RepoUrl;

/// The fields every document of ours carries, in the order of [`GitSource::values`].
pub const FIELDS: [&str; 7] = [
    "git_path",
    "git_directory",
    "git_extension",
    "git_repository",
    "git_branch",
    "git_commit",
    "git_web_url",
];
/// Documents per request.
const BATCH: usize = 100;

/// What every document of one configuration shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitSource {
    /// The repository URL without credentials.
    pub repository: String,
    pub branch: String,
    web: Option<WebRepository>,
}

impl GitSource {
    pub fn new(url: &RepoUrl, branch: &str) -> GitSource {
        GitSource {
            repository: url.masked(),
            branch: branch.to_string(),
            web: WebRepository::of(url),
        }
    }

    /// The values of the document of `path` at `commit`, in [`FIELDS`] order: the path, its
    /// first directory (empty at the root), its extension in lower case without the dot
    /// (empty without one), the repository, the branch, the commit, and the file's link on
    /// the Git host (empty for a host whose links are not known).
    pub fn values(&self, path: &str, commit: &str) -> [String; 7] {
        let directory = path.split_once('/').map_or("", |(first, _)| first);
        let name = path.rsplit('/').next().unwrap_or(path);
        let extension = match name.rsplit_once('.') {
            Some((stem, extension)) if !stem.is_empty() => extension.to_lowercase(),
            _ => String::new(),
        };
        [
            path.to_string(),
            directory.to_string(),
            extension,
            self.repository.clone(),
            self.branch.clone(),
            commit.to_string(),
            self.web
                .as_ref()
                .map(|web| web.file_at(commit, path))
                .unwrap_or_default(),
        ]
    }
}

/// What one tagging did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TagReport {
    /// The ids of the documents that now carry their metadata.
    pub tagged: Vec<String>,
    pub requests: usize,
    /// Why some were not tagged; the next run tries again.
    pub problem: Option<String>,
}

/// Sets the Git metadata of `documents` (`(id, path)`) as at `commit`.
pub async fn tag(
    api: &KnowledgeApi,
    dataset: &str,
    documents: &[(String, String)],
    source: &GitSource,
    commit: &str,
) -> TagReport {
    let mut report = TagReport::default();
    if documents.is_empty() {
        return report;
    }
    let fields = match fields(api, dataset, &mut report).await {
        Ok(fields) => fields,
        Err(problem) => {
            report.problem = Some(problem);
            return report;
        }
    };
    // The values of one batch at a time: memory stays that of a batch, whatever the count.
    for batch in documents.chunks(BATCH) {
        let operations: Vec<DocumentValues> = batch
            .iter()
            .map(|(document, path)| DocumentValues {
                document,
                values: fields.iter().zip(source.values(path, commit)).collect(),
            })
            .collect();
        report.requests += 1;
        match api.set_documents_metadata(dataset, &operations).await {
            Ok(()) => report
                .tagged
                .extend(batch.iter().map(|(document, _)| document.clone())),
            // Dify 1.16 checks every document first: one deleted meanwhile fails the batch,
            // so its documents go one by one and the gone ones are passed by.
            Err(error) if document_gone(&error) => {
                for ((document, _), one) in batch.iter().zip(&operations) {
                    report.requests += 1;
                    match api
                        .set_documents_metadata(dataset, std::slice::from_ref(one))
                        .await
                    {
                        Ok(()) => report.tagged.push(document.clone()),
                        Err(error) if document_gone(&error) => {}
                        Err(error) => {
                            report.problem = Some(error.to_string());
                            return report;
                        }
                    }
                }
            }
            Err(error) => {
                report.problem = Some(error.to_string());
                return report;
            }
        }
    }
    report
}

fn document_gone(error: &ApiError) -> bool {
    error.status == Some(404) && error.message.contains("Document not found")
}

/// The knowledge base's fields of [`FIELDS`], in that order: reused when they exist as string
/// fields, created when missing. A field of one of these names and another type is a
/// problem for the user to fix.
async fn fields(
    api: &KnowledgeApi,
    dataset: &str,
    report: &mut TagReport,
) -> Result<Vec<MetadataField>, String> {
    report.requests += 1;
    let existing = api
        .metadata_fields(dataset)
        .await
        .map_err(|e| e.to_string())?;
    let mut fields = Vec::with_capacity(FIELDS.len());
    for name in FIELDS {
        match existing.iter().find(|f| f.name == name) {
            Some(field) if field.kind == "string" => fields.push(field.clone()),
            Some(field) => {
                return Err(format!(
                    "the knowledge base has a metadata field {name} of type {}, and Git metadata \
                     needs a string field of that name: rename or delete that field in the \
                     knowledge base's metadata settings",
                    field.kind.chars().take(20).collect::<String>()
                ))
            }
            None => {
                report.requests += 1;
                let created = api
                    .create_metadata_field(dataset, name, "string")
                    .await
                    .map_err(|e| format!("creating the metadata field {name}: {e}"))?;
                fields.push(created);
            }
        }
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_of_a_document() {
        let url = RepoUrl::parse("https://oauth2:glpat-secret@gitlab.com/team/docs.git").unwrap();
        let source = GitSource::new(&url, "main");
        let values = source.values("api/v2/Read Me.MD", "c0ffee");
        assert_eq!(
            values,
            [
                "api/v2/Read Me.MD",
                "api",
                "md",
                "https://gitlab.com/team/docs.git",
                "main",
                "c0ffee",
                "https://gitlab.com/team/docs/-/blob/c0ffee/api/v2/Read%20Me.MD",
            ]
            .map(String::from)
        );
        assert!(!values.iter().any(|v| v.contains("glpat")));
        let root = source.values(".env.example", "c");
        assert_eq!((root[1].as_str(), root[2].as_str()), ("", "example"));
        let dotfile = source.values("docs/.gitignore", "c");
        assert_eq!(dotfile[2], "");
        let plain = source.values("LICENSE", "c");
        assert_eq!((plain[1].as_str(), plain[2].as_str()), ("", ""));
    }
}
