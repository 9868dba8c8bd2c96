//! Authenticate: 401 for "who are you?", 403 for "not allowed".

use anyhow::Result;
use base64::Engine as _;
use serde_json::json;
use sluice_tests::{
    TestHost, claims, count, read_fixture, sign_es256, sign_hs256, sign_rs256, token,
};

const COUNTER: &str = "/acme/counters/auth";

async fn post_counter(host: &TestHost, token: Option<&str>) -> Result<sluice_tests::Reply> {
    let mut req = host.client.post(host.url(COUNTER));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    host.send(req).await
}

/// No token on an authenticated route: 401 with `www-authenticate: Bearer`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_token_is_401() -> Result<()> {
    let host = TestHost::start().await?;
    let reply = post_counter(&host, None).await?;
    reply.assert_problem(401);
    assert_eq!(reply.header("www-authenticate"), "Bearer");
    host.stop().await?;
    Ok(())
}

/// Bad signatures, expired and not-yet-valid tokens, `alg: none` and
/// algorithm confusion are all 401; valid HS256, RS256 and ES256 tokens pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_verified_tokens_pass() -> Result<()> {
    let host = TestHost::start().await?;
    let good = claims("alice", "acme", &[]);

    let wrong_secret = sign_hs256(&good, b"another-secret-another-secret-0123456789");
    post_counter(&host, Some(&wrong_secret))
        .await?
        .assert_problem(401);

    let mut expired = good.clone();
    expired["exp"] = json!(jsonwebtoken::get_current_timestamp() - 3600);
    let reply = post_counter(
        &host,
        Some(&sign_hs256(&expired, sluice_tests::HS_SECRET.as_bytes())),
    )
    .await?;
    reply.assert_problem(401);
    assert!(
        reply.body["detail"]
            .as_str()
            .unwrap_or("")
            .contains("expired")
    );

    let mut early = good.clone();
    early["nbf"] = json!(jsonwebtoken::get_current_timestamp() + 3600);
    post_counter(
        &host,
        Some(&sign_hs256(&early, sluice_tests::HS_SECRET.as_bytes())),
    )
    .await?
    .assert_problem(401);

    // alg: none, no signature.
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let none = format!(
        "{}.{}.",
        b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
        b64.encode(good.to_string())
    );
    post_counter(&host, Some(&none)).await?.assert_problem(401);

    // HS256 signed with the RSA public key as the secret (key confusion).
    let confused = {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some("rsa".into());
        jsonwebtoken::encode(
            &header,
            &good,
            &jsonwebtoken::EncodingKey::from_secret(&read_fixture("rs256-public.pem")),
        )?
    };
    post_counter(&host, Some(&confused))
        .await?
        .assert_problem(401);

    post_counter(&host, Some("not-a-jwt"))
        .await?
        .assert_problem(401);
    let basic = host
        .send(
            host.client
                .post(host.url(COUNTER))
                .header("authorization", "Basic YTpi"),
        )
        .await?;
    basic.assert_problem(401);

    for valid in [
        token("alice", "acme", &[]),
        sign_rs256(&good),
        sign_es256(&good),
    ] {
        let reply = post_counter(&host, Some(&valid)).await?;
        assert_eq!(reply.status.as_u16(), 200, "body: {}", reply.body);
    }
    host.stop().await?;
    Ok(())
}

/// A valid token of another tenant is 403, and so is a token without the role a route requires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_tenant_and_missing_role_are_403() -> Result<()> {
    let host = TestHost::start().await?;
    let reply = post_counter(&host, Some(&token("mallory", "demo", &["admin"]))).await?;
    reply.assert_problem(403);

    let body = json!({"name": "x", "age": 1});
    let no_role = host
        .post(
            "/acme/echo/a",
            Some(&token("bob", "acme", &["viewer"])),
            &body,
        )
        .await?;
    no_role.assert_problem(403);
    let with_role = host
        .post(
            "/acme/echo/a",
            Some(&token("bob", "acme", &["editor"])),
            &body,
        )
        .await?;
    assert_eq!(with_role.status.as_u16(), 200, "body: {}", with_role.body);

    // The refusal never reached the function; the allowed call did.
    let data = host.stop().await?;
    let sql = "SELECT count(*) FROM invocations WHERE request_id = $1";
    assert_eq!(count(data.path(), sql, &[no_role.request_id()]).await?, 0);
    assert_eq!(count(data.path(), sql, &[with_role.request_id()]).await?, 1);
    Ok(())
}

/// Signs `claims` with the test HS256 secret under `header`.
fn sign_hs256_with(header: jsonwebtoken::Header, claims: &serde_json::Value) -> Result<String> {
    Ok(jsonwebtoken::encode(
        &header,
        claims,
        &jsonwebtoken::EncodingKey::from_secret(sluice_tests::HS_SECRET.as_bytes()),
    )?)
}

/// The `detail` of a 401, checked to be one.
async fn refusal(host: &TestHost, token: &str) -> Result<String> {
    let reply = post_counter(host, Some(token)).await?;
    reply.assert_problem(401);
    Ok(reply.body["detail"].as_str().unwrap_or("").to_owned())
}

