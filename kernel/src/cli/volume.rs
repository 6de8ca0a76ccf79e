//! `lain volume ...`: the volumes of instances (where they live, how large they are).

use super::Output;
use super::client::Client;
use super::output::{print, table};
use clap::Subcommand;

/// Volume commands.
#[derive(Subcommand)]
pub enum VolumeCommand {
    /// List volumes: app, proc, instance, node, paths, size (where the kernel's host holds
    /// them). Every app's without `-a` (cluster admins).
    List {
        /// The app; default: every app.
        #[arg(long, short)]
        app: Option<String>,
    },
}

/// Runs a volume command.
pub fn run(cmd: VolumeCommand, client: &Client, out: Output) -> anyhow::Result<()> {
    match cmd {
        VolumeCommand::List { app } => {
            let path = match &app {
                Some(app) => format!("/api/v1/apps/{}/volumes", super::encode(app)),
                None => "/api/v1/volumes".into(),
            };
            let volumes: Vec<serde_json::Value> = client.get(&path)?;
            print(out, &volumes, |volumes| {
                let rows: Vec<Vec<String>> = volumes
                    .iter()
                    .map(|v| {
                        let size = match (v["bytes"].as_u64(), v["files"].as_u64()) {
                            (Some(b), Some(f)) => format!(
                                "{}{} in {f} files",
                                if v["complete"] == false { ">= " } else { "" },
                                human(b)
                            ),
                            _ => "-".into(),
                        };
                        let paths: Vec<&str> = v["volumes"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|p| p.as_str())
                            .filter(|p| *p != "/lain/logs")
                            .collect();
                        vec![
                            v["app"].as_str().unwrap_or("").into(),
                            v["proc_name"].as_str().unwrap_or("").into(),
                            v["number"].to_string(),
                            v["node"].as_str().unwrap_or("").into(),
                            paths.join(","),
                            size,
                        ]
                    })
                    .collect();
                table(&["APP", "PROC", "INSTANCE", "NODE", "PATHS", "SIZE"], &rows);
            })
        }
    }
}

/// `bytes` in B, KiB, MiB or GiB.
fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
