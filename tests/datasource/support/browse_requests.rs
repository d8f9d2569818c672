//! The browser's two requests through the fake daemon, as Dify makes them (a folder page, a
//! picked file's text), and a walk of every folder page by page: for its tests and the
//! benchmark.

use std::collections::VecDeque;

use base64::Engine;
use serde_json::{json, Value};

use super::fake_daemon::FakeDaemon;

const BROWSE: &str = "invoke_online_drive_browse_files";
const DOWNLOAD: &str = "invoke_online_drive_download_file";

/// One browse: the page's answer, or the error's data.
pub fn browse(
    daemon: &FakeDaemon,
    credentials: &Value,
    prefix: &str,
    next: &Value,
) -> Result<Value, Value> {
    let session = daemon.request(
        BROWSE,
        json!({"provider": "git_browser", "datasource": "git_browser", "credentials": credentials,
               "request": {"bucket": null, "prefix": prefix, "max_keys": 20,
                           "next_page_parameters": next}}),
    );
    answer(daemon.finish(&session))
}

/// One download: the file's text and its meta, or the error's data.
pub fn download(
    daemon: &FakeDaemon,
    credentials: &Value,
    id: &str,
) -> Result<(String, Value), Value> {
    let session = daemon.request(
        DOWNLOAD,
        json!({"provider": "git_browser", "datasource": "git_browser", "credentials": credentials,
               "request": {"bucket": null, "id": id}}),
    );
    let message = answer(daemon.finish(&session))?;
    assert_eq!(message["type"], "blob", "{message}");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(message["message"]["blob"].as_str().unwrap())
        .unwrap();
    Ok((String::from_utf8(bytes).unwrap(), message["meta"].clone()))
}

pub fn answer(messages: Vec<Value>) -> Result<Value, Value> {
    let last = messages.last().unwrap();
    if last["type"] == "error" {
        return Err(last["data"].clone());
    }
    let streamed: Vec<&Value> = messages.iter().filter(|m| m["type"] == "stream").collect();
    assert_eq!(streamed.len(), 1, "one message per answer: {messages:?}");
    Ok(streamed[0]["data"].clone())
}

/// What a walk of every folder found.
pub struct Walk {
    /// (file id, name, size) of every file.
    pub files: Vec<(String, String, u64)>,
    pub answers: usize,
    /// The longest answer, in bytes.
    pub longest: usize,
}

/// Walks every folder from the top, page by page; `on_page` runs after each answer.
pub fn walk(daemon: &FakeDaemon, credentials: &Value, mut on_page: impl FnMut()) -> Walk {
    let mut found = Walk {
        files: Vec::new(),
        answers: 0,
        longest: 0,
    };
    let mut folders = VecDeque::from([(String::new(), Value::Null)]);
    while let Some((prefix, next)) = folders.pop_front() {
        let page = browse(daemon, credentials, &prefix, &next).unwrap();
        on_page();
        found.answers += 1;
        found.longest = found.longest.max(page.to_string().len());
        let bucket = &page["result"][0];
        for entry in bucket["files"].as_array().unwrap() {
            let id = entry["id"].as_str().unwrap().to_string();
            match entry["type"].as_str().unwrap() {
                "folder" => folders.push_back((id, Value::Null)),
                _ => found.files.push((
                    id,
                    entry["name"].as_str().unwrap().to_string(),
                    entry["size"].as_u64().unwrap(),
                )),
            }
        }
        if bucket["is_truncated"] == true {
            folders.push_front((prefix, bucket["next_page_parameters"].clone()));
        } else {
            assert_eq!(bucket["next_page_parameters"], Value::Null);
        }
    }
    found
}

/// The plugin's resident anonymous memory (its heap), in MB.
pub fn heap_mb(daemon: &FakeDaemon) -> f64 {
    let pid = daemon.child.as_ref().unwrap().id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}
