//! CORS, answered before authentication: a preflight needs no token and
//! never runs the function; actual answers (errors too) carry the headers
//! for an allowed origin and none for another. The rules come from a
//! deployed manifest: `[cors]` for the function, a route's own `cors`, and
//! `cors = false`.

use anyhow::Result;
use reqwest::Method;
use serde_json::Value;
use sluice_tests::{
    Reply, TestHost, admin, deploy_echo, echo_tenant, eventually, operator_key, token,
};

const APP: &str = "https://app.example.com";

const MANIFEST: &str = r#"
[cors]
origins = ["https://app.example.com"]
headers = ["x-trace"]
expose = ["etag"]
max_age = 120

[[routes]]
name = "read"
method = "GET"
path = "/echo/{a}"
auth = "authenticated"

[[routes]]
name = "write"
method = "POST"
path = "/echo/{a}"
auth = "authenticated"
cors = { origins = ["*"] }

[[routes]]
name = "remove"
method = "DELETE"
path = "/echo/{a}"
auth = "authenticated"
cors = false
"#;

/// A host with the echo guest deployed to tenant `web` under [`MANIFEST`].
async fn web() -> Result<(TestHost, String)> {
    let host = TestHost::start().await?;
    let key = operator_key(&host)?;
    echo_tenant(&host, &key, "web", MANIFEST).await?;
    Ok((host, key))
}

fn deploy(host: &TestHost, key: &str, manifest: &str) -> Result<std::process::Output> {
    deploy_echo(host, key, "web", manifest)
}

async fn preflight(
    host: &TestHost,
    method: &str,
    origin: &str,
    headers: Option<&str>,
) -> Result<Reply> {
    let mut req = host
        .client
        .request(Method::OPTIONS, host.url("/web/echo/x"))
        .header("origin", origin)
        .header("access-control-request-method", method);
    if let Some(headers) = headers {
        req = req.header("access-control-request-headers", headers);
    }
    host.send(req).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflights_are_answered_before_authentication() -> Result<()> {
    let (host, key) = web().await?;

    // Allowed: no token, 204 with the route's rules.
    let ok = preflight(&host, "GET", APP, Some("Authorization, X-Trace")).await?;
    assert_eq!(ok.status.as_u16(), 204, "{}", ok.body);
    assert_eq!(ok.header("access-control-allow-origin"), APP);
    assert_eq!(ok.header("access-control-allow-methods"), "GET");
    assert_eq!(
        ok.header("access-control-allow-headers"),
        "authorization, x-trace"
    );
    assert_eq!(ok.header("access-control-max-age"), "120");
    assert!(ok.header("vary").contains("origin"));
    assert!(!ok.request_id().is_empty());

    // A route's own rules: any origin, answered with `*`.
    let any = preflight(&host, "POST", "http://localhost:5173", Some("content-type")).await?;
    assert_eq!(any.status.as_u16(), 204, "{}", any.body);
    assert_eq!(any.header("access-control-allow-origin"), "*");

    // Refused: another origin, a header not allowed, a route with cors = false.
    let refused = [
        (
            preflight(&host, "GET", "https://evil.example", None).await?,
            "https://evil.example may not call",
        ),
        (
            preflight(&host, "GET", APP, Some("x-secret")).await?,
            "\"x-secret\" is not allowed",
        ),
        (
            preflight(&host, "DELETE", APP, None).await?,
            "takes no cross-origin calls",
        ),
    ];
    for (reply, why) in &refused {
        reply.assert_problem(403);
        assert_eq!(reply.body["type"], "urn:sluice:problem:cors-refused");
        assert!(
            reply.body["detail"].as_str().unwrap_or("").contains(why),
            "{}",
            reply.body
        );
        assert_eq!(
            reply.header("access-control-allow-origin"),
            "",
            "no CORS headers when refused"
        );
    }
    // A path no route has: as for any method.
    let none = host
        .send(
            host.client
                .request(Method::OPTIONS, host.url("/web/nothing"))
                .header("origin", APP)
                .header("access-control-request-method", "GET"),
        )
        .await?;
    none.assert_problem(404);

    // Actual calls: headers for the allowed origin, on errors too.
    let alice = token("alice", "web", &[]);
    let read = host
        .send(
            host.client
                .get(host.url("/web/echo/x"))
                .bearer_auth(&alice)
                .header("origin", APP),
        )
        .await?;
    assert_eq!(read.status.as_u16(), 200, "{}", read.body);
    assert_eq!(read.header("access-control-allow-origin"), APP);
    let exposed = read.header("access-control-expose-headers");
    assert!(
        exposed.contains("x-request-id") && exposed.contains("etag"),
        "{exposed}"
    );
    assert!(read.header("vary").contains("origin"));
    let unauthenticated = host
        .send(
            host.client
                .get(host.url("/web/echo/x"))
                .header("origin", APP),
        )
        .await?;
    unauthenticated.assert_problem(401);
    assert_eq!(unauthenticated.header("access-control-allow-origin"), APP);
    let other = host
        .send(
            host.client
                .get(host.url("/web/echo/x"))
                .bearer_auth(&alice)
                .header("origin", "https://evil.example"),
        )
        .await?;
    assert_eq!(other.status.as_u16(), 200);
    assert_eq!(other.header("access-control-allow-origin"), "");
    let same_origin = host.get("/web/echo/x", Some(&alice)).await?;
    assert_eq!(same_origin.header("access-control-allow-origin"), "");

    // No preflight ran the function: only the three calls that reached it
    // have records.
    let runs = || async {
        let listed = admin(
            &host,
            Method::GET,
            "/v1/invocations?tenant=web",
            Some(&key),
            None,
        )
        .await?;
        Ok::<_, anyhow::Error>(listed.body["invocations"].as_array().map_or(0, Vec::len))
    };
    eventually("the calls' records", || async {
        Ok((runs().await? >= 3).then_some(()))
    })
    .await?;
    assert_eq!(runs().await?, 3);
    host.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_cors_rules_are_refused_at_deploy() -> Result<()> {
    let (host, key) = web().await?;
    for (rules, why) in [
        (
            "[cors]\norigins = [\"https://app.example.com/path\"]\n",
            "without a path",
        ),
        (
            "[cors]\norigins = [\"*\"]\ncredentials = true\n",
            "credentials",
        ),
        ("[cors]\norigins = []\n", "at least one origin"),
    ] {
        let manifest = format!("{rules}\n[[routes]]\nmethod = \"GET\"\npath = \"/echo/{{a}}\"\n");
        let refused = deploy(&host, &key, &manifest)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(refused.contains(why), "{rules}: {refused}");
    }
    let on_route = "[[routes]]\nmethod = \"GET\"\npath = \"/echo/{a}\"\ncors = true\n";
    let refused = deploy(&host, &key, on_route)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(refused.contains("cors = true says nothing"), "{refused}");
    // The rules in force are still the first deploy's.
    let ok = preflight(&host, "GET", APP, None).await?;
    assert_eq!(ok.status.as_u16(), 204);
    let _: Value = ok.body;
    host.stop().await?;
    Ok(())
}
