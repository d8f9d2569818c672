//! The app routes, on the console API or the OpenAPI alike: list, export DSL (draft or
//! published), import, confirm, check dependencies, publish, published versions, delete.

use reqwest::Method;
use serde_json::Value;

use super::{Console, ConsoleError, Surface};

/// At most this many pages of 100 apps are read (a hostile server cannot keep us paging).
const MAX_PAGES: u32 = 200;

/// An app as the list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSummary {
    pub id: String,
    pub name: String,
    /// `workflow`, `advanced-chat`, `chat`, `agent-chat` or `completion`.
    pub mode: String,
}

/// Which version of an app to export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Draft,
    Published,
}

impl Console {
    /// The route of one page of the app list (the OpenAPI's names the workspace).
    pub(super) async fn apps_page(&self, page: u32, limit: u32) -> Result<String, ConsoleError> {
        Ok(match self.surface().await? {
            Surface::OpenApi { workspace_id, .. } => {
                format!("/apps?workspace_id={workspace_id}&page={page}&limit={limit}")
            }
            Surface::Console { .. } => format!("/apps?page={page}&limit={limit}"),
        })
    }

    /// Every app of the workspace, paging by 100.
    pub async fn list_apps(&self) -> Result<Vec<AppSummary>, ConsoleError> {
        let mut apps = Vec::new();
        for page in 1..=MAX_PAGES {
            let route = self.apps_page(page, 100).await?;
            let body = self.get(&route).await?;
            let Some(items) = body["data"].as_array() else {
                return Err(ConsoleError::Malformed {
                    route: "/apps".into(),
                    why: "no `data` list".into(),
                });
            };
            for item in items {
                let text = |key: &str| item[key].as_str().unwrap_or_default().to_string();
                if text("id").is_empty() {
                    continue;
                }
                apps.push(AppSummary {
                    id: text("id"),
                    name: text("name"),
                    mode: text("mode"),
                });
            }
            if items.is_empty() || body["has_more"] != Value::Bool(true) {
                return Ok(apps);
            }
        }
        Ok(apps)
    }

    /// The app's DSL as Dify exports it, secrets left out (`include_secret=false`).
    pub async fn export_dsl(&self, app_id: &str, version: Version) -> Result<String, ConsoleError> {
        let app_id = path_segment(app_id)?;
        let open_api = matches!(self.surface().await?, Surface::OpenApi { .. });
        let mut route = match open_api {
            true => format!("/apps/{app_id}/dsl?include_secret=false"),
            false => format!("/apps/{app_id}/export?include_secret=false"),
        };
        if version == Version::Published && open_api {
            return Err(ConsoleError::Unsupported(
                "Dify's OpenAPI cannot tell which version of an app is published, so it cannot \
                 export the published version: export the draft, or sign in to the console API \
                 (e-mail and password, key or session)"
                    .into(),
            ));
        }
        if version == Version::Published {
            let published = self
                .get(&format!("/apps/{app_id}/workflows/publish"))
                .await?;
            let Some(workflow_id) = published["id"].as_str().filter(|id| !id.is_empty()) else {
                return Err(ConsoleError::Refused {
                    status: 404,
                    route: format!("/apps/{app_id}/workflows/publish"),
                    code: "not_published".into(),
                    message: "the app has no published version yet; publish it or export the draft"
                        .into(),
                });
            };
            route.push_str(&format!("&workflow_id={}", path_segment(workflow_id)?));
        }
        let body = self.get(&route).await?;
        match body["data"].as_str() {
            Some(dsl) => Ok(dsl.to_string()),
            None => Err(ConsoleError::Malformed {
                route: super::route_name(&route),
                why: "no `data` string".into(),
            }),
        }
    }
}

