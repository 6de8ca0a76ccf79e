//! `lain login|logout|whoami`, `lain maintainer ...` and `lain audit`.

use super::Output;
use super::app::AppArg;
use super::client::Client;
use super::credentials::{KernelEntry, UserConfig};
use super::output;
use crate::api::WhoAmI;
use crate::auth::audit::AuditRecord;
use crate::auth::maintainers::Maintainers;
use clap::{Args, Subcommand};

/// `lain login`.
#[derive(Args)]
pub struct LoginArgs {
    /// Read the token from this file instead of standard input.
    #[arg(long)]
    pub token_file: Option<std::path::PathBuf>,
}

/// `lain maintainer ...`.
#[derive(Subcommand)]
pub enum MaintainerCommand {
    /// The app's maintainers: users and groups.
    List {
        #[command(flatten)]
        app: AppArg,
    },
    /// Make a user (or with `--group`, a group) a maintainer of the app.
    Add {
        /// `provider:subject` (e.g. `token:alice`, `jwt:alice`: see `lain whoami`), or a group.
        name: String,
        #[command(flatten)]
        app: AppArg,
        /// NAME is a group.
        #[arg(long)]
        group: bool,
    },
    /// Remove a maintainer (the last one cannot be removed).
    Remove {
        /// `provider:subject`, or a group.
        name: String,
        #[command(flatten)]
        app: AppArg,
        /// NAME is a group.
        #[arg(long)]
        group: bool,
    },
}

/// `lain audit`.
#[derive(Args)]
pub struct AuditArgs {
    /// Only this app's records.
    #[arg(long, short)]
    pub app: Option<String>,
    /// Only this subject's records.
    #[arg(long)]
    pub subject: Option<String>,
    /// Only records of principals of this auth provider (`bootstrap`: the local bootstrap).
    #[arg(long)]
    pub provider: Option<String>,
    /// At most this many, newest first.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
}

/// Checks a token with the kernel and stores it for the kernel's URL in the user's config file.
pub fn login(kernel: &str, args: LoginArgs, out: Output) -> anyhow::Result<()> {
    let token = match &args.token_file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?,
        None => {
            if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                eprint!("token for {kernel}: ");
            }
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            line
        }
    };
    let token = token.trim().to_string();
    anyhow::ensure!(!token.is_empty(), "no token given");
    let me: WhoAmI = Client::new(kernel, Some(token.clone()))
        .get("/api/v1/whoami")
        .map_err(|e| anyhow::anyhow!("the kernel refused the token: {e}"))?;
    let mut config = UserConfig::load()?;
    config.kernels.insert(
        kernel.trim_end_matches('/').to_string(),
        KernelEntry { token },
    );
    let path = config.save()?;
    output::print(out, &me, |me| {
        println!(
            "logged in to {kernel} as {} ({}); token stored in {}",
            me.subject,
            me.provider,
            path.display()
        )
    })
}

/// Forgets the token stored for the kernel.
pub fn logout(kernel: &str) -> anyhow::Result<()> {
    let mut config = UserConfig::load()?;
    if config
        .kernels
        .remove(kernel.trim_end_matches('/'))
        .is_none()
    {
        eprintln!("no token was stored for {kernel}");
        return Ok(());
    }
    let path = config.save()?;
    eprintln!("token for {kernel} removed from {}", path.display());
    Ok(())
}

/// Who the kernel takes the caller for.
pub fn whoami(client: &Client, out: Output) -> anyhow::Result<()> {
    let me: WhoAmI = client.get("/api/v1/whoami")?;
    output::print(out, &me, |me| {
        println!("subject:  {}", me.subject);
        println!("groups:   {}", me.groups.join(", "));
        println!("provider: {}", me.provider);
        println!("admin:    {}", me.admin);
    })
}

/// This kernel and who leads the cluster.
pub fn status(client: &Client, out: Output) -> anyhow::Result<()> {
    let s: crate::cluster::ClusterStatus = client.get("/api/v1/cluster")?;
    output::print(out, &s, |s| {
        println!("kernel:  {}", s.kernel);
        println!("cluster: {}", s.cluster);
        println!("store:   {}", s.store);
        println!("role:    {}", s.role);
        println!("leader:  {}", s.leader.as_deref().unwrap_or("(none known)"));
        println!("passes:  {}", s.reconciler_passes);
    })
}

/// Runs `lain maintainer ...`.
pub fn maintainer(cmd: MaintainerCommand, client: &Client, out: Output) -> anyhow::Result<()> {
    let (app, change) = match cmd {
        MaintainerCommand::List { app } => (app.resolve()?, None),
        MaintainerCommand::Add { name, app, group } => (app.resolve()?, Some(("PUT", name, group))),
        MaintainerCommand::Remove { name, app, group } => {
            (app.resolve()?, Some(("DELETE", name, group)))
        }
    };
    let m: Maintainers = match change {
        None => client.get(&format!("/api/v1/apps/{app}/maintainers"))?,
        Some((method, name, group)) => {
            let kind = if group { "groups" } else { "users" };
            client.send::<(), _>(
                method,
                &format!(
                    "/api/v1/apps/{app}/maintainers/{kind}/{}",
                    super::encode(&name)
                ),
                None,
            )?
        }
    };
    output::print(out, &m, |m| {
        let rows: Vec<Vec<String>> = m
            .users
            .iter()
            .map(|u| vec!["user".into(), u.clone()])
            .chain(m.groups.iter().map(|g| vec!["group".into(), g.clone()]))
            .collect();
        output::table(&["KIND", "NAME"], &rows);
    })
}

/// Runs `lain audit`.
pub fn audit(args: AuditArgs, client: &Client, out: Output) -> anyhow::Result<()> {
    let mut query = format!("/api/v1/audit?limit={}", args.limit);
    for (k, v) in [
        ("app", &args.app),
        ("subject", &args.subject),
        ("provider", &args.provider),
    ] {
        if let Some(v) = v {
            query.push_str(&format!("&{k}={}", super::encode(v)));
        }
    }
    let records: Vec<AuditRecord> = client.get(&query)?;
    output::print(out, &records, |records| {
        let rows: Vec<Vec<String>> = records
            .iter()
            .map(|r| {
                // A build names its app in its context, not in its path.
                let mut what = r.target.clone();
                if let Some(app) = r.app.as_ref().filter(|a| !what.contains(&format!("/{a}"))) {
                    what.push_str(&format!(" ({app})"));
                }
                if let Some(reason) = &r.reason {
                    what.push_str(&format!(": {reason}"));
                }
                vec![
                    time(r.at_ms),
                    match (&r.provider, &r.subject) {
                        (Some(p), Some(s)) => format!("{p}:{s}"),
                        (_, Some(s)) => s.clone(),
                        _ => "-".into(),
                    },
                    r.result.clone(),
                    r.status.to_string(),
                    what,
                ]
            })
            .collect();
        output::table(&["WHEN (UTC)", "WHO", "RESULT", "STATUS", "WHAT"], &rows);
    })
}

fn time(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    httpdate::fmt_http_date(t)
}
