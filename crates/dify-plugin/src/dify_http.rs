//! What every client of Dify's own HTTP APIs (Knowledge, console) from a plugin needs: an HTTP
//! client with timeouts that suit Dify's gunicorn, answers read up to a cap, and base URLs
//! shown without their user info.

use std::time::Duration;

/// An HTTP client with the timeouts every call to Dify's API uses.
pub fn client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(120))
        // Dify's gunicorn closes a connection idle for 2 s: one reused just then breaks a
        // request that was sent, which a pipeline run cannot simply send again.
        .pool_idle_timeout(Duration::from_secs(1))
        .build()
        .map_err(|e| format!("the HTTP client could not start: {e}"))
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
    fn user_info_is_dropped() {
        assert_eq!(
            without_user_info("https://me:pw@dify.example.com/v1/"),
            "https://dify.example.com/v1"
        );
        assert_eq!(without_user_info("not a url"), "<invalid URL>");
    }
}