/// RFC 7515 and RFC 8725 as classes: a `kid` that names no key is refused
/// (never tried against the key without a `kid`, never echoed back), a
/// `crit` header is refused, an oversized token is refused unread, `sub`
/// must be a non-empty string and `iss` a string, and each refusal says
/// which check failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_headers_and_claims_are_checked_as_the_rfcs_say() -> Result<()> {
    use jsonwebtoken::{Algorithm, Header};
    let host = TestHost::start().await?;
    let good = claims("alice", "acme", &[]);

    // Signed with the secret of the key that has no kid, naming another kid.
    let (long, longer) = ("k".repeat(4_000), "k".repeat(10_000));
    let kids = [
        "' OR 1=1--",
        long.as_str(),
        longer.as_str(),
        "rsa1\0x",
        "../../etc/passwd",
        "ec",
    ];
    for kid in kids {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid.into());
        let detail = refusal(&host, &sign_hs256_with(header, &good)?).await?;
        assert!(!kid.is_empty() && !detail.contains(kid), "{detail}");
        let expected = match kid {
            "ec" => "algorithm",
            // Refused unread, before its header is decoded.
            _ if kid.len() > 8192 => "larger than",
            _ => "unknown key",
        };
        assert!(detail.contains(expected), "kid {kid:.20}: {detail}");
    }

    let mut header = Header::new(Algorithm::HS256);
    header.crit = Some(vec!["x-unknown".into()]);
    let detail = refusal(&host, &sign_hs256_with(header, &good)?).await?;
    assert!(detail.contains("critical"), "{detail}");

    // Validly signed, but past the 8 KiB default: refused unread. Past the
    // 16 KiB header line, the header itself is refused first.
    for size in [7 * 1024, 10 * 1024] {
        let mut big = good.clone();
        big["pad"] = json!("x".repeat(size));
        let detail = refusal(&host, &token_of(&big)).await?;
        assert!(detail.contains("larger than 8192 bytes"), "{detail}");
    }
    for size in [64 * 1024, 270 * 1024] {
        let mut big = good.clone();
        big["pad"] = json!("x".repeat(size));
        post_counter(&host, Some(&token_of(&big)))
            .await?
            .assert_problem(431);
    }

    let mut empty_sub = good.clone();
    empty_sub["sub"] = json!("");
    let detail = refusal(&host, &token_of(&empty_sub)).await?;
    assert!(detail.contains("`sub`"), "{detail}");
    let mut listed_iss = good.clone();
    listed_iss["iss"] = json!(["https://a.example", "https://b.example"]);
    let detail = refusal(&host, &token_of(&listed_iss)).await?;
    assert!(detail.contains("`iss`"), "{detail}");

    let wrong_secret = sign_hs256(&good, b"another-secret-another-secret-0123456789");
    let detail = refusal(&host, &wrong_secret).await?;
    assert!(detail.contains("signature"), "{detail}");
    let detail = refusal(&host, "a.b.c").await?;
    assert!(detail.contains("malformed"), "{detail}");

    // Nothing refused reached the function.
    let data = host.stop().await?;
    let sql = "SELECT count(*) FROM invocations WHERE route LIKE $1";
    assert_eq!(count(data.path(), sql, &["%counters%"]).await?, 0);
    Ok(())
}

fn token_of(claims: &serde_json::Value) -> String {
    sign_hs256(claims, sluice_tests::HS_SECRET.as_bytes())
}

/// `sluice token` puts the configured issuer and audience (the first of
/// each) in its tokens, so a host that requires them accepts them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sluice_token_carries_the_configured_issuer_and_audience() -> Result<()> {
    let data = tempfile::tempdir()?;
    let host = TestHost::start_with(data, |config| {
        config.auth.issuer = Some(vec!["https://id.example".into(), "https://b".into()]);
        config.auth.audience = Some(vec!["sluice".into()]);
    })
    .await?;
    let config = host.data().join("token.toml");
    std::fs::write(
        &config,
        format!(
            "[auth]\nissuer = [\"https://id.example\", \"https://b\"]\naudience = [\"sluice\"]\n\
             [[auth.keys]]\nalgorithm = \"HS256\"\nsecret = \"{}\"\n",
            sluice_tests::HS_SECRET
        ),
    )?;
    let out = sluice_tests::sluice_command(host.data())?
        .arg("--config")
        .arg(&config)
        .args(["token", "--sub", "alice", "--tenant", "acme"])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let minted = String::from_utf8(out.stdout)?.trim().to_owned();
    let reply = post_counter(&host, Some(&minted)).await?;
    assert_eq!(reply.status.as_u16(), 200, "body: {}", reply.body);
    // A token without them is refused by the same host.
    let detail = refusal(&host, &token("alice", "acme", &[])).await?;
    assert!(detail.contains("required claim"), "{detail}");
    host.stop().await?;
    Ok(())
}
