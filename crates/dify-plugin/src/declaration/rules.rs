//! The daemon's validation rules for the declaration files (`docs/packaging.md` §2–3,
//! `docs/protocol.md` §3.3; tools as `pkg/entities/plugin_entities/tool_declaration.go` of the
//! daemon has them), each problem named by file and field.

use serde_json::Value;

use super::{PluginKind, Problem, MANIFEST_FILE};

const LOCALES: [&str; 4] = ["en_US", "zh_Hans", "ja_JP", "pt_BR"];
const TAGS: [&str; 19] = [
    "search",
    "image",
    "videos",
    "weather",
    "finance",
    "design",
    "travel",
    "social",
    "news",
    "medical",
    "productivity",
    "education",
    "business",
    "entertainment",
    "utilities",
    "agent",
    "rag",
    "other",
    "trigger",
];
const ARCHES: [&str; 2] = ["amd64", "arm64"];
const PROVIDER_TYPES: [&str; 3] = ["website_crawl", "online_document", "online_drive"];
const PARAMETER_TYPES: [&str; 5] = ["string", "number", "boolean", "select", "secret-input"];
const TOOL_PARAMETER_TYPES: [&str; 16] = [
    "string",
    "number",
    "boolean",
    "select",
    "secret-input",
    "file",
    "files",
    "app-selector",
    "model-selector",
    "any",
    "dynamic-select",
    "array",
    "object",
    "checkbox",
    "date",
    "date-range",
];
const TOOL_PARAMETER_FORMS: [&str; 3] = ["schema", "form", "llm"];
const CREDENTIAL_TYPES: [&str; 7] = [
    "secret-input",
    "text-input",
    "select",
    "boolean",
    "app-selector",
    "model-selector",
    "array[tools]",
];
const SELECTOR_TYPES: [&str; 3] = ["app-selector", "model-selector", "array[tools]"];
/// Every kind a manifest can declare under `plugins`; this runtime serves the first two, one
/// per plugin (the daemon forbids a datasource beside any other kind, `ManifestValidate`), and
/// an endpoint group beside tools.
const ALL_KINDS: [&str; 6] = [
    "datasources",
    "tools",
    "models",
    "endpoints",
    "agent_strategies",
    "triggers",
];
/// The methods an endpoint may declare (`is_available_endpoint_method`).
const ENDPOINT_METHODS: [&str; 6] = ["HEAD", "GET", "POST", "PUT", "DELETE", "OPTIONS"];
const MIN_STORAGE: u64 = 1024;
const MAX_STORAGE: u64 = 1_073_741_824;

/// Collects problems for one file.
struct Checker<'a> {
    file: &'a str,
    /// Where the checked value sits in the file, e.g. `parameters[2]`.
    prefix: String,
    problems: &'a mut Vec<Problem>,
}

impl<'a> Checker<'a> {
    fn new(file: &'a str, problems: &'a mut Vec<Problem>) -> Self {
        Checker {
            file,
            prefix: String::new(),
            problems,
        }
    }

