//! `lain node ...`: the nodes instances are scheduled on.

use super::Output;
use super::client::Client;
use super::output::{print, table};
use crate::lifecycle::records::NodeRecord;
use anyhow::anyhow;
use clap::Subcommand;
use serde_json::json;

/// Node commands.
#[derive(Subcommand)]
pub enum NodeCommand {
    /// List nodes with their labels, capacity and state.
    List,
    /// Add a node (or update its labels and capacity).
    Add {
        /// Node name.
        name: String,
        /// Where its runtime is reached; `local` is this host (the only choice on the process
        /// runtime).
        #[arg(long, default_value = "local")]
        address: String,
        /// A label `key=value` for scheduling filters (repeatable).
        #[arg(long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
        /// Memory for instances, e.g. `4G`.
        #[arg(long, default_value = "1G")]
        memory: String,
        /// CPU for instances, in milli-cores.
        #[arg(long, default_value_t = 1000)]
        cpu: u32,
    },
    /// Remove a node that runs nothing (drain it first with `maintain`).
    Remove {
        /// Node name.
        name: String,
    },
    /// Drain a node: it takes nothing new and its stateless instances move elsewhere.
    Maintain {
        /// Node name.
        name: String,
        /// Return the node to service instead.
        #[arg(long)]
        off: bool,
    },
}

/// Runs a node command.
pub fn run(cmd: NodeCommand, client: &Client, output: Output) -> anyhow::Result<()> {
    match cmd {
        NodeCommand::List => {
            let nodes: Vec<NodeRecord> = client.get("/api/v1/nodes")?;
            print(output, &nodes, |nodes| {
                let rows: Vec<Vec<String>> = nodes
                    .iter()
                    .map(|n| {
                        vec![
                            n.name.clone(),
                            format!("{:?}", n.state).to_lowercase(),
                            format!("{}M", n.memory >> 20),
                            n.cpu.to_string(),
                            n.address.clone(),
                            n.labels
                                .iter()
                                .map(|(k, v)| format!("{k}={v}"))
                                .collect::<Vec<_>>()
                                .join(","),
                        ]
                    })
                    .collect();
                table(
                    &["NODE", "STATE", "MEMORY", "CPU", "ADDRESS", "LABELS"],
                    &rows,
                );
            })
        }
        NodeCommand::Add {
            name,
            address,
            labels,
            memory,
            cpu,
        } => {
            let memory = crate::spec::parse_memory(&memory)
                .map_err(|e| anyhow!("--memory {memory}: {e}"))?;
            let mut map = serde_json::Map::new();
            for l in labels {
                let (k, v) = l
                    .split_once('=')
                    .ok_or_else(|| anyhow!("--label {l}: expected KEY=VALUE"))?;
                map.insert(k.into(), v.into());
            }
            let node: NodeRecord = client.send(
                "POST",
                "/api/v1/nodes",
                Some(&json!({"name": name, "address": address, "labels": map, "memory": memory, "cpu": cpu})),
            )?;
            print(output, &node, |n| println!("node {} added", n.name))
        }
        NodeCommand::Remove { name } => {
            client.send::<(), serde_json::Value>(
                "DELETE",
                &format!("/api/v1/nodes/{name}"),
                None,
            )?;
            print(output, &json!({"removed": name}), |_| {
                println!("node {name} removed")
            })
        }
        NodeCommand::Maintain { name, off } => {
            let node: NodeRecord = client.send(
                "POST",
                &format!("/api/v1/nodes/{name}/maintain"),
                Some(&json!({ "on": !off })),
            )?;
            print(output, &node, |n| {
                println!(
                    "node {} is {}",
                    n.name,
                    format!("{:?}", n.state).to_lowercase()
                )
            })
        }
    }
}
