//! Dify's Service API as the datasource uses it: the Knowledge (dataset) routes that list and
//! delete documents, and the knowledge-pipeline routes that push them.

mod error;
pub mod knowledge;
pub mod pipeline;
