//! The tools through the fake daemon, against the fake console and a real repository:
//! round trips, conflicts, refusals, and what a failure leaves behind.

use crate::support::app_scenario::{failure, objects_containing, outputs, AppScenario, SECRET};
use crate::support::git_servers::{files_containing, git};
use serde_json::{json, Value};

#[test]
fn export_edit_in_git_import_export_round_trips() {
    let s = AppScenario::start();
    let messages = s.tool("export_apps", json!({}));
    let (text, report) = outputs(&messages);
    assert!(text.starts_with("Exported 3 app(s)"), "{text}");
    let commit = report["commit"].as_str().unwrap().to_string();
    // The declared outputs, as variables for the workflow's next node.
    let variables: Vec<(&str, &serde_json::Value)> = messages
        .iter()
        .filter(|m| m["data"]["type"] == "variable")
        .map(|m| {
            let message = &m["data"]["message"];
            (
                message["variable_name"].as_str().unwrap(),
                &message["variable_value"],
            )
        })
        .collect();
    assert_eq!(variables[0], ("commit", &json!(commit)));
    assert_eq!(variables[1].1.as_array().unwrap().len(), 3);
    assert_eq!(variables[2], ("conflicts", &json!([])));
    assert_eq!(git(s.bare(), &["rev-parse", "main"]), commit);
    // One file per app plus the index, and no secret anywhere in the repository.
    let files = git(s.bare(), &["ls-tree", "-r", "--name-only", "main"]);
    assert!(files.contains(".dify-sync/index.json"), "{files}");
    assert_eq!(
        files.lines().filter(|f| f.starts_with("apps/")).count(),
        3,
        "{files}"
    );
    let log = git(s.bare(), &["log", "-1", "--format=%s%n%b", "main"]);
    assert!(log.starts_with("Export 3 apps from Dify"), "{log}");
    s.pull();
    assert!(files_containing(&s.repo.work, &[SECRET]).is_empty());

    // Nothing changed: nothing committed.
    let (text, report) = s.run("export_apps", json!({}));
    assert!(text.starts_with("Nothing to commit"), "{text}");
    assert!(report["commit"].is_null());
    // A node moved on the canvas is not a change.
    s.console.move_node("Support Flow", 999);
    assert!(s.all_in_sync());

    // Edit in Git, import: Dify has the edit, and its secret is kept.
    let id = s.console.state().app("Support Flow").id.clone();
    s.edit_in_git(&id, "title: End", "title: Answer");
    let (text, report) = s.run("sync_status", json!({"apps": "Support Flow"}));
    assert_eq!(report["apps"][0]["state"], "changed_in_git", "{text}");
    let (text, report) = s.run("import_apps", json!({}));
    assert_eq!(report["imported"].as_array().unwrap().len(), 1, "{text}");
    assert_eq!(report["imported"][0]["app_id"], id.as_str());
    {
        let state = s.console.state();
        let app = state.app("Support Flow");
        assert_eq!(app.graph["nodes"][1]["data"]["title"], "Answer");
        assert_eq!(
            app.environment_variables[0]["value"], SECRET,
            "the secret was wiped"
        );
    }
    // Exporting again finds Dify and Git the same: the edited DSL is what Dify exports.
    let (text, report) = s.run("export_apps", json!({}));
    assert!(report["commit"].is_null(), "{text}");
    assert!(s.all_in_sync());
    // A change in Dify is exported on its own.
    s.console.retitle("Report Workflow", "Summary");
    let (text, report) = s.run(
        "export_apps",
        json!({"message": "Retitle the report's end"}),
    );
    assert_eq!(report["exported"].as_array().unwrap().len(), 1, "{text}");
    let log = git(s.bare(), &["log", "-1", "--format=%s", "main"]);
    assert_eq!(log, "Retitle the report's end");
    // Every call of this run used one sign-in.
    assert_eq!(s.console.state().logins, 1);
}

