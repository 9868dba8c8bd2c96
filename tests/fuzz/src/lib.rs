//! The fuzz targets' bodies: each takes libFuzzer's bytes, feeds them to one
//! of the host's parsers of untrusted input, and checks what it promises
//! about the result. The binaries in `fuzz_targets/` hand them to libFuzzer
//! (`scripts/fuzz.sh`); `tests/corpus.rs` replays the committed corpora
//! through them on every test run.
//!
//! Several targets split their input at NUL bytes, so a seed can be written
//! by hand: `manifest text \0 schema`, `header \0 claims \0 raw token`.

use std::collections::HashMap;
use std::sync::OnceLock;

use arbitrary::Unstructured;
use bytes::Bytes;
use http::HeaderMap;
use http::header::AUTHORIZATION;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::Value;
use sluice_host::catalog::Schema;
use sluice_host::config::manifest::{AuthRule, Formats, FunctionManifest, Source};
use sluice_host::config::{AuthConfig, KeyConfig};
use sluice_host::pipeline::authenticate::{self, Keyring};
use sluice_host::pipeline::respond::{self, REQUEST_ID, SERVE_BLOB};
use sluice_host::runtime::bindings::Response;

/// A target's body: libFuzzer's bytes in, a panic on a broken promise.
pub type Target = fn(&[u8]);

/// The targets, by the name of their binary and corpus directory.
pub const TARGETS: &[(&str, Target)] = &[
    ("manifest", manifest),
    ("deploy_body", deploy_body),
    ("jwt", jwt),
    ("json_body", json_body),
    ("range", range),
    ("guest_response", guest_response),
];

/// `data` cut at its first `parts - 1` NUL bytes; missing parts are empty.
fn split(data: &[u8], parts: usize) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = data.splitn(parts, |b| *b == 0).collect();
    out.resize(parts, &[]);
    out
}

/// `manifest text \0 schema`: a deploy's `sluice.toml`, every schema file
/// it may name holding the schema bytes. A manifest that parses has its
/// schemas compiled as a deploy would.
pub fn manifest(data: &[u8]) {
    let [text, schema] = split(data, 2)[..] else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let schemas: HashMap<String, Vec<u8>> = [
        "schema.json",
        "schemas/create-todo.json",
        "schemas/update-todo.json",
    ]
    .into_iter()
    .map(|path| (path.to_owned(), schema.to_vec()))
    .collect();
    parse_manifest(text, &schemas);
}

fn parse_manifest(text: &str, schemas: &HashMap<String, Vec<u8>>) {
    let source = Source::Upload {
        tenant: "acme",
        name: "todos",
        schemas,
    };
    let Ok(parsed) = FunctionManifest::parse(text, source) else {
        return;
    };
    assert_eq!(parsed.tenant, "acme", "a deploy's URL names the tenant");
    assert_eq!(parsed.name, "todos", "a deploy's URL names the function");
    for route in &parsed.routes {
        assert!(
            route.manifest.path.starts_with('/'),
            "{}",
            route.manifest.path
        );
        if let Some(schema) = &route.schema
            && let Ok(compiled) = Schema::compile(schema, route.manifest.formats)
        {
            compiled.errors(&Value::Null);
        }
    }
}

/// One current-thread runtime per fuzzing thread, for the async parsers.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    thread_local! {
        static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime");
    }
    RUNTIME.with(|rt| rt.block_on(future))
}

/// `content-type \n chunk size \n body`: a deploy's multipart body, fed
/// in chunks of 1–64 bytes; an upload that parses goes on to the manifest
/// parser with its own schema files.
pub fn deploy_body(data: &[u8]) {
    let mut lines = data.splitn(3, |b| *b == b'\n');
    let content_type = String::from_utf8_lossy(lines.next().unwrap_or_default());
    let chunk = usize::from(lines.next().and_then(|l| l.first()).copied().unwrap_or(64)) % 64 + 1;
    let body = Bytes::copy_from_slice(lines.next().unwrap_or_default());
    let frames: Vec<Result<http_body::Frame<Bytes>, std::convert::Infallible>> = (0..body.len())
        .step_by(chunk)
        .map(|at| {
            Ok(http_body::Frame::data(
                body.slice(at..(at + chunk).min(body.len())),
            ))
        })
        .collect();
    let stream = http_body_util::StreamBody::new(futures_util::stream::iter(frames));
    let limit = 1 << 20;
    match block_on(sluice_host::admin::parse_upload(
        &content_type,
        stream,
        limit,
    )) {
        Ok(upload) => {
            assert!(upload.component.len() as u64 <= limit);
            parse_manifest(&upload.manifest, &upload.schemas);
        }
        Err(problem) => {
            assert!(
                matches!(problem.status, 413 | 415 | 422),
                "{}",
                problem.status
            );
        }
    }
}

