//! What a push webhook says, read from each host's payload: the branch pushed, the commit it
//! now points at, and the files the pushed commits touched when the host lists them (GitHub,
//! Gitea, Forgejo and GitLab list them per commit; Bitbucket does not; GitHub lists at most 20
//! commits, so a longer push is read as "any file").

use serde_json::Value;

use super::signature::Host;

/// One push, as far as an import needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    /// The branch's name (`main`).
    pub branch: String,
    /// The commit the branch points at now; empty when the host does not say.
    pub after: String,
    /// The files the pushed commits added, changed or removed; `None` when not known.
    pub paths: Option<Vec<String>>,
    /// The branch was deleted.
    pub deleted: bool,
}

/// The most commits GitHub lists in a push payload.
const LISTED_COMMITS: usize = 20;

/// The push a payload describes; `Err` says why it is not one.
pub fn read(host: Host, body: &[u8]) -> Result<Push, String> {
    let payload: Value =
        serde_json::from_slice(body).map_err(|e| format!("the payload is not JSON ({e})"))?;
    match host {
        Host::Bitbucket => bitbucket(&payload),
        _ => listed(&payload),
    }
}

/// GitHub, Gitea, Forgejo, GitLab: `ref`, `after`, `commits[].{added,modified,removed}`.
fn listed(payload: &Value) -> Result<Push, String> {
    let reference = payload["ref"].as_str().ok_or("the payload has no ref")?;
    let branch = reference
        .strip_prefix("refs/heads/")
        .ok_or_else(|| format!("{} is not a branch", shown(reference)))?;
    let after = payload["after"].as_str().unwrap_or_default().to_string();
    let zero = !after.is_empty() && after.chars().all(|c| c == '0');
    let commits = payload["commits"].as_array();
    let paths = commits.filter(|c| c.len() < LISTED_COMMITS).map(|commits| {
        let mut paths: Vec<String> = commits
            .iter()
            .flat_map(|c| ["added", "modified", "removed"].map(|k| &c[k]))
            .filter_map(Value::as_array)
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect();
        paths.sort();
        paths.dedup();
        paths
    });
    Ok(Push {
        branch: branch.to_string(),
        after,
        paths,
        deleted: payload["deleted"] == Value::Bool(true) || zero,
    })
}

/// Bitbucket Cloud (`push.changes[].new`) and Data Center (`changes[].ref`).
fn bitbucket(payload: &Value) -> Result<Push, String> {
    if let Some(changes) = payload["push"]["changes"].as_array() {
        let change = changes
            .iter()
            .find(|c| c["new"]["type"] == "branch" || c["old"]["type"] == "branch")
            .ok_or("the push changes no branch")?;
        let new = &change["new"];
        let name = new["name"]
            .as_str()
            .or(change["old"]["name"].as_str())
            .ok_or("the push names no branch")?;
        return Ok(Push {
            branch: name.to_string(),
            after: new["target"]["hash"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            paths: None,
            deleted: new.is_null(),
        });
    }
    let change = payload["changes"]
        .as_array()
        .and_then(|c| c.first())
        .ok_or("the payload has no changes")?;
    let reference = change["ref"]["id"]
        .as_str()
        .or(change["refId"].as_str())
        .unwrap_or_default();
    let branch = reference
        .strip_prefix("refs/heads/")
        .ok_or_else(|| format!("{} is not a branch", shown(reference)))?;
    Ok(Push {
        branch: branch.to_string(),
        after: change["toHash"].as_str().unwrap_or_default().to_string(),
        paths: None,
        deleted: change["type"] == "DELETE",
    })
}

/// A name from a payload, fit for a message.
fn shown(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(100).collect()
}

impl Push {
    /// Whether the push may have changed an app file under `directory` (or the sync's own
    /// files: the index, the environments).
    pub fn touches_apps(&self, directory: &str) -> bool {
        let prefix = |p: &str| match directory.is_empty() {
            true => p.to_string(),
            false => format!("{directory}/{p}"),
        };
        let (apps, sync) = (prefix("apps/"), prefix(".dify-sync/"));
        match &self.paths {
            None => true,
            Some(paths) => paths
                .iter()
                .any(|p| p.starts_with(&apps) || p.starts_with(&sync)),
        }
    }
}