impl Console {
    /// The graph of the app's draft (or published) workflow as Dify keeps it: knowledge
    /// bases by their plain ids, which its export encrypts.
    pub async fn workflow_graph(
        &self,
        app_id: &str,
        version: Version,
    ) -> Result<Value, ConsoleError> {
        let app_id = path_segment(app_id)?;
        let route = match version {
            Version::Draft => format!("/apps/{app_id}/workflows/draft"),
            Version::Published => format!("/apps/{app_id}/workflows/publish"),
        };
        let body = self.get(&route).await?;
        match body["graph"].is_object() {
            true => Ok(body["graph"].clone()),
            false => Err(ConsoleError::Malformed {
                route: super::route_name(&route),
                why: "no `graph`".into(),
            }),
        }
    }
}

/// What `POST /apps/imports` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportOutcome {
    pub import_id: String,
    /// `completed`, `completed-with-warnings`, `pending` or `failed`.
    pub status: String,
    pub app_id: String,
    pub current_dsl_version: String,
    pub imported_dsl_version: String,
    pub error: String,
    /// Dify 1.16+: references it could not restore (`{code, path, message}`), as text.
    pub warnings: Vec<String>,
}

impl ImportOutcome {
    fn from_json(value: &Value) -> ImportOutcome {
        let text = |key: &str| value[key].as_str().unwrap_or_default().to_string();
        ImportOutcome {
            import_id: text("id"),
            status: text("status"),
            app_id: text("app_id"),
            current_dsl_version: text("current_dsl_version"),
            imported_dsl_version: text("imported_dsl_version"),
            error: text("error"),
            warnings: value["warnings"]
                .as_array()
                .into_iter()
                .flatten()
                .take(20)
                .map(|w| match (w["path"].as_str(), w["message"].as_str()) {
                    (Some(path), Some(message)) => format!("{path}: {message}"),
                    _ => w
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| w.to_string()),
                })
                .collect(),
        }
    }
}

/// A published version of an app's workflow.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PublishedVersion {
    pub workflow_id: String,
    pub version: String,
    pub marked_name: String,
    pub created_at: i64,
}

impl Console {
    /// Imports DSL: over the app `app_id` in place (only `workflow` and `advanced-chat` apps
    /// can be), or as a new app when `None`. A failed import (HTTP 400) is an outcome too.
    pub async fn import_dsl(
        &self,
        yaml: &str,
        app_id: Option<&str>,
    ) -> Result<ImportOutcome, ConsoleError> {
        let mut body = serde_json::json!({"mode": "yaml-content", "yaml_content": yaml});
        if let Some(app_id) = app_id {
            body["app_id"] = Value::String(path_segment(app_id)?.to_string());
        }
        let route = match self.surface().await? {
            Surface::OpenApi { workspace_id, .. } => {
                format!("/workspaces/{workspace_id}/apps/imports")
            }
            Surface::Console { .. } => "/apps/imports".to_string(),
        };
        match self.post(&route, &body).await {
            Ok(answer) => Ok(ImportOutcome::from_json(&answer)),
            Err(ConsoleError::Refused {
                status: 400,
                message,
                ..
            }) => Ok(ImportOutcome {
                status: "failed".into(),
                error: message,
                ..ImportOutcome::from_json(&Value::Null)
            }),
            Err(error) => Err(error),
        }
    }

    /// Confirms a pending import (Dify keeps it for 10 minutes).
    pub async fn confirm_import(&self, import_id: &str) -> Result<ImportOutcome, ConsoleError> {
        let import_id = path_segment(import_id)?;
        let route = match self.surface().await? {
            Surface::OpenApi { workspace_id, .. } => {
                format!("/workspaces/{workspace_id}/apps/imports/{import_id}:confirm")
            }
            Surface::Console { .. } => format!("/apps/imports/{import_id}/confirm"),
        };
        let answer = self.post(&route, &serde_json::json!({})).await?;
        Ok(ImportOutcome::from_json(&answer))
    }