    /// A checker for a value nested at `at`, reporting full field paths.
    fn nested(&mut self, at: &str) -> Checker<'_> {
        Checker {
            file: self.file,
            prefix: self.path(at),
            problems: self.problems,
        }
    }

    fn path(&self, field: &str) -> String {
        match (self.prefix.is_empty(), field.is_empty()) {
            (true, _) => field.to_string(),
            (false, true) => self.prefix.clone(),
            (false, false) => format!("{}.{field}", self.prefix),
        }
    }

    fn problem(&mut self, field: &str, message: impl Into<String>) {
        let field = self.path(field);
        self.problems.push(Problem {
            file: self.file.to_string(),
            field,
            message: message.into(),
        });
    }

    /// A required non-empty string of at most `max` characters.
    fn string<'v>(&mut self, value: &'v Value, field: &str, max: usize) -> Option<&'v str> {
        match lookup(value, field) {
            None | Some(Value::Null) => {
                self.problem(field, "is required");
                None
            }
            Some(Value::String(s)) if s.is_empty() => {
                self.problem(field, "must not be empty");
                None
            }
            Some(Value::String(s)) if s.chars().count() > max => {
                self.problem(field, format!("must be at most {max} characters"));
                None
            }
            Some(Value::String(s)) => Some(s),
            Some(Value::Number(_)) => {
                self.problem(field, "must be text, not a number (quote it in the YAML)");
                None
            }
            Some(_) => {
                self.problem(field, "must be a string");
                None
            }
        }
    }

    fn matching(
        &mut self,
        value: &Value,
        field: &str,
        max: usize,
        ok: fn(&str) -> bool,
        rule: &str,
    ) {
        if let Some(s) = self.string(value, field, max) {
            if !ok(s) {
                self.problem(field, format!("{s:?} must match {rule}"));
            }
        }
    }

    /// An i18n object with a non-empty `en_US` below 1024 characters.
    fn i18n(&mut self, value: &Value, field: &str, required: bool) {
        let Some(object) = lookup(value, field) else {
            if required {
                self.problem(field, "is required (an object with at least en_US)");
            }
            return;
        };
        let Some(object) = object.as_object() else {
            self.problem(
                field,
                "must be an object of texts by locale, with at least en_US",
            );
            return;
        };
        if !object.contains_key("en_US") {
            self.problem(&format!("{field}.en_US"), "is required");
        }
        for (locale, text) in object {
            let at = format!("{field}.{locale}");
            if !LOCALES.contains(&locale.as_str()) {
                self.problem(
                    &at,
                    format!("unknown locale (the daemon drops it); use one of {LOCALES:?}"),
                );
            }
            match text.as_str() {
                Some(s) if s.trim().is_empty() => self.problem(&at, "must not be empty"),
                Some(s) if s.chars().count() >= 1024 => {
                    self.problem(&at, "must be under 1024 characters")
                }
                Some(_) => {}
                None => self.problem(&at, "must be a string"),
            }
        }
    }

    fn one_of(&mut self, value: &Value, field: &str, allowed: &[&str]) -> Option<String> {
        let s = self.string(value, field, 256)?;
        if !allowed.contains(&s) {
            self.problem(field, format!("{s:?} is not one of {allowed:?}"));
        }
        Some(s.to_string())
    }

    fn tags(&mut self, value: &Value, field: &str) {
        match lookup(value, field) {
            None | Some(Value::Null) => {}
            Some(Value::Array(tags)) => {
                for (i, tag) in tags.iter().enumerate() {
                    if !tag.as_str().is_some_and(|t| TAGS.contains(&t)) {
                        self.problem(
                            &format!("{field}[{i}]"),
                            format!("{tag} is not one of {TAGS:?}"),
                        );
                    }
                }
            }
            Some(_) => self.problem(field, "must be a list of tags"),
        }
    }

    fn list<'v>(&mut self, value: &'v Value, field: &str) -> &'v [Value] {
        match lookup(value, field) {
            Some(Value::Array(items)) => items,
            None | Some(Value::Null) => {
                self.problem(field, "is required (write [] when empty)");
                &[]
            }
            Some(_) => {
                self.problem(field, "must be a list");
                &[]
            }
        }
    }

    fn no_duplicate_names(&mut self, items: &[Value], field: &str) {
        let mut seen = std::collections::HashSet::new();
        for (i, item) in items.iter().enumerate() {
            if let Some(name) = item.get("name").and_then(Value::as_str) {
                if !seen.insert(name) {
                    self.problem(
                        &format!("{field}[{i}].name"),
                        format!("{name:?} is declared twice"),
                    );
                }
            }
        }
    }

    /// `options` of a select: fewer than 128, each with a short string value and a label.
    fn options(&mut self, item: &Value) -> Vec<String> {
        let options = match item.get("options") {
            Some(Value::Array(options)) if !options.is_empty() => options,
            _ => {
                self.problem("options", "a select needs a non-empty list of options");
                return Vec::new();
            }
        };
        if options.len() >= 128 {
            self.problem("options", "must have fewer than 128 options");
        }
        let mut values = Vec::new();
        for (i, option) in options.iter().enumerate() {
            let mut c = self.nested(&format!("options[{i}]"));
            if let Some(value) = c.string(option, "value", 127) {
                values.push(value.to_string());
            }
            c.i18n(option, "label", true);
        }
        values
    }
}

