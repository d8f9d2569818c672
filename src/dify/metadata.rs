//! The document-metadata routes of the Service API: a knowledge base's metadata fields (list,
//! create) and values set on many documents in one call. Dify keys a document's values by the
//! field's name (1.13 by the name sent, 1.16 by the name it stores), and from 1.16 checks every
//! field and document id before it changes anything (404 "Metadata not found." or "Document
//! not found."); before, each document is updated in turn.

use serde::{Deserialize, Serialize};

use super::error::parse;
use super::knowledge::{ApiError, KnowledgeApi, Retry};

/// One custom metadata field of a knowledge base.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MetadataField {
    pub id: String,
    pub name: String,
    /// `string`, `number` or `time`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// The values one document gets: `(field, value)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentValues<'a> {
    pub document: &'a str,
    pub values: Vec<(&'a MetadataField, String)>,
}

#[derive(Serialize)]
struct Operation<'a> {
    document_id: &'a str,
    metadata_list: Vec<Value<'a>>,
    /// Values of fields not sent (set by someone else) stay.
    partial_update: bool,
}

#[derive(Serialize)]
struct Value<'a> {
    id: &'a str,
    name: &'a str,
    value: &'a str,
}

impl KnowledgeApi {
    /// The knowledge base's custom metadata fields.
    pub async fn metadata_fields(&self, dataset: &str) -> Result<Vec<MetadataField>, ApiError> {
        #[derive(Deserialize)]
        struct Fields {
            #[serde(default)]
            doc_metadata: Vec<MetadataField>,
        }
        let path = format!("/datasets/{dataset}/metadata");
        let body = self.call(reqwest::Method::GET, &path, "").await?;
        Ok(
            parse::<Fields>(&format!("GET {path}"), &body, "a list of metadata fields")?
                .doc_metadata,
        )
    }

    /// Creates a custom metadata field of type `kind`.
    pub async fn create_metadata_field(
        &self,
        dataset: &str,
        name: &str,
        kind: &str,
    ) -> Result<MetadataField, ApiError> {
        let path = format!("/datasets/{dataset}/metadata");
        let body = serde_json::json!({"type": kind, "name": name}).to_string();
        let answer = self
            .send(
                reqwest::Method::POST,
                &path,
                "",
                Some(body.as_bytes()),
                Retry::WhenNotDone,
            )
            .await?;
        parse(&format!("POST {path}"), &answer, "a metadata field")
    }

    /// Sets `documents`' values in one call, leaving the values of other fields alone.
    pub async fn set_documents_metadata(
        &self,
        dataset: &str,
        documents: &[DocumentValues<'_>],
    ) -> Result<(), ApiError> {
        let operation_data: Vec<Operation> = documents
            .iter()
            .map(|document| Operation {
                document_id: document.document,
                metadata_list: document
                    .values
                    .iter()
                    .map(|(field, value)| Value {
                        id: &field.id,
                        name: &field.name,
                        value,
                    })
                    .collect(),
                partial_update: true,
            })
            .collect();
        let body = serde_json::to_vec(&serde_json::json!({ "operation_data": operation_data }))
            .expect("metadata serializes");
        let path = format!("/datasets/{dataset}/documents/metadata");
        // Setting the same values again changes nothing: a retry is safe.
        self.send(reqwest::Method::POST, &path, "", Some(&body), Retry::Always)
            .await
            .map(drop)
    }
}
