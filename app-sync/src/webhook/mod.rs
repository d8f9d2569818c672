//! Import on push: the endpoint `POST /push` that GitHub, GitLab, Gitea, Forgejo and
//! Bitbucket call when a branch moves. A request is checked in full before anything happens
//! (its size, the host's signature with the endpoint's secret, the event, the branch, whether
//! an app file changed, and that this delivery was not accepted before); a refusal changes
//! nothing and is logged without the body. An accepted push is answered at once (202) and the
//! import runs after the answer, one at a time per target, with its sync state in a directory
//! of the plugin's own (the daemon's session, and its plugin storage, end with the answer).

pub mod deliveries;
pub mod push;
pub mod signature;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use dify_plugin::endpoint::{EndpointRequest, EndpointResponse};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::settings::Settings;
use crate::sync::import::{import, ImportOptions};
use crate::sync::SyncContext;
use deliveries::Deliveries;
use push::Push;
use signature::Host;

/// The endpoint's path, as `endpoints/push.yaml` declares it.
pub const PATH: &str = "/push";
/// The largest payload accepted (GitHub's pushes list at most 20 commits).
pub const MAX_PAYLOAD: usize = 5 * 1024 * 1024;
/// The shortest webhook secret accepted.
pub const MIN_SECRET: usize = 16;

/// A push accepted: what to import, and where its state lives.
pub struct Accepted {
    pub settings: Settings,
    pub publish: bool,
    pub push: Push,
    pub host: Host,
    pub delivery: String,
    /// The target's directory under the state root.
    pub dir: PathBuf,
}

/// Checks a webhook; the answer to send and, for a push to import, what to import.
pub fn check(
    request: &EndpointRequest,
    state_root: &Path,
) -> (EndpointResponse, Option<Box<Accepted>>) {
    match accept(request, state_root) {
        Ok(Outcome::Import(accepted)) => {
            let text = format!(
                "accepted: importing {}{} into Dify now; the result is in the plugin's log",
                accepted.push.branch,
                match accepted.push.after.get(..12) {
                    Some(short) => format!(" at {short}"),
                    None => String::new(),
                }
            );
            (EndpointResponse::text(202, text), Some(accepted))
        }
        Ok(Outcome::Nothing(text)) => (EndpointResponse::text(200, text), None),
        Err((status, reason)) => {
            tracing::warn!(
                "refused a webhook ({} {}, {} bytes): {reason}",
                request.method,
                shown(&request.path),
                request.body.len()
            );
            (EndpointResponse::text(status, reason), None)
        }
    }
}

enum Outcome {
    Import(Box<Accepted>),
    /// Nothing to do, and why.
    Nothing(String),
}

