//! The request a handler receives, the response it returns and the errors it
//! may answer with instead. Conversions from and to the WIT types live here
//! too, so `#[handler]` only wires things up.

use std::fmt;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::wit::exports::sluice::function::handler as wit;

/// The response header that asks the host to serve a committed blob. The
/// host removes it and sends the blob in its place.
const BLOB_HEADER: &str = "x-sluice-blob";

/// What [`Response::blob`] percent-encodes in a blob name: everything but
/// ASCII letters, digits and `-._~/`, so any name (non-ASCII, spaces,
/// control characters) fits in a header value and decodes back exactly.
const BLOB_NAME: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// A request that passed the host's receive, authenticate and validate stages.
///
/// ```no_run
/// use sluice_sdk::{Error, Request, Response};
///
/// fn show(req: &Request) -> Result<Response, Error> {
///     let id = req.param("id").ok_or_else(|| Error::bad_request("missing id"))?;
///     Ok(Response::text(200, format!("{} {} asked for {id}", req.method(), req.path())))
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Request {
    route: String,
    pattern: String,
    method: String,
    path: String,
    params: Vec<(String, String)>,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    claims: Option<Claims>,
    request_id: String,
}

impl Request {
    pub(crate) fn from_wit(request: wit::Request) -> Self {
        Self {
            route: request.route,
            pattern: request.pattern,
            method: request.method,
            path: request.path,
            params: request.params,
            query: request.query,
            headers: request.headers,
            body: request.body,
            claims: request.claims.map(Claims::from_wit),
            request_id: request.request_id,
        }
    }

    /// The name of the manifest route that matched, e.g. `"create-todo"`:
    /// its `name`, or the one derived from its method and path
    /// (`POST /todos/{id}/done` is `"post-todos-id-done"`). [`routes!`]
    /// dispatches on it.
    ///
    /// [`routes!`]: crate::routes
    ///
    /// ```no_run
    /// # fn f(req: sluice_sdk::Request) {
    /// let creating = req.route() == "create-todo";
    /// # }
    /// ```
    pub fn route(&self) -> &str {
        &self.route
    }

    /// That route's path pattern in the manifest, without the tenant, e.g.
    /// `"/todos/{id}"`.
    ///
    /// ```no_run
    /// # fn f(req: sluice_sdk::Request) {
    /// let by_id = req.pattern().ends_with("/{id}");
    /// # }
    /// ```
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The upper-case HTTP method, e.g. `"POST"`.
    ///
    /// ```no_run
    /// # fn f(req: sluice_sdk::Request) {
    /// let creating = req.method() == "POST";
    /// # }
    /// ```
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The request path, without the query string.
    ///
    /// ```no_run
    /// # fn f(req: sluice_sdk::Request) {
    /// let last = req.path().rsplit('/').next();
    /// # }
    /// ```
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The parameter the route pattern captured under `name`: for a route
    /// `/todos/{id}`, `param("id")`.
    ///
    /// ```no_run
    /// # use sluice_sdk::Error;
    /// # fn f(req: sluice_sdk::Request) -> Result<(), Error> {
    /// let id = req.param("id").ok_or_else(|| Error::bad_request("missing id"))?;
    /// # Ok(()) }
    /// ```
    pub fn param(&self, name: &str) -> Option<&str> {
        find(&self.params, |key| key == name)
    }

    /// Every parameter the route pattern captured, in pattern order.
    ///
    /// ```no_run
    /// # fn f(req: sluice_sdk::Request) {
    /// for (name, value) in req.params() {
    ///     println!("{name} = {value}");
    /// }
    /// # }
    /// ```
    pub fn params(&self) -> impl Iterator<Item = (&str, &str)> {
        pairs(&self.params)
    }

    /// The first value of the query string parameter `name`, decoded.
    ///
    /// ```no_run
    /// # fn f(req: sluice_sdk::Request) {
    /// let limit: u32 = req.query("limit").and_then(|l| l.parse().ok()).unwrap_or(50);
    /// # }
    /// ```
    pub fn query(&self, name: &str) -> Option<&str> {
        find(&self.query, |key| key == name)
    }

