//! Refusing cross-site requests on state-changing routes (see the module docs of
//! [`crate::http`], "Cross-site requests").
//!
//! A state-changing request is any but `GET`, `HEAD` and `OPTIONS`. Under `/hooks/` it
//! passes (the token in the path is the credential). Elsewhere it must not come from
//! another site (403 `cross_site`): `Sec-Fetch-Site: cross-site` is refused, and so is an
//! `Origin` that names another host than `Host` (or `X-Forwarded-Host`). Outside
//! `/webhooks/` its body must be JSON (415 `unsupported_media_type`): a `Content-Type` of
//! `application/json` or `application/<x>+json`, which a page cannot send to another origin
//! without a CORS preflight; a request without a body may omit `Content-Type`.

use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// Middleware: 403 or 415 (JSON) for a cross-site state-changing request, else the route.
pub(crate) async fn refuse(request: Request, next: Next) -> Response {
    match check(request.method(), request.uri().path(), request.headers()) {
        Ok(()) => next.run(request).await,
        Err(error) => error.into_response(),
    }
}

/// Whether a request with this method, path and headers may go on.
fn check(method: &Method, path: &str, headers: &HeaderMap) -> Result<(), ApiError> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
        || path.starts_with("/hooks/")
    {
        return Ok(());
    }
    same_origin(method, path, headers)?;
    if path.starts_with("/webhooks/") {
        return Ok(());
    }
    json_body(method, path, headers)
}

/// 403 unless the request comes from a non-browser client or from this server's origin.
fn same_origin(method: &Method, path: &str, headers: &HeaderMap) -> Result<(), ApiError> {
    let refused = |why: String| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "cross_site",
            format!(
                "refused {method} {path}: {why}. State-changing routes take requests from \
                 this server's own origin or from clients that are not browsers (curl, \
                 services), so that a web page cannot act on the API with the visitor's \
                 access; call it from your backend, or serve your page from this origin"
            ),
        )
    };
    if let Some(site) = headers.get("sec-fetch-site")
        && site.as_bytes().eq_ignore_ascii_case(b"cross-site")
    {
        return Err(refused(
            "the browser says it comes from another site (Sec-Fetch-Site: cross-site)".into(),
        ));
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin_text = String::from_utf8_lossy(origin.as_bytes());
    let Some(origin_host) = origin_authority(origin.as_bytes()) else {
        return Err(refused(format!(
            "its Origin `{origin_text}` is not a page of this server"
        )));
    };
    let hosts = [header::HOST.as_str(), "x-forwarded-host"];
    let matches = hosts.iter().any(|name| {
        headers
            .get(*name)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(',').next())
            .is_some_and(|host| same_authority(&origin_host, host.trim()))
    });
    if matches {
        return Ok(());
    }
    let host = headers
        .get(header::HOST)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    Err(refused(format!(
        "its Origin `{origin_text}` is another site than this server (`{host}`)"
    )))
}

/// `(host, port)` of an `Origin` value `scheme://host[:port]` (the port defaulted from the
/// scheme), lower-cased; `None` for `null` and anything else.
fn origin_authority(origin: &[u8]) -> Option<(String, Option<u16>)> {
    let origin = std::str::from_utf8(origin).ok()?.trim();
    let (scheme, rest) = origin.split_once("://")?;
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
        return None;
    }
    let (host, port) = split_port(rest)?;
    Some((host, Some(port.unwrap_or(default_port))))
}

/// Whether `Host` value `host` names the authority of the origin. A `Host` without a port
/// matches the origin's port when that is the scheme's default (80 or 443) only.
fn same_authority(origin: &(String, Option<u16>), host: &str) -> bool {
    let Some((name, port)) = split_port(host) else {
        return false;
    };
    if name != origin.0 {
        return false;
    }
    match (port, origin.1) {
        (Some(port), Some(origin_port)) => port == origin_port,
        (None, Some(origin_port)) => origin_port == 80 || origin_port == 443,
        _ => false,
    }
}

/// `host[:port]` (IPv6 in brackets) as a lower-cased host and its port, if any.
fn split_port(authority: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':')?),
        };
        (format!("[{host}]"), port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host.to_owned(), Some(port)),
            None => (authority.to_owned(), None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        Some(port) => Some(port.parse::<u16>().ok()?),
        None => None,
    };
    Some((host.to_ascii_lowercase(), port))
}

/// 415 unless the body is JSON by its `Content-Type`, or there is no body and no type.
fn json_body(method: &Method, path: &str, headers: &HeaderMap) -> Result<(), ApiError> {
    let content_type = headers.get(header::CONTENT_TYPE);
    if content_type.is_some_and(|v| is_json(v.as_bytes())) {
        return Ok(());
    }
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    if content_type.is_none() && !has_body {
        return Ok(());
    }
    let sent = match content_type {
        Some(value) => format!("`{}`", String::from_utf8_lossy(value.as_bytes())),
        None => "no Content-Type".to_owned(),
    };
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        format!(
            "{method} {path} takes a JSON body with `Content-Type: application/json`, and got \
             {sent}; set the header (curl: `-H 'content-type: application/json'` or `--json`). \
             Other types are refused because web pages can send them from any site"
        ),
    ))
}

