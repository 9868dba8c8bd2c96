//! The listeners: accept connections, apply connection-level limits, hand
//! each request to the pipeline (or the admin API) on its own task, and run
//! delivery, schedules and the cluster follower alongside; on shutdown,
//! drain them all. A request whose task panics still gets problem+json
//! with its request id.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::app::App;
use crate::config::HttpConfig;
use crate::config::faults;
use crate::{admin, delivery, pipeline};

/// How long shutdown waits for requests in flight.
const DRAIN: Duration = Duration::from_secs(10);

/// A bound listener and the app it serves.
pub struct Server {
    listener: TcpListener,
    admin: Option<TcpListener>,
    app: App,
    http: HttpConfig,
}

/// Which listener a connection came in on.
#[derive(Clone, Copy)]
enum Plane {
    /// Tenants' routes.
    Public,
    /// The admin API.
    Admin,
}

impl Server {
    /// Binds `addr` (port 0 picks a free port).
    pub async fn bind(app: App, addr: SocketAddr, http: HttpConfig) -> std::io::Result<Self> {
        Ok(Self {
            listener: TcpListener::bind(addr).await?,
            admin: None,
            app,
            http,
        })
    }

    /// Also serves the admin API on `addr` (port 0 picks a free port).
    pub async fn with_admin(mut self, addr: SocketAddr) -> std::io::Result<Self> {
        self.admin = Some(TcpListener::bind(addr).await?);
        Ok(self)
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The admin API's address, when it is served.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves until `shutdown` resolves, then lets requests and messages in
    /// flight finish (up to 10 s each) and waits for every queued commit.
    /// Message delivery and schedules run alongside.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Server {
            listener,
            admin,
            app,
            http,
        } = self;
        let App {
            pipeline,
            dispatcher,
            admin: admin_api,
            follower,
            live,
            store,
        } = app;
        let (stop, stopped) = watch::channel(false);
        let dispatching = tokio::spawn(delivery::dispatch(dispatcher.clone(), stopped.clone()));
        let scheduler = tokio::spawn(delivery::schedule::run(
            live,
            store.clone(),
            stopped.clone(),
        ));
        let answers_window = Duration::from_secs(http.idempotency_window_secs);
        let collector = tokio::spawn(delivery::collect_garbage(
            store.clone(),
            answers_window,
            stopped.clone(),
        ));
        let sweeper = tokio::spawn(store.clone().sweep_blobs(stopped.clone()));
        let following = tokio::spawn(follower.follow(stopped));
        let graceful = GracefulShutdown::new();
        let slots = Arc::new(Semaphore::new(http.max_connections.max(1)));
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_millis(http.header_read_timeout_ms))
            .keep_alive(true);
        tokio::pin!(shutdown);
        loop {
            // Past the connection cap, new connections wait in the kernel's backlog.
            let permit = tokio::select! {
                permit = slots.clone().acquire_owned() => match permit {
                    Ok(p) => p,
                    Err(_) => break,
                },
                () = &mut shutdown => break,
            };
            let admin_accept = async {
                match &admin {
                    Some(l) => l.accept().await,
                    None => std::future::pending().await,
                }
            };
            let (accepted, plane) = tokio::select! {
                accepted = listener.accept() => (accepted, Plane::Public),
                accepted = admin_accept => (accepted, Plane::Admin),
                () = &mut shutdown => break,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let (pipeline, admin_api) = (pipeline.clone(), admin_api.clone());
            let service = service_fn(move |req| {
                let (pipeline, admin_api) = (pipeline.clone(), admin_api.clone());
                async move {
                    let request_id = uuid::Uuid::now_v7().to_string();
                    let id = request_id.clone();
                    // Its own task: a client that disconnects does not cancel
                    // a function call or a commit half-way.
                    let handled = tokio::spawn(async move {
                        if faults::active("request-panic") {
                            panic!("SLUICE_FAULT=request-panic");
                        }
                        match plane {
                            Plane::Public => pipeline::handle(&pipeline, req, &id).await,
                            Plane::Admin => admin::handle(&admin_api, req, &id).await,
                        }
                    });
                    match handled.await {
                        Ok(response) => Ok::<_, std::convert::Infallible>(response),
                        Err(e) => {
                            tracing::error!(%request_id, error = %e, "request task failed");
                            Ok(pipeline::respond::panicked(&request_id))
                        }
                    }
                }
            });
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                drop(permit);
            });
        }
        drop(listener);
        drop(admin);
        tracing::info!("shutting down: draining requests in flight");
        if tokio::time::timeout(DRAIN, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("requests still in flight after {DRAIN:?}; closing");
        }
        let _ = stop.send(true);
        let _ = scheduler.await;
        let _ = following.await;
        let _ = collector.await;
        let _ = sweeper.await;
        let _ = dispatching.await;
        // Requests or deliveries still running after the drain may read yet.
        let idle = Arc::strong_count(&pipeline) == 1
            && Arc::strong_count(&admin_api) == 1
            && Arc::strong_count(&dispatcher) == 1;
        if idle {
            store.close().await;
        } else {
            store.committer().flush().await;
        }
    }
}
