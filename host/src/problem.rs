//! RFC 9457 problem details: the one shape every host-made error takes.
//! Each part's error type says which problem it is; the pipeline's respond
//! stage and the admin API render it.

use http::{HeaderName, HeaderValue};
use serde::Serialize;

/// The `content-type` of every error the host makes.
pub const CONTENT_TYPE: &str = "application/problem+json";

/// The JSON Schema of a problem body, shared by every OpenAPI document the
/// host gives (the admin API's and each tenant's).
pub fn json_schema() -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "required": [
            "type",
            "title",
            "status",
            "detail",
            "request_id"
        ],
        "properties": {
            "type": {
                "type": "string",
                "description": "`urn:sluice:problem:<slug>`"
            },
            "title": {
                "type": "string"
            },
            "status": {
                "type": "integer"
            },
            "detail": {
                "type": "string"
            },
            "request_id": {
                "type": "string"
            },
            "errors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "pointer": {
                            "type": "string"
                        },
                        "message": {
                            "type": "string"
                        }
                    }
                },
                "description": "Every failing location, for validation problems"
            },
            "limit": {
                "type": "object",
                "description": "For `limit:<name>` problems: the limit a function went over and its value for the function",
                "properties": {
                    "name": {
                        "type": "string"
                    },
                    "value": {
                        "type": "integer"
                    }
                }
            }
        }
    })
}

/// One failing location inside a request body (a JSON pointer) and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// JSON pointer into the body, `""` for the whole document.
    pub pointer: String,
    /// What is wrong there.
    pub message: String,
}

/// An `application/problem+json` body.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// A URI naming the kind of problem: `urn:sluice:problem:<slug>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short, the same for every problem of this kind.
    pub title: std::borrow::Cow<'static, str>,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong with this request, safe to show to the client.
    pub detail: String,
    /// The request this answers; also in the `x-request-id` header.
    pub request_id: String,
    /// Every failing location, for validation problems.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// The limit a function went over, for limit problems.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<LimitMember>,
    /// Response headers that go with it (`retry-after`, `allow`, …).
    #[serde(skip)]
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// The `limit` member: which limit, and its value for the function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LimitMember {
    /// As `[limits]` and manifests name it, e.g. `memory_bytes`.
    pub name: &'static str,
    /// The function's value of it.
    pub value: u64,
}

impl Problem {
    /// A problem of kind `slug` with the given status, title and detail.
    pub fn new(status: u16, slug: &str, title: &'static str, detail: impl Into<String>) -> Self {
        Self {
            kind: format!("urn:sluice:problem:{slug}"),
            title: title.into(),
            status,
            detail: detail.into(),
            request_id: String::new(),
            errors: Vec::new(),
            limit: None,
            headers: Vec::new(),
        }
    }

    /// A problem a function made: `kind` is an absolute URI (kept as it is)
    /// or a short name, which becomes `urn:sluice:problem:fn:<kind>` so it
    /// can never be taken for one of the host's.
    pub fn custom(status: u16, kind: &str, title: &str, detail: impl Into<String>) -> Self {
        let mut problem = Self::new(status, "", "", detail);
        problem.kind = if kind.contains(':') {
            kind.to_owned()
        } else {
            format!("urn:sluice:problem:fn:{kind}")
        };
        problem.title = title.to_owned().into();
        problem
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Tells the client when to try again, in whole seconds (at least one).
    pub fn retry_after(self, after: std::time::Duration) -> Self {
        let seconds = after.as_secs() + u64::from(after.subsec_nanos() > 0);
        self.with_header(http::header::RETRY_AFTER, HeaderValue::from(seconds.max(1)))
    }

    /// Adds the failing locations.
    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = errors;
        self
    }

    /// Names the limit that was passed.
    pub fn with_limit(mut self, name: &'static str, value: u64) -> Self {
        self.limit = Some(LimitMember { name, value });
        self
    }

    /// The body as JSON bytes.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising plain strings and numbers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_rfc9457_members() {
        let mut p = Problem::new(422, "schema", "Body does not match the schema", "2 errors")
            .with_errors(vec![FieldError {
                pointer: "/title".into(),
                message: "too long".into(),
            }]);
        p.request_id = "r1".into();
        let v: serde_json::Value = serde_json::from_slice(&p.to_json()).expect("json");
        assert_eq!(v["type"], "urn:sluice:problem:schema");
        assert_eq!(v["status"], 422);
        assert_eq!(v["request_id"], "r1");
        assert_eq!(v["errors"][0]["pointer"], "/title");
    }

    #[test]
    fn omits_empty_errors() {
        let v: serde_json::Value =
            serde_json::from_slice(&Problem::new(404, "x", "t", "d").to_json()).expect("json");
        assert!(v.get("errors").is_none());
    }
}
