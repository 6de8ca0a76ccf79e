//! `lain volume ...`: the volumes of instances (where they live, how large they are), and
//! moving them to another node.

use super::Output;
use super::client::Client;
use super::output::{print, table};
use crate::backup::Migrated;
use clap::Subcommand;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Volume commands.
#[derive(Subcommand)]
pub enum VolumeCommand {
    /// List volumes: app, proc, instance, node (and a move under way), paths, size (where the
    /// kernel's host holds them). Every app's without `-a` (cluster admins).
    List {
        /// The app; default: every app.
        #[arg(long, short)]
        app: Option<String>,
    },
    /// Move an instance's volumes to another node, through a backup and a restore (verified):
    /// the instance is stopped, the final full backup of each volume is taken (or the backups
    /// given with --backup are used, when its node is gone), restored for the target node, and
    /// the instance starts there. Run it again to finish an interrupted migration.
    #[command(
        after_help = "On one host, nodes at address `local` share the volume directories: the \
volume is replaced by its restored copy in place. Volumes of a node at another address (a remote \
Docker engine) cannot be written by the kernel: such a node is refused as a target, and as a \
source without --backup. Examples:\n  lain volume migrate myapp db 1 --to node2\n  lain volume \
migrate myapp db 1 --to node2 --backup 12\n  lain volume migrate myapp db 1 --cancel"
    )]
    Migrate {
        /// The app.
        app: String,
        /// The proc.
        proc: String,
        /// The instance number.
        instance: u32,
        /// The node to move them to.
        #[arg(long, required_unless_present = "cancel")]
        to: Option<String>,
        /// Restore this backup (`lain backup list`) instead of taking a final one: one per
        /// volume of the proc, repeated for several.
        #[arg(long = "backup", value_name = "ID")]
        backups: Vec<u64>,
        /// Give an unfinished migration up: the instance starts again on the node it was on.
        #[arg(long, conflicts_with_all = ["to", "backups"])]
        cancel: bool,
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
                            match v["migration"]["to"].as_str() {
                                Some(to) => format!(
                                    "{} (moving to {to}: {})",
                                    v["node"].as_str().unwrap_or(""),
                                    v["migration"]["step"].as_str().unwrap_or("")
                                ),
                                None => v["node"].as_str().unwrap_or("").into(),
                            },
                            paths.join(","),
                            size,
                        ]
                    })
                    .collect();
                table(&["APP", "PROC", "INSTANCE", "NODE", "PATHS", "SIZE"], &rows);
            })
        }
        VolumeCommand::Migrate {
            app,
            proc,
            instance,
            to,
            backups,
            cancel,
        } => {
            let path = format!(
                "/api/v1/apps/{}/procs/{}/volumes/{instance}/migrate",
                super::encode(&app),
                super::encode(&proc)
            );
            if cancel {
                eprintln!("giving up the migration of instance {instance} of {app}.{proc}...");
            } else {
                eprintln!(
                    "migrating the volumes of instance {instance} of {app}.{proc} to node {}{}...",
                    to.as_deref().unwrap_or(""),
                    if backups.is_empty() {
                        ""
                    } else {
                        " from the backups given"
                    }
                );
            }
            let body = serde_json::json!({ "to": to, "backups": backups, "cancel": cancel });
            let finished = AtomicBool::new(false);
            let done: Migrated = std::thread::scope(|scope| {
                if !cancel {
                    scope.spawn(|| watch_steps(client, &app, &proc, instance, &finished));
                }
                let done = client.post_slow(&path, &body);
                finished.store(true, Ordering::Relaxed);
                done
            })?;
            print(out, &done, |m| {
                if cancel {
                    println!(
                        "migration of instance {} of {}.{} given up: its volumes stay on node {}",
                        m.instance, m.app, m.proc, m.from
                    );
                    return;
                }
                for v in &m.volumes {
                    println!(
                        "{}: {} backup {} restored ({} in {} files) into {}",
                        v.volume,
                        if v.final_backup { "final" } else { "given" },
                        v.backup,
                        human(v.bytes),
                        v.files,
                        v.path
                    );
                }
                println!(
                    "instance {} of {}.{} moved from node {} to node {}{}",
                    m.instance,
                    m.app,
                    m.proc,
                    m.from,
                    m.to,
                    if m.running {
                        ", running there"
                    } else {
                        "; not running there yet (`lain ps` shows why)"
                    }
                );
            })
        }
    }
}

/// Prints each step of the migration of instance `no` of `proc` as the volume home records it
/// (polling `lain volume list`'s endpoint) until `finished`.
fn watch_steps(client: &Client, app: &str, proc: &str, no: u32, finished: &AtomicBool) {
    let path = format!("/api/v1/apps/{}/volumes", super::encode(app));
    let mut last = String::new();
    while !finished.load(Ordering::Relaxed) {
        if let Ok(volumes) = client.get::<Vec<serde_json::Value>>(&path)
            && let Some(step) = volumes
                .iter()
                .find(|v| v["proc_name"] == proc && v["number"] == no)
                .and_then(|v| v["migration"]["step"].as_str())
            && step != last
        {
            let said = match step {
                "stopping" => "stopping the instance",
                "backing" => "taking the final backup of each volume",
                "restoring" => "restoring (verified) for the target node",
                other => other,
            };
            eprintln!("  {said}...");
            last = step.to_string();
        }
        std::thread::sleep(Duration::from_millis(100));
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
