//! `lain backup ...`: volume backups: list, run now, restore, delete.

use super::Output;
use super::app::AppArg;
use super::client::Client;
use super::output::{print, table};
use crate::backup::{BackupRecord, BackupState, Kind, Outcome, Restored};
use clap::Subcommand;

/// `lain backup ...`.
#[derive(Subcommand)]
#[command(
    after_help = "Backups of a proc's volumes run on the schedules of `backup_full` and \
`backup_increment` in lain.yaml, planned by the backup-hook plugin (`[backup] hook`, default \
`archive`) and stored by restic in an encrypted repository. Examples:\n  lain backup list -a myapp \
--proc db\n  lain backup run myapp db --volume /var/lib/db\n  lain backup restore 12 -a myapp\n  \
lain backup restore 12 -a myapp --to /srv/restored-12\n  lain backup delete 12 -a myapp"
)]
pub enum BackupCommand {
    /// The app's backups, oldest first, failed ones included (SIZE is the volume's, ADDED what
    /// the backup stored).
    List {
        #[command(flatten)]
        app: AppArg,
        /// Only this proc's.
        #[arg(long, short)]
        proc: Option<String>,
    },
    /// Back up a proc's volumes now (every volume of every instance unless narrowed) and
    /// print the records once done.
    Run {
        /// The app.
        app: String,
        /// The proc.
        proc: String,
        /// Only this volume (its path in the instance).
        #[arg(long)]
        volume: Option<String>,
        /// Only this instance.
        #[arg(long)]
        instance: Option<u32>,
        /// An incremental backup (only files changed since the volume's last backup are read)
        /// instead of a full one.
        #[arg(long)]
        incremental: bool,
    },
    /// Restore a backup, verified against its hashes: in place (the instance is stopped, its
    /// volume replaced, and started again) or beside it with --to (cluster admins).
    Restore {
        /// The backup's id (`lain backup list`).
        id: u64,
        #[command(flatten)]
        app: AppArg,
        /// Into this instance's volume instead of the backup's own instance.
        #[arg(long, conflicts_with = "to")]
        instance: Option<u32>,
        /// Into this new directory on the kernel's host instead (absolute; cluster admins).
        #[arg(long)]
        to: Option<String>,
    },
    /// Delete a backup: its snapshot, the data only it held, and its record.
    Delete {
        /// The backup's id.
        id: u64,
        #[command(flatten)]
        app: AppArg,
    },
}

/// Runs `lain backup ...`.
pub fn run(cmd: BackupCommand, client: &Client, out: Output) -> anyhow::Result<()> {
    match cmd {
        BackupCommand::List { app, proc } => {
            let app = app.resolve()?;
            let path = match proc {
                Some(p) => format!("/api/v1/apps/{app}/backups?proc={}", super::encode(&p)),
                None => format!("/api/v1/apps/{app}/backups"),
            };
            let list: Vec<BackupRecord> = client.get(&path)?;
            print(out, &list, |list| print_records(list))
        }
        BackupCommand::Run {
            app,
            proc,
            volume,
            instance,
            incremental,
        } => {
            let kind = if incremental {
                Kind::Incremental
            } else {
                Kind::Full
            };
            eprintln!(
                "backing up the volumes of {app}.{proc} ({})...",
                kind.name()
            );
            let body = serde_json::json!({ "volume": volume, "instance": instance, "kind": kind });
            let list: Vec<BackupRecord> =
                client.post_slow(&format!("/api/v1/apps/{app}/procs/{proc}/backups"), &body)?;
            print(out, &list, |list| print_records(list))?;
            let failed: Vec<String> = list
                .iter()
                .filter(|r| r.outcome == Outcome::Failed)
                .map(|r| {
                    format!(
                        "backup {}: {}",
                        r.id,
                        r.error.as_deref().unwrap_or("failed")
                    )
                })
                .collect();
            if failed.is_empty() {
                Ok(())
            } else {
                Err(anyhow::anyhow!("{}", failed.join("; ")))
            }
        }
        BackupCommand::Restore {
            id,
            app,
            instance,
            to,
        } => {
            let app = app.resolve()?;
            eprintln!("restoring backup {id} of {app}...");
            let body = serde_json::json!({ "instance": instance, "to": to });
            let restored: Restored =
                client.post_slow(&format!("/api/v1/apps/{app}/backups/{id}/restore"), &body)?;
            print(out, &restored, |r| match r.instance {
                Some(n) => println!(
                    "backup {} restored into instance {n}'s volume{} (verified)",
                    r.id,
                    if r.restarted {
                        ", instance restarted"
                    } else {
                        ""
                    }
                ),
                None => println!("backup {} restored into {} (verified)", r.id, r.path),
            })
        }
        BackupCommand::Delete { id, app } => {
            let app = app.resolve()?;
            let record: BackupRecord = client.send::<(), _>(
                "DELETE",
                &format!("/api/v1/apps/{app}/backups/{id}"),
                None,
            )?;
            print(out, &record, |r| println!("backup {} deleted", r.id))
        }
    }
}

