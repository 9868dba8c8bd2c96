//! Cross-origin rules for browser clients, as a manifest writes them: in
//! `[cors]` for every route of the function, or in a route's `cors` for
//! that route alone (`cors = false` turns them off for it).

use serde::Deserialize;

/// Which browser origins may call a function's routes, and how.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsManifest {
    /// `https://app.example.com` (scheme, host and port, no path), or `*`.
    pub origins: Vec<String>,
    /// Request headers a page may send besides `authorization` and
    /// `content-type`; `*` allows any.
    #[serde(default)]
    pub headers: Vec<String>,
    /// Response headers a page may read besides the safelisted ones and
    /// `x-request-id`, `location` and `retry-after`.
    #[serde(default)]
    pub expose: Vec<String>,
    /// How long a browser may keep a preflight's answer, in seconds (at
    /// most 86400; default 600).
    pub max_age: Option<u32>,
    /// Whether pages may send cookies or HTTP auth (`credentials:
    /// "include"`); not with origin `*`.
    #[serde(default)]
    pub credentials: bool,
}

/// A route's `cors`: its own rules, or `false` for none.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum RouteCors {
    /// `cors = false`: no cross-origin calls to this route.
    Enabled(bool),
    /// The route's own rules, instead of the function's.
    Rules(CorsManifest),
}

/// The longest preflight cache a manifest may ask for (what browsers cap at).
const MAX_AGE: u32 = 86_400;

impl CorsManifest {
    /// What is wrong with the rules, if anything.
    pub(super) fn check(&self) -> Result<(), String> {
        if self.origins.is_empty() {
            return Err("cors: origins must list at least one origin, or \"*\"".into());
        }
        for origin in &self.origins {
            if origin != "*" && !is_origin(origin) {
                return Err(format!(
                    "cors: origin {origin:?} must be scheme://host[:port] without a path, like \"https://app.example.com\", or \"*\""
                ));
            }
        }
        if self.credentials && self.origins.iter().any(|o| o == "*") {
            return Err(
                "cors: credentials = true needs its origins listed; browsers refuse \"*\" with credentials"
                    .into(),
            );
        }
        for header in self.headers.iter().chain(&self.expose) {
            if header != "*" && http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                return Err(format!("cors: {header:?} is not a header name"));
            }
        }
        if self.max_age.is_some_and(|age| age > MAX_AGE) {
            return Err(format!("cors: max_age is at most {MAX_AGE} seconds"));
        }
        Ok(())
    }
}

/// `scheme://host[:port]`, as a browser sends it in `Origin`.
fn is_origin(origin: &str) -> bool {
    let Some((scheme, rest)) = origin.split_once("://") else {
        return false;
    };
    let host = match rest.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || rest.starts_with('[') => {
            if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
                return false;
            }
            host
        }
        _ => rest,
    };
    !scheme.is_empty()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        && !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(origins: &[&str]) -> CorsManifest {
        CorsManifest {
            origins: origins.iter().map(|o| (*o).to_owned()).collect(),
            headers: Vec::new(),
            expose: Vec::new(),
            max_age: None,
            credentials: false,
        }
    }

    #[test]
    fn origins_are_scheme_host_and_port() {
        for good in [
            "https://app.example.com",
            "http://localhost:5173",
            "*",
            "http://[::1]:8080",
        ] {
            assert!(rules(&[good]).check().is_ok(), "{good}");
        }
        for bad in [
            "app.example.com",
            "https://app.example.com/",
            "https://a.b/path",
            "https://a:b",
            "",
        ] {
            assert!(rules(&[bad]).check().is_err(), "{bad}");
        }
        assert!(rules(&[]).check().is_err());
    }

    #[test]
    fn credentials_need_listed_origins() {
        let mut any = rules(&["*"]);
        any.credentials = true;
        assert!(any.check().is_err_and(|e| e.contains("credentials")));
        let mut listed = rules(&["https://app.example.com"]);
        listed.credentials = true;
        assert!(listed.check().is_ok());
    }

    #[test]
    fn a_route_turns_cors_off_or_has_its_own() {
        #[derive(Deserialize)]
        struct T {
            a: RouteCors,
            b: RouteCors,
        }
        let t: T = toml::from_str("a = false\nb = { origins = [\"*\"] }").expect("parse");
        assert_eq!(t.a, RouteCors::Enabled(false));
        assert_eq!(t.b, RouteCors::Rules(rules(&["*"])));
    }
}
