//! A small blocking client of the platform API.

use anyhow::{Context, anyhow};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// Talks to one kernel.
pub struct Client {
    base: String,
    agent: ureq::Agent,
    /// `Bearer <token>`, sent with every request.
    authorization: Option<String>,
}

impl Client {
    /// A client of the kernel at `base` (e.g. `http://127.0.0.1:7070`) sending `token`.
    pub fn new(base: &str, token: Option<String>) -> Client {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(120)))
            .http_status_as_error(false)
            .build();
        Client {
            base: base.trim_end_matches('/').to_string(),
            agent: config.into(),
            authorization: token.map(|t| format!("Bearer {}", t.trim())),
        }
    }

    /// Adds the credentials to a request.
    fn auth<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.authorization {
            Some(a) => req.header("Authorization", a),
            None => req,
        }
    }

    /// GET `path`, returning the raw answer body (for secret contents).
    pub fn get_bytes(&self, path: &str) -> anyhow::Result<Vec<u8>> {
        let mut resp = self
            .auth(self.agent.get(&self.url(path)))
            .call()
            .map_err(|e| self.unreachable(e))?;
        if !resp.status().is_success() {
            return Err(self
                .decode::<serde_json::Value>(resp)
                .err()
                .unwrap_or_else(|| anyhow!("the kernel refused")));
        }
        resp.body_mut()
            .with_config()
            .limit(16 << 20)
            .read_to_vec()
            .context("reading the kernel's answer")
    }

    /// GET `path`, decoding the JSON answer.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let resp = self
            .auth(self.agent.get(&self.url(path)))
            .call()
            .map_err(|e| self.unreachable(e))?;
        self.decode(resp)
    }

    /// Sends `body` as JSON with `method`, decoding the JSON answer (if any).
    pub fn send<B: Serialize, T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&B>,
    ) -> anyhow::Result<T> {
        let url = self.url(path);
        let resp = match (method, body) {
            ("POST", Some(b)) => self.auth(self.agent.post(&url)).send_json(b),
            ("POST", None) => self.auth(self.agent.post(&url)).send_empty(),
            ("PUT", Some(b)) => self.auth(self.agent.put(&url)).send_json(b),
            ("PUT", None) => self.auth(self.agent.put(&url)).send_empty(),
            ("PATCH", Some(b)) => self.auth(self.agent.patch(&url)).send_json(b),
            ("DELETE", _) => self.auth(self.agent.delete(&url)).call(),
            _ => return Err(anyhow!("unsupported method {method}")),
        }
        .map_err(|e| self.unreachable(e))?;
        self.decode(resp)
    }

    /// POSTs `body` as JSON and decodes the JSON answer, waiting as long as the kernel takes
    /// (backups and restores run before their answer).
    pub fn post_slow<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let resp = self
            .auth(self.streaming().post(&self.url(path)))
            .send_json(body)
            .map_err(|e| self.unreachable(e))?;
        self.decode(resp)
    }

    /// POSTs `body` with `content_type` and `headers` and returns the answer as a stream of
    /// lines (for answers that report progress as they go).
    pub fn post_stream(
        &self,
        path: &str,
        content_type: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> anyhow::Result<Box<dyn std::io::BufRead>> {
        let mut req = self
            .auth(self.streaming().post(&self.url(path)))
            .header("content-type", content_type);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let resp = req.send(body).map_err(|e| self.unreachable(e))?;
        self.reader(resp)
    }

    /// GETs `path` and returns the answer as a stream (logs that follow).
    pub fn get_stream(&self, path: &str) -> anyhow::Result<Box<dyn std::io::BufRead>> {
        let resp = self
            .auth(self.streaming().get(&self.url(path)))
            .call()
            .map_err(|e| self.unreachable(e))?;
        self.reader(resp)
    }

    /// GETs `path` and returns the answer as a stream that ends with an error once `within`
    /// has passed (a watch followed until a deadline).
    pub fn get_stream_within(
        &self,
        path: &str,
        within: Duration,
    ) -> anyhow::Result<Box<dyn std::io::BufRead>> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_global(Some(within.max(Duration::from_millis(1))))
            .http_status_as_error(false)
            .build()
            .into();
        let resp = self
            .auth(agent.get(&self.url(path)))
            .call()
            .map_err(|e| self.unreachable(e))?;
        self.reader(resp)
    }

    /// An agent without a global timeout, for answers that last (builds, `logs -f`).
    fn streaming(&self) -> ureq::Agent {
        ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(10)))
            .http_status_as_error(false)
            .build()
            .into()
    }

    fn reader(
        &self,
        resp: ureq::http::Response<ureq::Body>,
    ) -> anyhow::Result<Box<dyn std::io::BufRead>> {
        if !resp.status().is_success() {
            let status = resp.status();
            return Err(self
                .decode::<serde_json::Value>(resp)
                .err()
                .unwrap_or_else(|| anyhow!("the kernel answered {status}")));
        }
        Ok(Box::new(std::io::BufReader::new(
            resp.into_body().into_reader(),
        )))
    }

    /// The WebSocket handshake request for `path` (with its query) on this kernel, with the
    /// credentials, and the `host:port` to connect to. Only plain HTTP kernels are reached.
    pub fn websocket_request(
        &self,
        path: &str,
    ) -> anyhow::Result<(
        String,
        tokio_tungstenite::tungstenite::handshake::client::Request,
    )> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
        let Some(rest) = self.base.strip_prefix("http://") else {
            return Err(anyhow!(
                "the kernel's address {} is not http://HOST:PORT, which a terminal needs",
                self.base
            ));
        };
        let mut request = format!("ws://{rest}{path}")
            .into_client_request()
            .with_context(|| format!("the kernel's address {} is not a URL", self.base))?;
        let uri = request.uri();
        let host = uri.host().unwrap_or("127.0.0.1");
        let address = format!("{host}:{}", uri.port_u16().unwrap_or(80));
        if let Some(authorization) = &self.authorization {
            let value = authorization
                .parse()
                .context("the token is not a valid header value")?;
            request.headers_mut().insert("authorization", value);
        }
        Ok((address, request))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn unreachable(&self, e: ureq::Error) -> anyhow::Error {
        anyhow!(
            "cannot reach the kernel at {}: {e} (is `lain serve` running? set --kernel or LAIN_KERNEL)",
            self.base
        )
    }

    fn decode<T: DeserializeOwned>(
        &self,
        mut resp: ureq::http::Response<ureq::Body>,
    ) -> anyhow::Result<T> {
        let status = resp.status();
        let text = resp
            .body_mut()
            .read_to_string()
            .context("reading the kernel's answer")?;
        if !status.is_success() {
            let message = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
                .unwrap_or(text);
            return Err(anyhow!("{message} ({status})"));
        }
        let text = if text.is_empty() { "null" } else { &text };
        serde_json::from_str(text)
            .with_context(|| format!("the kernel answered something unexpected: {text}"))
    }
}