#[test]
fn a_change_on_both_sides_overwrites_neither() {
    let s = AppScenario::start();
    s.run("export_apps", json!({}));
    let id = s.console.state().app("Report Workflow").id.clone();
    let main_before = s.edit_in_git(&id, "title: End", "title: From Git");
    s.console.retitle("Report Workflow", "From Dify");

    let (text, report) = s.run("export_apps", json!({}));
    let conflict = &report["conflicts"][0];
    assert_eq!(conflict["app"], "Report Workflow", "{text}");
    let branch = conflict["branch"].as_str().unwrap();
    assert!(
        branch.starts_with("dify-sync/conflict/report-workflow--"),
        "{branch}"
    );
    assert!(
        text.contains("Nothing was overwritten") && text.contains(branch),
        "{text}"
    );
    let diff = conflict["diff"].as_str().unwrap();
    assert!(
        diff.contains("-        title: From Git") && diff.contains("+        title: From Dify"),
        "{diff}"
    );
    // Git's branch kept its edit; the conflict branch holds Dify's.
    assert_eq!(git(s.bare(), &["rev-parse", "main"]), main_before);
    let path = conflict["path"].as_str().unwrap();
    let theirs = git(s.bare(), &["show", &format!("{branch}:{path}")]);
    assert!(theirs.contains("From Dify"), "{theirs}");
    assert!(s.branches().contains(&branch.to_string()));

    // Import refuses too, and Dify keeps its edit.
    let (text, report) = s.run("import_apps", json!({}));
    assert!(report["imported"].as_array().unwrap().is_empty(), "{text}");
    assert_eq!(report["conflicts"].as_array().unwrap().len(), 1, "{text}");
    assert_eq!(
        s.console.state().app("Report Workflow").graph["nodes"][1]["data"]["title"],
        "From Dify"
    );
    let (_, report) = s.run("sync_status", json!({"apps": "Report Workflow"}));
    assert_eq!(report["apps"][0]["state"], "conflict");
    // A conflict that persists is reported again on the same branch, not a new one each run.
    let (_, report) = s.run("export_apps", json!({}));
    assert_eq!(report["conflicts"][0]["branch"], branch);
    assert_eq!(s.branches().len(), 2, "{:?}", s.branches());

    // Resolved in Git: the conflict branch merged, Git's version kept (`-s ours`). Git has
    // now seen Dify's version, so the import brings the resolution to Dify.
    s.pull();
    git(&s.repo.work, &["fetch", "-q", "origin", branch]);
    git(
        &s.repo.work,
        &["merge", "-q", "-s", "ours", "-m", "resolve", "FETCH_HEAD"],
    );
    git(&s.repo.work, &["push", "-q", "origin", "HEAD:main"]);
    let (_, report) = s.run("sync_status", json!({"apps": "Report Workflow"}));
    assert_eq!(report["apps"][0]["state"], "changed_in_git");
    let (text, report) = s.run("import_apps", json!({}));
    assert_eq!(report["imported"].as_array().unwrap().len(), 1, "{text}");
    assert_eq!(
        s.console.state().app("Report Workflow").graph["nodes"][1]["data"]["title"],
        "From Git"
    );
    assert!(s.all_in_sync());
}

#[test]
fn apps_dify_cannot_overwrite_are_created_only_when_asked_and_then_own_their_file() {
    let s = AppScenario::start();
    s.run("export_apps", json!({}));
    let id = s.console.state().app("Simple Chat").id.clone();
    s.edit_in_git(&id, "You are helpful.", "You are concise.");
    let (text, report) = s.run("import_apps", json!({}));
    assert!(report["imported"].as_array().unwrap().is_empty(), "{text}");
    assert!(text.contains("only workflow and chatflow"), "{text}");
    let (text, report) = s.run("import_apps", json!({"create_new": true}));
    let created = &report["imported"][0];
    assert_eq!(created["created"], true, "{text}");
    let new_id = created["app_id"].as_str().unwrap().to_string();
    assert_ne!(new_id, id);
    assert_eq!(s.console.state().apps.len(), 4);
    assert!(text.contains("now belongs to the new app"), "{text}");
    // The file moved to the new app: its own name and index entry; the old app has none.
    let path = s.file_of(&new_id);
    assert!(path.contains(&new_id[..8]), "{path}");
    let (text, status) = s.run("sync_status", json!({}));
    for app in status["apps"].as_array().unwrap() {
        let expected = match app["app_id"].as_str().unwrap() {
            old if old == id => "only_in_dify",
            _ => "in_sync",
        };
        assert_eq!(app["state"], expected, "{text}");
    }
    // Importing again makes no second copy; export brings the old app in as its own file.
    let (text, report) = s.run("import_apps", json!({"create_new": true}));
    assert!(report["imported"].as_array().unwrap().is_empty(), "{text}");
    assert_eq!(s.console.state().apps.len(), 4);
    let (text, report) = s.run("export_apps", json!({}));
    assert_eq!(report["exported"].as_array().unwrap().len(), 1, "{text}");
    assert!(!text.contains("Changed in Git"), "{text}");
    assert!(s.all_in_sync());
}

