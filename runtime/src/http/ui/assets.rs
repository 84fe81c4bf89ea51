//! The UI's static files, embedded in the binary (`include_str!`): one stylesheet and one
//! small plain-JavaScript file. Nothing is loaded from another origin.

use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::UiError;

/// The stylesheet.
const CSS: &str = include_str!("assets/ui.css");
/// The script: live updates, action buttons, schema forms, login.
const JS: &str = include_str!("assets/ui.js");

/// Where pages link the stylesheet (the crate version in the name: a page of another
/// version never gets this one's file).
pub(crate) const CSS_URL: &str = concat!("/ui/assets/ui-", env!("CARGO_PKG_VERSION"), ".css");
/// Where pages load the script.
pub(crate) const JS_URL: &str = concat!("/ui/assets/ui-", env!("CARGO_PKG_VERSION"), ".js");

/// `GET /ui/assets/{name}`: the stylesheet or the script; the UI's 404 page otherwise.
pub(crate) async fn serve(Path(name): Path<String>) -> Result<Response, UiError> {
    let path = format!("/ui/assets/{name}");
    let (body, kind) = if path == CSS_URL {
        (CSS, "text/css; charset=utf-8")
    } else if path == JS_URL {
        (JS, "text/javascript; charset=utf-8")
    } else {
        return Err(UiError::not_found(format!("There is no asset {path}.")));
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(response)
}
