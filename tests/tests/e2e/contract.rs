//! The `sluice:function` contract between versions: requests name their
//! route, functions answer problems of their own, route names are checked
//! at deploy, and components built against 0.1.0 still deploy and run.

use anyhow::{Context, Result};
use reqwest::Method;
use serde_json::{Value, json};
use sluice_tests::{Reply, TestHost, admin, eventually, operator_key, root, token};

use crate::catalog::{create_tenant, guest};

/// A component built with the SDK of `sluice:function@0.1.0` (main at
/// `a301bdf`), kept as it was built: `tests/fixtures/legacy-0.1.0/`.
fn legacy(name: &str) -> Result<Vec<u8>> {
    let path = root().join(format!("tests/fixtures/legacy-0.1.0/{name}.wasm"));
    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
}

/// Deploys `component` with `manifest` (no schemas) as `tenant`'s `name`.
async fn deploy(
    host: &TestHost,
    key: &str,
    function: (&str, &str),
    manifest: &str,
    component: Vec<u8>,
) -> Result<Reply> {
    crate::catalog::deploy(host, key, function, manifest, component, &[]).await
}

/// The function sees the name of the route that matched and its pattern:
/// derived from method and path when the manifest gives no `name`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_carry_their_route_name_and_pattern() -> Result<()> {
    let host = TestHost::start().await?;
    let got = host.get("/acme/echo/x", None).await?;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.body["route"], "get-echo-a");
    assert_eq!(got.body["pattern"], "/echo/{a}");
    let todo = token("alice", "demo", &[]);
    let created = host
        .post("/demo/todos", Some(&todo), &json!({ "title": "named" }))
        .await?;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["id"].as_str().context("no id")?;
    let read = host.get(&format!("/demo/todos/{id}"), Some(&todo)).await?;
    assert_eq!(
        read.body["title"], "named",
        "the todo example routes by name"
    );
    Ok(())
}

/// `Error::unauthorized` is a 401 problem; `Error::problem` keeps the
/// status, type, title and detail the function chose, its type under
/// `urn:sluice:problem:fn:`, with the request id; a problem with a status
/// that is not an error is the function's mistake: 502.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_answer_problems_of_their_own() -> Result<()> {
    let host = TestHost::start().await?;
    let unauthorized = host.get("/acme/echo/x?fail=unauthorized", None).await?;
    unauthorized.assert_problem(401);
    assert_eq!(unauthorized.body["type"], "urn:sluice:problem:unauthorized");
    assert_eq!(unauthorized.body["detail"], "the share password is wrong");

    let problem = host.get("/acme/echo/x?fail=problem", None).await?;
    problem.assert_problem(422);
    assert_eq!(problem.body["type"], "urn:sluice:problem:fn:out-of-stock");
    assert_eq!(problem.body["title"], "Out of stock");
    assert_eq!(problem.body["detail"], "only 2 left of item 17");

    let bad = host.get("/acme/echo/x?fail=bad-problem", None).await?;
    bad.assert_problem(502);
    assert_eq!(bad.body["type"], "urn:sluice:problem:bad-problem");
    Ok(())
}

/// A deploy whose manifest and component disagree on route names is
/// refused, naming the route, and changes nothing: a manifest route the
/// component has no function for, a function the manifest has no route for,
/// and names left to be derived that the component does not use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploys_whose_routes_and_functions_disagree_are_refused() -> Result<()> {
    let host = TestHost::start().await?;
    let key = operator_key(&host)?;
    create_tenant(&host, &key, "shop").await?;
    let whole = std::fs::read_to_string(root().join("guest-examples/todo/sluice.toml"))?;
    // Its routes, without schemas and examples (not uploaded here).
    let routes_only: String = whole[whole.find("[[routes]]").context("no routes")?..]
        .lines()
        .filter(|l| {
            ![
                "schema =",
                "response_schema =",
                "example =",
                "response_example =",
            ]
            .iter()
            .any(|field| l.starts_with(field))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let routes_only = routes_only.as_str();

    let good = deploy(&host, &key, ("shop", "todo"), routes_only, guest("todo")?).await?;
    assert_eq!(good.status, 201, "{}", good.body);

    let missing_function = format!(
        "{routes_only}\n[[routes]]\nname = \"archive-todo\"\nmethod = \"POST\"\npath = \"/todos/{{id}}/archive\"\n"
    );
    let refused = deploy(
        &host,
        &key,
        ("shop", "todo"),
        &missing_function,
        guest("todo")?,
    )
    .await?;
    refused.assert_problem(422);
    let detail = refused.body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("\"archive-todo\"") && detail.contains("has no function"),
        "{detail}"
    );

    let count_route = "[[routes]]\nname = \"count-todos\"\nmethod = \"GET\"\npath = \"/todos/count\"\nauth = \"authenticated\"\n";
    let without_count = routes_only.replace(count_route, "");
    assert_ne!(
        without_count, routes_only,
        "the count route is in the manifest"
    );
    let refused = deploy(
        &host,
        &key,
        ("shop", "todo"),
        &without_count,
        guest("todo")?,
    )
    .await?;
    refused.assert_problem(422);
    let detail = refused.body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("\"count-todos\"") && detail.contains("does not name"),
        "{detail}"
    );

    let unnamed: String = routes_only
        .lines()
        .filter(|l| !l.starts_with("name ="))
        .map(|l| format!("{l}\n"))
        .collect();
    let refused = deploy(&host, &key, ("shop", "todo"), &unnamed, guest("todo")?).await?;
    refused.assert_problem(422);
    let detail = refused.body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("\"post-todos\""),
        "derived names are checked too: {detail}"
    );

    let versions = admin(
        &host,
        Method::GET,
        "/v1/tenants/shop/functions/todo/versions",
        Some(&key),
        None,
    );
    let versions = versions.await?;
    assert_eq!(
        versions.body["versions"].as_array().map(Vec::len),
        Some(1),
        "{}",
        versions.body
    );
    Ok(())
}