/// `a.b.c` inside nested objects.
fn lookup<'v>(value: &'v Value, field: &str) -> Option<&'v Value> {
    field.split('.').try_fold(value, |v, key| v.get(key))
}

fn is_version(s: &str) -> bool {
    let (numbers, suffix) = match s.split_once('-') {
        Some((numbers, suffix)) => (numbers, Some(suffix)),
        None => (s, None),
    };
    let parts: Vec<&str> = numbers.split('.').collect();
    let numbers_ok = parts.len() == 3
        && parts
            .iter()
            .all(|p| (1..=4).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    let suffix_ok = suffix.is_none_or(|x| {
        (1..=16).contains(&x.len()) && x.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    });
    numbers_ok && suffix_ok
}

fn is_plugin_author(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'))
}

fn is_plugin_name(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'))
}

fn is_identity_name(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `8-4-4-4-12` hex digits: the daemon refuses such authors on upload.
fn looks_like_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// RFC 3339 with a zone: `2026-01-15T10:00:00Z` or `...+02:00`, fractions allowed.
fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let base = b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && matches!(b[10], b'T' | b't' | b' ')
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    if !base || s.starts_with("0000-") {
        return false;
    }
    let mut rest = &s[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let n = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return false;
        }
        rest = &fraction[n..];
    }
    let zone = rest.as_bytes();
    rest.eq_ignore_ascii_case("z")
        || (zone.len() == 6
            && matches!(zone[0], b'+' | b'-')
            && zone[1..3].iter().all(u8::is_ascii_digit)
            && zone[3] == b':'
            && zone[4..6].iter().all(u8::is_ascii_digit))
}

