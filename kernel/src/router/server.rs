//! The router's listeners and worker threads.
//!
//! Each worker is a thread with a single-threaded tokio runtime, its own `SO_REUSEPORT` socket on
//! every listening address (the kernel spreads new connections over them) and its own pools of
//! connections to the instances. A request, the connection it came on and the upstream connection
//! it goes out on therefore stay on one thread: no work stealing, no cross-thread wake-ups, which
//! is how nginx's workers are built and what a proxy on a few cores needs. The route table, the
//! health state and the counters are shared (lock-free on the request path).
//!
//! Before the workers bind with `SO_REUSEPORT`, the address is bound once without it: a port
//! already used by another program (or another kernel) is reported instead of silently shared.

use super::WebRouter;
use super::proxy::{self, Peer, Worker};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket};
use tokio_rustls::TlsAcceptor;

/// How long a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the router cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// An address cannot be resolved or bound.
    #[error("cannot listen for web traffic on {address}: {source}")]
    Listen {
        /// The configured address.
        address: String,
        /// Why.
        source: std::io::Error,
    },
    /// A worker thread cannot start.
    #[error("cannot start a router worker: {0}")]
    Worker(std::io::Error),
}

/// Where and how to serve.
pub struct Listen {
    /// Plain HTTP address.
    pub http: String,
    /// HTTPS address and its TLS configuration.
    pub https: Option<(String, Arc<rustls::ServerConfig>)>,
    /// Worker threads (0: one per core).
    pub workers: usize,
}

/// A running router; dropping it stops the workers (open connections are closed).
pub struct RouterServer {
    /// The bound HTTP address.
    pub http: SocketAddr,
    /// The bound HTTPS address.
    pub https: Option<SocketAddr>,
    stop: tokio::sync::watch::Sender<bool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl RouterServer {
    /// Stops the workers and waits for their threads.
    pub fn stop(mut self) {
        let _ = self.stop.send(true);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for RouterServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Binds `address` once without `SO_REUSEPORT` (so a port in use is an error) and returns the
/// address the workers will share (a port 0 resolved).
fn claim(address: &str) -> Result<SocketAddr, ServeError> {
    let error = |source| ServeError::Listen {
        address: address.to_string(),
        source,
    };
    let probe = std::net::TcpListener::bind(address).map_err(error)?;
    probe.local_addr().map_err(error)
}

fn bind_shared(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// Starts the workers on `listen`.
pub fn serve(router: Arc<WebRouter>, listen: Listen) -> Result<RouterServer, ServeError> {
    let http = claim(&listen.http)?;
    let https = match &listen.https {
        Some((address, config)) => Some((claim(address)?, TlsAcceptor::from(config.clone()))),
        None => None,
    };
    if let Some((addr, _)) = &https {
        router.https_port.store(addr.port(), Ordering::Relaxed);
    }
    let workers = match listen.workers {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut threads = Vec::with_capacity(workers);
    for n in 0..workers {
        // Bound on this thread, so a failure is reported before anything runs.
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<std::io::Result<()>>();
        let (router, stopped, https) = (router.clone(), stopped.clone(), https.clone());
        let thread = std::thread::Builder::new()
            .name(format!("lain-router-{n}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let listeners = (|| {
                        let plain = bind_shared(http)?;
                        let secure = match https {
                            Some((addr, acceptor)) => Some((bind_shared(addr)?, acceptor)),
                            None => None,
                        };
                        Ok((plain, secure))
                    })();
                    let (plain, secure) = match listeners {
                        Ok(l) => {
                            let _ = ready_tx.send(Ok(()));
                            l
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let worker = Arc::new(Worker::new(router));
                    let plain = tokio::spawn(accept(worker.clone(), plain, None, stopped.clone()));
                    if let Some((listener, acceptor)) = secure {
                        tokio::spawn(accept(worker, listener, Some(acceptor), stopped.clone()));
                    }
                    let _ = plain.await;
                });
            })
            .map_err(ServeError::Worker)?;
        threads.push(thread);
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = stop.send(true);
                return Err(ServeError::Listen {
                    address: listen.http.clone(),
                    source: e,
                });
            }
            Err(_) => {
                let _ = stop.send(true);
                return Err(ServeError::Worker(std::io::Error::other(
                    "worker thread ended",
                )));
            }
        }
    }
    tracing::info!(%http, https = ?https.as_ref().map(|(a, _)| a), workers, "web router listening");
    Ok(RouterServer {
        http,
        https: https.map(|(a, _)| a),
        stop,
        threads,
    })
}

/// Accepts connections on `listener` until `stopped` turns true.
async fn accept(
    worker: Arc<Worker>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("router: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped.changed() => return,
        };
        let (worker, builder, tls) = (worker.clone(), builder.clone(), tls.clone());
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            match tls {
                None => {
                    connection(
                        &builder,
                        worker,
                        TokioIo::new(stream),
                        Peer::new(addr, false),
                    )
                    .await
                }
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            connection(
                                &builder,
                                worker,
                                TokioIo::new(stream),
                                Peer::new(addr, true),
                            )
                            .await;
                        }
                        Ok(Err(e)) => tracing::debug!(%addr, "router: TLS handshake: {e}"),
                        Err(_) => tracing::debug!(%addr, "router: TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

/// Serves one client connection (HTTP/1.1 or HTTP/2, upgrades allowed).
async fn connection<I>(
    builder: &auto::Builder<TokioExecutor>,
    worker: Arc<Worker>,
    io: I,
    peer: Peer,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let peer = Arc::new(peer);
    let addr = peer.addr;
    let service = hyper::service::service_fn(move |request| {
        let (worker, peer) = (worker.clone(), peer.clone());
        async move { Ok::<_, std::convert::Infallible>(proxy::handle(&worker, request, &peer).await) }
    });
    if let Err(e) = builder.serve_connection_with_upgrades(io, service).await {
        tracing::debug!(%addr, "router: connection: {e}");
    }
}
