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