/// Checks the manifest; returns the kind of plugin it declares, when it declares one.
pub(super) fn check_manifest(manifest: &Value, problems: &mut Vec<Problem>) -> Option<PluginKind> {
    let mut c = Checker::new(MANIFEST_FILE, problems);
    c.matching(
        manifest,
        "version",
        32,
        is_version,
        r"^\d{1,4}(\.\d{1,4}){2}(-\w{1,16})?$",
    );
    if let Some(kind) = c.string(manifest, "type", 16) {
        if kind != "plugin" {
            c.problem("type", "must be `plugin`");
        }
    }
    if let Some(author) = c.string(manifest, "author", 64) {
        if !is_plugin_author(author) {
            c.problem(
                "author",
                format!("{author:?} must match ^[a-z0-9_-]{{1,64}}$ (lowercase only)"),
            );
        } else if looks_like_uuid(author) {
            c.problem(
                "author",
                "must not look like a UUID (the daemon refuses such uploads)",
            );
        } else if author == "langgenius" {
            c.problem(
                "author",
                "`langgenius` is reserved for signed official plugins",
            );
        }
    }
    c.matching(manifest, "name", 128, is_plugin_name, "^[a-z0-9_-]{1,128}$");
    c.i18n(manifest, "label", true);
    c.i18n(manifest, "description", true);
    c.string(manifest, "icon", 128);
    if lookup(manifest, "icon_dark").is_some_and(|v| !v.is_null()) {
        c.string(manifest, "icon_dark", 128);
    }
    match lookup(manifest, "resource.memory") {
        Some(Value::Number(n)) if n.as_u64().is_some_and(|m| m > 0) => {}
        _ => c.problem("resource.memory", "is required: a positive number of bytes"),
    }
    if let Some(storage) = lookup(manifest, "resource.permission.storage") {
        if !storage.get("enabled").is_none_or(Value::is_boolean) {
            c.problem(
                "resource.permission.storage.enabled",
                "must be true or false",
            );
        }
        let size = storage.get("size").and_then(Value::as_u64);
        if !size.is_some_and(|s| (MIN_STORAGE..=MAX_STORAGE).contains(&s)) {
            c.problem(
                "resource.permission.storage.size",
                format!("must be a number of bytes from {MIN_STORAGE} to {MAX_STORAGE}"),
            );
        }
    }
    let declared: Vec<&str> = ALL_KINDS
        .into_iter()
        .filter(|kind| {
            lookup(manifest, &format!("plugins.{kind}"))
                .is_some_and(|v| v.as_array().is_none_or(|a| !a.is_empty()))
        })
        .collect();
    let kind = match declared.first().copied() {
        Some("datasources") => Some(PluginKind::Datasource),
        Some("tools") => Some(PluginKind::Tool),
        _ => None,
    };
    match kind {
        Some(kind) => {
            let field = format!("plugins.{}", kind.key());
            match lookup(manifest, &field) {
                Some(Value::Array(paths)) if paths.len() == 1 => {
                    if !paths[0]
                        .as_str()
                        .is_some_and(|p| !p.is_empty() && p.len() <= 128)
                    {
                        c.problem(
                            &format!("{field}[0]"),
                            "must be the provider YAML path (at most 128 characters)",
                        );
                    }
                }
                Some(Value::Array(_)) => c.problem(
                    &field,
                    "declare exactly one provider file (the daemon keeps only the last)",
                ),
                _ => c.problem(&field, "must be a list with the provider YAML path"),
            }
            let beside = |other: &&&str| !(kind == PluginKind::Tool && **other == "endpoints");
            for other in declared.iter().skip(1).filter(beside) {
                c.problem(
                    &format!("plugins.{other}"),
                    format!(
                        "a {} plugin cannot also declare other plugin kinds",
                        kind.noun()
                    ),
                );
            }
        }
        None => c.problem(
            "plugins.datasources",
            "is required: a list with the provider YAML path (or plugins.tools for a tool plugin)",
        ),
    }
    c.matching(manifest, "meta.version", 32, is_version, "x.y.z");
    match lookup(manifest, "meta.arch") {
        Some(Value::Array(arches)) if !arches.is_empty() => {
            for (i, arch) in arches.iter().enumerate() {
                if !arch.as_str().is_some_and(|a| ARCHES.contains(&a)) {
                    c.problem(
                        &format!("meta.arch[{i}]"),
                        format!("{arch} is not one of {ARCHES:?}"),
                    );
                }
            }
        }
        _ => c.problem("meta.arch", "is required: a list of amd64 and/or arm64"),
    }
    if let Some(language) = c.string(manifest, "meta.runner.language", 32) {
        if language != "python" {
            c.problem(
                "meta.runner.language",
                "must be `python`: the daemon launches only Python runners (main.py execs the binary)",
            );
        }
    }
    c.string(manifest, "meta.runner.version", 128);
    c.string(manifest, "meta.runner.entrypoint", 256);
    if let Some(v) = lookup(manifest, "meta.minimum_dify_version").filter(|v| !v.is_null()) {
        if !v.as_str().is_some_and(is_version) {
            c.problem("meta.minimum_dify_version", "must be a version like 1.9.0");
        }
    }
    if let Some(created) = c.string(manifest, "created_at", 64) {
        if !is_rfc3339(created) {
            c.problem(
                "created_at",
                "must be an RFC 3339 time with a zone, like 2026-01-15T10:00:00Z",
            );
        }
    }
    c.tags(manifest, "tags");
    if let Some(Value::Object(_)) = lookup(manifest, "permission") {
        c.problem("permission", "belongs under resource.permission");
    }
    kind
}

