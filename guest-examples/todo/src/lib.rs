//! A todo list per user. Todos live in collection `todos` under
//! `<owner>/<id>`, so a user's todos are one prefix; collection `todo-index`
//! maps each id to its owner, so an admin can find any todo by id. A user's
//! count of todos is cached for a few seconds under `count/<owner>`.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use sluice_sdk::documents::{Collection, Document};
use sluice_sdk::{Claims, Error, Json, Request, Response, cache};

/// How long a counted number of todos may be served from the cache.
const COUNT_TTL: Duration = Duration::from_secs(5);

#[derive(Serialize, Deserialize)]
struct Todo {
    id: String,
    owner: String,
    title: String,
    done: bool,
}

/// The body of `POST /todos` (schemas/create-todo.json).
#[derive(Deserialize)]
struct NewTodo {
    title: String,
    #[serde(default)]
    done: bool,
}

/// The body of `PUT /todos/{id}` (schemas/update-todo.json).
#[derive(Deserialize)]
struct Changes {
    title: Option<String>,
    done: Option<bool>,
}

fn todos() -> Collection<Todo> {
    Collection::open("todos")
}

fn owners() -> Collection<String> {
    Collection::open("todo-index")
}

// Each route of sluice.toml, by name, and the function that serves it.
sluice_sdk::routes! {
    "create-todo" => |req| create(&req, caller(&req)?),
    "list-todos" => |req| list(&req, caller(&req)?),
    "count-todos" => |req| count(caller(&req)?),
    "get-todo" => |req| Ok(Json(find(caller(&req)?, id(&req)?)?.value)),
    "update-todo" => |req| update(&req, caller(&req)?, id(&req)?),
    "delete-todo" => |req| delete(caller(&req)?, id(&req)?),
}

/// Who is calling; every route is `authenticated`, so always someone.
fn caller(req: &Request) -> Result<&Claims, Error> {
    req.claims()
        .ok_or_else(|| Error::unauthorized("sign in first"))
}

/// The `{id}` of the route's path.
fn id(req: &Request) -> Result<&str, Error> {
    req.param("id")
        .ok_or_else(|| Error::bad_request("no todo id"))
}

fn create(req: &Request, user: &Claims) -> Result<Response, Error> {
    let new: NewTodo = req.json()?;
    let todo = Todo {
        id: req.request_id().to_owned(),
        owner: user.subject.clone(),
        title: new.title,
        done: new.done,
    };
    todos().put(format!("{}/{}", todo.owner, todo.id), &todo)?;
    owners().put(&todo.id, &todo.owner)?;
    forget_count(&todo.owner);
    Response::json(201, &todo)
}

/// `GET /todos/count`: how many todos the caller has, from the cache when
/// it was counted in the last few seconds.
fn count(user: &Claims) -> Result<Response, Error> {
    let key = count_key(&user.subject);
    // The cache only saves work: a value it cannot give (a subject too long
    // for a key, a value of another shape) is counted afresh.
    if let Ok(Some(count)) = cache::get_json::<u64>(&key) {
        return Response::json(200, &json!({ "count": count, "cached": true }));
    }
    let prefix = format!("{}/", user.subject);
    let mut count: u64 = 0;
    for todo in todos().list_all(&prefix) {
        // The owner check keeps out a subject that extends this one's prefix.
        if todo?.value.owner == user.subject {
            count += 1;
        }
    }
    // Ignored on failure for the same reason as above.
    let _ = cache::set_json(&key, &count, Some(COUNT_TTL));
    Response::json(200, &json!({ "count": count, "cached": false }))
}

/// The caller's todos, or everyone's for an admin, a page at a time.
fn list(req: &Request, user: &Claims) -> Result<Response, Error> {
    let limit = match req.query("limit") {
        Some(limit) => limit
            .parse::<u32>()
            .map_err(|_| Error::bad_request("`limit` must be a whole number"))?
            .clamp(1, 100),
        None => 50,
    };
    let prefix = if user.has_role("admin") {
        String::new()
    } else {
        format!("{}/", user.subject)
    };
    let page = todos().list(prefix, limit, req.query("cursor"))?;
    let todos: Vec<Todo> = page
        .documents
        .into_iter()
        .map(|doc| doc.value)
        .filter(|todo| may_see(user, todo))
        .collect();
    Response::json(
        200,
        &json!({ "todos": todos, "next_cursor": page.next_cursor }),
    )
}

fn update(req: &Request, user: &Claims, id: &str) -> Result<Response, Error> {
    let changes: Changes = req.json()?;
    let Document { key, mut value, .. } = find(user, id)?;
    if let Some(title) = changes.title {
        value.title = title;
    }
    if let Some(done) = changes.done {
        value.done = done;
    }
    todos().put(key, &value)?;
    Response::json(200, &value)
}

fn delete(user: &Claims, id: &str) -> Result<Response, Error> {
    let todo = find(user, id)?;
    todos().delete(&todo.key)?;
    owners().delete(id)?;
    forget_count(&todo.value.owner);
    Ok(Response::no_content())
}

fn count_key(owner: &str) -> String {
    format!("count/{owner}")
}

/// Drops `owner`'s cached count, so their next count is fresh. The cache is
/// not transactional: this happens even if the commit then fails, which
/// costs only a recount. A count made between this and the commit can
/// still cache the old number for a few seconds. A key the cache refuses
/// was never cached, so a failure is ignored.
fn forget_count(owner: &str) {
    let _ = cache::delete(count_key(owner));
}

/// The todo `id` if the caller may see it. Someone else's todo is "not
/// found" rather than "forbidden", so ids reveal nothing.
fn find(user: &Claims, id: &str) -> Result<Document<Todo>, Error> {
    let not_found = || Error::not_found(format!("no todo {id}"));
    let owner = if user.has_role("admin") {
        owners().get(id)?.ok_or_else(not_found)?.value
    } else {
        user.subject.clone()
    };
    todos()
        .get(format!("{owner}/{id}"))?
        .filter(|doc| may_see(user, &doc.value))
        .ok_or_else(not_found)
}

/// Checked on the document itself too: a subject containing `/` must not
/// reach into another user's prefix.
fn may_see(user: &Claims, todo: &Todo) -> bool {
    todo.owner == user.subject || user.has_role("admin")
}
