//! `lain secret ...`: secret files of an app's procs.

use super::Output;
use super::app::AppArg;
use super::client::Client;
use super::output;
use crate::api::secrets::Rotated;
use crate::secrets::vault::SecretInfo;
use base64::Engine as _;
use clap::Subcommand;
use std::io::{Read as _, Write as _};
use std::path::PathBuf;

/// `lain secret ...`.
#[derive(Subcommand)]
pub enum SecretCommand {
    /// Store a secret file of a proc (from --file, --content or standard input). Instances
    /// created afterwards get it: deploy again to roll it out.
    Add {
        /// Proc name (`web`, `worker`, ...).
        proc: String,
        /// Path in the instance; relative paths are under `/lain/app` (as in `secret_files`).
        path: String,
        #[command(flatten)]
        app: AppArg,
        /// Read the content from this file.
        #[arg(long, short, conflicts_with = "content")]
        file: Option<PathBuf>,
        /// The content itself (visible in the shell's history: prefer --file or stdin).
        #[arg(long, short)]
        content: Option<String>,
    },
    /// Print a secret file's content to standard output.
    Show {
        /// Proc name.
        proc: String,
        /// Path in the instance.
        path: String,
        #[command(flatten)]
        app: AppArg,
    },
    /// List the app's secret files (of one proc if given), without their contents.
    List {
        /// Proc name.
        proc: Option<String>,
        #[command(flatten)]
        app: AppArg,
    },
    /// Remove a secret file.
    Remove {
        /// Proc name.
        proc: String,
        /// Path in the instance.
        path: String,
        #[command(flatten)]
        app: AppArg,
    },
    /// Re-encrypt every secret file under a new master key (cluster admins).
    RotateKey,
}

/// LAIN's rule: a relative secret path is under `/lain/app`.
fn absolute(path: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/lain/app/{path}")
    }
}

/// Runs `lain secret ...`.
pub fn run(cmd: SecretCommand, client: &Client, out: Output) -> anyhow::Result<()> {
    match cmd {
        SecretCommand::Add {
            proc,
            path,
            app,
            file,
            content,
        } => {
            let app = app.resolve()?;
            let bytes = match (file, content) {
                (Some(f), _) => std::fs::read(&f)
                    .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", f.display()))?,
                (None, Some(c)) => c.into_bytes(),
                (None, None) => {
                    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                        eprintln!("reading the secret from standard input; end it with Ctrl-D");
                    }
                    let mut buf = Vec::new();
                    std::io::stdin().read_to_end(&mut buf)?;
                    buf
                }
            };
            let body = serde_json::json!({
                "path": absolute(&path),
                "content": base64::engine::general_purpose::STANDARD.encode(&bytes),
            });
            let info: SecretInfo = client.send(
                "PUT",
                &format!("/api/v1/apps/{app}/procs/{}/secrets", super::encode(&proc)),
                Some(&body),
            )?;
            output::print(out, &info, |i| {
                println!(
                    "stored {} of {}/{} ({} bytes, key {}); deploy to roll it out",
                    i.path, i.app, i.proc, i.size, i.key_id
                )
            })
        }
        SecretCommand::Show { proc, path, app } => {
            let bytes = client.get_bytes(&format!(
                "/api/v1/apps/{}/procs/{}/secrets/content?path={}",
                app.resolve()?,
                super::encode(&proc),
                super::encode(&absolute(&path))
            ))?;
            std::io::stdout().write_all(&bytes)?;
            Ok(())
        }
        SecretCommand::List { proc, app } => {
            let mut url = format!("/api/v1/apps/{}/secrets", app.resolve()?);
            if let Some(p) = proc {
                url.push_str(&format!("?proc={}", super::encode(&p)));
            }
            let list: Vec<SecretInfo> = client.get(&url)?;
            output::print(out, &list, |list| {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|i| {
                        vec![
                            i.proc.clone(),
                            i.path.clone(),
                            i.size.to_string(),
                            i.key_id.clone(),
                        ]
                    })
                    .collect();
                output::table(&["PROC", "PATH", "BYTES", "KEY"], &rows);
            })
        }
        SecretCommand::Remove { proc, path, app } => {
            let path = absolute(&path);
            client.send::<(), serde_json::Value>(
                "DELETE",
                &format!(
                    "/api/v1/apps/{}/procs/{}/secrets?path={}",
                    app.resolve()?,
                    super::encode(&proc),
                    super::encode(&path)
                ),
                None,
            )?;
            eprintln!("removed {path}");
            Ok(())
        }
        SecretCommand::RotateKey => {
            eprintln!("re-encrypting every secret file under a new master key...");
            let r: Rotated = client.send::<(), _>("POST", "/api/v1/secrets/rotate-key", None)?;
            output::print(out, &r, |r| {
                println!(
                    "master key is now {}; {} secret file(s) re-encrypted",
                    r.key_id, r.reencrypted
                )
            })
        }
    }
}
