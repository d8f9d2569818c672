//! Dify's OpenAPI (`/openapi/v1`, Dify 1.15+ with `OPENAPI_ENABLED=true`): signing in with an
//! account token (`dfoa_…`) and getting one by the OAuth device flow (RFC 8628), as `difyctl`
//! does. Its DSL routes are `GET /apps/<id>/dsl`, `POST /workspaces/<ws>/apps/imports`,
//! `…/imports/<id>:confirm` and `GET /apps/<id>/dependencies:check`
//! (`api/controllers/openapi/app_dsl.py`, 1.16.1); it has no publish route and no list of an
//! app's published versions.

use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, AUTHORIZATION};
use reqwest::Method;
use serde_json::json;

use super::sign_in::{Credential, DifyVersion};
use super::{dify_message, Console, ConsoleError, Signed, Surface};

/// The client id the device flow names: the server accepts only the ids in its
/// `OPENAPI_KNOWN_CLIENT_IDS` (default `difyctl`).
pub const CLIENT_ID: &str = "app-git-sync";
/// The device flow gives up after this long, whatever the server says.
const LONGEST_DEVICE_WAIT: Duration = Duration::from_secs(15 * 60);

/// What the person approving a device sign-in needs to see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicePrompt {
    pub user_code: String,
    pub verification_uri: String,
    pub expires_in: Duration,
}

impl Console {
    /// Signs in with an OpenAPI token: `None` when the server has no OpenAPI (off, or older
    /// than 1.15). The workspace is `workspace_id`, or the token's current one.
    pub(super) async fn open_api_sign_in(
        &self,
        token: &str,
        workspace_id: &str,
    ) -> Result<Option<Signed>, ConsoleError> {
        let Some(version) = self.open_api_version().await? else {
            return Ok(None);
        };
        let mut headers = HeaderMap::new();
        if let Ok(value) = format!("Bearer {token}").parse() {
            headers.insert(AUTHORIZATION, value);
        }
        let (status, _, answer) = self
            .send(
                Method::GET,
                "/openapi/v1/workspaces",
                "/workspaces",
                headers,
                None,
            )
            .await?;
        if status.as_u16() == 401 || status.as_u16() == 403 {
            return Err(ConsoleError::SignIn(format!(
                "Dify refused the OpenAPI token ({}): it has expired, was revoked, or is not an \
                 account token (dfoa_…); sign in again by the device flow (the command line with \
                 no token) or paste a new token",
                dify_message(&answer)
            )));
        }
        if !status.is_success() {
            return Err(super::refusal(status, "/workspaces", &answer));
        }
        let workspaces: Vec<(String, String, bool)> = answer["workspaces"]
            .as_array()
            .into_iter()
            .flatten()
            .take(1000)
            .filter_map(|w| {
                // The id goes into every route's path and query: an id of any other shape
                // (`../x`, `a&b`) from a hostile server is no workspace of ours.
                let id = super::apps::path_segment(w["id"].as_str()?).ok()?;
                Some((
                    id.to_string(),
                    w["name"].as_str().unwrap_or_default().to_string(),
                    w["current"] == true,
                ))
            })
            .collect();
        let chosen = match workspace_id {
            "" => workspaces
                .iter()
                .find(|w| w.2)
                .or(workspaces.first().filter(|_| workspaces.len() == 1)),
            wanted => workspaces.iter().find(|w| w.0 == wanted),
        };
        let Some((id, name, _)) = chosen else {
            let names: Vec<&str> = workspaces.iter().take(10).map(|w| w.1.as_str()).collect();
            return Err(ConsoleError::SignIn(match workspace_id {
                "" => format!(
                    "the OpenAPI token's account has {} workspaces and none is current: set \
                     workspace_id (its workspaces: {})",
                    workspaces.len(),
                    names.join(", ")
                ),
                wanted => format!(
                    "the OpenAPI token's account is not a member of workspace {:?} (its \
                     workspaces: {})",
                    wanted.chars().take(40).collect::<String>(),
                    names.join(", ")
                ),
            }));
        };
        Ok(Some(Signed {
            credential: Credential::Bearer {
                token: token.to_string(),
                workspace_id: None,
                refresh_token: None,
            },
            version,
            surface: Surface::OpenApi {
                workspace_id: id.clone(),
                workspace_name: name.clone(),
            },
        }))
    }

    /// Whether the server has Dify's OpenAPI (1.15+ with `OPENAPI_ENABLED=true`).
    pub async fn has_open_api(&self) -> Result<bool, ConsoleError> {
        Ok(self.open_api_version().await?.is_some())
    }

