//! Channels with members and posts. A channel lives in collection `channels`
//! under its name; its posts live in collection `posts` under
//! `<channel>/<post id>`. Every post also sends a notification to topic
//! `channel-notifications`, committed together with the post or not at all.
//! The same component consumes those notifications: it writes one entry per
//! member into collection `inbox`, under `<member>/<post id>`.

use serde::{Deserialize, Serialize};
use serde_json::json;
use sluice_sdk::documents::Collection;
use sluice_sdk::{Claims, Error, Message, MessageError, Request, Response, queue};

#[derive(Serialize, Deserialize)]
struct Channel {
    name: String,
    owner: String,
    members: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct Post {
    id: String,
    channel: String,
    author: String,
    text: String,
}

/// A message on topic `channel-notifications`, as `post` sends it.
#[derive(Serialize, Deserialize)]
struct Notification {
    channel: String,
    post_id: String,
    author: String,
    members: Vec<String>,
}

/// One member's notice of a post, at `inbox/<member>/<post id>`.
#[derive(Serialize, Deserialize)]
struct InboxEntry {
    member: String,
    channel: String,
    post_id: String,
    author: String,
}

/// The body of `POST /channels` (schemas/create-channel.json).
#[derive(Deserialize)]
struct NewChannel {
    name: String,
}

/// The body of `POST /channels/{channel}/members` (schemas/add-member.json).
#[derive(Deserialize)]
struct NewMember {
    subject: String,
}

/// The body of `POST /channels/{channel}/posts` (schemas/create-post.json).
#[derive(Deserialize)]
struct NewPost {
    text: String,
}

fn channels() -> Collection<Channel> {
    Collection::open("channels")
}

fn posts() -> Collection<Post> {
    Collection::open("posts")
}

fn inbox() -> Collection<InboxEntry> {
    Collection::open("inbox")
}

// Each route of sluice.toml, by name, and the function that serves it.
sluice_sdk::routes! {
    "create-channel" => |req| create(&req, caller(&req)?),
    "add-member" => |req| add_member(&req, caller(&req)?, channel(&req)?),
    "create-post" => |req| post(&req, caller(&req)?, channel(&req)?),
    "list-posts" => |req| list_posts(&req, caller(&req)?, channel(&req)?),
    "list-inbox" => |req| list_inbox(&req, caller(&req)?),
}

/// Who is calling; every route is `authenticated`, so always someone.
fn caller(req: &Request) -> Result<&Claims, Error> {
    req.claims()
        .ok_or_else(|| Error::unauthorized("sign in first"))
}

/// The `{channel}` of the route's path.
fn channel(req: &Request) -> Result<&str, Error> {
    req.param("channel")
        .ok_or_else(|| Error::bad_request("no channel"))
}

fn create(req: &Request, user: &Claims) -> Result<Response, Error> {
    let new: NewChannel = req.json()?;
    if channels().get(&new.name)?.is_some() {
        return Err(Error::conflict(format!(
            "channel {} already exists",
            new.name
        )));
    }
    let channel = Channel {
        name: new.name,
        owner: user.subject.clone(),
        members: vec![user.subject.clone()],
    };
    channels().put(&channel.name, &channel)?;
    Response::json(201, &channel)
}

fn add_member(req: &Request, user: &Claims, name: &str) -> Result<Response, Error> {
    let mut channel = find(name)?;
    if channel.owner != user.subject && !user.has_role("admin") {
        return Err(Error::forbidden("only the channel's owner may add members"));
    }
    let new: NewMember = req.json()?;
    if !channel.members.contains(&new.subject) {
        channel.members.push(new.subject);
        channels().put(name, &channel)?;
    }
    Response::json(200, &channel)
}

fn post(req: &Request, user: &Claims, name: &str) -> Result<Response, Error> {
    let channel = find(name)?;
    require_member(user, &channel)?;
    let new: NewPost = req.json()?;
    let post = Post {
        id: req.request_id().to_owned(),
        channel: channel.name,
        author: user.subject.clone(),
        text: new.text,
    };
    posts().put(format!("{}/{}", post.channel, post.id), &post)?;
    queue::send(
        "channel-notifications",
        &Notification {
            channel: post.channel.clone(),
            post_id: post.id.clone(),
            author: post.author.clone(),
            members: channel.members,
        },
    )?;
    Response::json(201, &post)
}

/// A page of the caller's inbox in key order; `?cursor=` asks for the next one.
fn list_inbox(req: &Request, user: &Claims) -> Result<Response, Error> {
    let page = inbox().list(format!("{}/", user.subject), 100, req.query("cursor"))?;
    let entries: Vec<InboxEntry> = page
        .documents
        .into_iter()
        .map(|doc| doc.value)
        // Checked on the entry itself too: a subject containing `/` must not
        // reach into another member's prefix.
        .filter(|entry| entry.member == user.subject)
        .collect();
    Response::json(
        200,
        &json!({ "entries": entries, "next_cursor": page.next_cursor }),
    )
}

// The consumer's one topic: the notifications `post` sends.
sluice_sdk::topics! {
    "channel-notifications" => deliver,
}

/// Delivers a post's notification to the inbox of every member it names.
///
/// Keyed by member and post, so a redelivery of the same notification
/// overwrites the entries instead of adding new ones.
fn deliver(msg: Message) -> Result<(), MessageError> {
    let notification: Notification = msg.json()?;
    for member in &notification.members {
        inbox().put(
            format!("{member}/{}", notification.post_id),
            &InboxEntry {
                member: member.clone(),
                channel: notification.channel.clone(),
                post_id: notification.post_id.clone(),
                author: notification.author.clone(),
            },
        )?;
    }
    Ok(())
}

/// A page of the channel's posts in key order; `?cursor=` asks for the next one.
fn list_posts(req: &Request, user: &Claims, name: &str) -> Result<Response, Error> {
    require_member(user, &find(name)?)?;
    let page = posts().list(format!("{name}/"), 100, req.query("cursor"))?;
    let posts: Vec<Post> = page.documents.into_iter().map(|doc| doc.value).collect();
    Response::json(
        200,
        &json!({ "posts": posts, "next_cursor": page.next_cursor }),
    )
}

fn find(name: &str) -> Result<Channel, Error> {
    let channel = channels().get(name)?;
    channel
        .map(|doc| doc.value)
        .ok_or_else(|| Error::not_found(format!("no channel {name}")))
}

fn require_member(user: &Claims, channel: &Channel) -> Result<(), Error> {
    if channel.members.contains(&user.subject) || user.has_role("admin") {
        Ok(())
    } else {
        Err(Error::forbidden(format!(
            "{} is not a member of {}",
            user.subject, channel.name
        )))
    }
}