    /// Every query string pair, decoded, in the order the client sent them.
    ///
    /// ```no_run
    /// # fn f(req: sluice_sdk::Request) {
    /// let tags: Vec<&str> = req.query_pairs().filter(|(k, _)| *k == "tag").map(|(_, v)| v).collect();
    /// # }
    /// ```
    pub fn query_pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        pairs(&self.query)
    }

    /// The first value of the header `name`, compared case-insensitively.
    ///
    /// The host removes `authorization` and hop-by-hop headers before the
    /// handler sees the request; the caller's identity is in [`Request::claims`].
    ///
    /// ```no_run
    /// # fn f(req: sluice_sdk::Request) {
    /// let agent = req.header("User-Agent").unwrap_or("unknown");
    /// # }
    /// ```
    pub fn header(&self, name: &str) -> Option<&str> {
        find(&self.headers, |key| key.eq_ignore_ascii_case(name))
    }

    /// Every header, with lower-case names, in the order the client sent them.
    ///
    /// ```no_run
    /// # fn f(req: sluice_sdk::Request) {
    /// let count = req.headers().count();
    /// # }
    /// ```
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        pairs(&self.headers)
    }

    /// The raw body; empty when the request had none, and on a route with
    /// `body = "raw"`, whose body the host keeps as an upload instead (see
    /// [`blobs::upload`](crate::blobs::upload)).
    ///
    /// ```no_run
    /// # fn f(req: sluice_sdk::Request) {
    /// let size = req.body().len();
    /// # }
    /// ```
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The body parsed as JSON into `T`.
    ///
    /// On a route with a `schema` the host has already checked the body
    /// against it, so `T` only has to match the schema. A body that does not
    /// parse into `T` is [`Error::BadRequest`].
    ///
    /// ```no_run
    /// # use sluice_sdk::Error;
    /// #[derive(serde::Deserialize)]
    /// struct NewPost { text: String }
    ///
    /// # fn f(req: sluice_sdk::Request) -> Result<(), Error> {
    /// let post: NewPost = req.json()?;
    /// # Ok(()) }
    /// ```
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body)
            .map_err(|err| Error::bad_request(format!("invalid request body: {err}")))
    }

    /// The caller's verified claims; `None` on a route with `auth = "public"`.
    ///
    /// ```no_run
    /// # use sluice_sdk::Error;
    /// # fn f(req: sluice_sdk::Request) -> Result<(), Error> {
    /// let user = req.claims().ok_or_else(|| Error::forbidden("login required"))?;
    /// println!("called by {}", user.subject);
    /// # Ok(()) }
    /// ```
    pub fn claims(&self) -> Option<&Claims> {
        self.claims.as_ref()
    }

    /// The id the host gave this request, unique per request. The client sees
    /// it in the `x-request-id` response header, and the host logs it; it also
    /// makes a good document key.
    ///
    /// ```no_run
    /// # fn f(req: sluice_sdk::Request) {
    /// let key = format!("posts/{}", req.request_id());
    /// # }
    /// ```
    pub fn request_id(&self) -> &str {
        &self.request_id
    }
}

fn find(fields: &[(String, String)], matches: impl Fn(&str) -> bool) -> Option<&str> {
    fields
        .iter()
        .find(|(key, _)| matches(key))
        .map(|(_, value)| value.as_str())
}

fn pairs(fields: &[(String, String)]) -> impl Iterator<Item = (&str, &str)> {
    fields
        .iter()
        .map(|(key, value)| (key.as_str(), value.as_str()))
}

/// The verified identity behind a request, from the token the host checked.
///
/// ```no_run
/// # use sluice_sdk::{Claims, Error};
/// fn require_admin(user: &Claims) -> Result<(), Error> {
///     if user.has_role("admin") {
///         Ok(())
///     } else {
///         Err(Error::forbidden(format!("{} is not an admin", user.subject)))
///     }
/// }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    /// Who is calling: the token's `sub` claim.
    pub subject: String,
    /// The token's tenant; always the function's own tenant.
    pub tenant: String,
    /// The token's roles; empty when it has none.
    pub roles: Vec<String>,
    all: Map<String, Value>,
}

impl Claims {
    fn from_wit(claims: crate::wit::sluice::function::types::Claims) -> Self {
        // The host sends the token's claims as a JSON object; anything else
        // would be a host bug, and reads as "no further claims".
        let all = match serde_json::from_str(&claims.all) {
            Ok(Value::Object(all)) => all,
            _ => Map::new(),
        };
        Self {
            subject: claims.subject,
            tenant: claims.tenant,
            roles: claims.roles,
            all,
        }
    }

