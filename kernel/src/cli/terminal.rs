//! `lain exec -t`: this terminal, in raw mode, joined to a command on a terminal in an instance
//! through the kernel's WebSocket (`kernel/src/api/terminal.rs`): keys go in as they are typed,
//! the command's output comes back as it is written, window resizes (SIGWINCH) follow.

use super::client::Client;
use super::procs::{ExecArgs, say_how_it_ended};
use crate::api::procs::ExecEvent;
use crate::runtime::tty::{TtySize, check_term};
use anyhow::{Context as _, anyhow, bail};
use futures::{SinkExt as _, StreamExt as _};
use std::io::{Read as _, Write as _};
use std::process::ExitCode;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// This terminal in raw mode (keys pass through unprocessed) until dropped.
struct RawMode {
    saved: rustix::termios::Termios,
}

impl RawMode {
    fn enter() -> anyhow::Result<RawMode> {
        let stdin = std::io::stdin();
        let saved = rustix::termios::tcgetattr(&stdin).context("reading the terminal's mode")?;
        let mut raw = saved.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &raw)
            .context("putting the terminal in raw mode")?;
        Ok(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let stdin = std::io::stdin();
        let _ =
            rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &self.saved);
    }
}

/// This terminal's window size (24x80 when it cannot be read).
fn window_size() -> TtySize {
    rustix::termios::tcgetwinsize(std::io::stdin())
        .ok()
        .and_then(|w| TtySize::checked(w.ws_row, w.ws_col).ok())
        .unwrap_or(TtySize { rows: 24, cols: 80 })
}

/// The route and query of the command's terminal.
fn path(args: &ExecArgs, app: &str, size: TtySize) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for arg in &args.command {
        query.append_pair("command", arg);
    }
    if let Some(instance) = args.instance {
        query.append_pair("instance", &instance.to_string());
    }
    query.append_pair("timeout", &args.timeout().to_string());
    query.append_pair("rows", &size.rows.to_string());
    query.append_pair("cols", &size.cols.to_string());
    // The terminal's type as this one says, if it is one the kernel takes.
    let term = std::env::var("TERM").ok().filter(|t| check_term(t).is_ok());
    query.append_pair("term", term.as_deref().unwrap_or("xterm"));
    format!(
        "/api/v1/apps/{app}/procs/{}/exec/tty?{}",
        super::encode(&args.proc),
        query.finish()
    )
}

/// Runs `lain exec -t`; the exit code is the command's.
pub fn exec_tty(client: &Client, args: &ExecArgs) -> anyhow::Result<ExitCode> {
    if !rustix::termios::isatty(std::io::stdin()) {
        bail!("-t needs a terminal: lain's standard input is not one");
    }
    let app = args.app.resolve()?;
    let (address, request) = client.websocket_request(&path(args, &app, window_size()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the terminal's event loop")?;
    let ended = runtime.block_on(relay(address, request));
    // The thread reading keys may still wait for one: it is not waited for.
    runtime.shutdown_background();
    let (name, instance, code, timed_out) = ended?;
    Ok(say_how_it_ended(
        &name,
        instance,
        args.timeout(),
        code,
        timed_out,
    ))
}

/// What the kernel said of the command: its instance's name and number, its status, whether
/// it timed out.
type Ended = (String, u32, Option<i32>, bool);

async fn relay(
    address: String,
    request: tokio_tungstenite::tungstenite::handshake::client::Request,
) -> anyhow::Result<Ended> {
    let unreachable = |e: &dyn std::fmt::Display| {
        anyhow!("cannot reach the kernel at {address}: {e} (is `lain serve` running?)")
    };
    let tcp = tokio::net::TcpStream::connect(&address)
        .await
        .map_err(|e| unreachable(&e))?;
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(crate::api::terminal::MESSAGE_MAX))
        .max_frame_size(Some(crate::api::terminal::MESSAGE_MAX));
    let (socket, _) =
        match tokio_tungstenite::client_async_with_config(request, tcp, Some(config)).await {
            Ok(connected) => connected,
            // The kernel refused before the upgrade: its answer says why.
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                let status = response.status();
                let body = response.body().as_deref().unwrap_or_default();
                let message = serde_json::from_slice::<serde_json::Value>(body)
                    .ok()
                    .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
                    .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
                bail!("{message} ({status})");
            }
            Err(e) => return Err(unreachable(&e)),
        };
    let (mut sink, mut stream) = socket.split();
    let mut winch = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
        .context("following the window's size")?;
    // This terminal is restored however this function returns.
    let _raw = RawMode::enter()?;
    let mut keys = read_keys();
    let mut stdout = std::io::stdout();
    let (mut name, mut instance, mut last) = (String::new(), 0, None);
    let mut typing = true;
    loop {
        tokio::select! {
            message = stream.next() => match message {
                Some(Ok(Message::Binary(bytes))) => {
                    stdout.write_all(&bytes)?;
                    stdout.flush()?;
                }
                Some(Ok(Message::Text(text))) => match serde_json::from_str(&text) {
                    Ok(ExecEvent::Started { name: n, instance: i }) => (name, instance) = (n, i),
                    Ok(event @ (ExecEvent::Exited { .. } | ExecEvent::Failed { .. })) => {
                        last = Some(event)
                    }
                    Ok(_) | Err(_) => bail!("the kernel sent something unexpected: {text}"),
                },
                Some(Ok(Message::Close(_))) | None => break,
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    if last.is_some() {
                        break;
                    }
                    bail!("the connection to the kernel broke: {e}");
                }
            },
            typed = keys.recv(), if typing => match typed {
                Some(bytes) => {
                    if sink.send(Message::Binary(bytes.into())).await.is_err() {
                        typing = false;
                    }
                }
                None => typing = false,
            },
            _ = winch.recv() => {
                let resize = crate::api::terminal::TtyClientMessage::Resize(window_size());
                let text = serde_json::to_string(&resize)?;
                let _ = sink.send(Message::Text(text.into())).await;
            }
        }
    }
    match last {
        Some(ExecEvent::Exited { code, timed_out }) => Ok((name, instance, code, timed_out)),
        Some(ExecEvent::Failed { message }) => Err(anyhow!("{message}")),
        _ => bail!("the kernel ended the terminal without the command's exit status"),
    }
}

/// The keys typed on this terminal, as they come, read by a thread of their own (a read of a
/// terminal cannot be cancelled; the thread ends with the process).
fn read_keys() -> mpsc::Receiver<Vec<u8>> {
    let (keys, received) = mpsc::channel(16);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; 4096];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if keys.blocking_send(buf[..n].to_vec()).is_err() {
                        return;
                    }
                }
            }
        }
    });
    received
}