/// The endpoint group file a tool plugin declares (`plugins.endpoints`, one path).
pub(super) fn endpoint_group_path(
    manifest: &Value,
    kind: PluginKind,
    problems: &mut Vec<Problem>,
) -> Option<String> {
    let listed = lookup(manifest, "plugins.endpoints")?;
    let path = match listed {
        Value::Null => return None,
        Value::Array(paths) if paths.is_empty() => return None,
        // A datasource beside endpoints: the manifest's check says so.
        _ if kind != PluginKind::Tool => return None,
        Value::Array(paths) => match paths.as_slice() {
            [Value::String(path)] if !path.is_empty() && path.len() <= 128 => Some(path.clone()),
            _ => None,
        },
        _ => None,
    };
    if path.is_none() {
        Checker::new(MANIFEST_FILE, problems).problem(
            "plugins.endpoints",
            "must be a list with the endpoint group YAML path (one, at most 128 characters)",
        );
    }
    path
}

/// An endpoint group: its settings (the fields of the endpoint's form, like credentials) and
/// its endpoints.
pub(super) fn check_endpoint_group(file: &str, group: &Value, problems: &mut Vec<Problem>) {
    let mut c = Checker::new(file, problems);
    match group.get("settings") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            c.no_duplicate_names(items, "settings");
            for (i, item) in items.iter().enumerate() {
                check_credential(&mut c, item, &format!("settings[{i}]"));
            }
        }
        Some(_) => c.problem("settings", "must be a list of setting fields"),
    }
    if c.list(group, "endpoints").is_empty() {
        c.problem("endpoints", "declare at least one endpoint");
    }
}

/// One endpoint: its path under `/e/<hook id>` and its method.
pub(super) fn check_endpoint(file: &str, endpoint: &Value, problems: &mut Vec<Problem>) {
    let mut c = Checker::new(file, problems);
    if let Some(path) = c.string(endpoint, "path", 256) {
        if !path.starts_with('/') {
            c.problem("path", "must start with /");
        }
    }
    c.one_of(endpoint, "method", &ENDPOINT_METHODS);
    if endpoint.get("hidden").is_some_and(|h| !h.is_boolean()) {
        c.problem("hidden", "must be true or false");
    }
}

pub(super) fn provider_path(manifest: &Value, kind: PluginKind) -> Option<String> {
    lookup(manifest, &format!("plugins.{}", kind.key()))?
        .as_array()?
        .last()?
        .as_str()
        .map(str::to_owned)
}

pub(super) fn check_provider(
    kind: PluginKind,
    file: &str,
    provider: &Value,
    problems: &mut Vec<Problem>,
) {
    let mut c = Checker::new(file, problems);
    c.string(provider, "identity.author", 64);
    c.matching(
        provider,
        "identity.name",
        128,
        is_identity_name,
        "^[A-Za-z0-9_-]{1,128}$",
    );
    c.i18n(provider, "identity.label", true);
    c.i18n(provider, "identity.description", true);
    c.string(provider, "identity.icon", 128);
    c.tags(provider, "identity.tags");
    if kind == PluginKind::Datasource {
        c.one_of(provider, "provider_type", &PROVIDER_TYPES);
    }
    if provider.get("credentials_for_provider").is_some() {
        c.problem(
            "credentials_for_provider",
            "write the credentials as the list credentials_schema",
        );
    }
    match provider.get("credentials_schema") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            if items.len() > 64 {
                c.problem("credentials_schema", "at most 64 credentials");
            }
            c.no_duplicate_names(items, "credentials_schema");
            for (i, item) in items.iter().enumerate() {
                check_credential(&mut c, item, &format!("credentials_schema[{i}]"));
            }
        }
        Some(_) => c.problem("credentials_schema", "must be a list of credential fields"),
    }
    let key = kind.key();
    if c.list(provider, key).is_empty() {
        c.problem(key, format!("declare at least one {}", kind.noun()));
    }
}

