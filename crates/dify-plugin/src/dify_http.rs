//! What every client of Dify's own HTTP APIs (Knowledge, console) from a plugin needs: an HTTP
//! client with timeouts that suit Dify's gunicorn, answers read up to a cap, and base URLs
//! shown without their user info.

use std::time::Duration;

/// At most this many redirects within one origin are followed.
const MAX_REDIRECTS: usize = 5;

/// An HTTP client with the timeouts and the redirect policy every call to Dify's API uses:
/// a redirect is followed only within the origin (scheme, host and port) the request was
/// made to, so a key, a cookie, a CSRF token or a password in a replayed body never reaches
/// another host. Any other redirect comes back as the answer, and [`redirect_refusal`] says
/// what happened.
pub fn client() -> Result<reqwest::Client, String> {
    let policy = reqwest::redirect::Policy::custom(|attempt| {
        let first = attempt.previous().first().map(origin);
        match first == Some(origin(attempt.url())) && attempt.previous().len() <= MAX_REDIRECTS {
            true => attempt.follow(),
            false => attempt.stop(),
        }
    });
    reqwest::Client::builder()
        .redirect(policy)
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(120))
        // Dify's gunicorn closes a connection idle for 2 s: one reused just then breaks a
        // request that was sent, which a pipeline run cannot simply send again.
        .pool_idle_timeout(Duration::from_secs(1))
        .build()
        .map_err(|e| format!("the HTTP client could not start: {e}"))
}

/// `scheme://host:port` of a URL, the port always written.
fn origin(url: &reqwest::Url) -> String {
    format!(
        "{}://{}:{}",
        url.scheme(),
        url.host_str().unwrap_or_default(),
        url.port_or_known_default().unwrap_or_default()
    )
}

/// The refusal of an answer that is a redirect this client did not follow (another origin,
/// or too many): it names where the request went and where the server sent it, without user
/// info, query or path. `None` for any other answer.
pub fn redirect_refusal(response: &reqwest::Response) -> Option<String> {
    if !response.status().is_redirection() {
        return None;
    }
    let from = origin(response.url());
    let to = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|location| response.url().join(location).ok());
    Some(match to {
        Some(to) if origin(&to) != from => format!(
            "{from} answered {} with a redirect to another origin, {}; requests carrying the key, \
             session or password go only to the origin configured, so it was not followed. Set \
             the URL to where Dify's API really is",
            response.status().as_u16(),
            origin(&to)
        ),
        Some(_) => format!(
            "{from} redirected more than {MAX_REDIRECTS} times within itself; check the URL"
        ),
        None => format!(
            "{from} answered {} (a redirect) without a usable Location; check the URL",
            response.status().as_u16()
        ),
    })
}

/// Refuses a base URL that carries a user name or password: a client would send it as
/// `Authorization: Basic` before the key, and Dify reads the first. `what` names the setting;
/// the message never repeats the URL.
pub fn refuse_user_info(base: &str, what: &str) -> Result<(), String> {
    match reqwest::Url::parse(base) {
        Ok(url) if !url.username().is_empty() || url.password().is_some() => Err(format!(
            "{what} must not hold a user name or password (user:pass@host); remove them, the key \
             or sign-in goes in its own setting"
        )),
        _ => Ok(()),
    }
}

/// An answer's `Retry-After` in seconds (the form Dify sends), if it has one.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let seconds = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds))
}

/// The body of an answer, or `None` past `max` bytes (read no further).
pub async fn read_capped(
    mut response: reqwest::Response,
    max: usize,
) -> Result<Option<Vec<u8>>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > max {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// A base URL as messages may show it: without user name and password, no trailing `/`.
pub fn without_user_info(base: &str) -> String {
    match reqwest::Url::parse(base) {
        Ok(mut url) => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.as_str().trim_end_matches('/').to_string()
        }
        Err(_) => "<invalid URL>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_info_is_refused_without_echoing_it() {
        let refused =
            refuse_user_info("https://me:s3cret@dify.example.com/v1", "dify_api_url").unwrap_err();
        assert!(refused.contains("dify_api_url") && !refused.contains("s3cret"));
        assert!(refuse_user_info("https://dify.example.com/v1", "dify_api_url").is_ok());
    }

    #[test]
    fn user_info_is_dropped() {
        assert_eq!(
            without_user_info("https://me:pw@dify.example.com/v1/"),
            "https://dify.example.com/v1"
        );
        assert_eq!(without_user_info("not a url"), "<invalid URL>");
    }
}
