//! Test guest: stages a document write and a queue send, then panics, so the
//! host must commit neither and answer 500.

use serde_json::json;
use sluice_sdk::{Error, Request, Response, documents::Collection, queue};

#[sluice_sdk::handler]
fn handle(req: Request) -> Result<Response, Error> {
    let by = json!({ "by": req.request_id() });
    Collection::open("scratch").put(req.request_id(), &by)?;
    queue::send("scratch-events", &by)?;
    panic!("trap after staging")
}
