//! The client of a running host's admin API, for the commands that manage it.

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// Where the admin API is and the operator key to use.
pub struct Admin {
    base: String,
    key: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Admin {
    /// A client for the admin API at `base` (e.g. `http://127.0.0.1:8081`).
    pub fn new(base: &str, key: Option<String>) -> Result<Self> {
        let Some(key) = key else {
            bail!(
                "an operator key is needed: pass --key or set SLUICE_ADMIN_KEY \
                 (create one with `sluice key create --name NAME`)"
            );
        };
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            key,
            client: Client::builder(TokioExecutor::new()).build_http(),
        })
    }

    /// Sends `body` (JSON) with `method` to `path`; returns the JSON answer,
    /// or the problem's detail as the error.
    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value> {
        match body {
            Some(v) => {
                let body = Bytes::from(v.to_string());
                self.send(method, path, Some("application/json"), body)
                    .await
            }
            None => self.send(method, path, None, Bytes::new()).await,
        }
    }

    /// Sends `body` of `content_type` with `method` to `path`; answers as [`Admin::call`].
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<Value> {
        let uri = format!("{}{path}", self.base);
        let mut req = Request::builder()
            .method(method)
            .uri(&uri)
            .header("authorization", format!("Bearer {}", self.key));
        if let Some(content_type) = content_type {
            req = req.header("content-type", content_type);
        }
        let response = self
            .client
            .request(req.body(Full::new(body))?)
            .await
            .with_context(|| {
                format!("cannot reach the admin API at {uri}: is `sluice serve` running?")
            })?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(value);
        }
        let detail = value["detail"].as_str().unwrap_or("no detail");
        bail!("{status}: {detail}")
    }
}
