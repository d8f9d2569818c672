//! Dify's Service API as the datasource uses it: the Knowledge (dataset) routes that list and
//! delete documents, the metadata routes that label them, and the knowledge-pipeline routes
//! that push them.

mod error;
pub mod knowledge;
pub mod metadata;
pub mod pipeline;
