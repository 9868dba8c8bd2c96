//! A route's cross-origin rules, compiled once when its function is loaded
//! into the header values a preflight and an actual response carry.

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, VARY,
};
use http::{HeaderMap, HeaderValue, Method};

use crate::config::manifest::CorsManifest;

/// Request headers every route with CORS rules allows.
const ALWAYS_ALLOWED: &[&str] = &["authorization", "content-type"];
/// Request headers a browser sends without asking (the Fetch standard's
/// CORS-safelisted ones, `content-type` aside).
const SAFELISTED: &[&str] = &["accept", "accept-language", "content-language"];
/// Response headers every route with CORS rules lets a page read.
const ALWAYS_EXPOSED: &[&str] = &["x-request-id", "location", "retry-after"];

/// A route's compiled CORS rules.
#[derive(Debug)]
pub struct Cors {
    /// `*`: any origin.
    any_origin: bool,
    /// Allowed origins, in lower case.
    origins: Vec<String>,
    /// `*` in `headers`: any request header.
    any_header: bool,
    /// Allowed request headers, in lower case.
    headers: Vec<String>,
    expose: HeaderValue,
    max_age: HeaderValue,
    credentials: bool,
}

impl Cors {
    /// Compiles rules a manifest check has passed.
    pub fn compile(rules: &CorsManifest) -> Self {
        let lower =
            |v: &[String]| -> Vec<String> { v.iter().map(|s| s.to_ascii_lowercase()).collect() };
        let mut headers: Vec<String> = ALWAYS_ALLOWED.iter().map(|h| (*h).to_owned()).collect();
        headers.extend(lower(&rules.headers).into_iter().filter(|h| h != "*"));
        let mut expose: Vec<String> = ALWAYS_EXPOSED.iter().map(|h| (*h).to_owned()).collect();
        expose.extend(lower(&rules.expose));
        expose.dedup();
        Self {
            any_origin: rules.origins.iter().any(|o| o == "*"),
            origins: lower(&rules.origins),
            any_header: rules.headers.iter().any(|h| h == "*"),
            headers,
            expose: HeaderValue::from_str(&expose.join(", "))
                .unwrap_or(HeaderValue::from_static("x-request-id")),
            max_age: HeaderValue::from(rules.max_age.unwrap_or(600)),
            credentials: rules.credentials,
        }
    }

    /// Whether a page from `origin` may call the route.
    fn allows(&self, origin: &HeaderValue) -> bool {
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        self.any_origin || self.origins.iter().any(|o| o.eq_ignore_ascii_case(origin))
    }

    /// The `access-control-allow-origin` for an allowed `origin`: `*` when
    /// any origin may call without credentials, else the origin itself.
    fn allow_origin(&self, origin: &HeaderValue) -> HeaderValue {
        if self.any_origin && !self.credentials {
            HeaderValue::from_static("*")
        } else {
            origin.clone()
        }
    }

    /// The headers that answer a preflight from `origin` for `method` with
    /// `requested` headers, or why it is refused.
    pub fn preflight(
        &self,
        origin: &HeaderValue,
        method: &Method,
        requested: Option<&HeaderValue>,
    ) -> Result<HeaderMap, String> {
        if !self.allows(origin) {
            return Err(format!(
                "origin {} may not call this route",
                String::from_utf8_lossy(origin.as_bytes())
            ));
        }
        let requested = match requested {
            None => None,
            Some(v) => Some(
                v.to_str()
                    .map_err(|_| "access-control-request-headers is not text")?,
            ),
        };
        let names = requested
            .into_iter()
            .flat_map(|v| v.split(','))
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty());
        let mut allowed = Vec::new();
        for name in names {
            if !(self.any_header
                || self.headers.contains(&name)
                || SAFELISTED.contains(&name.as_str()))
            {
                return Err(format!(
                    "request header {name:?} is not allowed on this route"
                ));
            }
            allowed.push(name);
        }
        let mut headers = HeaderMap::new();
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, self.allow_origin(origin));
        if let Ok(method) = HeaderValue::from_str(method.as_str()) {
            headers.insert(ACCESS_CONTROL_ALLOW_METHODS, method);
        }
        if !allowed.is_empty()
            && let Ok(value) = HeaderValue::from_str(&allowed.join(", "))
        {
            headers.insert(ACCESS_CONTROL_ALLOW_HEADERS, value);
        }
        headers.insert(ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
        if self.credentials {
            headers.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        headers.insert(
            VARY,
            HeaderValue::from_static(
                "origin, access-control-request-method, access-control-request-headers",
            ),
        );
        Ok(headers)
    }

    /// Adds to an actual response to `origin` what lets its page read it;
    /// nothing for an origin the rules do not allow.
    pub fn decorate(&self, headers: &mut HeaderMap, origin: &HeaderValue) {
        if !self.allows(origin) {
            return;
        }
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, self.allow_origin(origin));
        headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, self.expose.clone());
        if self.credentials {
            headers.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        headers.append(VARY, HeaderValue::from_static("origin"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(origins: &[&str], headers: &[&str], credentials: bool) -> Cors {
        Cors::compile(&CorsManifest {
            origins: origins.iter().map(|o| (*o).to_owned()).collect(),
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            expose: vec!["etag".into()],
            max_age: Some(60),
            credentials,
        })
    }

    #[test]
    fn a_listed_origin_gets_itself_back() {
        let c = cors(&["https://app.example.com"], &["x-trace"], true);
        let origin = HeaderValue::from_static("https://app.example.com");
        let out = c
            .preflight(
                &origin,
                &Method::PUT,
                Some(&HeaderValue::from_static("Content-Type, X-Trace")),
            )
            .expect("allowed");
        assert_eq!(out[ACCESS_CONTROL_ALLOW_ORIGIN], "https://app.example.com");
        assert_eq!(out[ACCESS_CONTROL_ALLOW_METHODS], "PUT");
        assert_eq!(out[ACCESS_CONTROL_ALLOW_HEADERS], "content-type, x-trace");
        assert_eq!(out[ACCESS_CONTROL_MAX_AGE], "60");
        assert_eq!(out[ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        let mut actual = HeaderMap::new();
        c.decorate(&mut actual, &origin);
        assert_eq!(
            actual[ACCESS_CONTROL_EXPOSE_HEADERS],
            "x-request-id, location, retry-after, etag"
        );
    }

    #[test]
    fn other_origins_and_headers_are_refused() {
        let c = cors(&["https://app.example.com"], &[], false);
        let evil = HeaderValue::from_static("https://evil.example");
        assert!(c.preflight(&evil, &Method::GET, None).is_err());
        let mut actual = HeaderMap::new();
        c.decorate(&mut actual, &evil);
        assert!(actual.is_empty());
        let origin = HeaderValue::from_static("https://app.example.com");
        let refused = c.preflight(
            &origin,
            &Method::GET,
            Some(&HeaderValue::from_static("x-secret")),
        );
        assert!(refused.is_err_and(|e| e.contains("x-secret")));
    }

    #[test]
    fn any_origin_answers_star_without_credentials() {
        let c = cors(&["*"], &["*"], false);
        let origin = HeaderValue::from_static("http://localhost:5173");
        let out = c
            .preflight(
                &origin,
                &Method::POST,
                Some(&HeaderValue::from_static("x-anything")),
            )
            .expect("allowed");
        assert_eq!(out[ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert!(out.get(ACCESS_CONTROL_ALLOW_CREDENTIALS).is_none());
    }
}