    /// For a route with `auth = { webhook = … }`: the signature scheme the
    /// host verified the call with (`standard`, `stripe` or `github`);
    /// `None` for a caller with a token. The subject is then
    /// `webhook:<scheme>`, and `all()["webhook"]` also holds the sender's
    /// delivery `id` and signed `timestamp` when it gives them.
    ///
    /// ```no_run
    /// # fn f(caller: &sluice_sdk::Claims) {
    /// let from_stripe = caller.webhook() == Some("stripe");
    /// # }
    /// ```
    pub fn webhook(&self) -> Option<&str> {
        self.all.get("webhook")?.get("scheme")?.as_str()
    }

    /// Whether the token grants `role`.
    ///
    /// ```no_run
    /// # fn f(user: &sluice_sdk::Claims) {
    /// let sees_everything = user.has_role("admin");
    /// # }
    /// ```
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// Every claim of the token, including `sub`, `exp` and any custom ones.
    ///
    /// ```no_run
    /// # fn f(user: &sluice_sdk::Claims) {
    /// let expires = user.all().get("exp").and_then(|exp| exp.as_u64());
    /// # }
    /// ```
    pub fn all(&self) -> &Map<String, Value> {
        &self.all
    }

    /// The claim `name` as a `T`; `None` if the token has no such claim or
    /// it is not a `T`.
    ///
    /// ```no_run
    /// # fn f(user: &sluice_sdk::Claims) {
    /// let email: Option<String> = user.get("email");
    /// # }
    /// ```
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Option<T> {
        self.all
            .get(name)
            .and_then(|value| T::deserialize(value).ok())
    }
}