#[test]
fn a_newer_dsl_is_imported_only_when_confirmed_and_published_when_asked() {
    let s = AppScenario::start();
    s.run("export_apps", json!({}));
    let id = s.console.state().app("Report Workflow").id.clone();
    // A DSL written by a newer Dify than this one.
    s.edit_in_git(&id, "version: 0.5.0", "version: 0.6.0");
    s.edit_in_git(&id, "title: End", "title: Newer");
    let (text, report) = s.run("import_apps", json!({"publish": true}));
    assert_eq!(report["pending"].as_array().unwrap().len(), 1, "{text}");
    assert!(text.contains("confirm_newer_dsl"), "{text}");
    assert!(s
        .console
        .state()
        .app("Report Workflow")
        .published
        .is_empty());
    let (text, report) = s.run(
        "import_apps",
        json!({"confirm_newer_dsl": true, "publish": true}),
    );
    assert_eq!(report["imported"][0]["published"], true, "{text}");
    let state = s.console.state();
    let app = state.app("Report Workflow");
    assert_eq!(app.graph["nodes"][1]["data"]["title"], "Newer");
    assert_eq!(app.published.len(), 1);
}

#[test]
fn a_credential_id_in_an_export_keeps_that_app_out_of_git_and_the_others_go() {
    let s = AppScenario::start();
    s.console.state().app_mut("Report Workflow").graph["nodes"][0]["data"]["credential_id"] =
        json!("cred-leftover-123");
    let (text, report) = s.run("export_apps", json!({}));
    assert!(
        text.contains("Not exported: the export of Report Workflow holds a credential id in workflow.graph.nodes[0].data.credential_id"),
        "{text}"
    );
    assert!(!text.contains("cred-leftover-123"), "{text}");
    assert_eq!(report["exported"].as_array().unwrap().len(), 2, "{text}");
    assert!(!text.contains("Nothing to commit"), "{text}");
    assert!(objects_containing(s.bare(), &["cred-leftover-123"]).is_empty());
}

#[test]
fn diff_and_history_show_one_app_in_both_places() {
    let s = AppScenario::start();
    s.run("export_apps", json!({}));
    let id = s.console.state().app("Report Workflow").id.clone();
    s.edit_in_git(&id, "title: End", "title: Done");
    s.console.retitle("Report Workflow", "Finished");
    let (text, report) = s.run("app_diff", json!({"app": "report workflow"}));
    assert!(
        text.contains("-        title: Done") && text.contains("+        title: Finished"),
        "{text}"
    );
    assert!(!text.contains("position"), "{text}");
    assert!(report["commit"].is_string());
    s.tool("import_apps", json!({})); // a conflict: nothing changes
    s.console.state().app_mut("Report Workflow");
    let (text, report) = s.run("app_history", json!({"app": id}));
    assert_eq!(report["commits"].as_array().unwrap().len(), 2, "{text}");
    assert_eq!(report["commits"][0]["summary"], "edit in Git");
    let error = failure(&s.tool(
        "app_diff",
        json!({"app": "Report Workflow", "commit": "HEAD@{1}"}),
    ));
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("not a commit id"),
        "{error}"
    );
    let error = failure(&s.tool("app_diff", json!({"app": "No Such App"})));
    assert!(
        error["message"].as_str().unwrap().contains("Support Flow"),
        "{error}"
    );
}

