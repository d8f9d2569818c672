//! What a workspace has that apps refer to, by id and name: knowledge bases, workflow tools,
//! the credentials of a tool provider, and the plugins installed. Read through the console
//! API (Dify's OpenAPI has none of these routes).

use serde_json::Value;

use super::{Console, ConsoleError, Surface};

/// The most pages of knowledge bases read (100 each).
const MAX_PAGES: u32 = 100;

/// Something of the workspace, by id and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    pub id: String,
    pub name: String,
}

impl Console {
    async fn console_only(&self, what: &str) -> Result<(), ConsoleError> {
        match self.surface().await? {
            Surface::OpenApi { .. } => Err(ConsoleError::Unsupported(format!(
                "Dify's OpenAPI cannot list {what}, which an environment resolves references \
                 against: sign in to the console API (e-mail and password, admin key or session)"
            ))),
            Surface::Console { .. } => Ok(()),
        }
    }

    /// Every knowledge base of the workspace (`GET /datasets`, 100 a page; `has_more` is
    /// true on a full last page, so an empty page ends the list too).
    pub async fn knowledge_bases(&self) -> Result<Vec<Named>, ConsoleError> {
        self.console_only("knowledge bases").await?;
        let mut all = Vec::new();
        for page in 1..=MAX_PAGES {
            let body = self
                .get(&format!("/datasets?page={page}&limit=100"))
                .await?;
            let items = list(&body["data"], "/datasets")?;
            all.extend(items.iter().filter_map(named));
            if items.is_empty() || body["has_more"] != Value::Bool(true) {
                break;
            }
        }
        Ok(all)
    }

    /// The workflow tools of the workspace (apps published as tools): the provider's id and
    /// the tool's name (`lookup_orders`, a tool node's `tool_name`; the provider's own `name`
    /// is the label people see).
    pub async fn workflow_tools(&self) -> Result<Vec<Named>, ConsoleError> {
        self.console_only("workflow tools").await?;
        let route = "/workspaces/current/tools/workflow";
        let body = self.get(route).await?;
        Ok(list(&body, route)?
            .iter()
            .filter_map(|provider| {
                Some(Named {
                    id: provider["id"]
                        .as_str()
                        .filter(|id| !id.is_empty())?
                        .to_string(),
                    name: provider["tools"][0]["name"].as_str()?.to_string(),
                })
            })
            .collect())
    }

    /// The credentials of a built-in or plugin tool provider (`langgenius/tavily/tavily`).
    pub async fn tool_credentials(&self, provider: &str) -> Result<Vec<Named>, ConsoleError> {
        self.console_only("tool credentials").await?;
        let shown: String = provider.chars().take(80).collect();
        let safe = !provider.is_empty()
            && provider.len() <= 200
            && provider
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
            && !provider
                .split('/')
                .any(|part| part.is_empty() || part == "..");
        if !safe {
            return Err(ConsoleError::Malformed {
                route: "/workspaces/current/tool-provider/builtin".into(),
                why: format!("{shown:?} is not a tool provider"),
            });
        }
        let route = format!("/workspaces/current/tool-provider/builtin/{provider}/credentials");
        let body = self.get(&route).await?;
        Ok(list(&body, &route)?.iter().filter_map(named).collect())
    }

    /// The ids of the plugins installed (`langgenius/openai`).
    pub async fn installed_plugins(&self) -> Result<Vec<String>, ConsoleError> {
        self.console_only("plugins").await?;
        let mut all = Vec::new();
        for page in 1..=MAX_PAGES {
            let route = format!("/workspaces/current/plugin/list?page={page}&page_size=256");
            let body = self.get(&route).await?;
            let items = list(&body["plugins"], "/workspaces/current/plugin/list")?;
            all.extend(
                items
                    .iter()
                    .filter_map(|p| p["plugin_id"].as_str().map(str::to_owned)),
            );
            let total = body["total"].as_u64().unwrap_or_default() as usize;
            if items.is_empty() || all.len() >= total {
                break;
            }
        }
        Ok(all)
    }
}

fn list<'a>(value: &'a Value, route: &str) -> Result<&'a Vec<Value>, ConsoleError> {
    value.as_array().ok_or_else(|| ConsoleError::Malformed {
        route: route.to_string(),
        why: "no list".into(),
    })
}

fn named(item: &Value) -> Option<Named> {
    let text = |key: &str| item[key].as_str().map(str::to_owned);
    Some(Named {
        id: text("id").filter(|id| !id.is_empty())?,
        name: text("name")?,
    })
}