/// Components built against `sluice:function@0.1.0` deploy and run as
/// before: the counter (requests, documents) and the consumer (requests,
/// the queue, and its messages delivered through the 0.1.0 message handler).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_built_against_0_1_0_still_deploy_and_run() -> Result<()> {
    let host = TestHost::start().await?;
    let key = operator_key(&host)?;
    create_tenant(&host, &key, "oldco").await?;
    let counter = "[[routes]]\nmethod = \"POST\"\npath = \"/counters/{name}\"\nbody = \"none\"\n\n\
                   [[routes]]\nmethod = \"GET\"\npath = \"/counters/{name}\"\nauth = \"public\"\n";
    let deployed = deploy(
        &host,
        &key,
        ("oldco", "counter"),
        counter,
        legacy("counter")?,
    )
    .await?;
    assert_eq!(deployed.status, 201, "{}", deployed.body);
    let old = token("olga", "oldco", &[]);
    for n in 1..=3 {
        let req = host
            .client
            .post(host.url("/oldco/counters/hits"))
            .bearer_auth(&old);
        let counted = host.send(req).await?;
        assert_eq!(counted.status, 200, "{}", counted.body);
        assert_eq!(counted.body["count"], n);
    }
    assert_eq!(
        host.get("/oldco/counters/hits", None).await?.body["count"],
        3
    );

    let consumer = "[[routes]]\nmethod = \"POST\"\npath = \"/consumer/send\"\n\n\
                    [[routes]]\nmethod = \"GET\"\npath = \"/consumer/effects\"\n\n\
                    [messages]\ntopics = [\"jobs\"]\n";
    let deployed = deploy(
        &host,
        &key,
        ("oldco", "consumer"),
        consumer,
        legacy("consumer")?,
    )
    .await?;
    assert_eq!(deployed.status, 201, "{}", deployed.body);
    let job = json!({ "topic": "jobs", "payload": { "op": "record", "key": "old-job" } });
    let sent = host.post("/oldco/consumer/send", Some(&old), &job).await?;
    assert!(sent.status.is_success(), "{}", sent.body);
    eventually("the 0.1.0 consumer to record the job", || async {
        let effects = host.get("/oldco/consumer/effects", Some(&old)).await?;
        let all = effects.body.as_array().cloned().unwrap_or_default();
        Ok(all
            .iter()
            .any(|e: &Value| e["key"] == "old-job")
            .then_some(()))
    })
    .await
}

/// A component built against `sluice:function@0.2.0` (the echo guest as it
/// was before 0.2.1 added `config`, kept in `tests/fixtures/contract-0.2.0/`)
/// deploys and runs on the 0.2.1 host: its imports and exports are matched
/// by semver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_built_against_0_2_0_still_deploy_and_run() -> Result<()> {
    let host = TestHost::start().await?;
    let key = operator_key(&host)?;
    create_tenant(&host, &key, "oldco").await?;
    let path = root().join("tests/fixtures/contract-0.2.0/echo.wasm");
    let component = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let manifest = "[[routes]]\nmethod = \"GET\"\npath = \"/echo/{a}\"\nauth = \"public\"\n";
    let deployed = deploy(&host, &key, ("oldco", "echo"), manifest, component).await?;
    assert_eq!(deployed.status, 201, "{}", deployed.body);
    let got = host.get("/oldco/echo/x?config=ANY", None).await?;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.body["route"], "get-echo-a");
    assert_eq!(got.body["params"]["a"], "x");
    // Built before `config`: it has no such member.
    assert!(got.body.get("config").is_none(), "{}", got.body);
    Ok(())
}
