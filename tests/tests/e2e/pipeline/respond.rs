//! Respond: what the client gets when the host itself fails.

use anyhow::Result;
use sluice_tests::{HANG_GUARD, Process, eventually, root, send, token};
use tempfile::TempDir;

/// A request whose task panics (the debug build's
/// `SLUICE_FAULT=request-panic`) still gets a problem+json 500 carrying
/// the request id it is logged with, and the host goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_request_gets_problem_json_with_its_request_id() -> Result<()> {
    let data = TempDir::new()?;
    let examples = [root().join("guest-examples")];
    let host = Process::start_with_env(
        data.path(),
        &examples,
        "",
        &[("SLUICE_FAULT", "request-panic")],
    )?;
    let client = reqwest::Client::builder().timeout(HANG_GUARD).build()?;
    let alice = token("alice", "demo", &[]);
    for _ in 0..2 {
        let reply = send(
            client
                .get(format!("{}/demo/todos", host.base))
                .bearer_auth(&alice),
        )
        .await?;
        reply.assert_problem(500);
        assert_eq!(reply.body["type"], "urn:sluice:problem:internal-error");
        let id = reply.request_id().to_owned();
        let logged = |line: &String| line.contains("request task failed") && line.contains(&id);
        eventually("a log line naming the request", || async {
            Ok(host.log().iter().any(logged).then_some(()))
        })
        .await?;
    }
    host.kill()?;
    Ok(())
}