#[test]
fn validation_names_what_failed_without_echoing_secrets() {
    let s = AppScenario::start();
    let session = s.daemon.request(
        "validate_tool_credentials",
        json!({"type": "tool", "provider": "app_git_sync", "credentials": s.credentials()}),
    );
    let messages = s.daemon.finish(&session);
    assert_eq!(messages[0]["data"], json!({"result": true}), "{messages:?}");

    let mut wrong = s.credentials();
    wrong["password"] = json!("wrong-password-value");
    wrong["repository_url"] = json!(s.dir.path().join("missing.git").to_str().unwrap());
    let session = s.daemon.request(
        "validate_tool_credentials",
        json!({"type": "tool", "provider": "app_git_sync", "credentials": wrong}),
    );
    let error = failure(&s.daemon.finish(&session));
    assert_eq!(error["error_type"], "CredentialsValidateFailedError");
    assert!(
        error["args"]["sign_in"]
            .as_str()
            .unwrap()
            .contains("incorrect"),
        "{error}"
    );
    assert!(error["args"]["repository_url"].is_string(), "{error}");
    assert!(!error.to_string().contains("wrong-password-value"));
    assert!(!s.daemon.stderr_text().contains("wrong-password-value"));

    // A secret pasted into a malformed URL is never echoed, for either URL.
    let malformed = [
        (
            "repository_url",
            "https://x-access-token:ghp_pasted0secret@exa mple.com/r.git",
            "ghp_pasted0secret",
        ),
        ("console_url", "http://admin:pw-in-url@[bad", "pw-in-url"),
    ];
    for (field, url, secret) in malformed {
        let mut credentials = s.credentials();
        credentials[field] = json!(url);
        let session = s.daemon.request(
            "validate_tool_credentials",
            json!({"type": "tool", "provider": "app_git_sync", "credentials": credentials}),
        );
        let error = failure(&s.daemon.finish(&session));
        assert!(error["args"][field].is_string(), "{error}");
        assert!(!error.to_string().contains(secret), "{error}");
        assert!(!s.daemon.stderr_text().contains(secret));
    }
}

#[test]
fn a_hostile_index_or_commit_is_refused_by_name() {
    let s = AppScenario::start();
    s.run("export_apps", json!({}));
    s.pull();
    s.repo.commit(
        &[(
            ".dify-sync/index.json",
            br#"{"../../etc/passwd": {"app_id": "x", "mode": "workflow", "name": "x"}}"#,
        )],
        &[],
        "a hostile index",
    );
    let error = failure(&s.tool("export_apps", json!({})));
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("index.json") && message.contains("apps/"),
        "{message}"
    );
}

#[test]
fn a_file_broken_in_git_is_a_change_not_an_abort() {
    let s = AppScenario::start();
    s.run("export_apps", json!({}));
    let id = s.console.state().app("Report Workflow").id.clone();
    s.edit_in_git(&id, "kind: app", "kind: app\n  broken: [unclosed");
    let (text, report) = s.run("export_apps", json!({}));
    assert_eq!(
        report["changed_in_git"].as_array().unwrap().len(),
        1,
        "{text}"
    );
    let (text, report) = s.run("import_apps", json!({}));
    assert_eq!(report["failed"].as_array().unwrap().len(), 1, "{text}");
    assert_eq!(
        s.console.state().app("Report Workflow").graph["nodes"][1]["data"]["title"],
        "End"
    );
}