fn check_credential(c: &mut Checker, item: &Value, at: &str) {
    let mut c = c.nested(at);
    if item.as_object().is_none() {
        c.problem("", "must be a mapping");
        return;
    }
    c.string(item, "name", 128);
    let kind = c.one_of(item, "type", &CREDENTIAL_TYPES);
    c.i18n(item, "label", true);
    c.i18n(item, "help", false);
    c.i18n(item, "placeholder", false);
    if item.get("required").is_some_and(|r| !r.is_boolean()) {
        c.problem("required", "must be true or false");
    }
    if item.get("scope").is_some() && !kind.as_deref().is_some_and(|k| SELECTOR_TYPES.contains(&k))
    {
        c.problem("scope", "only selector credentials may have a scope");
    }
    if kind.as_deref() == Some("select") {
        c.options(item);
    }
}

pub(super) fn check_datasource(file: &str, datasource: &Value, problems: &mut Vec<Problem>) {
    let mut c = Checker::new(file, problems);
    c.string(datasource, "identity.author", 64);
    c.matching(
        datasource,
        "identity.name",
        128,
        is_identity_name,
        "^[A-Za-z0-9_-]{1,128}$",
    );
    c.i18n(datasource, "identity.label", true);
    if lookup(datasource, "identity.icon").is_some_and(|v| !v.is_null()) {
        c.string(datasource, "identity.icon", 128);
    }
    c.i18n(datasource, "description", true);
    let parameters = c.list(datasource, "parameters");
    c.no_duplicate_names(parameters, "parameters");
    for (i, parameter) in parameters.iter().enumerate() {
        check_parameter(&mut c, parameter, &format!("parameters[{i}]"));
    }
    if let Some(schema) = datasource.get("output_schema") {
        if !schema.is_object() && !schema.is_null() {
            c.problem("output_schema", "must be a mapping (a JSON schema)");
        }
    }
}

fn check_parameter(c: &mut Checker, parameter: &Value, at: &str) {
    let mut c = c.nested(at);
    let Some(object) = parameter.as_object() else {
        c.problem("", "must be a mapping");
        return;
    };
    c.string(parameter, "name", 1023);
    let kind = c.one_of(parameter, "type", &PARAMETER_TYPES);
    c.i18n(parameter, "label", true);
    c.i18n(parameter, "description", true);
    if object.contains_key("scope") {
        c.problem(
            "scope",
            "must not be set on a datasource parameter (the daemon refuses it)",
        );
    }
    if object.get("required").is_some_and(|r| !r.is_boolean()) {
        c.problem("required", "must be true or false");
    }
    for bound in ["min", "max", "precision"] {
        if object
            .get(bound)
            .is_some_and(|v| !v.is_number() && !v.is_null())
        {
            c.problem(bound, "must be a number");
        }
    }
    let default = object.get("default").filter(|d| !d.is_null());
    if default.is_some_and(|d| d.is_array() || d.is_object()) {
        c.problem("default", "must be a single value");
    }
    if kind.as_deref() == Some("select") {
        let values = c.options(parameter);
        if let Some(d) = default.and_then(Value::as_str) {
            if !values.iter().any(|v| v == d) {
                c.problem("default", format!("{d:?} is not one of the options"));
            }
        }
    }
}

pub(super) fn check_tool(file: &str, tool: &Value, problems: &mut Vec<Problem>) {
    let mut c = Checker::new(file, problems);
    c.string(tool, "identity.author", 64);
    c.matching(
        tool,
        "identity.name",
        128,
        is_identity_name,
        "^[A-Za-z0-9_-]{1,128}$",
    );
    c.i18n(tool, "identity.label", true);
    c.i18n(tool, "description.human", true);
    c.string(tool, "description.llm", 4096);
    let parameters = match tool.get("parameters") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(items)) => items,
        Some(_) => {
            c.problem("parameters", "must be a list");
            &[][..]
        }
    };
    c.no_duplicate_names(parameters, "parameters");
    for (i, parameter) in parameters.iter().enumerate() {
        check_tool_parameter(&mut c, parameter, &format!("parameters[{i}]"));
    }
    if let Some(schema) = tool.get("output_schema") {
        if !schema.is_object() && !schema.is_null() {
            c.problem("output_schema", "must be a mapping (a JSON schema)");
        }
    }
}

