//! Nothing secret reaches Git, by any path: keys Dify exports verbatim inside the graph (an
//! HTTP Request node's API-key auth, a bearer header, a token in a URL, a provider token in a
//! prompt) become placeholders in every object of the repository, conflict branches and diffs
//! included, and come back from Dify's current app on import; `refuse` keeps such an app out
//! of Git; an index entry naming an app this target never synced exports nothing of it.

use crate::support::app_scenario::{objects_containing, outputs, AppScenario};
use crate::support::git_servers::git;
use serde_json::json;

const AUTH_KEY: &str = "key-auth-8675309";
const BEARER: &str = "hdr-bearer-0123456789abcdef";
const URL_TOKEN: &str = "tok-url-31337";
const PROMPT_TOKEN: &str = "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB";
const SECRETS: [&str; 4] = [AUTH_KEY, BEARER, URL_TOKEN, PROMPT_TOKEN];
const AUTH_PLACEHOLDER: &str = "[__SECRET__:1750000000300/authorization.config.api_key]";

/// "Report Workflow" gets an HTTP Request node with API-key auth, a bearer header and a token
/// in its URL, and a prompt-like text with a GitHub token.
fn with_keys_in_the_graph() -> AppScenario {
    let s = AppScenario::start();
    {
        let mut state = s.console.state();
        let app = state.app_mut("Report Workflow");
        app.graph["nodes"].as_array_mut().unwrap().push(json!({
            "id": "1750000000300", "type": "custom", "position": {"x": 200, "y": 200},
            "data": {
                "type": "http-request", "title": "Call API", "method": "get",
                "url": format!("https://api.example.com/items?access_token={URL_TOKEN}&page=1"),
                "authorization": {"type": "api-key", "config": {"type": "bearer", "api_key": AUTH_KEY, "header": ""}},
                "headers": format!("Authorization: Bearer {BEARER}\nAccept: application/json"),
                "params": "",
                "body": {"type": "none", "data": []},
            }
        }));
        app.graph["nodes"][0]["data"]["desc"] = json!(format!("uses {PROMPT_TOKEN} to read"));
    }
    s
}

fn node_of(s: &AppScenario, id: &str) -> serde_json::Value {
    let state = s.console.state();
    let app = state.app("Report Workflow");
    app.graph["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == id)
        .cloned()
        .unwrap()
}

#[test]
fn keys_inside_the_graph_become_placeholders_and_come_back_on_import() {
    let s = with_keys_in_the_graph();
    let (text, _) = s.run("export_apps", json!({}));
    assert!(objects_containing(s.bare(), &SECRETS).is_empty(), "{text}");
    let id = s.console.state().app("Report Workflow").id.clone();
    let path = s.file_of(&id);
    let file = std::fs::read_to_string(s.repo.work.join(&path)).unwrap();
    assert!(file.contains(AUTH_PLACEHOLDER), "{file}");
    assert!(
        file.contains("Bearer [__SECRET__:1750000000300/headers.Authorization]"),
        "{file}"
    );
    assert!(s.all_in_sync(), "placeholders keep the hashes stable");

    // An edit in Git imports with every key put back from Dify's app.
    s.edit_in_git(&id, "title: End", "title: Done");
    let (text, report) = s.run("import_apps", json!({}));
    assert_eq!(report["imported"].as_array().unwrap().len(), 1, "{text}");
    let node = node_of(&s, "1750000000300");
    assert_eq!(node["data"]["authorization"]["config"]["api_key"], AUTH_KEY);
    assert!(node["data"]["headers"].as_str().unwrap().contains(BEARER));
    assert!(node["data"]["url"].as_str().unwrap().contains(URL_TOKEN));
    assert!(node_of(&s, "start")["data"]["desc"]
        .as_str()
        .unwrap()
        .contains(PROMPT_TOKEN));
    assert!(s.all_in_sync());

    // A conflict branch and its diff, and app_diff, show placeholders only.
    s.console.retitle("Report Workflow", "Dify side");
    s.edit_in_git(&id, "title: Done", "title: Git side");
    let (text, report) = s.run("export_apps", json!({}));
    assert_eq!(report["conflicts"].as_array().unwrap().len(), 1, "{text}");
    let (diff, _) = s.run("app_diff", json!({"app": "Report Workflow"}));
    assert!(
        diff.contains("From Git") && diff.contains("Dify's draft"),
        "{diff}"
    );
    for shown in [&text, &diff] {
        assert!(
            SECRETS.iter().all(|secret| !shown.contains(secret)),
            "{shown}"
        );
    }
    assert!(objects_containing(s.bare(), &SECRETS).is_empty());
}

#[test]
fn a_placeholder_dify_has_no_value_for_refuses_that_import_by_node_and_field() {
    let s = with_keys_in_the_graph();
    s.run("export_apps", json!({}));
    let id = s.console.state().app("Report Workflow").id.clone();
    // A new node in Git (another id) whose placeholder has no value in Dify.
    s.edit_in_git(&id, "1750000000300", "1750000000999");
    let (text, report) = s.run("import_apps", json!({}));
    assert!(report["imported"].as_array().unwrap().is_empty(), "{text}");
    assert!(
        text.contains("node \"Call API\" (1750000000999), field authorization.config.api_key")
            && text.contains("secret environment variable"),
        "{text}"
    );
    assert_eq!(
        node_of(&s, "1750000000300")["data"]["authorization"]["config"]["api_key"],
        AUTH_KEY
    );
}

#[test]
fn refuse_keeps_an_app_with_secrets_out_of_git_and_names_where_they_are() {
    let s = with_keys_in_the_graph();
    let mut credentials = s.credentials();
    credentials["secrets_in_git"] = json!("refuse");
    let (text, report) = outputs(&s.tool_with("export_apps", json!({}), credentials));
    assert_eq!(report["exported"].as_array().unwrap().len(), 2, "{text}");
    assert!(
        text.contains("Report Workflow holds secrets in")
            && text
                .contains("node \"Call API\" (1750000000300), field authorization.config.api_key")
            && text.contains("secrets_in_git is refuse"),
        "{text}"
    );
    assert!(objects_containing(s.bare(), &SECRETS).is_empty());
    assert!(objects_containing(s.bare(), &[AUTH_PLACEHOLDER]).is_empty());
}

#[test]
fn an_index_entry_for_an_app_never_synced_here_exports_nothing_of_it() {
    let s = AppScenario::start();
    s.run("export_apps", json!({"apps": "Report Workflow"}));
    let victim = s.console.state().app("Support Flow").id.clone();
    s.pull();
    let index_path = s.repo.work.join(".dify-sync/index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    index["apps/x.yml"] = json!({"app_id": victim, "mode": "advanced-chat", "name": "x"});
    let index_text = serde_json::to_string_pretty(&index).unwrap();
    s.repo.commit(
        &[
            (".dify-sync/index.json", index_text.as_bytes()),
            (
                "apps/x.yml",
                b"app: {name: x, mode: advanced-chat}\nkind: app\n",
            ),
        ],
        &[],
        "a spoofed entry",
    );
    let (text, report) = s.run("import_apps", json!({}));
    assert!(report["conflicts"].as_array().unwrap().is_empty(), "{text}");
    assert!(text.contains("never synced"), "{text}");
    assert_eq!(s.branches(), ["main"]);
    // Nothing of Support Flow's DSL (its variable ids) is anywhere in the repository.
    assert!(objects_containing(s.bare(), &["v-url"]).is_empty());
    assert_eq!(
        git(s.bare(), &["for-each-ref", "--format=%(refname)"]),
        "refs/heads/main"
    );
}
