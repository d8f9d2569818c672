//! Git metadata on mirrored documents, against the fake Knowledge API in the shapes of Dify
//! 1.13 and 1.16: the fields found or created, the values of every document, set once (a kept
//! document is not written again unless asked), the values of other fields left alone, a
//! field of the wrong type named with its fix, and a run with nothing to do still one probe.

use crate::support::knowledge_api::{Doc, Field};
use crate::sync::World;
use git_datasource::cli::sync::describe;
use git_datasource::mirror::metadata::FIELDS;
use serde_json::{json, Value};

/// Four files in three places, on a knowledge base of Dify `version`.
fn world(version: (u32, u32)) -> World {
    let files = [
        ("api/users.md", "# Users\n"),
        ("api/v2/orders.MD", "# Orders\n"),
        ("guide/start.txt", "Start here\n"),
        ("README", "Read me\n"),
    ]
    .map(|(p, c)| (p.to_string(), c.to_string()));
    let world = World::new(&files);
    world.kb.state().version = version;
    world
}

fn doc(world: &World, path: &str) -> Doc {
    let mut ours: Vec<Doc> = world
        .kb
        .docs()
        .into_iter()
        .filter(|d| d.source_url().ends_with(&format!(":{path}")))
        .collect();
    assert_eq!(ours.len(), 1, "{path}");
    ours.remove(0)
}

fn value(world: &World, path: &str, field: &str) -> Value {
    doc(world, path)
        .metadata
        .get(field)
        .cloned()
        .unwrap_or(Value::Null)
}

fn head(world: &World) -> String {
    crate::support::git_servers::git(&world.repo.bare, &["rev-parse", "main"])
}

#[test]
fn every_document_carries_its_git_metadata_once_on_1_13_and_1_16() {
    for version in [(1, 13), (1, 16)] {
        let world = world(version);
        // A field of one of our names already there is reused; a field of the user's own
        // keeps its values.
        world.kb.state().fields = vec![
            Field {
                id: "0000000f-0000-4000-8000-0000000000b1".into(),
                name: "git_branch".into(),
                kind: "string".into(),
            },
            Field {
                id: "0000000f-0000-4000-8000-0000000000a1".into(),
                name: "owner".into(),
                kind: "string".into(),
            },
        ];
        let first = world.sync(&[]);
        assert_eq!(first.exit_code(), 0, "{version:?}: {}", describe(&first));
        assert_eq!(first.metadata.tagged.len(), 4, "{}", describe(&first));
        // One listing of the fields, six created, one call for the four documents.
        assert_eq!(first.metadata.requests, 8, "{}", describe(&first));
        let fields = world.kb.state().fields.clone();
        assert_eq!(fields.len(), 8);
        assert!(fields.iter().all(|f| f.kind == "string"));
        assert_eq!(
            fields.iter().find(|f| f.name == "git_branch").unwrap().id,
            "0000000f-0000-4000-8000-0000000000b1"
        );
        let commit = head(&world);
        let repository = std::fs::canonicalize(&world.repo.bare)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let expected = [
            ("api/v2/orders.MD", ["api/v2/orders.MD", "api", "md"]),
            ("api/users.md", ["api/users.md", "api", "md"]),
            ("guide/start.txt", ["guide/start.txt", "guide", "txt"]),
            ("README", ["README", "", ""]),
        ];
        for (path, [git_path, directory, extension]) in expected {
            let doc = doc(&world, path);
            assert_eq!(doc.bound.len(), 7, "{path}: {:?}", doc.metadata);
            let values: Vec<Value> = FIELDS
                .iter()
                .map(|f| doc.metadata.get(*f).cloned().unwrap_or(Value::Null))
                .collect();
            assert_eq!(
                values,
                [
                    json!(git_path),
                    json!(directory),
                    json!(extension),
                    json!(repository),
                    json!("main"),
                    json!(commit),
                    // A repository on disk has no web page.
                    json!(""),
                ],
                "{version:?} {path}"
            );
        }
        assert!(describe(&first).contains("Git metadata set on 4 documents"));

        // The user labels a document; a change touches another file and adds one.
        {
            let mut state = world.kb.state();
            let doc = state
                .docs
                .iter_mut()
                .find(|d| d.source_url().ends_with(":api/users.md"))
                .unwrap();
            doc.metadata.insert("owner".into(), json!("alice"));
            doc.bound
                .push("0000000f-0000-4000-8000-0000000000a1".into());
        }
        world.repo.commit(
            &[
                ("guide/start.txt", b"Start here, v2\n"),
                ("api/new.md", b"New\n"),
            ],
            &[],
            "change",
        );
        let second = world.sync(&[]);
        assert_eq!(second.exit_code(), 0, "{}", describe(&second));
        assert_eq!(second.metadata.tagged.len(), 2, "{}", describe(&second));
        assert_eq!(
            second.metadata.requests, 2,
            "the fields once, the values once"
        );
        let head = head(&world);
        assert_eq!(value(&world, "guide/start.txt", "git_commit"), json!(head));
        assert_eq!(value(&world, "api/new.md", "git_directory"), json!("api"));
        // The kept document is not written again, and the user's value stays.
        assert_eq!(value(&world, "api/users.md", "git_commit"), json!(commit));
        assert_eq!(value(&world, "api/users.md", "owner"), json!("alice"));

        // Nothing to do: one probe (and the pipeline lookup), no metadata request.
        let before = world.kb.request_count();
        let third = world.sync(&[]);
        assert!(third.unchanged, "{}", describe(&third));
        assert!(world.kb.request_count() - before <= 2);

        // Asked to, every document is written again, at the head.
        let rewritten = world.sync(&["--rewrite-metadata"]);
        assert_eq!(
            rewritten.metadata.tagged.len(),
            5,
            "{}",
            describe(&rewritten)
        );
        assert_eq!(value(&world, "api/users.md", "git_commit"), json!(head));
        assert_eq!(value(&world, "api/users.md", "owner"), json!("alice"));
    }
}