#[test]
fn an_app_dify_cannot_export_is_named_and_the_others_still_sync() {
    let s = AppScenario::start();
    s.run("export_apps", json!({}));
    let id = s.console.state().app("Report Workflow").id.clone();
    s.edit_in_git(&id, "title: End", "title: Edited");
    s.console.state().app_mut("Report Workflow").no_draft = true;
    s.console.retitle("Support Flow", "Changed in Dify");
    let (text, report) = s.run("export_apps", json!({}));
    assert_eq!(report["exported"].as_array().unwrap().len(), 1, "{text}");
    assert!(
        text.contains("Not exported: Report Workflow: Dify cannot export it: it has no draft yet (Draft workflow not found). Open it once in Dify's editor"),
        "{text}"
    );
    let (text, report) = s.run("import_apps", json!({}));
    assert!(report["imported"].as_array().unwrap().is_empty(), "{text}");
    assert!(text.contains("must be compared first"), "{text}");
}

/// Dify 1.16: a workflow without a draft answers 500 to its export (named, with the fix, and
/// the others still sync), a file of an older DSL imports with Dify's warnings shown, and an
/// Agent app is exported but never overwritten in place.
#[test]
fn on_dify_1_16_a_missing_draft_and_import_warnings_are_named() {
    let s = AppScenario::on("1.16.1");
    // 1.16's Agent app (`mode: agent`): exported, and never overwritten in place.
    let agent = s.console.add_app("Helper Agent", "agent", Vec::new());
    s.console.state().app_mut("Report Workflow").no_draft = true;
    let (text, report) = s.run("export_apps", json!({}));
    assert_eq!(report["exported"].as_array().unwrap().len(), 3, "{text}");
    assert!(
        text.contains("Not exported: Report Workflow: Dify cannot export it: it answered 500")
            && text.contains("open it once in Dify's editor"),
        "{text}"
    );
    let id = s.console.state().app("Support Flow").id.clone();
    s.edit_in_git(&id, "version: 0.7.0", "version: 0.6.0");
    let (text, report) = s.run("import_apps", json!({}));
    assert_eq!(
        report["imported"][0]["status"], "completed-with-warnings",
        "{text}"
    );
    assert!(
        text.contains("Dify warns: version: DSL 0.6.0 is older than 0.7.0"),
        "{text}"
    );
    s.edit_in_git(&agent, "You are helpful.", "You are brief.");
    let (text, _) = s.run("import_apps", json!({"apps": "Helper Agent"}));
    assert!(
        text.contains("this is an agent app; import it as a new app with create_new"),
        "{text}"
    );
    let (text, history) = s.run("app_history", json!({"app": "Helper Agent"}));
    assert_eq!(history["published"].as_array().unwrap().len(), 0, "{text}");
}

/// `lint_apps` checks the branch's app files (no Dify needed), and `app_diff` shows Dify's
/// edit node by node, both through the daemon.
#[test]
fn lint_and_review_node_by_node_through_the_daemon() {
    let s = AppScenario::start();
    s.tool("export_apps", json!({}));
    let (text, report) = s.run("lint_apps", json!({}));
    assert_eq!(report["apps"].as_array().unwrap().len(), 3, "{text}");
    assert_eq!(
        (report["errors"].clone(), report["warnings"].clone()),
        (json!(0), json!(0)),
        "{text}"
    );

    let id = s.console.state().app("Support Flow").id.clone();
    s.edit_in_git(
        &id,
        "outputs: []",
        "outputs: [{variable: a, value_selector: [gone, text]}]",
    );
    let (text, report) = s.run("lint_apps", json!({"apps": "Support Flow"}));
    assert_eq!(report["apps"].as_array().unwrap().len(), 1, "{text}");
    assert_eq!(report["errors"], 1, "{text}");
    assert_eq!(
        report["apps"][0]["findings"][0]["rule"], "broken-reference",
        "{text}"
    );
    assert!(text.contains("names node \"gone\""), "{text}");

    s.console.retitle("Report Workflow", "Finished");
    let (text, report) = s.run(
        "app_diff",
        json!({"app": "Report Workflow", "format": "semantic"}),
    );
    assert_eq!(report["format"], "semantic");
    assert!(
        text.contains("\"Finished\" (end), renamed from \"End\" (end)"),
        "{text}"
    );
    let message = failure(&s.tool(
        "app_diff",
        json!({"app": "Report Workflow", "format": "html"}),
    ));
    let shown = message["message"].as_str().unwrap_or_default();
    assert!(shown.contains("unified, semantic or markdown"), "{message}");
}

