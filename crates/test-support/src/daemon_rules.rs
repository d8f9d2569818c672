//! The daemon's checks on remote-debug registration frames (`handleHandleShake`,
//! `UnmarshalJsonBytes` with struct validation, `ManifestValidate`, `RemapAssets`), written
//! independently of the plugin's own validator so the two can catch each other.

use std::collections::HashMap;

use base64::Engine;
use serde_json::Value;

fn i18n_ok(value: &Value) -> bool {
    value["en_US"]
        .as_str()
        .is_some_and(|s| !s.is_empty() && s.len() < 1024 * 4)
}

fn version_ok(s: &str) -> bool {
    let core = s.split('-').next().unwrap();
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 4 && p.chars().all(|c| c.is_ascii_digit()))
}

/// Returns every rule a frame sequence breaks (empty when the daemon would accept it).
pub fn registration_problems(
    frames: &[Value],
    expected_key: &str,
    assets_dir: &std::path::Path,
) -> Vec<String> {
    let mut problems = Vec::new();
    let types: Vec<&str> = frames
        .iter()
        .map(|f| f["type"].as_str().unwrap_or("?"))
        .collect();
    for frame in frames {
        if frame.get("data").is_none() || frame["data"].is_null() {
            problems.push(format!("frame {} has no data", frame["type"]));
        }
    }
    if types.first() != Some(&"handshake") {
        problems.push(format!("first frame is {:?}, not handshake", types.first()));
    }
    if types.last() != Some(&"end") {
        problems.push("last frame is not end".into());
    }
    for once in [
        "handshake",
        "manifest_declaration",
        "datasource_declaration",
        "end",
    ] {
        if types.iter().filter(|t| **t == once).count() != 1 {
            problems.push(format!("{once} must be sent exactly once"));
        }
    }
    for t in &types {
        if ![
            "handshake",
            "manifest_declaration",
            "datasource_declaration",
            "asset_chunk",
            "end",
        ]
        .contains(t)
        {
            problems.push(format!("unexpected frame {t}"));
        }
    }
    let find = |t: &str| frames.iter().find(|f| f["type"] == t).map(|f| &f["data"]);
    if find("handshake").and_then(|d| d["key"].as_str()) != Some(expected_key) {
        problems.push("handshake key is wrong".into());
    }
    let mut icons = Vec::new();
    if let Some(m) = find("manifest_declaration") {
        for field in ["version", "author", "name", "icon", "created_at"] {
            if m[field].as_str().is_none_or(str::is_empty) {
                problems.push(format!("manifest {field} missing"));
            }
        }
        if !m["version"].as_str().is_some_and(version_ok)
            || !m["meta"]["version"].as_str().is_some_and(version_ok)
        {
            problems.push("manifest version format".into());
        }
        if m["type"] != "plugin" {
            problems.push("manifest type must be plugin".into());
        }
        let lower = |s: &str, max: usize| {
            !s.is_empty()
                && s.len() <= max
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        };
        if !m["author"].as_str().is_some_and(|a| lower(a, 64))
            || !m["name"].as_str().is_some_and(|n| lower(n, 128))
        {
            problems.push("manifest author/name pattern".into());
        }
        if !i18n_ok(&m["label"]) || !i18n_ok(&m["description"]) {
            problems.push("manifest label/description en_US".into());
        }
        if m["resource"]["memory"].as_u64().is_none_or(|v| v == 0) {
            problems.push("manifest resource.memory".into());
        }
        if m["meta"]["runner"]["language"] != "python" {
            problems.push("runner language must be python".into());
        }
        if m["meta"]["runner"]["entrypoint"].as_str().is_none()
            || m["meta"]["runner"]["version"].as_str().is_none()
        {
            problems.push("runner entrypoint/version".into());
        }
        let arch_ok = m["meta"]["arch"]
            .as_array()
            .is_some_and(|a| !a.is_empty() && a.iter().all(|x| x == "amd64" || x == "arm64"));
        if !arch_ok {
            problems.push("meta.arch".into());
        }
        if m["resource"]["permission"]["storage"]["enabled"] != true {
            problems.push("storage permission must be enabled".into());
        }
        let size = m["resource"]["permission"]["storage"]["size"]
            .as_u64()
            .unwrap_or(0);
        if !(1024..=1_073_741_824).contains(&size) {
            problems.push("storage size out of range".into());
        }
        for field in ["icon", "icon_dark"] {
            if let Some(icon) = m[field].as_str() {
                icons.push(icon.to_string());
            }
        }
    }
    if let Some(d) = find("datasource_declaration") {
        let Some(provider) = d.as_array().and_then(|a| a.first()) else {
            problems.push("datasource_declaration must be a non-empty array".into());
            return problems;
        };
        if !["website_crawl", "online_document", "online_drive"]
            .contains(&provider["provider_type"].as_str().unwrap_or(""))
        {
            problems.push("provider_type".into());
        }
        match provider["identity"]["icon"].as_str() {
            Some(icon) => icons.push(icon.to_string()),
            None => problems.push("provider identity.icon".into()),
        }
        let credential_types = [
            "secret-input",
            "text-input",
            "select",
            "boolean",
            "app-selector",
            "model-selector",
            "array[tools]",
        ];
        for credential in provider["credentials_schema"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if !credential_types.contains(&credential["type"].as_str().unwrap_or(""))
                || !i18n_ok(&credential["label"])
            {
                problems.push(format!("credential {}", credential["name"]));
            }
        }
        let datasources = provider["datasources"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if datasources.is_empty() {
            problems.push("no datasources".into());
        }
        for ds in &datasources {
            if !ds.is_object() {
                problems.push("datasources must be inlined objects".into());
                continue;
            }
            if ds["identity"]["name"].as_str().is_none()
                || !i18n_ok(&ds["identity"]["label"])
                || !i18n_ok(&ds["description"])
            {
                problems.push("datasource identity/description".into());
            }
            if let Some(icon) = ds["identity"]["icon"].as_str() {
                icons.push(icon.to_string());
            }
            let Some(parameters) = ds["parameters"].as_array() else {
                problems.push("datasource parameters must be an array".into());
                continue;
            };
            for p in parameters {
                if !["string", "number", "boolean", "select", "secret-input"]
                    .contains(&p["type"].as_str().unwrap_or(""))
                {
                    problems.push(format!("parameter {} type", p["name"]));
                }
                if !i18n_ok(&p["description"]) || !i18n_ok(&p["label"]) {
                    problems.push(format!("parameter {} description/label", p["name"]));
                }
                if p.get("scope").is_some() {
                    problems.push(format!("parameter {} has scope", p["name"]));
                }
            }
        }
    }
    // Assets: each chunk decoded on its own and appended; every icon must arrive whole.
    let engine = base64::engine::general_purpose::STANDARD;
    let mut assets: HashMap<String, Vec<u8>> = HashMap::new();
    for frame in frames.iter().filter(|f| f["type"] == "asset_chunk") {
        let name = frame["data"]["filename"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        match engine.decode(frame["data"]["data"].as_str().unwrap_or_default()) {
            Ok(bytes) if !bytes.is_empty() => assets.entry(name).or_default().extend(bytes),
            _ => problems.push(format!("asset chunk of {name} does not decode")),
        }
    }
    for icon in icons {
        match (assets.get(&icon), std::fs::read(assets_dir.join(&icon))) {
            (Some(sent), Ok(file)) if *sent == file => {}
            _ => problems.push(format!("icon {icon} did not arrive intact")),
        }
    }
    problems
}