/// What a handler answers when it succeeds.
///
/// The host adds `content-length`, hop-by-hop headers and `x-request-id`.
///
/// ```no_run
/// use sluice_sdk::{Error, Response};
///
/// fn created(id: &str) -> Result<Response, Error> {
///     Ok(Response::json(201, &serde_json::json!({ "id": id }))?
///         .with_header("location", format!("/demo/todos/{id}")))
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    /// A response with `status` (`200..=599`; the host answers 502 for any other), no headers and an empty body.
    ///
    /// ```no_run
    /// # use sluice_sdk::Response;
    /// let accepted = Response::new(202);
    /// ```
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// `value` serialized as JSON, with `content-type: application/json`.
    ///
    /// Fails with [`Error::Internal`] if `value` cannot be serialized (a map
    /// with non-string keys, say): that is the function's fault, not the
    /// caller's.
    ///
    /// ```no_run
    /// # use sluice_sdk::{Error, Response};
    /// # fn f() -> Result<Response, Error> {
    /// Response::json(200, &vec!["a", "b"])
    /// # }
    /// ```
    pub fn json<T: Serialize + ?Sized>(status: u16, value: &T) -> Result<Self, Error> {
        Ok(Self::new(status)
            .with_header("content-type", "application/json")
            .with_body(serde_json::to_vec(value)?))
    }

    /// `201 Created` with `value` as JSON.
    ///
    /// ```no_run
    /// # use sluice_sdk::{Error, Response};
    /// # fn f() -> Result<Response, Error> {
    /// Response::created(&serde_json::json!({ "id": "42" }))
    /// # }
    /// ```
    pub fn created<T: Serialize + ?Sized>(value: &T) -> Result<Self, Error> {
        Self::json(status::CREATED, value)
    }

    /// `text` as the body, with `content-type: text/plain; charset=utf-8`.
    ///
    /// ```no_run
    /// # use sluice_sdk::Response;
    /// let pong = Response::text(200, "pong");
    /// ```
    pub fn text(status: u16, text: impl Into<String>) -> Self {
        Self::new(status)
            .with_header("content-type", "text/plain; charset=utf-8")
            .with_body(text.into())
    }

    /// `204 No Content`.
    ///
    /// ```no_run
    /// # use sluice_sdk::{Error, Response};
    /// # fn f() -> Result<Response, Error> {
    /// Ok(Response::no_content())
    /// # }
    /// ```
    pub fn no_content() -> Self {
        Self::new(204)
    }

    /// `200` with the committed blob `name` as the body, streamed by the
    /// host: the handler never holds its bytes.
    ///
    /// The host looks the blob up after the invocation commits, so it may be
    /// one the handler just stored. It sets `content-length`, `etag`,
    /// `accept-ranges` and, unless the handler set one, `content-type` (the
    /// blob's), and answers `Range` requests with 206 and `If-None-Match`
    /// with 304. Other headers set with [`Response::with_header`]
    /// (`content-disposition`, `cache-control`) are sent as they are. Leave
    /// the body empty: the host refuses a blob response with a body (502). A
    /// blob that does not exist is a 404 problem, `blob-not-found`.
    ///
    /// ```no_run
    /// # use sluice_sdk::Response;
    /// let download = Response::blob("reports/2026.pdf")
    ///     .with_header("content-disposition", "attachment; filename=\"2026.pdf\"");
    /// ```
    pub fn blob(name: &str) -> Self {
        // Percent-encoded: a header value cannot carry every string a blob
        // name may be.
        Self::new(200).with_header(
            BLOB_HEADER,
            utf8_percent_encode(name, BLOB_NAME).to_string(),
        )
    }

    /// Sets the header `name` to `value`, replacing any value it had.
    ///
    /// ```no_run
    /// # use sluice_sdk::Response;
    /// let cached = Response::text(200, "static").with_header("cache-control", "max-age=60");
    /// ```
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let name = name.into();
        self.headers
            .retain(|(existing, _)| !existing.eq_ignore_ascii_case(&name));
        self.headers.push((name, value.into()));
        self
    }

    /// Replaces the body. Set `content-type` with [`Response::with_header`].
    ///
    /// ```no_run
    /// # use sluice_sdk::Response;
    /// let csv = Response::new(200)
    ///     .with_header("content-type", "text/csv")
    ///     .with_body("id,title\n1,milk\n");
    /// ```
    #[must_use]
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The HTTP status.
    ///
    /// ```no_run
    /// # use sluice_sdk::Response;
    /// assert_eq!(Response::no_content().status(), 204);
    /// ```
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The value of the header `name`, compared case-insensitively.
    ///
    /// ```no_run
    /// # use sluice_sdk::Response;
    /// let response = Response::text(200, "hi");
    /// assert_eq!(response.header("Content-Type"), Some("text/plain; charset=utf-8"));
    /// ```
    pub fn header(&self, name: &str) -> Option<&str> {
        find(&self.headers, |key| key.eq_ignore_ascii_case(name))
    }

    /// The body.
    ///
    /// ```no_run
    /// # use sluice_sdk::Response;
    /// assert_eq!(Response::text(200, "hi").body(), b"hi");
    /// ```
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    pub(crate) fn into_wit(self) -> wit::Response {
        wit::Response {
            status: self.status,
            headers: self.headers,
            body: self.body,
        }
    }
}

/// A failure the handler answers with on purpose, one variant per HTTP status.
///
/// The host turns it into an `application/problem+json` response and commits
/// nothing the handler staged. Every SDK call returns this type or one that
/// converts into it, so `?` works throughout a handler.
///
/// ```no_run
/// use sluice_sdk::{documents::Collection, Error};
///
/// fn title(todos: &Collection<String>, key: &str) -> Result<String, Error> {
///     let todo = todos.get(key)?.ok_or_else(|| Error::not_found("no such todo"))?;
///     Ok(todo.value)
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// 400: the request makes no sense to the function.
    BadRequest(String),
    /// 401: the caller must authenticate (again) for this.
    Unauthorized(String),
    /// 403: the caller may not do this.
    Forbidden(String),
    /// 404: the thing asked for does not exist.
    NotFound(String),
    /// 409: the request conflicts with the current state.
    Conflict(String),
    /// 500: the function failed.
    Internal(String),
    /// Any status 400..=599 with a problem type of the function's own; see
    /// [`Error::problem`].
    Problem {
        /// The HTTP status.
        status: u16,
        /// The problem's `type`: a short name or an absolute URI.
        kind: String,
        /// Its `title`, the same for every problem of this kind.
        title: String,
        /// Its `detail`: this occurrence, shown to the client.
        detail: String,
    },
}

