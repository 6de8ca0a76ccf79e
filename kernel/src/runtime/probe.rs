//! Instance health: the one verdict type ([`Health`]) and the one HTTP probe ([`HttpProbe`])
//! that both the reconciler (which restarts and replaces instances) and the router (which stops
//! sending them traffic) use: `GET <path>`, alive when it answers 2xx or 3xx within a timeout.

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

/// Health of an instance: as a runtime that checks it itself reports it (Docker's
/// HEALTHCHECK), as the reconciler's probes found it, and as `lain ps` shows it.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// The proc has no health check.
    None,
    /// Not yet decided (within the start period, or no check answered yet).
    Starting,
    /// The last check passed.
    Healthy,
    /// `retries` checks in a row failed.
    Unhealthy,
}

/// Sends `GET` health probes over HTTP/1 (one idle connection kept per backend).
#[derive(Clone)]
pub struct HttpProbe {
    client: Client<HttpConnector, Empty<Bytes>>,
    user_agent: &'static str,
}

impl HttpProbe {
    /// A probe that introduces itself as `user_agent` (so an app's logs tell who checks it).
    pub fn new(user_agent: &'static str) -> HttpProbe {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        HttpProbe {
            client: Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(1)
                .build(connector),
            user_agent,
        }
    }

    /// `GET http://<authority><path>`: alive if it answers 2xx or 3xx within `timeout`
    /// (redirects are not followed).
    pub async fn alive(&self, authority: &str, path: &str, timeout: Duration) -> bool {
        let Ok(uri) = format!("http://{authority}{path}").parse::<hyper::Uri>() else {
            return false;
        };
        let request = hyper::Request::get(uri)
            .header(hyper::header::USER_AGENT, self.user_agent)
            .body(Empty::new());
        let Ok(request) = request else {
            return false;
        };
        match tokio::time::timeout(timeout, self.client.request(request)).await {
            Ok(Ok(response)) => {
                let s = response.status();
                s.is_success() || s.is_redirection()
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::HttpProbe;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server that answers every request with `status`, on a fresh port.
    async fn answering(status: &'static str) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = conn.read(&mut buf).await;
                    let reply = format!(
                        "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    );
                    let _ = conn.write_all(reply.as_bytes()).await;
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn two_and_three_hundreds_are_alive_the_rest_and_silence_are_not() {
        let probe = HttpProbe::new("test");
        let t = Duration::from_secs(2);
        assert!(probe.alive(&answering("200 OK").await, "/h", t).await);
        assert!(probe.alive(&answering("302 Found").await, "/h", t).await);
        assert!(
            !probe
                .alive(&answering("404 Not Found").await, "/h", t)
                .await
        );
        assert!(
            !probe
                .alive(&answering("503 Unavailable").await, "/h", t)
                .await
        );
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = silent.local_addr().expect("addr").to_string();
        let started = std::time::Instant::now();
        assert!(!probe.alive(&addr, "/h", Duration::from_millis(200)).await);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the timeout holds"
        );
        assert!(!probe.alive("bad host name", "/h", t).await);
    }
}