fn check_tool_parameter(c: &mut Checker, parameter: &Value, at: &str) {
    let mut c = c.nested(at);
    let Some(object) = parameter.as_object() else {
        c.problem("", "must be a mapping");
        return;
    };
    c.string(parameter, "name", 1023);
    let kind = c.one_of(parameter, "type", &TOOL_PARAMETER_TYPES);
    c.one_of(parameter, "form", &TOOL_PARAMETER_FORMS);
    c.i18n(parameter, "label", true);
    c.i18n(parameter, "human_description", true);
    if object
        .get("llm_description")
        .is_some_and(|d| !d.is_string() && !d.is_null())
    {
        c.problem("llm_description", "must be text");
    }
    if object.get("required").is_some_and(|r| !r.is_boolean()) {
        c.problem("required", "must be true or false");
    }
    if kind.as_deref() == Some("select") {
        let values = c.options(parameter);
        if let Some(d) = object.get("default").and_then(Value::as_str) {
            if !values.iter().any(|v| v == d) {
                c.problem("default", format!("{d:?} is not one of the options"));
            }
        }
    }
}

/// Every icon a declaration names: `(file, field, icon name)`.
pub(super) fn icon_references(
    manifest: &Value,
    kind: Option<PluginKind>,
    provider: Option<&Value>,
) -> Vec<(String, String, String)> {
    let mut icons = Vec::new();
    let mut add = |file: &str, field: &str, value: Option<&Value>| {
        if let Some(icon) = value.and_then(Value::as_str).filter(|s| !s.is_empty()) {
            icons.push((file.to_string(), field.to_string(), icon.to_string()));
        }
    };
    add(MANIFEST_FILE, "icon", manifest.get("icon"));
    add(MANIFEST_FILE, "icon_dark", manifest.get("icon_dark"));
    if let (Some(kind), Some(provider)) = (kind, provider) {
        let file = provider_path(manifest, kind).unwrap_or_default();
        add(&file, "identity.icon", lookup(provider, "identity.icon"));
        let key = kind.key();
        let members = provider.get(key).and_then(Value::as_array);
        for (i, member) in members.into_iter().flatten().enumerate() {
            add(
                &file,
                &format!("{key}[{i}].identity.icon"),
                lookup(member, "identity.icon"),
            );
        }
    }
    icons
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn versions() {
        for ok in ["0.1.0", "1.9.0", "1234.0.9999", "0.0.1-beta_1"] {
            assert!(is_version(ok), "{ok}");
        }
        for bad in [
            "1.0",
            "1.0.0.0",
            "v1.0.0",
            "1.0.0-",
            "12345.0.0",
            "1.0.0-toolongsuffix12345",
        ] {
            assert!(!is_version(bad), "{bad}");
        }
    }

    #[test]
    fn times() {
        for ok in [
            "2026-11-22T00:00:00Z",
            "2026-01-15T10:00:00+00:00",
            "2026-01-15T10:00:00.123-07:30",
        ] {
            assert!(is_rfc3339(ok), "{ok}");
        }
        for bad in [
            "2026-11-22",
            "2026-11-22T00:00:00",
            "0000-01-01T00:00:00Z",
            "2026-11-22T00:00:00+0000",
        ] {
            assert!(!is_rfc3339(bad), "{bad}");
        }
    }

    #[test]
    fn uuids_are_spotted() {
        assert!(looks_like_uuid("6f1c2a8e-3b7d-4c55-9e0a-2d9b1f4e7a10"));
        assert!(!looks_like_uuid("dify-community"));
    }

    proptest! {
        #[test]
        fn author_pattern_is_lowercase_ascii(s in "\\PC{0,80}") {
            let expected = (1..=64).contains(&s.len())
                && s.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_' || ch == '-');
            prop_assert_eq!(is_plugin_author(&s), expected);
        }

        #[test]
        fn three_part_versions_pass(a in 0u32..10000, b in 0u32..10000, c in 0u32..10000) {
            let version = format!("{a}.{b}.{c}");
            prop_assert!(is_version(&version));
        }
    }
}
