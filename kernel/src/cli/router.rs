//! `lain router ...`: the web router's nginx export and route claims, and the stream ports.

use super::Output;
use super::client::Client;
use super::output::{print, table};
use crate::api::routes::Assigned;
use crate::lifecycle::route_claims::RouteClaim;
use crate::router::stream::StreamView;
use clap::Subcommand;
use serde_json::json;

/// `lain router ...`.
#[derive(Subcommand)]
pub enum RouterCommand {
    /// Print the router's routes as nginx configuration (upstreams and servers to include in
    /// nginx's `http` block), for sites that front lain with nginx.
    NginxConfig {
        /// What the generated servers listen on.
        #[arg(long, default_value = "80")]
        listen: String,
    },
    /// Which app each host and path belongs to (the apps you may read; all for admins).
    Claims,
    /// The stream ports the router forwards (of the apps you may read): source port and
    /// protocol, proc, destination, ready instances, whether it listens (why not, when binding
    /// failed), and connections (UDP: sessions, and datagrams dropped beyond the session bound).
    Streams,
    /// Give a mountpoint (`host[/path]`) to an app, replacing the claims it covers; a path
    /// under another app's host is carved out of it (cluster admins).
    Assign {
        /// `host` or `host/path`.
        mountpoint: String,
        /// The app it is given to.
        app: String,
    },
    /// Release a claim: nobody holds the mountpoint until a deploy claims it (cluster admins).
    Release {
        /// `host` or `host/path`, exactly as claimed.
        mountpoint: String,
    },
}

/// Runs a router command.
pub fn run(cmd: RouterCommand, client: &Client, out: Output) -> anyhow::Result<()> {
    match cmd {
        RouterCommand::NginxConfig { listen } => {
            let mut r = client.get_stream(&format!(
                "/api/v1/router/nginx?listen={}",
                super::encode(&listen)
            ))?;
            std::io::copy(&mut r, &mut std::io::stdout())?;
            Ok(())
        }
        RouterCommand::Claims => {
            let claims: Vec<RouteClaim> = client.get("/api/v1/router/claims")?;
            print(out, &claims, |claims| print_claims(claims.iter()))
        }
        RouterCommand::Streams => {
            let streams: Vec<StreamView> = client.get("/api/v1/router/streams")?;
            print(out, &streams, |streams| {
                let rows: Vec<Vec<String>> = streams
                    .iter()
                    .map(|s| {
                        vec![
                            format!("{}/{}", s.source, s.protocol),
                            format!("{}/{}", s.app, s.proc),
                            s.destination.to_string(),
                            if s.backends.is_empty() {
                                "-".into()
                            } else {
                                s.backends.join(",")
                            },
                            match (&s.error, s.listening) {
                                (Some(e), _) => format!("not listening: {e}"),
                                (None, true) => "listening".into(),
                                (None, false) => "not listening".into(),
                            },
                            if s.protocol == "udp" {
                                format!(
                                    "{} sessions ({} open, {} datagrams dropped)",
                                    s.connections, s.active, s.dropped
                                )
                            } else {
                                format!("{} ({} open)", s.connections, s.active)
                            },
                        ]
                    })
                    .collect();
                table(
                    &[
                        "SOURCE",
                        "PROC",
                        "DEST",
                        "INSTANCES",
                        "STATE",
                        "CONNECTIONS",
                    ],
                    &rows,
                );
            })
        }
        RouterCommand::Assign { mountpoint, app } => {
            let body = json!({ "mountpoint": mountpoint, "app": app });
            let assigned: Assigned = client.send("PUT", "/api/v1/router/claims", Some(&body))?;
            print(out, &assigned, |a| {
                print_claims(std::iter::once(&a.claim));
                for r in &a.replaced {
                    eprintln!("replaced: {} of app {}", r.mountpoint, r.app);
                }
            })
        }
        RouterCommand::Release { mountpoint } => {
            let released: RouteClaim = client.send::<(), _>(
                "DELETE",
                &format!(
                    "/api/v1/router/claims?mountpoint={}",
                    super::encode(&mountpoint)
                ),
                None,
            )?;
            print(out, &released, |c| {
                println!("released {} (was app {})", c.mountpoint, c.app)
            })
        }
    }
}

fn print_claims<'a>(claims: impl Iterator<Item = &'a RouteClaim>) {
    let rows: Vec<Vec<String>> = claims
        .map(|c| {
            vec![
                c.mountpoint.clone(),
                c.app.clone(),
                c.assigned_by
                    .as_ref()
                    .map_or_else(|| "deploy".to_string(), |by| format!("assigned by {by}")),
            ]
        })
        .collect();
    table(&["MOUNTPOINT", "APP", "HOW"], &rows);
}
