//! The knowledge-pipeline routes of the Service API (Dify 1.13.0 and later): find the
//! published pipeline's Git Repository node, run the pipeline on ready-made website-crawl
//! items (one new document each, as *Save & Process* makes them), and follow a run's
//! indexing by its batch.

use serde::Deserialize;

use super::error::parse;
use super::knowledge::{ApiError, ApiErrorKind, KnowledgeApi, Retry};

/// Our plugin's id as a pipeline's data source node names it (`author/name` of the manifest).
pub const PLUGIN_ID: &str = "dify-community/git_datasource";

/// One data source node of the published pipeline.
#[derive(Debug, Clone, Deserialize)]
pub struct DatasourceNode {
    pub node_id: String,
    #[serde(default)]
    pub plugin_id: Option<String>,
    #[serde(default)]
    pub datasource_type: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
}

/// What `POST /pipeline/run` answers: the batch and the documents it created.
#[derive(Debug, Clone, Deserialize)]
pub struct RunAnswer {
    pub batch: String,
    pub documents: Vec<CreatedDocument>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CreatedDocument {
    pub id: String,
}

/// One document of a batch, as `GET /documents/{batch}/indexing-status` reports it.
#[derive(Debug, Clone, Deserialize)]
pub struct DocumentStatus {
    pub id: String,
    #[serde(default)]
    pub indexing_status: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
}

/// The node to start runs at: `wanted` when given (it must be one of ours), else our one
/// website-crawl node.
pub fn start_node(nodes: &[DatasourceNode], wanted: Option<&str>) -> Result<String, String> {
    let ours: Vec<&DatasourceNode> = nodes
        .iter()
        .filter(|n| n.plugin_id.as_deref() == Some(PLUGIN_ID))
        .filter(|n| n.datasource_type.as_deref() == Some("website_crawl"))
        .collect();
    let named = |list: &[&DatasourceNode]| {
        list.iter()
            .map(|n| {
                format!(
                    "{} ({})",
                    n.node_id,
                    n.title.as_deref().unwrap_or("untitled")
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (wanted, ours.as_slice()) {
        (Some(id), _) if ours.iter().any(|n| n.node_id == id) => Ok(id.to_string()),
        (Some(id), _) => {
            Err(format!(
            "the published pipeline has no Git Repository node {id}; its Git Repository nodes: {}",
            if ours.is_empty() { "none".to_string() } else { named(&ours) }
        ))
        }
        (None, [one]) => Ok(one.node_id.clone()),
        (None, []) => Err(format!(
            "the knowledge base's published pipeline has no Git Repository data source node \
             ({PLUGIN_ID}); add one in the pipeline editor and publish{}",
            if nodes.is_empty() {
                String::new()
            } else {
                let all: Vec<&DatasourceNode> = nodes.iter().collect();
                format!(" (its data sources: {})", named(&all))
            }
        )),
        (None, many) => Err(format!(
            "the published pipeline has {} Git Repository nodes; choose one with its id: {}",
            many.len(),
            named(many)
        )),
    }
}

/// The body of a run: `items` are website-crawl items already serialized as JSON objects.
pub fn run_body(start_node: &str, inputs: &serde_json::Value, items: &[&[u8]]) -> Vec<u8> {
    let head = serde_json::json!({
        "inputs": inputs, "datasource_type": "website_crawl", "start_node_id": start_node,
        "is_published": true, "response_mode": "blocking",
    })
    .to_string();
    let size = head.len() + items.iter().map(|i| i.len() + 1).sum::<usize>() + 32;
    let mut body = Vec::with_capacity(size);
    body.extend_from_slice(&head.as_bytes()[..head.len() - 1]);
    body.extend_from_slice(br#","datasource_info_list":["#);
    for (n, item) in items.iter().enumerate() {
        if n > 0 {
            body.push(b',');
        }
        body.extend_from_slice(item);
    }
    body.extend_from_slice(b"]}");
    body
}

impl KnowledgeApi {
    /// The data source nodes of the knowledge base's published pipeline.
    pub async fn datasource_nodes(&self, dataset: &str) -> Result<Vec<DatasourceNode>, ApiError> {
        // No `is_published`: Dify reads any value of it, even "false", as true.
        let path = format!("/datasets/{dataset}/pipeline/datasource-plugins");
        let body = self.call(reqwest::Method::GET, &path, "").await?;
        parse(&format!("GET {path}"), &body, "a list of data source nodes")
    }

    /// Runs the published pipeline on a [`run_body`]: Dify creates one `waiting` document
    /// per item and indexes them in the background.
    pub async fn run_pipeline(&self, dataset: &str, body: &[u8]) -> Result<RunAnswer, ApiError> {
        let path = format!("/datasets/{dataset}/pipeline/run");
        let answer = self
            .send(
                reqwest::Method::POST,
                &path,
                "",
                Some(body),
                Retry::WhenNotDone,
            )
            .await?;
        parse(&format!("POST {path}"), &answer, "a pipeline run")
    }

    /// Where each document of a run's batch stands; an empty list once all are deleted.
    pub async fn batch_status(
        &self,
        dataset: &str,
        batch: &str,
    ) -> Result<Vec<DocumentStatus>, ApiError> {
        #[derive(Deserialize)]
        struct Statuses {
            data: Vec<DocumentStatus>,
        }
        let path = format!("/datasets/{dataset}/documents/{batch}/indexing-status");
        match self.call(reqwest::Method::GET, &path, "").await {
            Ok(body) => {
                Ok(parse::<Statuses>(&format!("GET {path}"), &body, "indexing statuses")?.data)
            }
            // "Documents not found.": every document of the batch is gone.
            Err(error) if error.status == Some(404) && error.kind == ApiErrorKind::Other => {
                Ok(Vec::new())
            }
            Err(error) => Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, plugin: &str, kind: &str) -> DatasourceNode {
        DatasourceNode {
            node_id: id.into(),
            plugin_id: Some(plugin.into()),
            datasource_type: Some(kind.into()),
            title: Some("Git".into()),
        }
    }

    #[test]
    fn the_start_node_is_ours() {
        let other = node("1", "langgenius/firecrawl_datasource", "website_crawl");
        let ours = node("2", PLUGIN_ID, "website_crawl");
        assert_eq!(
            start_node(&[other.clone(), ours.clone()], None).unwrap(),
            "2"
        );
        assert!(start_node(&[other], None)
            .unwrap_err()
            .contains("no Git Repository data source node"));
        let twice = [ours, node("3", PLUGIN_ID, "website_crawl")];
        assert!(start_node(&twice, None)
            .unwrap_err()
            .contains("2 Git Repository nodes"));
        assert_eq!(start_node(&twice, Some("3")).unwrap(), "3");
        assert!(start_node(&twice, Some("1")).is_err());
    }

    #[test]
    fn the_plugin_id_is_the_manifests() {
        let manifest = include_str!("../../manifest.yaml");
        let field = |name: &str| {
            manifest
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                .unwrap()
                .trim()
                .to_string()
        };
        assert_eq!(PLUGIN_ID, format!("{}/{}", field("author"), field("name")));
    }

    #[test]
    fn the_run_body_is_json_with_every_field() {
        let items: [&[u8]; 2] = [
            br#"{"source_url":"git:h:a"}"#,
            br#"{"source_url":"git:h:b"}"#,
        ];
        let body = run_body("17", &serde_json::json!({"k": "v"}), &items);
        let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(parsed["start_node_id"], "17");
        assert_eq!(parsed["is_published"], true);
        assert_eq!(parsed["response_mode"], "blocking");
        assert_eq!(parsed["datasource_type"], "website_crawl");
        assert_eq!(parsed["inputs"]["k"], "v");
        assert_eq!(parsed["datasource_info_list"][1]["source_url"], "git:h:b");
        let empty = run_body("17", &serde_json::json!({}), &[]);
        assert!(serde_json::from_slice::<serde_json::Value>(&empty).is_ok());
    }
}