#[test]
fn a_field_of_another_type_is_named_and_the_next_run_tags_once_it_is_fixed() {
    let world = world((1, 16));
    world.kb.state().fields = vec![Field {
        id: "0000000f-0000-4000-8000-0000000000c1".into(),
        name: "git_directory".into(),
        kind: "number".into(),
    }];
    let first = world.sync(&[]);
    assert_eq!(first.exit_code(), 1, "{}", describe(&first));
    let text = describe(&first);
    assert!(
        text.contains("metadata field git_directory of type number")
            && text.contains("rename or delete that field"),
        "{text}"
    );
    // The mirror itself is done; no value was written.
    assert_eq!(first.push.created.len(), 4);
    assert!(world.kb.docs().iter().all(|d| d.metadata.is_empty()));
    // Not settled: the next run tries again, and once the field is gone it tags.
    world.kb.state().fields.clear();
    let second = world.sync(&[]);
    assert!(!second.unchanged);
    assert_eq!(second.exit_code(), 0, "{}", describe(&second));
    assert_eq!(second.metadata.tagged.len(), 4);
    assert_eq!(value(&world, "README", "git_path"), json!("README"));
}

#[test]
fn a_dry_run_counts_the_documents_it_would_tag() {
    let world = world((1, 13));
    world.kb.state().fields = vec![Field {
        id: "0000000f-0000-4000-8000-0000000000c1".into(),
        name: "git_path".into(),
        kind: "time".into(),
    }];
    world.sync(&[]);
    world.kb.state().fields.clear();
    let report = world.sync(&["--dry-run"]);
    let text = describe(&report);
    assert!(
        text.contains("set the Git metadata of 4 documents"),
        "{text}"
    );
    assert!(
        world.kb.state().fields.is_empty(),
        "a dry run creates nothing"
    );
}