/// `import_apps` with `dry_run` says what it would overwrite and where it would stop at a
/// conflict, and changes nothing: not Dify, not Git (no conflict branch), not the state.
#[test]
fn a_dry_run_import_says_what_it_would_do_and_changes_nothing() {
    let s = AppScenario::start();
    s.tool("export_apps", json!({}));
    let flow = s.console.state().app("Support Flow").id.clone();
    let report_app = s.console.state().app("Report Workflow").id.clone();
    s.edit_in_git(&flow, "title: End", "title: Answer");
    s.edit_in_git(&report_app, "title: End", "title: Done in Git");
    s.console.retitle("Report Workflow", "Done in Dify");
    let branches = s.branches();

    let (text, report) = s.run("import_apps", json!({"dry_run": true}));
    assert_eq!(report["dry_run"], true, "{text}");
    assert!(report["imported"].as_array().unwrap().is_empty(), "{text}");
    let planned: Vec<(&str, &str)> = report["planned"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["app"].as_str().unwrap(), p["action"].as_str().unwrap()))
        .collect();
    assert_eq!(planned.len(), 2, "{text}");
    assert!(
        planned.contains(&(
            "Support Flow",
            format!("overwrite app {flow} in place").as_str()
        )),
        "{text}"
    );
    assert!(
        planned
            .iter()
            .any(|(app, action)| *app == "Report Workflow"
                && action.starts_with("stop at a conflict")),
        "{text}"
    );
    assert!(text.starts_with("Dry run: nothing was changed."), "{text}");
    // Nothing changed anywhere: Dify still has the old titles, Git no new branch, and a real
    // import afterwards still finds both changes.
    assert!(!s
        .console
        .state()
        .app("Support Flow")
        .graph
        .to_string()
        .contains("Answer"));
    assert_eq!(s.branches(), branches);
    let (text, report) = s.run("import_apps", json!({}));
    assert_eq!(report["imported"].as_array().unwrap().len(), 1, "{text}");
    assert_eq!(report["conflicts"].as_array().unwrap().len(), 1, "{text}");
}

#[test]
fn the_tool_deletes_an_app_whose_file_was_removed_once_named() {
    let s = AppScenario::start();
    s.tool("export_apps", json!({}));
    let report_app = s.console.state().app("Report Workflow").id.clone();
    let path = s.file_of(&report_app);
    s.repo.commit(&[], &[&path], "Retire the report");
    let mut credentials = s.credentials();
    credentials["deletions"] = json!("remove_files_and_apps");
    let run =
        |parameters: Value| outputs(&s.tool_with("import_apps", parameters, credentials.clone()));

    let (text, report) = run(json!({"dry_run": true}));
    assert_eq!(report["to_confirm"], json!(["Report Workflow"]), "{text}");
    assert!(
        text.contains("would delete it in Dify once named in delete_apps"),
        "{text}"
    );
    // A name no removed file belongs to is refused, as the tool's error, before anything.
    let refused = failure(&s.tool_with(
        "import_apps",
        json!({"delete_apps": "Support Flow"}),
        credentials.clone(),
    ));
    assert!(
        refused
            .to_string()
            .contains("which is not an app of this Dify whose file was removed"),
        "{refused}"
    );
    assert_eq!(s.console.state().apps.len(), 3);

    let (text, report) = run(json!({"delete_apps": "Report Workflow"}));
    assert_eq!(
        report["deleted"][0]["app_id"],
        report_app.as_str(),
        "{text}"
    );
    assert!(!s.console.state().apps.contains_key(&report_app), "{text}");
    // Status and the next import have nothing left to say about it.
    let (status, _) = s.run("sync_status", json!({}));
    assert!(!status.contains("Report Workflow"), "{status}");
    let (text, report) = run(json!({"dry_run": true}));
    assert!(
        report["to_confirm"].as_array().unwrap().is_empty(),
        "{text}"
    );
}