impl Error {
    /// 401: the caller must authenticate (again) for this, e.g. a password
    /// the function checks itself was wrong.
    ///
    /// ```no_run
    /// # use sluice_sdk::Error;
    /// let err = Error::unauthorized("the share link's password is wrong");
    /// ```
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::Unauthorized(message.into())
    }

    /// A problem of the function's own: `status` (400..=599), a `kind`
    /// clients can tell apart (a short kebab-case name, which the host
    /// answers as `urn:sluice:problem:fn:<kind>`, or an absolute URI kept
    /// as it is), a `title` the same for every occurrence, and the
    /// `detail` of this one.
    ///
    /// ```no_run
    /// # use sluice_sdk::{status, Error};
    /// let err = Error::problem(
    ///     status::UNPROCESSABLE_CONTENT,
    ///     "out-of-stock",
    ///     "Out of stock",
    ///     "only 2 left of item 17",
    /// );
    /// ```
    pub fn problem(
        status: u16,
        kind: impl Into<String>,
        title: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Self::Problem {
            status,
            kind: kind.into(),
            title: title.into(),
            detail: detail.into(),
        }
    }

    /// 400: the request makes no sense to the function.
    ///
    /// ```no_run
    /// # use sluice_sdk::Error;
    /// let err = Error::bad_request("`limit` must be a number");
    /// ```
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest(message.into())
    }

    /// 403: the caller may not do this.
    ///
    /// ```no_run
    /// # use sluice_sdk::Error;
    /// let err = Error::forbidden("only members may post");
    /// ```
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::Forbidden(message.into())
    }

    /// 404: the thing asked for does not exist.
    ///
    /// ```no_run
    /// # use sluice_sdk::Error;
    /// let err = Error::not_found("no such channel");
    /// ```
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::NotFound(message.into())
    }

    /// 409: the request conflicts with the current state.
    ///
    /// ```no_run
    /// # use sluice_sdk::Error;
    /// let err = Error::conflict("channel already exists");
    /// ```
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::Conflict(message.into())
    }

    /// 500: the function failed.
    ///
    /// ```no_run
    /// # use sluice_sdk::Error;
    /// let err = Error::internal("index and document disagree");
    /// ```
    pub fn internal(message: impl Into<String>) -> Self {
        Self::Internal(message.into())
    }

    /// The message the error was made with.
    ///
    /// ```no_run
    /// # use sluice_sdk::Error;
    /// assert_eq!(Error::not_found("gone").message(), "gone");
    /// ```
    pub fn message(&self) -> &str {
        match self {
            Self::BadRequest(message)
            | Self::Unauthorized(message)
            | Self::Forbidden(message)
            | Self::NotFound(message)
            | Self::Conflict(message)
            | Self::Internal(message)
            | Self::Problem {
                detail: message, ..
            } => message,
        }
    }

    pub(crate) fn into_wit(self) -> wit::Error {
        match self {
            Self::BadRequest(message) => wit::Error::BadRequest(message),
            Self::Unauthorized(message) => wit::Error::Unauthorized(message),
            Self::Forbidden(message) => wit::Error::Forbidden(message),
            Self::NotFound(message) => wit::Error::NotFound(message),
            Self::Conflict(message) => wit::Error::Conflict(message),
            Self::Internal(message) => wit::Error::Internal(message),
            Self::Problem {
                status,
                kind,
                title,
                detail,
            } => wit::Error::Problem(crate::wit::sluice::function::types::Problem {
                status,
                kind,
                title,
                detail,
            }),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            Self::BadRequest(_) => "bad request",
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not found",
            Self::Conflict(_) => "conflict",
            Self::Internal(_) => "internal error",
            Self::Problem { kind, .. } => kind,
        };
        write!(f, "{kind}: {}", self.message())
    }
}

impl std::error::Error for Error {}

/// Serializing is the function's own business, so a failure is a 500.
/// (Parsing the request is the caller's: [`Request::json`] answers 400.)
impl From<serde_json::Error> for Error {
    fn from(err: serde_json::Error) -> Self {
        Self::internal(format!("JSON serialization failed: {err}"))
    }
}

