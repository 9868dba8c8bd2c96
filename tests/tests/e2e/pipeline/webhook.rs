//! Webhook routes: `auth = { webhook = … }` checks the sender's HMAC
//! signature over the body as sent (Stripe, GitHub and Standard Webhooks
//! formats), with the secret from the tenant's configuration, before the
//! body is validated or the function runs; a stale timestamp is refused,
//! and the function sees which scheme verified the call.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Result;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::Method;
use ring::hmac;
use serde_json::{Value, json};
use sluice_tests::{
    HS_SECRET, Reply, TestHost, admin, claims, echo_tenant, operator_key, sign_hs256,
};

const MANIFEST: &str = r#"
[[routes]]
name = "stripe"
method = "POST"
path = "/hooks/stripe"
auth = { webhook = { scheme = "stripe", secret = "STRIPE_WEBHOOK_SECRET" } }

[[routes]]
name = "standard"
method = "POST"
path = "/hooks/standard"
auth = { webhook = { scheme = "standard", secret = "HOOK_SECRET", tolerance_s = 60 } }

[[routes]]
name = "github"
method = "POST"
path = "/hooks/github"
auth = { webhook = { scheme = "github", secret = "GH_SECRET" } }

[[routes]]
name = "with-token"
method = "POST"
path = "/echo/{a}"
auth = "authenticated"
"#;

const STRIPE_SECRET: &str = "whsec_stripe_e2e_secret";
const EVENT: &str = r#"{"id":"evt_1","type":"invoice.paid"}"#;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn mac(key: &[u8], content: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), content)
        .as_ref()
        .to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `stripe-signature` for `body` signed at `t` with `secret`.
fn stripe_signature(secret: &str, t: i64, body: &str) -> String {
    format!(
        "t={t},v1={}",
        hex(&mac(secret.as_bytes(), format!("{t}.{body}").as_bytes()))
    )
}

async fn post(
    host: &TestHost,
    path: &str,
    headers: &[(&str, String)],
    body: &str,
) -> Result<Reply> {
    let mut req = host
        .client
        .post(host.url(path))
        .header("content-type", "application/json")
        .body(body.to_owned());
    for (name, value) in headers {
        req = req.header(*name, value);
    }
    host.send(req).await
}

async fn set_secret(
    host: &TestHost,
    key: &str,
    name: &str,
    value: &str,
    function: Option<&str>,
) -> Result<()> {
    let body = json!({ "value": value, "secret": true, "function": function });
    let set = admin(
        host,
        Method::PUT,
        &format!("/v1/tenants/hooks/config/{name}"),
        Some(key),
        Some(body),
    )
    .await?;
    assert_eq!(set.status, 200, "{}", set.body);
    Ok(())
}

