//! Test guest: stages a document write and a queue send, then returns an
//! error, so the host must commit neither.

use serde_json::json;
use sluice_sdk::{Error, Request, Response, documents::Collection, queue};

#[sluice_sdk::handler]
fn handle(req: Request) -> Result<Response, Error> {
    let by = json!({ "by": req.request_id() });
    Collection::open("scratch").put(req.request_id(), &by)?;
    queue::send("scratch-events", &by)?;
    Err(Error::conflict("staged then refused"))
}