/// Unix seconds `t` as UTC date and time.
fn time(t: i64) -> String {
    jiff::Timestamp::from_second(t).map_or_else(
        |_| t.to_string(),
        |t| t.strftime("%Y-%m-%d %H:%M:%S").to_string(),
    )
}

/// How an app's backups stand, in one cell of `lain app list`: outcome and end, and for a
/// failing one which volume and how many fail.
pub fn state_text(s: &BackupState) -> String {
    let mut text = format!(
        "{} {}",
        s.outcome.name(),
        s.ended_at.map_or_else(|| "-".into(), time)
    );
    if s.failing > 0 {
        text.push_str(&format!(" ({} {} {})", s.proc, s.instance, s.volume));
    }
    if s.failing > 1 {
        text.push_str(&format!(", {} volumes failing", s.failing));
    }
    text
}

fn print_records(list: &[BackupRecord]) {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|r| {
            vec![
                r.id.to_string(),
                r.proc.clone(),
                r.instance.to_string(),
                r.volume.clone(),
                r.kind.name().to_string(),
                time(r.started_at),
                r.duration_ms
                    .map_or_else(|| "-".into(), |ms| format!("{:.1}s", ms as f64 / 1000.0)),
                r.files.to_string(),
                bytes(r.size),
                bytes(r.added),
                hook_text(&r.hook, &r.hook_version),
                match &r.error {
                    Some(e) => format!("{}: {e}", r.outcome.name()),
                    None => r.outcome.name().to_string(),
                },
            ]
        })
        .collect();
    table(
        &[
            "ID", "PROC", "INSTANCE", "VOLUME", "KIND", "STARTED", "TOOK", "FILES", "SIZE",
            "ADDED", "HOOK", "RESULT",
        ],
        &rows,
    );
}

/// `n` bytes for people.
/// The hook column: `name@version`, or the name alone for a hook that never loaded (not
/// installed, not a backup hook), which has no version.
fn hook_text(hook: &str, version: &str) -> String {
    match version {
        "" => hook.to_string(),
        version => format!("{hook}@{version}"),
    }
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_state_names_its_volume_and_counts_the_others() {
        let mut s = BackupState {
            outcome: Outcome::Succeeded,
            id: 3,
            ended_at: Some(0),
            proc: "db".into(),
            instance: 2,
            volume: "/data".into(),
            error: None,
            failing: 0,
        };
        assert_eq!(state_text(&s), "succeeded 1970-01-01 00:00:00");
        s.outcome = Outcome::Failed;
        s.failing = 2;
        assert_eq!(
            state_text(&s),
            "failed 1970-01-01 00:00:00 (db 2 /data), 2 volumes failing"
        );
    }

    #[test]
    fn a_hook_that_never_loaded_shows_its_name_alone() {
        assert_eq!(hook_text("archive", "0.1.0"), "archive@0.1.0");
        assert_eq!(hook_text("nope", ""), "nope");
    }
}