fn secrets_key(config: &mut sluice_host::config::Config) {
    // Hosts on PostgreSQL need one; on SQLite it overrides the key file.
    config.secrets.key = Some("6q3qkVpX7yGIEtV0gqXlAfY6w2pbqmoAq5lUF9uNvXo=".into());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_signed_calls_are_verified_before_anything_else() -> Result<()> {
    let host = TestHost::start_with(tempfile::TempDir::new()?, secrets_key).await?;
    let key = operator_key(&host)?;
    let deployed = echo_tenant(&host, &key, "hooks", MANIFEST).await?;
    assert!(deployed.status.success());
    let t = now();
    let signed = [(
        "stripe-signature",
        stripe_signature(STRIPE_SECRET, t, EVENT),
    )];

    // The operator has not set the secret yet: the host's fault, said so.
    let unset = post(&host, "/hooks/hooks/stripe", &signed, EVENT).await?;
    unset.assert_problem(500);
    assert!(
        unset.body["type"]
            .as_str()
            .is_some_and(|t| t.ends_with("webhook-secret-missing"))
    );

    set_secret(&host, &key, "STRIPE_WEBHOOK_SECRET", STRIPE_SECRET, None).await?;
    let ok = post(&host, "/hooks/hooks/stripe", &signed, EVENT).await?;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.body["claims"]["subject"], "webhook:stripe");
    assert_eq!(ok.body["claims"]["all"]["webhook"]["scheme"], "stripe");
    assert_eq!(ok.body["claims"]["all"]["webhook"]["timestamp"], t);
    assert_eq!(ok.body["claims"]["roles"], json!([]));
    assert_eq!(ok.body["body"]["type"], "invoice.paid");

    let refused = |reply: &Reply, says: &str| {
        reply.assert_problem(401);
        assert!(
            reply.body["type"]
                .as_str()
                .is_some_and(|t| t.ends_with("webhook-unverified")),
            "{}",
            reply.body
        );
        assert!(
            reply.body["detail"]
                .as_str()
                .is_some_and(|d| d.contains(says)),
            "{}",
            reply.body
        );
        assert_eq!(reply.header("www-authenticate"), "");
    };
    // The body changed after signing.
    let tampered = EVENT.replace("paid", "void");
    refused(
        &post(&host, "/hooks/hooks/stripe", &signed, &tampered).await?,
        "does not match",
    );
    // Signed with another secret.
    let forged = [(
        "stripe-signature",
        stripe_signature("whsec_guess", t, EVENT),
    )];
    refused(
        &post(&host, "/hooks/hooks/stripe", &forged, EVENT).await?,
        "does not match",
    );
    // A capture replayed after the tolerance (300 s by default).
    let old = t - 400;
    let replayed = [(
        "stripe-signature",
        stripe_signature(STRIPE_SECRET, old, EVENT),
    )];
    refused(
        &post(&host, "/hooks/hooks/stripe", &replayed, EVENT).await?,
        "at most 300 s",
    );
    // No signature; and a bearer token does not stand in for one.
    refused(
        &post(&host, "/hooks/hooks/stripe", &[], EVENT).await?,
        "no stripe-signature header",
    );
    let token = sign_hs256(&claims("mallory", "hooks", &[]), HS_SECRET.as_bytes());
    let bearer = [("authorization", format!("Bearer {token}"))];
    refused(
        &post(&host, "/hooks/hooks/stripe", &bearer, EVENT).await?,
        "no stripe-signature header",
    );
    // Unsigned garbage is refused as unsigned, not as malformed JSON:
    // nothing about the body is looked at before the signature.
    refused(
        &post(&host, "/hooks/hooks/stripe", &[], "{not json").await?,
        "no stripe-signature header",
    );
    // Signed malformed JSON reaches validate, and is refused there.
    let signed_garbage = [(
        "stripe-signature",
        stripe_signature(STRIPE_SECRET, t, "{not json"),
    )];
    post(&host, "/hooks/hooks/stripe", &signed_garbage, "{not json")
        .await?
        .assert_problem(400);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_webhooks_and_github_signatures_are_verified() -> Result<()> {
    let host = TestHost::start_with(tempfile::TempDir::new()?, secrets_key).await?;
    let key = operator_key(&host)?;
    echo_tenant(&host, &key, "hooks", MANIFEST).await?;

    // Standard Webhooks: a whsec_ secret is base64; set for this function alone.
    let raw = b"standard-webhooks-secret-bytes!!";
    set_secret(
        &host,
        &key,
        "HOOK_SECRET",
        &format!("whsec_{}", STANDARD.encode(raw)),
        Some("echo"),
    )
    .await?;
    let t = now();
    let sig = STANDARD.encode(mac(raw, format!("msg_2.{t}.{EVENT}").as_bytes()));
    let headers = [
        ("webhook-id", "msg_2".to_owned()),
        ("webhook-timestamp", t.to_string()),
        ("webhook-signature", format!("v1,{sig}")),
    ];
    let ok = post(&host, "/hooks/hooks/standard", &headers, EVENT).await?;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.body["claims"]["subject"], "webhook:standard");
    assert_eq!(ok.body["claims"]["all"]["webhook"]["id"], "msg_2");
    // This route's tolerance is 60 s.
    let late = t - 90;
    let sig = STANDARD.encode(mac(raw, format!("msg_2.{late}.{EVENT}").as_bytes()));
    let stale = [
        ("webhook-id", "msg_2".to_owned()),
        ("webhook-timestamp", late.to_string()),
        ("webhook-signature", format!("v1,{sig}")),
    ];
    let refused = post(&host, "/hooks/hooks/standard", &stale, EVENT).await?;
    refused.assert_problem(401);
    assert!(
        refused.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("at most 60 s"))
    );

    // GitHub: the body alone, no timestamp.
    set_secret(&host, &key, "GH_SECRET", "gh-e2e-secret", None).await?;
    let gh = [
        (
            "x-hub-signature-256",
            format!("sha256={}", hex(&mac(b"gh-e2e-secret", EVENT.as_bytes()))),
        ),
        ("x-github-delivery", "delivery-7".to_owned()),
    ];
    let ok = post(&host, "/hooks/hooks/github", &gh, EVENT).await?;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(
        ok.body["claims"]["all"]["webhook"],
        json!({ "scheme": "github", "id": "delivery-7", "timestamp": null })
    );
    let wrong = [(
        "x-hub-signature-256",
        format!("sha256={}", hex(&mac(b"other", EVENT.as_bytes()))),
    )];
    post(&host, "/hooks/hooks/github", &wrong, EVENT)
        .await?
        .assert_problem(401);

    // A token cannot pass for a webhook: its `webhook` claim is dropped.
    let mut forged = claims("mallory", "hooks", &[]);
    forged["webhook"] = json!({ "scheme": "stripe" });
    let token = sign_hs256(&forged, HS_SECRET.as_bytes());
    let bearer = [("authorization", format!("Bearer {token}"))];
    let echoed = post(&host, "/hooks/echo/x", &bearer, "{}").await?;
    assert_eq!(echoed.status, 200, "{}", echoed.body);
    assert_eq!(echoed.body["claims"]["all"].get("webhook"), None::<&Value>);

    // The tenant's API description says which routes are webhooks.
    let doc = host.get("/hooks/_sluice/openapi.json", None).await?.body;
    let op = &doc["paths"]["/hooks/hooks/stripe"]["post"];
    assert_eq!(
        op["x-sluice-webhook"],
        json!({ "scheme": "stripe", "tolerance_s": 300 })
    );
    assert_eq!(op["security"], json!([]));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_rules_are_checked_at_deploy() -> Result<()> {
    let host = TestHost::start_with(tempfile::TempDir::new()?, secrets_key).await?;
    let key = operator_key(&host)?;
    for (manifest, says) in [
        (
            "[[routes]]\nmethod = \"GET\"\npath = \"/h\"\nauth = { webhook = { scheme = \"stripe\", secret = \"S\" } }\n",
            "needs body = \"json\"",
        ),
        (
            "[[routes]]\nmethod = \"POST\"\npath = \"/h\"\nauth = { webhook = { scheme = \"stripe\", secret = \"not a name\" } }\n",
            "must name a configuration value",
        ),
        (
            "[[routes]]\nmethod = \"POST\"\npath = \"/h\"\nauth = { webhook = { scheme = \"stripe\", secret = \"S\", tolerance_s = 0 } }\n",
            "tolerance_s must be 1 to 86400",
        ),
    ] {
        let refused = echo_tenant(&host, &key, "hooks", manifest).await;
        let said = format!("{refused:?}");
        assert!(
            refused.is_err() && said.contains(says),
            "{manifest}: {said}"
        );
    }
    Ok(())
}