fn accept(request: &EndpointRequest, state_root: &Path) -> Result<Outcome, (u16, String)> {
    if request.path != PATH {
        return Err((
            404,
            format!(
                "no endpoint {}: webhooks go to {PATH}",
                shown(&request.path)
            ),
        ));
    }
    if request.method != "POST" {
        return Err((405, "webhooks are POSTed".into()));
    }
    if request.body.len() > MAX_PAYLOAD {
        return Err((
            413,
            format!("the payload is over {} MiB", MAX_PAYLOAD >> 20),
        ));
    }
    let secret = request.setting("webhook_secret");
    if secret.chars().count() < MIN_SECRET {
        return Err((
            503,
            format!("the endpoint has no webhook secret of at least {MIN_SECRET} characters: set one in its settings and in the Git host's webhook"),
        ));
    }
    let host = Host::of(request).ok_or((
        400,
        "not a webhook of GitHub, GitLab, Gitea, Forgejo or Bitbucket (none of their event headers)".to_string(),
    ))?;
    host.verify(request, &secret)
        .map_err(|why| (401, format!("{} webhook refused: {why}", host.name())))?;
    let event = host.event(request);
    match event.as_str() {
        "ping" | "diagnostics:ping" => {
            return Ok(Outcome::Nothing(format!(
                "pong: the {} webhook reaches this endpoint and its secret matches",
                host.name()
            )))
        }
        "push" | "Push Hook" | "repo:push" | "repo:refs_changed" => {}
        other => {
            return Ok(Outcome::Nothing(format!(
                "ignored: {} is not a push",
                shown(other)
            )))
        }
    }
    // The answer goes back to the Git host (its delivery log shows it): the fields only, no
    // part of what was typed in them.
    let settings = Settings::from_credentials(&request.settings).map_err(|problems| {
        let fields: Vec<&str> = problems.iter().map(|p| p.field).collect();
        (
            503,
            format!(
                "the endpoint's settings have problems in {}: fix them in Dify",
                fields.join(", ")
            ),
        )
    })?;
    let push = push::read(host, &request.body).map_err(|why| (400, why))?;
    if push.branch != settings.branch || push.deleted {
        return Ok(Outcome::Nothing(format!(
            "ignored: a push {} {}, and this endpoint imports {}",
            match push.deleted {
                true => "deleting",
                false => "to",
            },
            shown(&push.branch),
            settings.branch
        )));
    }
    if !push.touches_apps(&settings.directory) {
        return Ok(Outcome::Nothing(
            "nothing to import: the push changed no app file".into(),
        ));
    }
    let delivery = host
        .delivery(request)
        .unwrap_or_else(|| hex::encode(Sha256::digest(&request.body)));
    let dir = state_root.join(target_dir(&settings));
    let deliveries = Deliveries::in_dir(&dir);
    if let Some(at) = deliveries.accepted_at(&delivery) {
        return Err((
            409,
            format!("delivery {delivery} was accepted already (at {at}, unix time): a replay imports nothing; push again, or run import_apps"),
        ));
    }
    deliveries.accept(&delivery).map_err(|e| {
        (
            503,
            format!("the delivery cannot be recorded ({})", e.kind()),
        )
    })?;
    Ok(Outcome::Import(Box::new(Accepted {
        publish: request.setting("publish") == "true",
        settings,
        push,
        host,
        delivery,
        dir,
    })))
}

/// The directory of one target (console, repository, branch, directory, environment).
pub fn target_dir(settings: &Settings) -> String {
    let digest = Sha256::digest(format!(
        "{}\n{}",
        settings.console_url,
        settings.target_key()
    ));
    hex::encode(&digest[..12])
}

impl Accepted {
    /// Imports the push, after the answer: one import at a time per target; its report goes
    /// to the log and to `last-import.json` in the target's directory.
    pub async fn run(self, ctx: SyncContext) {
        let lock = target_lock(&self.dir);
        let _turn = lock.lock().await;
        let options = ImportOptions {
            publish: self.publish,
            ..ImportOptions::default()
        };
        let outcome = import(&ctx, &options).await;
        let (ok, text, report) = match &outcome {
            Ok(report) => (
                report.failed.is_empty() && report.conflicts.is_empty(),
                report.describe(),
                crate::sync::to_json(report),
            ),
            Err(error) => (
                false,
                error.to_string(),
                json!({"error": error.to_string()}),
            ),
        };
        let line = format!(
            "{} push {} to {}: {text}",
            self.host.name(),
            self.delivery,
            self.push.branch
        );
        match ok {
            true => tracing::info!("{line}"),
            false => tracing::warn!("{line}"),
        }
        let record = json!({"delivery": self.delivery, "host": self.host.name(),
            "branch": self.push.branch, "after": self.push.after, "ok": ok, "report": report});
        let written = std::fs::create_dir_all(&self.dir).and_then(|_| {
            std::fs::write(
                self.dir.join("last-import.json"),
                serde_json::to_vec_pretty(&record).expect("serializes"),
            )
        });
        if let Err(error) = written {
            tracing::warn!("the import's report cannot be written ({})", error.kind());
        }
    }
}

/// The lock of one target's imports.
fn target_lock(dir: &Path) -> Arc<tokio::sync::Mutex<()>> {
    static LOCKS: OnceLock<Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>> = OnceLock::new();
    let mut locks = LOCKS.get_or_init(Default::default).lock().expect("locks");
    locks.entry(dir.to_path_buf()).or_default().clone()
}

/// A path or name from a request, fit for a log line and an answer.
fn shown(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(100).collect()
}
