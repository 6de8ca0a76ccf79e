//! `lain ps -w`: follows an app through `GET /api/v1/watch` (NDJSON), printing it again at
//! every change, and reconnects from the last event id when the stream ends.

use super::Output;
use super::client::Client;
use crate::lifecycle::view::AppView;
use std::io::BufRead;
use std::time::Duration;

/// Wait before reconnecting after the stream ended or could not open.
const RECONNECT: Duration = Duration::from_secs(1);

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
