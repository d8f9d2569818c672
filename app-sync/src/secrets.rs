//! Secrets Dify exports verbatim inside an app's DSL, found before anything reaches Git, and
//! put back from Dify's current app on import (the way Dify keeps `[__HIDDEN__]` environment
//! secrets).
//!
//! Found **by field**: an HTTP Request node's `authorization.config.api_key`; header and query
//! lines (`headers`, `params`) and form fields whose name is a credential's (`Authorization`,
//! `X-Api-Key`, `access_token`, `key`, …); any value under a key named like a credential
//! (`api_key`, `…_token`, `…secret`, `password`, …: tool, agent and plugin parameters, and
//! `{value}` objects under such a key); a plain (not secret) environment variable whose name is
//! a credential's; the password in a URL's user info and credential-named query parameters of
//! any URL (MCP and server URLs included). And **by pattern**, in any string: provider token
//! formats as secret scanners define them (OpenAI/Anthropic `sk-…`, GitHub `ghp_…`/`github_pat_…`,
//! GitLab `glpat-…`, Slack `xox?-…` and webhook URLs, AWS `AKIA…`, Google `AIza…`, Stripe,
//! Hugging Face, SendGrid, Dify `app-…`/`dataset-…` keys, JWTs, PEM private keys, `Bearer …`).
//! A value that is only variable references (`{{#env.KEY#}}`) is not a secret.
//!
//! Each secret becomes `[__SECRET__:<node id>/<field>]` (`env/<name>` for an environment
//! variable, `app/<path>` outside the graph).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use regex::Regex;
use serde_yaml::Value;

/// How a placeholder starts.
pub const PLACEHOLDER_START: &str = "[__SECRET__:";

/// At most this deep into the DSL (a hostile file cannot make the walk recurse without end).
const MAX_DEPTH: usize = 64;

/// One secret found in a DSL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// `<node>/<field>`, the placeholder's key.
    pub key: String,
    /// The secret itself (kept in memory only, to put back on import).
    pub value: String,
}

impl Found {
    pub fn placeholder(&self) -> String {
        placeholder(&self.key)
    }
}

fn placeholder(key: &str) -> String {
    format!("{PLACEHOLDER_START}{key}]")
}

/// One key as a person reads it: `node "HTTP Request" (1750000000300), field
/// authorization.config.api_key`. Keys and titles come from a file anyone who can push may
/// write: each is cut at 120 characters.
fn describe_key(key: &str, titles: &BTreeMap<String, String>) -> String {
    let cut = |text: &str| -> String { text.chars().take(120).collect() };
    let (node, field) = key.split_once('/').unwrap_or(("app", key));
    let field = cut(field);
    match (node, titles.get(node)) {
        ("env", _) => format!("environment variable {field}"),
        ("app", _) => format!("field {field}"),
        (id, Some(title)) => format!("node {:?} ({}), field {field}", cut(title), cut(id)),
        (id, None) => format!("node {}, field {field}", cut(id)),
    }
}

/// Replaces every secret of `dsl` with its placeholder; what was replaced, in order.
pub fn redact(dsl: &mut Value) -> Vec<Found> {
    let mut walk = Redactor::default();
    walk.value(dsl, &mut Vec::new(), 0);
    walk.found
}

