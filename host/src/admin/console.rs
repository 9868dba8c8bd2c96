//! The operators' console: static files built by `scripts/console.sh` and
//! embedded by `build.rs`, served at `/console` without a key (they hold no
//! data; every call they make sends the operator key the user signs in
//! with). The Content-Security-Policy allows scripts, styles and requests
//! only from this origin, and no framing.

use http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use http::{HeaderValue, Method, StatusCode};

use super::http::Response;
use crate::pipeline::respond;
use crate::problem::Problem;

include!(concat!(env!("OUT_DIR"), "/console.rs"));

/// Where the console is.
pub(super) const PREFIX: &str = "/console";

const POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; object-src 'none'; \
    frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// Answers a request for `path` (under [`PREFIX`]): a file, or the page
/// itself for any path that is not one (the console routes in the page).
pub(super) fn serve(method: &Method, path: &str, request_id: &str) -> Response {
    file(method, path).unwrap_or_else(|problem| respond::failure(request_id, *problem))
}

fn file(method: &Method, path: &str) -> Result<Response, Box<Problem>> {
    if method != Method::GET && method != Method::HEAD {
        return Err(Box::new(Problem::new(
            405,
            "method-not-allowed",
            "Method not allowed",
            format!("{method} is not allowed on {path}"),
        )));
    }
    let rest = path.strip_prefix(PREFIX).unwrap_or_default();
    if rest.is_empty() {
        let mut out = http::Response::new(respond::full(""));
        *out.status_mut() = StatusCode::PERMANENT_REDIRECT;
        out.headers_mut()
            .insert(LOCATION, HeaderValue::from_static("/console/"));
        return Ok(out);
    }
    let name = rest.trim_start_matches('/');
    let (name, body) = match ASSETS.iter().find(|(n, _)| *n == name) {
        Some(&(n, body)) => (n, body),
        // Hashed asset names never miss; anything else is a page route.
        None if name.starts_with("assets/") => {
            return Err(Box::new(Problem::new(
                404,
                "not-found",
                "Not found",
                format!("the console has no file {name:?}"),
            )));
        }
        None => match ASSETS.iter().find(|(n, _)| *n == "index.html") {
            Some(&(n, body)) => (n, body),
            None => {
                return Err(Box::new(Problem::new(
                    503,
                    "console-not-built",
                    "Console not built",
                    "this binary was built without the console: run `bash scripts/console.sh`, then build again",
                )));
            }
        },
    };
    let mut out = http::Response::new(respond::full(if method == Method::HEAD {
        &[][..]
    } else {
        body
    }));
    let headers = out.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type(name)));
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    // Built files carry their hash in their name; the page must be fresh.
    let cache = if name.starts_with("assets/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    headers.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
    Ok(out)
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("json") => "application/json",
        Some("woff2") => "font/woff2",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bare_prefix_redirects_to_the_page() {
        let out = serve(&Method::GET, "/console", "r1");
        assert_eq!(out.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(out.headers()[LOCATION], "/console/");
    }

    #[test]
    fn writes_are_refused() {
        let out = serve(&Method::POST, "/console/", "r1");
        assert_eq!(out.status(), StatusCode::METHOD_NOT_ALLOWED);
    }

    #[test]
    fn a_missing_asset_is_404_not_the_page() {
        let out = serve(&Method::GET, "/console/assets/nope.js", "r1");
        assert_eq!(out.status(), StatusCode::NOT_FOUND);
    }
}
