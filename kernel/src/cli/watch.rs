//! Following an app through `GET /api/v1/watch` (NDJSON): `lain ps -w` prints it again at every
//! change and reconnects from the last event id when the stream ends; [`until`] hands each view
//! to a caller until it is done (`lain deploy` waiting for a rollout).

use super::Output;
use super::client::Client;
use crate::lifecycle::view::AppView;
use anyhow::{Context as _, bail};
use std::io::{BufRead, Read as _};
use std::time::{Duration, Instant};

/// Wait before reconnecting after the stream ended or could not open.
const RECONNECT: Duration = Duration::from_secs(1);

/// Longest event line [`until`] reads (one app's whole view).
const MAX_LINE: u64 = 16 << 20;

/// Follows app `app` and gives `on_view` each of its views as `GET /api/v1/apps/{app}` shows it
/// (the current one first, then one at every change the kernel sends), until `on_view` returns
/// something, which is returned, or fails; `Ok(None)` once `deadline` passed. A stream that
/// ends is opened again (its first view is the current one again); an app removed meanwhile is
/// an error, as is a kernel that cannot be reached or refuses the watch.
pub fn until<T>(
    client: &Client,
    app: &str,
    deadline: Instant,
    mut on_view: impl FnMut(AppView) -> anyhow::Result<Option<T>>,
) -> anyhow::Result<Option<T>> {
    let path = format!(
        "/api/v1/watch?format=ndjson&kinds=app&app={}",
        super::encode(app)
    );
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        let mut lines = match client.get_stream_within(&path, left) {
            Ok(lines) => lines,
            // Too many watches open: one will close.
            Err(e) if e.to_string().contains("(503") => {
                eprintln!("lain: {e}; retrying");
                std::thread::sleep(RECONNECT.min(left));
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut line = Vec::new();
        loop {
            line.clear();
            match (&mut lines).take(MAX_LINE).read_until(b'\n', &mut line) {
                Ok(0) => break,
                Ok(n) if n as u64 == MAX_LINE && !line.ends_with(b"\n") => {
                    bail!("the kernel sent a watch event longer than {MAX_LINE} bytes")
                }
                Ok(_) => {}
                // The deadline ends the stream with an error; so does a broken connection.
                Err(_) if Instant::now() >= deadline => return Ok(None),
                Err(_) => break,
            }
            let event: serde_json::Value = serde_json::from_slice(&line).with_context(|| {
                format!(
                    "the kernel sent something unexpected: {}",
                    String::from_utf8_lossy(&line)
                )
            })?;
            if event["event"] != "app" {
                continue; // `synced`, or `error` (then the stream ends)
            }
            if event["action"] == "delete" || event["object"].is_null() {
                bail!("app {app} was removed while waiting");
            }
            let view: AppView = serde_json::from_value(event["object"].clone())
                .context("the kernel sent an app view this lain cannot read")?;
            if let Some(done) = on_view(view)? {
                return Ok(Some(done));
            }
        }
        // Ended by the kernel (restarting, or this client too slow): open it again.
        std::thread::sleep(Duration::from_millis(100).min(left));
    }
}

/// Follows app `app` until interrupted: with `Output::Json`, each event as one JSON line
/// (NDJSON, as the kernel sends it); for people, the `lain ps` view again at each change.
pub fn follow(client: &Client, app: &str, out: Output) -> anyhow::Result<()> {
    let mut last: Option<String> = None;
    let mut failures = 0u32;
    loop {
        let mut path = format!(
            "/api/v1/watch?format=ndjson&kinds=app&app={}",
            super::encode(app)
        );
        if let Some(id) = &last {
            path.push_str(&format!("&from={}", super::encode(id)));
        }
        let lines = match client.get_stream(&path) {
            Ok(lines) => {
                failures = 0;
                lines
            }
            Err(e) if e.to_string().contains("(410") => {
                // The history after `last` is gone: start over from a snapshot.
                eprintln!("lain: {e}; listing again");
                last = None;
                continue;
            }
            Err(e) if e.to_string().contains("(40") => return Err(e),
            Err(e) => {
                failures += 1;
                eprintln!("lain: {e}; retrying");
                std::thread::sleep(RECONNECT * failures.min(10));
                continue;
            }
        };
        for line in lines.lines() {
            let line = match line {
                Ok(line) => line,
                Err(e) => {
                    eprintln!("lain: the watch stream broke: {e}; reconnecting");
                    break;
                }
            };
            let event: serde_json::Value = serde_json::from_str(&line).map_err(|e| {
                anyhow::anyhow!("the kernel sent something unexpected: {e}: {line}")
            })?;
            if let Some(id) = event["id"].as_str() {
                last = Some(id.to_string());
            }
            match out {
                Output::Json => println!("{line}"),
                Output::Table => print_event(&event),
            }
        }
        std::thread::sleep(RECONNECT);
    }
}

/// Prints one event for people.
fn print_event(event: &serde_json::Value) {
    match event["event"].as_str() {
        Some("app") => match event["action"].as_str() {
            Some("delete") => println!("-- app {} removed", event["name"]),
            _ => match serde_json::from_value::<AppView>(event["object"].clone()) {
                Ok(view) => {
                    println!();
                    super::app::print_app(&view);
                }
                Err(e) => eprintln!("lain: cannot read the app of an event: {e}"),
            },
        },
        Some("error") => eprintln!(
            "lain: the kernel ended the watch: {}",
            event["message"].as_str().unwrap_or("no reason given")
        ),
        _ => {}
    }
}