/// Puts `values` (key → secret, from Dify's current app) back where the placeholders stand.
/// Returns the keys of the placeholders it could not fill.
pub fn restore(dsl: &mut Value, values: &BTreeMap<String, String>) -> Vec<String> {
    let mut missing = Vec::new();
    each_string(dsl, 0, &mut |text| {
        if !text.contains(PLACEHOLDER_START) {
            return;
        }
        let mut out = String::with_capacity(text.len());
        let mut rest = text.as_str();
        while let Some(start) = rest.find(PLACEHOLDER_START) {
            out.push_str(&rest[..start]);
            let after = &rest[start + PLACEHOLDER_START.len()..];
            let Some(end) = after.find(']') else {
                out.push_str(&rest[start..]);
                rest = "";
                break;
            };
            let key = &after[..end];
            match values.get(key) {
                Some(value) => out.push_str(value),
                None => {
                    out.push_str(&rest[start..start + PLACEHOLDER_START.len() + end + 1]);
                    missing.push(key.to_string());
                }
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        *text = out;
    });
    missing
}

/// Keys as a person reads them (`node "Call API" (17…), field url; environment variable
/// KEY`), the node titles taken from `dsl` when given. At most 10, then how many more.
pub fn describe_keys(keys: &[String], dsl: Option<&Value>) -> String {
    let titles = dsl.map(node_titles).unwrap_or_default();
    let mut shown: Vec<String> = keys
        .iter()
        .take(10)
        .map(|key| describe_key(key, &titles))
        .collect();
    if keys.len() > 10 {
        shown.push(format!("and {} more", keys.len() - 10));
    }
    shown.join("; ")
}

/// `text` (an answer of Dify's that may quote what it was sent) with every one of `values`
/// (four characters or more) replaced by its placeholder.
pub fn hide_values(text: &str, values: &BTreeMap<String, String>) -> String {
    values
        .iter()
        .filter(|(_, value)| value.chars().count() >= 4)
        .fold(text.to_string(), |text, (key, value)| {
            text.replace(value.as_str(), &placeholder(key))
        })
}

/// The values of `found`, by key.
pub fn values(found: &[Found]) -> BTreeMap<String, String> {
    found
        .iter()
        .map(|f| (f.key.clone(), f.value.clone()))
        .collect()
}

/// Node id → title, for messages.
fn node_titles(dsl: &Value) -> BTreeMap<String, String> {
    let nodes = dsl
        .get("workflow")
        .and_then(|w| w.get("graph"))
        .and_then(|g| g.get("nodes"))
        .and_then(Value::as_sequence);
    nodes
        .into_iter()
        .flatten()
        .filter_map(|node| {
            let id = scalar(node.get("id")?)?;
            let title = node
                .get("data")
                .and_then(|d| d.get("title"))
                .and_then(Value::as_str)?;
            Some((id, title.to_string()))
        })
        .collect()
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn each_string(value: &mut Value, depth: usize, f: &mut dyn FnMut(&mut String)) {
    if depth > MAX_DEPTH {
        return;
    }
    match value {
        Value::String(text) => f(text),
        Value::Sequence(items) => items
            .iter_mut()
            .for_each(|item| each_string(item, depth + 1, f)),
        Value::Mapping(map) => map
            .iter_mut()
            .for_each(|(_, item)| each_string(item, depth + 1, f)),
        Value::Tagged(tagged) => each_string(&mut tagged.value, depth + 1, f),
        _ => {}
    }
}

/// Whether a header, query parameter, form field or variable called `name` holds a
/// credential. `key` counts (Google's `?key=`), except as a DSL key of its own.
pub fn is_secret_name(name: &str) -> bool {
    let name: String = name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    const EXACT: [&str; 12] = [
        "authorization",
        "proxyauthorization",
        "cookie",
        "key",
        "bearer",
        "pwd",
        "passwd",
        "sig",
        "signature",
        "xamzsecuritytoken",
        "privatekey",
        "clientsecret",
    ];
    const ENDINGS: [&str; 7] = [
        "apikey",
        "token",
        "secret",
        "password",
        "secretkey",
        "accesskey",
        "privatekey",
    ];
    EXACT.contains(&name.as_str()) || ENDINGS.iter().any(|end| name.ends_with(end))
}

/// A DSL key whose string value (or `{value: …}`) is a credential.
fn is_secret_key(key: &str) -> bool {
    !key.eq_ignore_ascii_case("key") && is_secret_name(key)
}

/// Whether `text`, found under a credential's name, can be one: a literal (not only variable
/// references and blanks) of four characters or more that is not a number or a boolean
/// (`MAX_TOKEN: "4096"` holds no secret).
fn is_literal(text: &str) -> bool {
    static REFERENCE: OnceLock<Regex> = OnceLock::new();
    let reference = REFERENCE.get_or_init(|| Regex::new(r"\{\{#?[^{}]*#?\}\}").unwrap());
    let rest = reference.replace_all(text, "");
    let rest = rest.trim();
    rest.chars().count() >= 4
        && !rest
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c == '-')
        && !["true", "false", "none", "null"].contains(&rest.to_ascii_lowercase().as_str())
        && !text.contains(PLACEHOLDER_START)
        && text.trim() != crate::dsl::HIDDEN_VALUE
}

/// Provider token formats (after gitleaks' rules), each matching the secret only, and whether
/// a match must hold a digit (random keys do; words that happen to fit the shape do not).
fn token_patterns() -> &'static [(Regex, bool)] {
    static PATTERNS: OnceLock<Vec<(Regex, bool)>> = OnceLock::new();
    PATTERNS.get_or_init(|| {
        [
            (r"(?s)-----BEGIN[A-Z ]{0,30}PRIVATE KEY( BLOCK)?-----.*?(-----END[A-Z ]{0,30}PRIVATE KEY( BLOCK)?-----|\z)", false),
            (r"\bsk-(?:ant-|proj-|svcacct-)?[A-Za-z0-9_\-]{32,}", true),
            (r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,}\b", true),
            (r"\bgithub_pat_[A-Za-z0-9_]{22,}\b", true),
            (r"\bglpat-[A-Za-z0-9_\-]{20,}\b", true),
            (r"\bxox[abposre]-[A-Za-z0-9\-]{10,}", true),
            (r"hooks\.slack\.com/services/[A-Za-z0-9_/]{20,}", false),
            (r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b", true),
            (r"\bAIza[0-9A-Za-z_\-]{35}\b", false),
            (r"\b(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{24,}\b", false),
            (r"\bhf_[A-Za-z]{34}\b", false),
            (r"\bSG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43}\b", false),
            (r"\b(?:app|dataset)-[A-Za-z0-9]{24}\b", true),
            (r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}", false),
            // `Bearer <token>` anywhere (a code node, a raw body): the token.
            (r"(?i)\bbearer\s+([A-Za-z0-9\-._~+/]{16,}=*)", true),
        ]
        .iter()
        .map(|(pattern, digit)| (Regex::new(pattern).expect("a valid pattern"), *digit))
        .collect()
    })
}

fn url_pattern() -> &'static Regex {
    static URL: OnceLock<Regex> = OnceLock::new();
    URL.get_or_init(|| Regex::new(r#"(?i)\b[a-z][a-z0-9+.\-]*://[^\s"'<>`]+"#).unwrap())
}

/// Where in the DSL a string is: `(node, field)` of its placeholder.
fn label(path: &[String], dsl_nodes: &[(usize, String)]) -> (String, String) {
    // workflow.graph.nodes.<i>.data.<field…>
    if path.len() > 5 && path[0] == "workflow" && path[1] == "graph" && path[2] == "nodes" {
        if let Some((_, id)) = path[3]
            .parse::<usize>()
            .ok()
            .and_then(|i| dsl_nodes.iter().find(|(n, _)| *n == i))
        {
            let field = match path[4].as_str() {
                "data" => path[5..].join("."),
                _ => path[4..].join("."),
            };
            return (clean(id), clean(&field));
        }
    }
    ("app".into(), clean(&path.join(".")))
}

/// A node id or field as a placeholder may hold it: no `]`, no blanks.
fn clean(text: &str) -> String {
    text.chars()
        .map(|c| match c.is_ascii_alphanumeric() || "_-.".contains(c) {
            true => c,
            false => '_',
        })
        .collect()
}

#[derive(Default)]
struct Redactor {
    found: Vec<Found>,
    /// Graph nodes by index, with their ids.
    nodes: Vec<(usize, String)>,
    /// How often each key was used (a second secret in one field is `#2`).
    used: BTreeMap<String, usize>,
    /// The `secret-input` parameters of the tool node being walked.
    secret_params: Vec<String>,
}

/// A part of one string that is a secret: byte range and the field (with its detail).
struct Hit {
    start: usize,
    end: usize,
    field: String,
}

impl Redactor {
    fn value(&mut self, value: &mut Value, path: &mut Vec<String>, depth: usize) {
        if depth > MAX_DEPTH {
            return;
        }
        if path.len() == 3 && path[..] == ["workflow", "graph", "nodes"] {
            if let Value::Sequence(nodes) = &*value {
                self.nodes = nodes
                    .iter()
                    .enumerate()
                    .filter_map(|(i, n)| Some((i, scalar(n.get("id")?)?)))
                    .collect();
            }
        }
        match value {
            Value::Mapping(map) => {
                // {name|key: <credential name>, value: "…"}: environment variables, form fields.
                let named = ["name", "key", "variable"]
                    .iter()
                    .find_map(|k| map.get(*k).and_then(Value::as_str))
                    .filter(|name| is_secret_name(name))
                    .map(str::to_owned);
                let is_secret_variable =
                    map.get("value_type").and_then(Value::as_str) == Some("secret");
                // A tool node keeps its tool's parameter schemas: `secret-input` ones.
                if let Some(schemas) = map.get("paramSchemas").and_then(Value::as_sequence) {
                    self.secret_params = schemas
                        .iter()
                        .filter(|s| s.get("type").and_then(Value::as_str) == Some("secret-input"))
                        .filter_map(|s| s.get("name").and_then(Value::as_str).map(str::to_owned))
                        .collect();
                }
                let parameters = path.last().is_some_and(|p| {
                    ["tool_parameters", "tool_configurations", "agent_parameters"]
                        .contains(&p.as_str())
                });
                for (key, child) in map.iter_mut() {
                    let Some(key) = key.as_str().map(str::to_owned) else {
                        continue;
                    };
                    path.push(key.clone());
                    let whole = match (&named, key.as_str()) {
                        // Dify exports secret variables empty; `check_secrets` guards them.
                        (Some(_), "value") if is_secret_variable => false,
                        (Some(_), "value") => true,
                        _ => {
                            is_secret_key(&key) || (parameters && self.secret_params.contains(&key))
                        }
                    };
                    match child {
                        Value::String(text) if whole && is_literal(text) => {
                            let field = self.field_name(path, named.as_deref());
                            self.replace_whole(text, path, field);
                        }
                        Value::Mapping(inner) if whole => {
                            // {type: constant, value: "…"} under a credential's key.
                            if let Some(Value::String(text)) = inner.get_mut("value") {
                                if is_literal(text) {
                                    path.push("value".into());
                                    let field = self.field_name(path, None);
                                    self.replace_whole(text, path, field);
                                    path.pop();
                                }
                            }
                            self.value(child, path, depth + 1);
                        }
                        _ => self.value(child, path, depth + 1),
                    }
                    path.pop();
                }
            }
            Value::Sequence(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    path.push(i.to_string());
                    self.value(item, path, depth + 1);
                    path.pop();
                }
            }
            Value::Tagged(tagged) => self.value(&mut tagged.value, path, depth + 1),
            Value::String(text) => self.string(text, path),
            _ => {}
        }
    }

    /// The field of a whole-value secret: an environment variable by its name.
    fn field_name(&self, path: &[String], named: Option<&str>) -> Option<String> {
        let is_variable = path.len() == 4
            && path[0] == "workflow"
            && (path[1] == "environment_variables" || path[1] == "conversation_variables");
        match (is_variable, named) {
            (true, Some(name)) => Some(format!("env/{}", clean(name))),
            _ => None,
        }
    }

    /// The whole string is a secret (after an `Authorization` scheme word).
    fn replace_whole(&mut self, text: &mut String, path: &[String], key: Option<String>) {
        let start = scheme_end(text);
        let hit = Hit {
            start,
            end: text.trim_end().len().max(start),
            field: String::new(),
        };
        match key {
            Some(key) => self.apply(text, vec![hit], &key),
            None => {
                let (node, field) = label(path, &self.nodes);
                self.apply(text, vec![hit], &format!("{node}/{field}"))
            }
        }
    }

    /// Secrets inside a string: header and query lines, URLs, provider tokens.
    fn string(&mut self, text: &mut String, path: &[String]) {
        let mut hits = Vec::new();
        let last = path.last().map(String::as_str).unwrap_or_default();
        if last == "headers" || last == "params" {
            hits.extend(line_hits(text));
        }
        hits.extend(url_hits(text));
        for (pattern, needs_digit) in token_patterns() {
            for captures in pattern.captures_iter(text) {
                let Some(token) = captures.get(1).filter(|_| pattern.captures_len() == 2) else {
                    let whole = captures.get(0).expect("a match");
                    if !needs_digit || whole.as_str().chars().any(|c| c.is_ascii_digit()) {
                        hits.push(Hit {
                            start: whole.start(),
                            end: whole.end(),
                            field: String::new(),
                        });
                    }
                    continue;
                };
                if !needs_digit || token.as_str().chars().any(|c| c.is_ascii_digit()) {
                    hits.push(Hit {
                        start: token.start(),
                        end: token.end(),
                        field: String::new(),
                    });
                }
            }
        }
        if hits.is_empty() {
            return;
        }
        let (node, field) = label(path, &self.nodes);
        self.apply(text, hits, &format!("{node}/{field}"));
    }

    /// Replaces the hits (overlaps merged) with placeholders keyed `base` (plus each hit's
    /// detail), recording each secret.
    fn apply(&mut self, text: &mut String, mut hits: Vec<Hit>, base: &str) {
        hits.retain(|h| h.end > h.start && !text[h.start..h.end].contains(PLACEHOLDER_START));
        hits.sort_by_key(|h| (h.start, std::cmp::Reverse(h.end)));
        let mut merged: Vec<Hit> = Vec::new();
        for hit in hits {
            match merged.last_mut() {
                Some(last) if hit.start < last.end => last.end = last.end.max(hit.end),
                _ => merged.push(hit),
            }
        }
        if merged.is_empty() {
            return;
        }
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for hit in merged {
            let mut key = match hit.field.is_empty() {
                true => base.to_string(),
                false => format!("{base}.{}", clean(&hit.field)),
            };
            let count = self.used.entry(key.clone()).or_insert(0);
            *count += 1;
            if *count > 1 {
                key = format!("{key}#{count}");
            }
            out.push_str(&text[at..hit.start]);
            out.push_str(&placeholder(&key));
            self.found.push(Found {
                key,
                value: text[hit.start..hit.end].to_string(),
            });
            at = hit.end;
        }
        out.push_str(&text[at..]);
        *text = out;
    }
}

/// Where a credential starts after an `Authorization`-style scheme word (`Bearer `, `Basic `,
/// `Token `); 0 when there is none.
fn scheme_end(text: &str) -> usize {
    let trimmed = text.trim_start();
    let lead = text.len() - trimmed.len();
    for scheme in ["bearer ", "basic ", "token ", "apikey ", "bot "] {
        if trimmed.len() > scheme.len()
            && trimmed.is_char_boundary(scheme.len())
            && trimmed[..scheme.len()].eq_ignore_ascii_case(scheme)
        {
            let rest = &trimmed[scheme.len()..];
            return lead + scheme.len() + (rest.len() - rest.trim_start().len());
        }
    }
    lead
}

/// `Name: value` lines (an HTTP node's `headers` and `params`) whose name is a credential's.
fn line_hits(text: &str) -> Vec<Hit> {
    let mut hits = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        if let Some((name, value)) = body.split_once(':') {
            let value_start = offset + name.len() + 1;
            if is_secret_name(name.trim()) && is_literal(value) {
                let start = value_start + scheme_end(value);
                let end = value_start + value.trim_end().len();
                if end > start {
                    hits.push(Hit {
                        start,
                        end,
                        field: name.trim().to_string(),
                    });
                }
            }
        }
        offset += line.len();
    }
    hits
}

/// In every URL of `text`: the password of its user info, and the values of its query
/// parameters named like credentials.
fn url_hits(text: &str) -> Vec<Hit> {
    let mut hits = Vec::new();
    for url in url_pattern().find_iter(text) {
        let base = url.start();
        let url = url.as_str();
        let after_scheme = url.find("://").map(|i| i + 3).unwrap_or(0);
        let authority_end = url[after_scheme..]
            .find(['/', '?', '#'])
            .map(|i| after_scheme + i)
            .unwrap_or(url.len());
        let authority = &url[after_scheme..authority_end];
        if let Some(at) = authority.rfind('@') {
            let user_info = &authority[..at];
            let (start, end) = match user_info.split_once(':') {
                Some((user, _)) => (after_scheme + user.len() + 1, after_scheme + at),
                // A lone token as the user name (`https://<token>@host`).
                None => (after_scheme, after_scheme + at),
            };
            if end > start && is_literal(&url[start..end]) {
                hits.push(Hit {
                    start: base + start,
                    end: base + end,
                    field: "password".into(),
                });
            }
        }
        let Some(query_start) = url.find('?') else {
            continue;
        };
        let query_end = url[query_start..]
            .find('#')
            .map(|i| query_start + i)
            .unwrap_or(url.len());
        let mut at = query_start + 1;
        for pair in url[query_start + 1..query_end].split('&') {
            if let Some((name, value)) = pair.split_once('=') {
                if is_secret_name(name) && is_literal(value) {
                    let start = at + name.len() + 1;
                    hits.push(Hit {
                        start: base + start,
                        end: base + start + value.len(),
                        field: name.to_string(),
                    });
                }
            }
            at += pair.len() + 1;
        }
    }
    hits
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn yaml(text: &str) -> Value {
        serde_yaml::from_str(text).unwrap()
    }

    const HTTP_APP: &str = r#"
kind: app
workflow:
  environment_variables:
  - {name: OPENAI_API_KEY, value: plain-value-1234, value_type: string}
  - {name: REGION, value: eu-west-1, value_type: string}
  - {name: VAULT, value: '', value_type: secret}
  graph:
    nodes:
    - id: '1750000000300'
      data:
        type: http-request
        title: Call API
        url: https://api.example.com/v1/items?access_token=qwerty123456&page=2
        authorization:
          type: api-key
          config: {type: bearer, api_key: my-api-key-987, header: ''}
        headers: "Authorization: Bearer abcdef0123456789xyz\nX-Api-Key: k-555\nAccept: application/json\nX-Trace: {{#sys.query#}}"
        params: "key:AIzaSecretValue\nq:hello"
    - id: llm1
      data:
        type: llm
        title: Answer
        prompt_template:
        - role: system
          text: "Use the token wisely. Our key is ghp_abcdefghijklmnopqrstuvwxyz0123456789 and never share it."
    - id: tool1
      data:
        type: tool
        title: Search
        tool_parameters:
          api_key: {type: constant, value: tool-secret-42}
          query: {type: mixed, value: '{{#sys.query#}}'}
          max_tokens: {type: constant, value: 512}
        tool_configurations:
          serper_api_key: serper-xyz-1
          language: en
"#;

    #[test]
    fn every_kind_of_secret_in_an_http_app_is_found_and_replaced() {
        let mut dsl = yaml(HTTP_APP);
        let found = redact(&mut dsl);
        let text = serde_yaml::to_string(&dsl).unwrap();
        for secret in [
            "plain-value-1234",
            "qwerty123456",
            "my-api-key-987",
            "abcdef0123456789xyz",
            "k-555",
            "AIzaSecretValue",
            "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
            "tool-secret-42",
            "serper-xyz-1",
        ] {
            assert!(!text.contains(secret), "{secret} left in:\n{text}");
            assert!(
                found.iter().any(|f| f.value == secret),
                "{secret} not found"
            );
        }
        // Not secrets: references, ordinary values, prose mentioning "token" and "key".
        for kept in [
            "eu-west-1",
            "{{#sys.query#}}",
            "Use the token wisely. Our key is",
            "application/json",
            "page=2",
            "Bearer [__SECRET__:1750000000300/headers.Authorization]",
            "q:hello",
            "512",
            "language: en",
        ] {
            assert!(text.contains(kept), "{kept} lost:\n{text}");
        }
        let keys: Vec<&str> = found.iter().map(|f| f.key.as_str()).collect();
        assert!(keys.contains(&"1750000000300/authorization.config.api_key"));
        assert!(keys.contains(&"1750000000300/url.access_token"));
        assert!(keys.contains(&"env/OPENAI_API_KEY"));
        assert!(keys.contains(&"tool1/tool_parameters.api_key.value"));
        assert!(keys.contains(&"llm1/prompt_template.0.text"));
    }

    #[test]
    fn a_redacted_app_comes_back_whole() {
        let original = yaml(HTTP_APP);
        let mut dsl = original.clone();
        let found = redact(&mut dsl);
        // Redacting again finds nothing new: placeholders are not secrets.
        let mut again = dsl.clone();
        assert!(redact(&mut again).is_empty());
        assert!(restore(&mut dsl, &values(&found)).is_empty());
        assert_eq!(dsl, original);
    }

    #[test]
    fn a_placeholder_without_a_value_is_named_by_node_and_field() {
        let mut dsl = yaml(HTTP_APP);
        redact(&mut dsl);
        let missing = restore(&mut dsl, &BTreeMap::new());
        let described: Vec<String> = describe_keys(&missing, Some(&dsl))
            .split("; ")
            .map(str::to_owned)
            .collect();
        assert!(
            described.contains(
                &"node \"Call API\" (1750000000300), field authorization.config.api_key"
                    .to_string()
            ),
            "{described:?}"
        );
        assert!(described.contains(&"environment variable OPENAI_API_KEY".to_string()));
    }

    #[test]
    fn a_hostile_file_gets_bounded_messages_and_keeps_its_broken_placeholders() {
        let long = "n".repeat(100_000);
        let text = format!("[__SECRET__:{long}/f] [__SECRET__:unterminated");
        let mut dsl = yaml("a: ''");
        dsl["a"] = Value::String(text.clone());
        let missing = restore(&mut dsl, &BTreeMap::new());
        assert_eq!(dsl["a"], Value::String(text), "nothing is filled or lost");
        let shown = describe_keys(&missing, Some(&dsl));
        assert!(shown.len() < 300, "{} characters", shown.len());
    }

    #[test]
    fn tool_parameters_marked_secret_are_found_whatever_their_name() {
        let mut dsl = yaml(
            r#"
workflow:
  graph:
    nodes:
    - id: t1
      data:
        type: tool
        title: Weather
        paramSchemas:
        - {name: appid, type: secret-input, form: form}
        - {name: city, type: string, form: llm}
        tool_parameters:
          city: {type: mixed, value: Paris}
        tool_configurations:
          appid: {type: constant, value: owm-1234}
"#,
        );
        let found = redact(&mut dsl);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].key, "t1/tool_configurations.appid.value");
        assert_eq!(found[0].value, "owm-1234");
    }

    #[test]
    fn an_answer_quoting_a_restored_secret_shows_its_placeholder() {
        let mut dsl = yaml(HTTP_APP);
        let found = redact(&mut dsl);
        let quoted = "invalid node: api_key=my-api-key-987 near line 12";
        assert_eq!(
            hide_values(quoted, &values(&found)),
            "invalid node: api_key=[__SECRET__:1750000000300/authorization.config.api_key] near line 12"
        );
    }

    #[test]
    fn provider_tokens_are_found_in_any_string() {
        let tokens = [
            "sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcd",
            "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
            "github_pat_11ABCDEFG0123456789_abcdefghijklmnop",
            "glpat-abcdefghij0123456789",
            "xoxb-1234567890-abcdefghij",
            "AKIAIOSFODNN7EXAMPLE",
            "AIzaSyA1234567890abcdefghijklmnopqrstuv",
            "sk_live_abcdefghijklmnopqrstuvwx",
            "hf_abcdefghijklmnopqrstuvwxyzabcdefgh",
            "app-abcdefghij0123456789klmn",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----",
        ];
        for token in tokens {
            let mut dsl = yaml("model_config: {pre_prompt: ''}");
            dsl["model_config"]["pre_prompt"] = Value::String(format!("Use {token} here."));
            let found = redact(&mut dsl);
            assert_eq!(found.len(), 1, "{token}");
            assert_eq!(found[0].value, token);
            assert_eq!(
                dsl["model_config"]["pre_prompt"],
                Value::String("Use [__SECRET__:app/model_config.pre_prompt] here.".into())
            );
        }
    }

    #[test]
    fn ordinary_text_is_left_alone() {
        for text in [
            "Summarize the document in 3 bullet points; count the tokens used.",
            "Your API key goes in the settings page; never share a password.",
            "https://docs.example.com/guide?page=2&lang=en",
            "sk-short",
            "Bearer {{#env.API_KEY#}}",
            "max_tokens: 4096",
        ] {
            let mut dsl = yaml("app: {description: ''}");
            dsl["app"]["description"] = Value::String(text.into());
            assert!(redact(&mut dsl).is_empty(), "{text}");
        }
        let mut dsl = yaml(
            "workflow: {environment_variables: [{name: API_KEY, value: '{{#sys.user_id#}}', value_type: string}, {name: MAX_TOKEN, value: '4096', value_type: string}, {name: USE_TOKEN, value: 'true', value_type: string}]}",
        );
        assert!(redact(&mut dsl).is_empty());
    }

    #[test]
    fn urls_lose_their_passwords_and_tokens() {
        let mut dsl = yaml("a: ''");
        dsl["a"] = Value::String(
            "see https://bob:hunter22@mcp.example.com/sse?api_key=zzz999&x=1 now".into(),
        );
        let found = redact(&mut dsl);
        assert_eq!(
            dsl["a"],
            Value::String("see https://bob:[__SECRET__:app/a.password]@mcp.example.com/sse?api_key=[__SECRET__:app/a.api_key]&x=1 now".into())
        );
        assert_eq!(found.len(), 2);
    }

    proptest! {
        /// Whatever the text, redacting then restoring gives it back, and no found value is
        /// left in the redacted text.
        #[test]
        fn redaction_round_trips(prefix in "[ -~]{0,40}", token in "[A-Za-z0-9]{36}", suffix in "[ -~\n]{0,40}") {
            let text = format!("{prefix} ghp_{token} {suffix}");
            let mut dsl = yaml("a: ''");
            dsl["a"] = Value::String(text.clone());
            let original = dsl.clone();
            let found = redact(&mut dsl);
            let redacted = serde_yaml::to_string(&dsl).unwrap();
            for f in &found {
                prop_assert!(!redacted.contains(&f.value));
            }
            prop_assert!(restore(&mut dsl, &values(&found)).is_empty());
            prop_assert_eq!(dsl, original);
        }
    }
}
