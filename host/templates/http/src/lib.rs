//! {{name}}: a Sluice function that serves HTTP routes.
//!
//! `POST /items` keeps an item for the caller and `GET /items/{id}` reads
//! it back. The host has checked the caller's token and the body's schema
//! (`schemas/new-item.json`) before a handler runs; what a handler writes
//! commits when it returns `Ok`, and not at all when it fails.

use serde::{Deserialize, Serialize};
use sluice_sdk::documents::Collection;
use sluice_sdk::{Claims, Error, Json, Request, Response};

/// What `POST /items` keeps.
#[derive(Serialize, Deserialize)]
struct Item {
    id: String,
    owner: String,
    name: String,
}

/// The body of `POST /items`.
#[derive(Deserialize)]
struct NewItem {
    name: String,
}

// Each route of sluice.toml, by name, and the function that serves it.
sluice_sdk::routes! {
    "create-item" => create,
    "get-item" => get,
}

/// Items live under `<owner>/<id>`: a user's items are one prefix.
fn items() -> Collection<Item> {
    Collection::open("items")
}

/// Who is calling; both routes are `authenticated`, so always someone.
fn caller(req: &Request) -> Result<&Claims, Error> {
    req.claims()
        .ok_or_else(|| Error::unauthorized("sign in first"))
}

/// `POST /items`: 201 with the new item.
fn create(req: Request) -> Result<Response, Error> {
    let owner = caller(&req)?.subject.clone();
    let new: NewItem = req.json()?;
    let item = Item {
        id: req.request_id().to_owned(),
        owner,
        name: new.name,
    };
    items().put(format!("{}/{}", item.owner, item.id), &item)?;
    Response::created(&item)
}

/// `GET /items/{id}`: the caller's item, or 404.
fn get(req: Request) -> Result<Json<Item>, Error> {
    let owner = &caller(&req)?.subject;
    let id = req.param("id").unwrap_or_default();
    let item = items()
        .get(format!("{owner}/{id}"))?
        .ok_or_else(|| Error::not_found(format!("no item {id:?}")))?;
    Ok(Json(item.value))
}