/// HTTP status codes by name, for [`Response::new`], [`Response::json`]
/// and [`Error::problem`].
pub mod status {
    /// 200 OK.
    pub const OK: u16 = 200;
    /// 201 Created.
    pub const CREATED: u16 = 201;
    /// 202 Accepted: taken on, done later (by a consumer, say).
    pub const ACCEPTED: u16 = 202;
    /// 204 No Content.
    pub const NO_CONTENT: u16 = 204;
    /// 301 Moved Permanently.
    pub const MOVED_PERMANENTLY: u16 = 301;
    /// 302 Found.
    pub const FOUND: u16 = 302;
    /// 303 See Other.
    pub const SEE_OTHER: u16 = 303;
    /// 304 Not Modified.
    pub const NOT_MODIFIED: u16 = 304;
    /// 307 Temporary Redirect.
    pub const TEMPORARY_REDIRECT: u16 = 307;
    /// 400 Bad Request.
    pub const BAD_REQUEST: u16 = 400;
    /// 401 Unauthorized.
    pub const UNAUTHORIZED: u16 = 401;
    /// 402 Payment Required.
    pub const PAYMENT_REQUIRED: u16 = 402;
    /// 403 Forbidden.
    pub const FORBIDDEN: u16 = 403;
    /// 404 Not Found.
    pub const NOT_FOUND: u16 = 404;
    /// 409 Conflict.
    pub const CONFLICT: u16 = 409;
    /// 410 Gone.
    pub const GONE: u16 = 410;
    /// 412 Precondition Failed.
    pub const PRECONDITION_FAILED: u16 = 412;
    /// 422 Unprocessable Content.
    pub const UNPROCESSABLE_CONTENT: u16 = 422;
    /// 423 Locked.
    pub const LOCKED: u16 = 423;
    /// 429 Too Many Requests.
    pub const TOO_MANY_REQUESTS: u16 = 429;
    /// 500 Internal Server Error.
    pub const INTERNAL_SERVER_ERROR: u16 = 500;
    /// 501 Not Implemented.
    pub const NOT_IMPLEMENTED: u16 = 501;
    /// 503 Service Unavailable.
    pub const SERVICE_UNAVAILABLE: u16 = 503;
}

/// What a route's function may return besides a [`Response`]: `Json(value)`
/// (200 with `value` as JSON), `(status, Json(value))`, a `String` or
/// `&'static str` (200, plain text), or `()` (204).
///
/// ```no_run
/// use serde::Serialize;
/// use sluice_sdk::{Error, Json, Request};
///
/// #[derive(Serialize)]
/// struct Count {
///     count: u64,
/// }
///
/// fn count(_req: Request) -> Result<Json<Count>, Error> {
///     Ok(Json(Count { count: 3 }))
/// }
/// ```
pub trait IntoResponse {
    /// The response; fails only when a value cannot be serialized.
    fn into_response(self) -> Result<Response, Error>;
}

/// A value answered as JSON: 200, or the status paired with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Json<T>(pub T);

impl IntoResponse for Response {
    fn into_response(self) -> Result<Response, Error> {
        Ok(self)
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Result<Response, Error> {
        Response::json(status::OK, &self.0)
    }
}

impl<T: Serialize> IntoResponse for (u16, Json<T>) {
    fn into_response(self) -> Result<Response, Error> {
        Response::json(self.0, &self.1.0)
    }
}

impl IntoResponse for String {
    fn into_response(self) -> Result<Response, Error> {
        Ok(Response::text(status::OK, self))
    }
}

impl IntoResponse for &'static str {
    fn into_response(self) -> Result<Response, Error> {
        Ok(Response::text(status::OK, self))
    }
}