    /// The OpenAPI's `/_version` (no sign-in needed): `None` when the server has no OpenAPI,
    /// `Some(None)` when it has one but names no version we can read.
    async fn open_api_version(&self) -> Result<Option<Option<DifyVersion>>, ConsoleError> {
        let (status, _, answer) = self
            .send(
                Method::GET,
                "/openapi/v1/_version",
                "/_version",
                HeaderMap::new(),
                None,
            )
            .await?;
        match status.as_u16() {
            404 => Ok(None),
            200 => Ok(Some(
                answer["version"].as_str().and_then(DifyVersion::parse),
            )),
            _ => Err(super::refusal(status, "/_version", &answer)),
        }
    }

    /// Gets an OpenAPI token by the device flow: asks for a code, hands it to `prompt` (the
    /// person opens the URL, signs in and approves), then polls at the server's pace until it
    /// is approved, denied or expired. The token is for this process only.
    pub async fn device_login(
        &self,
        label: &str,
        prompt: impl FnOnce(&DevicePrompt),
    ) -> Result<String, ConsoleError> {
        let body = json!({"client_id": CLIENT_ID, "device_label": label});
        let (status, _, answer) = self
            .send(
                Method::POST,
                "/openapi/v1/oauth/device/code",
                "/oauth/device/code",
                HeaderMap::new(),
                Some(&body),
            )
            .await?;
        if status.as_u16() == 404 {
            return Err(ConsoleError::SignIn(format!(
                "{} has no OpenAPI (/openapi/v1) to sign in with: it needs Dify 1.15 or later with \
                 OPENAPI_ENABLED=true",
                self.shown
            )));
        }
        if answer["error"] == "unsupported_client" {
            return Err(ConsoleError::SignIn(format!(
                "{} does not accept the client id {CLIENT_ID}: add it to OPENAPI_KNOWN_CLIENT_IDS \
                 on the Dify API (e.g. OPENAPI_KNOWN_CLIENT_IDS=difyctl,{CLIENT_ID})",
                self.shown
            )));
        }
        if !status.is_success() {
            return Err(super::refusal(status, "/oauth/device/code", &answer));
        }
        let text = |key: &str| answer[key].as_str().unwrap_or_default().to_string();
        let device_code = text("device_code");
        if device_code.is_empty() || text("user_code").is_empty() {
            return Err(ConsoleError::Malformed {
                route: "/oauth/device/code".into(),
                why: "no device_code or user_code".into(),
            });
        }
        let expires_in = Duration::from_secs(answer["expires_in"].as_u64().unwrap_or(600))
            .min(LONGEST_DEVICE_WAIT);
        let mut interval =
            Duration::from_secs(answer["interval"].as_u64().unwrap_or(5).clamp(1, 60));
        prompt(&DevicePrompt {
            user_code: text("user_code").chars().take(40).collect(),
            verification_uri: text("verification_uri").chars().take(300).collect(),
            expires_in,
        });
        let deadline = Instant::now() + expires_in;
        let poll = json!({"device_code": device_code, "client_id": CLIENT_ID});
        loop {
            tokio::time::sleep(interval).await;
            if Instant::now() >= deadline {
                return Err(ConsoleError::SignIn(
                    "the device sign-in was not approved in time; run the command again".into(),
                ));
            }
            let (status, _, answer) = self
                .send(
                    Method::POST,
                    "/openapi/v1/oauth/device/token",
                    "/oauth/device/token",
                    HeaderMap::new(),
                    Some(&poll),
                )
                .await
                .map_err(|e| e.hiding(std::slice::from_ref(&device_code)))?;
            if status.is_success() {
                return match answer["token"].as_str() {
                    Some(token) if !token.is_empty() => Ok(token.to_string()),
                    _ => Err(ConsoleError::Malformed {
                        route: "/oauth/device/token".into(),
                        why: "an approval without a token".into(),
                    }),
                };
            }
            match answer["error"].as_str().unwrap_or_default() {
                "authorization_pending" => {}
                "slow_down" => {
                    interval = (interval + Duration::from_secs(5)).min(Duration::from_secs(60))
                }
                "access_denied" => {
                    return Err(ConsoleError::SignIn(
                        "the device sign-in was denied in Dify".into(),
                    ))
                }
                "expired_token" => {
                    return Err(ConsoleError::SignIn(
                        "the device code expired before it was approved; run the command again"
                            .into(),
                    ))
                }
                _ => {
                    return Err(super::refusal(status, "/oauth/device/token", &answer)
                        .hiding(std::slice::from_ref(&device_code)))
                }
            }
        }
    }
}
