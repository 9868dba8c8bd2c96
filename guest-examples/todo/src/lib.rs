//! A todo list per user. Todos live in collection `todos` under
//! `<owner>/<id>`, so a user's todos are one prefix; collection `todo-index`
//! maps each id to its owner, so an admin can find any todo by id.

use serde::{Deserialize, Serialize};
use serde_json::json;
use sluice_sdk::documents::{Collection, Document};
use sluice_sdk::{Claims, Error, Request, Response};

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

#[sluice_sdk::handler]
fn handle(req: Request) -> Result<Response, Error> {
    let user = req
        .claims()
        .ok_or_else(|| Error::forbidden("sign in first"))?;
    match (req.method(), req.param("id")) {
        ("POST", None) => create(&req, user),
        ("GET", None) => list(&req, user),
        ("GET", Some(id)) => Response::json(200, &find(user, id)?.value),
        ("PUT", Some(id)) => update(&req, user, id),
        ("DELETE", Some(id)) => delete(user, id),
        _ => Err(Error::not_found("no such route")),
    }
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
    Response::json(201, &todo)
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
    Ok(Response::no_content())
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
