//! {{name}} on a real host, through `sluice-test`: `cargo test`.

use sluice_test::{KitError, TestHost};

/// Nothing has run before the first tick; a tick fired now is handled and
/// its run recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tick_runs_the_job() -> Result<(), KitError> {
    let host = TestHost::start().await?;
    let alice = host.token("alice", &[]);
    let before = host.get("/runs/last").token(&alice).send().await?;
    assert_eq!(before.status, 404, "{}", before.json);

    // Now, rather than at the top of the hour.
    host.tick("hourly").await?;
    host.deliver_all().await?;
    let after = host.get("/runs/last").token(&alice).send().await?;
    assert_eq!(after.status, 200, "{}", after.json);
    assert_eq!(after.json["missed"], 0);
    assert!(after.json["tick_ms"].as_u64().is_some_and(|ms| ms > 0));
    host.stop().await;
    Ok(())
}