    /// The plugins the app's DSL depends on that this workspace lacks.
    pub async fn missing_dependencies(&self, app_id: &str) -> Result<Vec<String>, ConsoleError> {
        let app_id = path_segment(app_id)?;
        let route = match self.surface().await? {
            Surface::OpenApi { .. } => format!("/apps/{app_id}/dependencies:check"),
            Surface::Console { .. } => format!("/apps/imports/{app_id}/check-dependencies"),
        };
        let body = self.get(&route).await?;
        let leaked = body["leaked_dependencies"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        Ok(leaked.iter().map(dependency_name).collect())
    }

    /// Publishes the app's draft.
    pub async fn publish(&self, app_id: &str, name: &str) -> Result<(), ConsoleError> {
        self.can_publish().await?;
        let route = format!("/apps/{}/workflows/publish", path_segment(app_id)?);
        let body = serde_json::json!({"marked_name": name, "marked_comment": "Published by Dify App Git Sync"});
        self.post(&route, &body).await.map(drop)
    }

    /// Deletes the app; Dify deletes its logs, conversations and API keys with it.
    pub async fn delete_app(&self, app_id: &str) -> Result<(), ConsoleError> {
        let route = format!("/apps/{}", path_segment(app_id)?);
        match self.surface().await? {
            Surface::OpenApi { .. } => Err(ConsoleError::Unsupported(
                "Dify's OpenAPI has no route to delete an app: delete it in Dify, or sign in to \
                 the console API (e-mail and password, key or session) to delete it from here"
                    .into(),
            )),
            Surface::Console { .. } => self.call(Method::DELETE, &route, None).await.map(drop),
        }
    }

    /// Whether this sign-in can publish: the OpenAPI has no publish route.
    pub async fn can_publish(&self) -> Result<(), ConsoleError> {
        match self.surface().await? {
            Surface::OpenApi { .. } => Err(ConsoleError::Unsupported(
                "Dify's OpenAPI has no route to publish an app, so nothing was imported: import \
                 without publish and publish in Dify, or sign in to the console API (e-mail and \
                 password, key or session) to publish from here"
                    .into(),
            )),
            Surface::Console { .. } => Ok(()),
        }
    }

    /// The app's published versions, newest first (the draft left out); `None` where the
    /// API cannot list them (the OpenAPI).
    pub async fn published_versions(
        &self,
        app_id: &str,
    ) -> Result<Option<Vec<PublishedVersion>>, ConsoleError> {
        if let Surface::OpenApi { .. } = self.surface().await? {
            return Ok(None);
        }
        let route = format!("/apps/{}/workflows?page=1&limit=20", path_segment(app_id)?);
        let body = self.get(&route).await?;
        let items = body["items"].as_array().cloned().unwrap_or_default();
        Ok(Some(
            items
                .iter()
                .filter(|w| w["version"] != "draft")
                .map(|w| PublishedVersion {
                    workflow_id: w["id"].as_str().unwrap_or_default().to_string(),
                    version: w["version"].as_str().unwrap_or_default().to_string(),
                    marked_name: w["marked_name"].as_str().unwrap_or_default().to_string(),
                    created_at: w["created_at"].as_i64().unwrap_or_default(),
                })
                .collect(),
        ))
    }
}

/// A plugin dependency by its identifier, whichever kind it is (`PluginDependency`:
/// marketplace, GitHub or package).
fn dependency_name(dependency: &Value) -> String {
    let value = &dependency["value"];
    [
        "marketplace_plugin_unique_identifier",
        "github_plugin_unique_identifier",
        "plugin_unique_identifier",
    ]
    .iter()
    .find_map(|key| value[*key].as_str())
    .or_else(|| dependency["current_identifier"].as_str())
    .map(str::to_owned)
    .unwrap_or_else(|| dependency.to_string().chars().take(200).collect())
}

/// An id that goes into a URL path: letters, digits and dashes only.
pub(super) fn path_segment(id: &str) -> Result<&str, ConsoleError> {
    match !id.is_empty()
        && id.len() <= 64
        && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        true => Ok(id),
        false => Err(ConsoleError::Malformed {
            route: "/apps".into(),
            why: format!(
                "{:?} is not an app or workflow id",
                id.chars().take(40).collect::<String>()
            ),
        }),
    }
}
