//! A router worker's connections to instances: HTTP/1.1 keep-alive pools over hyper's
//! connection-level client (`hyper::client::conn::http1`).
//!
//! Why not hyper-util's pooled `Client`: it is built for any executor and any thread, so each
//! request pays for a shared pool behind a lock keyed by scheme and authority, boxed connect and
//! checkout futures, and a background task per connection that returns it to the pool. A router
//! worker owns its connections (they never cross threads), knows its upstreams by authority
//! already, and only speaks HTTP/1.1 to instances; this pool is a list of senders per authority.
//! A sender goes back to the list as soon as its response head arrives and is taken again only
//! when hyper says its connection is ready (the previous response fully read). `try_send_request`
//! hands back a request the connection never started to send, so a keep-alive connection the
//! instance closed meanwhile costs a retry on another connection, not an error, whatever the
//! request's body.

use bytes::Bytes;
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::http::uri::Authority;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::time::Duration;

/// What the router sends to instances: the client's body, or none.
pub type UpstreamBody = Either<Incoming, Empty<Bytes>>;

/// How long connecting to an instance may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections kept per instance; more than the worker's concurrency never helps.
const MAX_PER_AUTHORITY: usize = 512;
/// Pooled connections the instance closed before a request went out, tried before a new one.
const STALE_RETRIES: usize = 3;

/// Why a request did not get a response.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No connection to the instance.
    #[error("connect to {authority}: {reason}")]
    Connect {
        /// The instance.
        authority: String,
        /// Why.
        reason: String,
    },
    /// The connection failed during the exchange.
    #[error("{0}")]
    Http(#[from] hyper::Error),
}

/// One worker's pools, by instance.
#[derive(Default)]
pub struct Upstreams {
    idle: parking_lot::Mutex<HashMap<Authority, Vec<SendRequest<UpstreamBody>>>>,
}

impl Upstreams {
    /// Sends `request` (origin-form URI, `Host` set) to the instance at `authority`.
    pub async fn send(
        &self,
        authority: &Authority,
        mut request: Request<UpstreamBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let mut stale = 0;
        loop {
            let (mut sender, pooled) = match self.checkout(authority) {
                Some(s) => (s, true),
                None => (connect(authority).await?, false),
            };
            match sender.try_send_request(request).await {
                Ok(response) => {
                    self.checkin(authority, sender);
                    return Ok(response);
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if pooled && stale < STALE_RETRIES => {
                        stale += 1;
                        request = unsent;
                    }
                    _ => return Err(e.into_error().into()),
                },
            }
        }
    }

    /// A ready connection to `authority`, dropping closed ones on the way.
    fn checkout(&self, authority: &Authority) -> Option<SendRequest<UpstreamBody>> {
        let mut idle = self.idle.lock();
        let list = idle.get_mut(authority)?;
        let mut i = list.len();
        while i > 0 {
            i -= 1;
            if list[i].is_closed() {
                list.swap_remove(i);
            } else if list[i].is_ready() {
                return Some(list.swap_remove(i));
            }
        }
        None
    }

    /// Keeps `sender` for later requests (it becomes ready once its response is read).
    fn checkin(&self, authority: &Authority, sender: SendRequest<UpstreamBody>) {
        let mut idle = self.idle.lock();
        if let Some(list) = idle.get_mut(authority) {
            if list.len() < MAX_PER_AUTHORITY {
                list.push(sender);
            }
            return;
        }
        // A new instance: forget instances whose connections are all gone.
        idle.retain(|_, list| {
            list.retain(|s| !s.is_closed());
            !list.is_empty()
        });
        idle.insert(authority.clone(), vec![sender]);
    }
}

/// A new HTTP/1.1 connection to `authority`, its I/O driven by a task of the current worker.
async fn connect(authority: &Authority) -> Result<SendRequest<UpstreamBody>, UpstreamError> {
    let failed = |reason: String| UpstreamError::Connect {
        authority: authority.to_string(),
        reason,
    };
    let port = authority.port_u16().unwrap_or(80);
    let stream = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio::net::TcpStream::connect((authority.host(), port)),
    )
    .await
    .map_err(|_| failed(format!("no answer within {}s", CONNECT_TIMEOUT.as_secs())))?
    .map_err(|e| failed(e.to_string()))?;
    stream
        .set_nodelay(true)
        .map_err(|e| failed(e.to_string()))?;
    let (sender, connection) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await?;
    tokio::spawn(async move {
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!("router: upstream connection ended: {e}");
        }
    });
    Ok(sender)
}