/// Whether a `Content-Type` value is `application/json` or `application/<x>+json`.
fn is_json(value: &[u8]) -> bool {
    let Ok(value) = std::str::from_utf8(value) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json") || subtype.to_ascii_lowercase().ends_with("+json"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn status(method: Method, path: &str, pairs: &[(&'static str, &str)]) -> u16 {
        match check(&method, path, &headers(pairs)) {
            Ok(()) => 200,
            Err(error) => error.status.as_u16(),
        }
    }

    const JSON: (&str, &str) = ("content-type", "application/json");

    #[test]
    fn state_changing_requests_need_json_and_the_same_origin() {
        let start = "/workflows/file-digest";
        assert_eq!(
            status(Method::POST, start, &[JSON, ("content-length", "2")]),
            200
        );
        assert_eq!(
            status(
                Method::POST,
                start,
                &[("content-type", "Application/JSON; charset=utf-8")]
            ),
            200
        );
        assert_eq!(
            status(
                Method::POST,
                start,
                &[("content-type", "application/merge-patch+json")]
            ),
            200
        );
        assert_eq!(
            status(
                Method::POST,
                start,
                &[("content-type", "text/plain"), ("content-length", "2")]
            ),
            415
        );
        assert_eq!(
            status(
                Method::POST,
                start,
                &[("content-type", "application/x-www-form-urlencoded")]
            ),
            415
        );
        assert_eq!(status(Method::POST, start, &[("content-length", "2")]), 415);
        assert_eq!(
            status(Method::POST, start, &[("transfer-encoding", "chunked")]),
            415
        );
        // No body, no type: `curl -X POST …/cancel`.
        assert_eq!(status(Method::POST, "/runs/r/cancel", &[]), 200);
        assert_eq!(
            status(Method::POST, "/runs/r/cancel", &[("content-length", "0")]),
            200
        );

        let host = ("host", "127.0.0.1:8080");
        assert_eq!(
            status(
                Method::POST,
                start,
                &[JSON, host, ("origin", "http://127.0.0.1:8080")]
            ),
            200
        );
        assert_eq!(
            status(
                Method::POST,
                start,
                &[JSON, host, ("origin", "http://evil.example")]
            ),
            403
        );
        assert_eq!(
            status(
                Method::POST,
                start,
                &[JSON, host, ("origin", "http://127.0.0.1:3000")]
            ),
            403
        );
        assert_eq!(
            status(Method::POST, start, &[JSON, host, ("origin", "null")]),
            403
        );
        assert_eq!(
            status(
                Method::POST,
                start,
                &[JSON, host, ("sec-fetch-site", "cross-site")]
            ),
            403
        );
        assert_eq!(
            status(
                Method::POST,
                start,
                &[JSON, host, ("sec-fetch-site", "same-origin")]
            ),
            200
        );
        assert_eq!(
            status(
                Method::POST,
                start,
                &[
                    JSON,
                    ("host", "api.example.com"),
                    ("origin", "https://API.example.com")
                ]
            ),
            200
        );
        assert_eq!(
            status(
                Method::POST,
                start,
                &[
                    JSON,
                    ("host", "127.0.0.1:8080"),
                    ("x-forwarded-host", "api.example.com"),
                    ("origin", "https://api.example.com")
                ]
            ),
            200
        );
        assert_eq!(
            status(
                Method::POST,
                start,
                &[
                    JSON,
                    ("host", "[::1]:8080"),
                    ("origin", "http://[::1]:8080")
                ]
            ),
            200
        );
        assert_eq!(
            status(
                Method::DELETE,
                "/runs",
                &[host, ("origin", "http://evil.example")]
            ),
            403
        );
    }

    #[test]
    fn hooks_and_webhooks_and_reads_are_exempt_as_documented() {
        let host = ("host", "127.0.0.1:8080");
        let evil = ("origin", "http://evil.example");
        let text = ("content-type", "text/plain");
        assert_eq!(status(Method::GET, "/runs", &[host, evil]), 200);
        assert_eq!(
            status(
                Method::GET,
                "/hooks/tok?approved=yes",
                &[host, evil, ("sec-fetch-site", "cross-site")]
            ),
            200
        );
        assert_eq!(
            status(
                Method::POST,
                "/hooks/tok",
                &[host, evil, text, ("content-length", "2")]
            ),
            200
        );
        // Webhooks: any content type, but not from a browser on another site.
        assert_eq!(
            status(
                Method::POST,
                "/webhooks/github",
                &[host, ("content-type", "application/x-www-form-urlencoded")]
            ),
            200
        );
        assert_eq!(
            status(Method::POST, "/webhooks/github", &[host, evil, text]),
            403
        );
    }
}
