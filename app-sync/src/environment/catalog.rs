//! What one Dify has that the references of an app resolve to, read once per run: its
//! knowledge bases, workflow tools, the credentials of the tool providers the environment
//! names, and its plugins.

use std::collections::{BTreeMap, BTreeSet};

use super::Environment;
use crate::console::workspace::Named;
use crate::console::{Console, ConsoleError};

#[derive(Debug, Clone, PartialEq)]
pub struct Catalog {
    pub knowledge_bases: Vec<Named>,
    pub workflow_tools: Vec<Named>,
    /// By provider, for the providers of the environment's `tool_credentials`; `Err` says
    /// why a provider's could not be listed (not installed here, say).
    pub credentials: BTreeMap<String, Result<Vec<Named>, String>>,
    /// Plugin ids (`langgenius/openai`); `Err` says why they could not be listed.
    pub plugins: Result<BTreeSet<String>, String>,
}

impl Catalog {
    /// Reads what `environment` needs from the Dify behind `console`.
    pub async fn read(
        console: &Console,
        environment: &Environment,
    ) -> Result<Catalog, ConsoleError> {
        let mut credentials = BTreeMap::new();
        for provider in environment.tool_credentials.keys() {
            let listed = console.tool_credentials(provider).await;
            credentials.insert(provider.clone(), listed.map_err(|e| e.to_string()));
        }
        Ok(Catalog {
            knowledge_bases: console.knowledge_bases().await?,
            workflow_tools: console.workflow_tools().await?,
            credentials,
            plugins: console
                .installed_plugins()
                .await
                .map(|ids| ids.into_iter().collect())
                .map_err(|e| e.to_string()),
        })
    }

    /// The knowledge base called `name`, or whose id is `name`.
    pub fn knowledge_base(&self, name: &str) -> Option<&Named> {
        find(&self.knowledge_bases, name)
    }

    pub fn workflow_tool(&self, name: &str) -> Option<&Named> {
        find(&self.workflow_tools, name)
    }
}

fn find<'a>(list: &'a [Named], name: &str) -> Option<&'a Named> {
    list.iter()
        .find(|n| n.name == name)
        .or_else(|| list.iter().find(|n| n.id == name))
}