const SECRET: &str = "fuzzing-secret-of-32-bytes-or-so";

/// The host's keyring as a deploy with issuer and audience would have it.
fn keyring() -> &'static Keyring {
    static KEYRING: OnceLock<Keyring> = OnceLock::new();
    KEYRING.get_or_init(|| {
        let config = AuthConfig {
            keys: vec![KeyConfig {
                kid: Some("k1".into()),
                algorithm: "HS256".into(),
                secret: Some(SECRET.into()),
                public_key_file: None,
                public_key_pem: None,
            }],
            issuer: Some(vec!["https://issuer.example".into()]),
            audience: Some(vec!["sluice".into()]),
            ..AuthConfig::default()
        };
        Keyring::new(&config).expect("an HS256 keyring")
    })
}

/// `header \0 claims \0 raw`: a token of that header and those claims
/// signed with the host's key (so the claims checks are reached), and
/// `raw` as a bearer token as it comes. A caller let in is of the tenant
/// asked for.
pub fn jwt(data: &[u8]) {
    use base64::Engine as _;
    let [header, claims, raw] = split(data, 3)[..] else {
        return;
    };
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let input = format!("{}.{}", b64.encode(header), b64.encode(claims));
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &key, Algorithm::HS256)
        .expect("HMAC signs anything");
    let signed = format!("{input}.{signature}");
    for token in [signed.as_str(), &String::from_utf8_lossy(raw)] {
        let Ok(value) = http::HeaderValue::from_str(&format!("Bearer {token}")) else {
            continue;
        };
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, value);
        if let Ok(Some(caller)) =
            authenticate::check(keyring(), &AuthRule::default(), "acme", &headers)
        {
            assert_eq!(caller.tenant, "acme");
            assert!(!caller.subject.is_empty(), "an empty sub is refused");
        }
    }
}

/// The todo example's `create-todo.json`, compiled both ways.
fn todo_schemas() -> &'static [Schema; 2] {
    static SCHEMAS: OnceLock<[Schema; 2]> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        let text = include_str!("../../../guest-examples/todo/schemas/create-todo.json");
        let schema: Value = serde_json::from_str(text).expect("the example's schema is JSON");
        [Formats::Annotate, Formats::Assert]
            .map(|formats| Schema::compile(&schema, formats).expect("the schema compiles"))
    })
}

/// A JSON request body as the validate stage reads it: parsed, then
/// checked against a route's schema.
pub fn json_body(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let [annotate, assert] = todo_schemas();
    let lenient = annotate.errors(&value);
    let strict = assert.errors(&value);
    assert!(
        strict.len() >= lenient.len(),
        "asserting formats never accepts more: {lenient:?} vs {strict:?}"
    );
}

/// `Range header \0 blob size`: the byte range served, within the blob.
pub fn range(data: &[u8]) {
    let [header, size] = split(data, 2)[..] else {
        return;
    };
    let header = String::from_utf8_lossy(header);
    let size = std::str::from_utf8(size)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(1000);
    if let Ok(Some((start, end))) = respond::byte_range(&header, size) {
        assert!(start <= end && end < size, "{start}-{end} of {size}");
    }
}

/// Hop-by-hop headers the host frames itself: a function's are dropped.
const FRAMING: &[&str] = &[
    "connection",
    "content-length",
    "transfer-encoding",
    "upgrade",
];

/// A function's response (status, headers, body) as the host converts it
/// before the commit: what it sends is a final status, with valid headers,
/// none of them framing, and the request id.
pub fn guest_response(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let (Ok(status), Ok(headers), Ok(body)) = (
        u.arbitrary::<u16>(),
        u.arbitrary::<Vec<(String, String)>>(),
        u.arbitrary::<Vec<u8>>(),
    ) else {
        return;
    };
    let body_was_empty = body.is_empty();
    let response = Response {
        status,
        headers,
        body,
    };
    let Ok(answer) = respond::success("fuzz-request", response) else {
        return;
    };
    let out = &answer.response;
    assert!((200..=599).contains(&out.status().as_u16()));
    assert_eq!(
        out.headers().get(REQUEST_ID).map(|v| v.as_bytes()),
        Some(&b"fuzz-request"[..])
    );
    assert!(out.headers().get(SERVE_BLOB).is_none());
    for name in FRAMING {
        assert!(
            out.headers().get(*name).is_none(),
            "{name} was passed through"
        );
    }
    if answer.blob.is_some() {
        assert!(body_was_empty);
    }
}
