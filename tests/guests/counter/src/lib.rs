//! Test guest: a read-modify-write counter, for write conflicts and retries.

use serde::{Deserialize, Serialize};
use sluice_sdk::{Error, Request, Response, documents::Collection};

#[derive(Serialize, Deserialize)]
struct Counter {
    count: u64,
}

#[sluice_sdk::handler]
fn handle(req: Request) -> Result<Response, Error> {
    let name = req
        .param("name")
        .ok_or_else(|| Error::bad_request("missing counter name"))?;
    let counters = Collection::<Counter>::open("counters");
    let count = counters.get(name)?.map_or(0, |doc| doc.value.count);
    match req.method() {
        "GET" => Response::json(200, &Counter { count }),
        _ => {
            let next = Counter { count: count + 1 };
            counters.put(name, &next)?;
            Response::json(200, &next)
        }
    }
}