impl IntoResponse for () {
    fn into_response(self) -> Result<Response, Error> {
        Ok(Response::no_content())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wit::sluice::function::types;

    fn pair(name: &str, value: &str) -> (String, String) {
        (name.to_owned(), value.to_owned())
    }

    fn request(body: &str, claims: Option<types::Claims>) -> Request {
        Request::from_wit(types::Request {
            route: "post-echo-a".to_owned(),
            pattern: "/echo/{a}".to_owned(),
            method: "POST".to_owned(),
            path: "/acme/echo/x".to_owned(),
            params: vec![pair("a", "x")],
            query: vec![pair("tag", "1"), pair("tag", "2")],
            headers: vec![pair("content-type", "application/json")],
            body: body.as_bytes().to_vec(),
            claims,
            request_id: "r1".to_owned(),
        })
    }

    fn claims(all: &str) -> types::Claims {
        types::Claims {
            subject: "alice".to_owned(),
            tenant: "acme".to_owned(),
            roles: vec!["editor".to_owned()],
            all: all.to_owned(),
        }
    }

    #[test]
    fn lookups_find_the_first_match_and_headers_ignore_case() {
        let req = request("", None);
        assert_eq!(req.param("a"), Some("x"));
        assert_eq!(req.query("tag"), Some("1"));
        assert_eq!(req.query_pairs().count(), 2);
        assert_eq!(req.header("Content-Type"), Some("application/json"));
        assert_eq!(req.header("accept"), None);
        assert!(req.claims().is_none());
    }

    #[test]
    fn a_body_that_does_not_parse_is_a_bad_request() {
        let err = request("{", None).json::<Value>().expect_err("must fail");
        assert!(matches!(err, Error::BadRequest(_)), "{err:?}");
        assert_eq!(
            request(r#"{"n":1}"#, None).json::<Value>(),
            Ok(serde_json::json!({"n": 1}))
        );
    }

    #[test]
    fn claims_parse_all_and_tolerate_garbage() {
        let req = request("", Some(claims(r#"{"sub":"alice","email":"a@x"}"#)));
        let user = req.claims().expect("claims");
        assert!(user.has_role("editor"));
        assert!(!user.has_role("admin"));
        assert_eq!(user.get::<String>("email").as_deref(), Some("a@x"));
        assert_eq!(user.get::<u64>("email"), None);
        assert_eq!(user.all().len(), 2);

        let req = request("", Some(claims("not json")));
        assert!(req.claims().expect("claims").all().is_empty());
    }

    #[test]
    fn responses_set_content_type_and_replace_headers() {
        let json = Response::json(201, &serde_json::json!({"id": 1})).expect("serializes");
        assert_eq!(json.status(), 201);
        assert_eq!(json.header("content-type"), Some("application/json"));
        assert_eq!(json.body(), br#"{"id":1}"#);

        let text = Response::text(200, "hi").with_header("Content-Type", "text/html");
        assert_eq!(
            text.into_wit().headers,
            vec![pair("Content-Type", "text/html")]
        );
        assert_eq!(Response::no_content().status(), 204);
    }

    #[test]
    fn a_blob_response_names_the_blob_percent_encoded() {
        let plain = Response::blob("alice/report-2026_v1.0~final.pdf");
        assert_eq!(plain.status(), 200);
        assert_eq!(
            plain.header("x-sluice-blob"),
            Some("alice/report-2026_v1.0~final.pdf")
        );
        assert!(plain.body().is_empty());

        let odd = Response::blob("a b%/naïve\n\"x\";?#+&=\u{0}");
        assert_eq!(
            odd.header("x-sluice-blob"),
            Some("a%20b%25/na%C3%AFve%0A%22x%22%3B%3F%23%2B%26%3D%00")
        );
        // `..` stays readable: it is only a name, the host maps it to a file of its own.
        assert_eq!(
            Response::blob("../etc/passwd").header("x-sluice-blob"),
            Some("../etc/passwd")
        );
    }

    #[test]
    fn a_blob_response_keeps_the_headers_chained_onto_it() {
        let response = Response::blob("f.pdf")
            .with_header("content-disposition", "inline; filename=\"f.pdf\"")
            .with_header("cache-control", "private");
        assert_eq!(
            response.into_wit().headers,
            vec![
                pair("x-sluice-blob", "f.pdf"),
                pair("content-disposition", "inline; filename=\"f.pdf\""),
                pair("cache-control", "private"),
            ]
        );
    }

    #[test]
    fn errors_map_one_to_one_onto_the_wit_variants() {
        assert!(matches!(
            Error::bad_request("m").into_wit(),
            wit::Error::BadRequest(m) if m == "m"
        ));
        assert!(matches!(
            Error::forbidden("m").into_wit(),
            wit::Error::Forbidden(_)
        ));
        assert!(matches!(
            Error::not_found("m").into_wit(),
            wit::Error::NotFound(_)
        ));
        assert!(matches!(
            Error::conflict("m").into_wit(),
            wit::Error::Conflict(_)
        ));
        assert!(matches!(
            Error::internal("m").into_wit(),
            wit::Error::Internal(_)
        ));
        assert_eq!(
            Error::not_found("no todo 7").to_string(),
            "not found: no todo 7"
        );
    }
}
