//! `lain scheduler ...`: the scheduling pipeline, changed live, and the instances that no longer
//! fit it.

use super::Output;
use super::client::Client;
use super::output::{print, table};
use crate::api::scheduler::{MoveView, PipelineView};
use crate::schedule::{Config, Misfit};
use anyhow::{anyhow, bail};
use clap::Subcommand;

/// Scheduler commands.
#[derive(Subcommand)]
pub enum SchedulerCommand {
    /// Show the pipeline in force: members in order with their roles and weights, and the
    /// installed scheduler plugins left out of it.
    Show,
    /// Change the pipeline, without a restart. Members must be installed, enabled scheduler
    /// plugins; weights apply to scorers, 0 to 100. A refused change names every problem and
    /// changes nothing. Instances already placed are re-checked: see `lain scheduler check`.
    ///
    /// Examples: `lain scheduler set --plugins resources,zone,constraint,spread --weight
    /// spread=2`; `lain scheduler set --add zone`; `lain scheduler set --remove zone`.
    Set {
        /// The members, in order (filters narrow the candidates in this order); default: the
        /// current members.
        #[arg(long, alias = "filter", value_delimiter = ',', value_name = "NAME,...")]
        plugins: Option<Vec<String>>,
        /// Add a member at the end (repeatable).
        #[arg(long, value_name = "NAME")]
        add: Vec<String>,
        /// Remove a member (repeatable).
        #[arg(long, value_name = "NAME")]
        remove: Vec<String>,
        /// A scorer's weight (repeatable); `NAME=default` goes back to 1.
        #[arg(long = "weight", value_name = "NAME=N")]
        weights: Vec<String>,
    },
    /// List the instances the pipeline in force would not place on their node (found after a
    /// pipeline change). With `--move`, stateless ones get a replacement placed by the pipeline,
    /// one instance number of a proc at a time, the old one retired once the new is ready;
    /// stateful ones own their node's volumes and are only reported.
    Check {
        /// Move the stateless misfits.
        #[arg(long = "move")]
        move_them: bool,
    },
}

/// Runs a scheduler command.
pub fn run(cmd: SchedulerCommand, client: &Client, output: Output) -> anyhow::Result<()> {
    match cmd {
        SchedulerCommand::Show => {
            let view: PipelineView = client.get("/api/v1/scheduler")?;
            print(output, &view, print_pipeline)
        }
        SchedulerCommand::Set {
            plugins,
            add,
            remove,
            weights,
        } => {
            let current: PipelineView = client.get("/api/v1/scheduler")?;
            let config = change(current, plugins, &add, &remove, &weights)?;
            let view: PipelineView = client.send("PUT", "/api/v1/scheduler", Some(&config))?;
            print(output, &view, |v| {
                println!("scheduler pipeline set; the reconciler rebuilds it on its next pass");
                print_pipeline(v);
            })
        }
        SchedulerCommand::Check { move_them: false } => {
            let misfits: Vec<Misfit> = client.get("/api/v1/scheduler/misfits")?;
            print(output, &misfits, |m| {
                if m.is_empty() {
                    println!("every instance fits the scheduler pipeline");
                    return;
                }
                print_misfits(m);
                if m.iter().any(|m| !m.stateful) {
                    println!("move the stateless ones with `lain scheduler check --move`");
                }
            })
        }
        SchedulerCommand::Check { move_them: true } => {
            let view: MoveView = client.send::<(), _>("POST", "/api/v1/scheduler/moves", None)?;
            print(output, &view, |v| {
                if v.moving.instances.is_empty() {
                    println!("no stateless instance to move");
                } else {
                    println!(
                        "moving {} instance(s), one instance number at a time; follow with `lain ps`:",
                        v.moving.instances.len()
                    );
                    for name in &v.moving.instances {
                        println!("  {name}");
                    }
                }
                if !v.stay.is_empty() {
                    println!("stateful (or with volumes), staying on their node:");
                    print_misfits(&v.stay);
                }
            })
        }
    }
}

/// The configuration `set` asks for: the current one with the flags applied.
fn change(
    current: PipelineView,
    plugins: Option<Vec<String>>,
    add: &[String],
    remove: &[String],
    weights: &[String],
) -> anyhow::Result<Config> {
    let mut config = Config {
        plugins: plugins.unwrap_or(current.plugins),
        weights: current.weights,
    };
    for name in add {
        if config.plugins.contains(name) {
            bail!("--add {name}: already a member");
        }
        config.plugins.push(name.clone());
    }
    for name in remove {
        let before = config.plugins.len();
        config.plugins.retain(|p| p != name);
        if config.plugins.len() == before {
            bail!("--remove {name}: not a member");
        }
    }
    for w in weights {
        let (name, value) = w
            .split_once('=')
            .ok_or_else(|| anyhow!("--weight {w}: expected NAME=N"))?;
        if value == "default" {
            config.weights.remove(name);
        } else {
            let n = value
                .parse::<u32>()
                .map_err(|e| anyhow!("--weight {w}: {value} is not a whole number: {e}"))?;
            config.weights.insert(name.to_string(), n);
        }
    }
    // Weights of members just left out go with them.
    config.weights.retain(|name, _| {
        config.plugins.contains(name) || weights.iter().any(|w| w.starts_with(&format!("{name}=")))
    });
    Ok(config)
}

fn print_pipeline(v: &PipelineView) {
    let rows: Vec<Vec<String>> = v
        .members
        .iter()
        .enumerate()
        .map(|(i, m)| {
            vec![
                (i + 1).to_string(),
                m.name.clone(),
                m.roles.join(","),
                m.weight.map_or_else(|| "-".into(), |w| w.to_string()),
                m.problem.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(&["#", "MEMBER", "ROLES", "WEIGHT", "PROBLEM"], &rows);
    for name in &v.outside {
        println!("{}", outside_note(name));
    }
}

fn print_misfits(m: &[Misfit]) {
    let rows: Vec<Vec<String>> = m
        .iter()
        .map(|m| {
            vec![
                m.proc.clone(),
                m.number.to_string(),
                m.node.clone(),
                m.filter.clone(),
                if m.stateful { "stateful" } else { "stateless" }.into(),
            ]
        })
        .collect();
    table(&["PROC", "INSTANCE", "NODE", "REMOVED BY", "KIND"], &rows);
}

/// The note for an installed scheduler plugin left out of the pipeline.
pub fn outside_note(name: &str) -> String {
    format!(
        "note: `{name}` is not in the scheduler pipeline, so it is never called; add it with \
         `lain scheduler set --add {name}`"
    )
}

/// The installed scheduler plugins left out of the pipeline, or none when the kernel cannot say
/// (the note is a hint; its absence must not fail the command it follows).
pub fn outside(client: &Client) -> Vec<String> {
    client
        .get::<PipelineView>("/api/v1/scheduler")
        .map(|v| v.outside)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn current() -> PipelineView {
        PipelineView {
            plugins: vec!["resources".into(), "constraint".into(), "spread".into()],
            weights: [("spread".to_string(), 2)].into(),
            members: Vec::new(),
            outside: Vec::new(),
        }
    }

    #[test]
    fn set_applies_its_flags_to_the_current_pipeline() {
        let c = change(
            current(),
            None,
            &["zone".into()],
            &["constraint".into()],
            &[],
        )
        .expect("change");
        assert_eq!(c.plugins, ["resources", "spread", "zone"]);
        assert_eq!(c.weights.get("spread"), Some(&2));
        let c = change(
            current(),
            Some(vec!["resources".into()]),
            &[],
            &[],
            &["resources=3".into()],
        )
        .expect("change");
        assert_eq!(c.plugins, ["resources"]);
        assert_eq!(
            c.weights.into_iter().collect::<Vec<_>>(),
            [("resources".to_string(), 3)],
            "spread's weight leaves with spread"
        );
        let c = change(current(), None, &[], &[], &["spread=default".into()]).expect("change");
        assert!(c.weights.is_empty());
        for (add, remove, weight, wanted) in [
            (
                vec!["spread".to_string()],
                vec![],
                vec![],
                "already a member",
            ),
            (vec![], vec!["zone".to_string()], vec![], "not a member"),
            (
                vec![],
                vec![],
                vec!["spread".to_string()],
                "expected NAME=N",
            ),
            (
                vec![],
                vec![],
                vec!["spread=x".to_string()],
                "not a whole number",
            ),
        ] {
            let err = change(current(), None, &add, &remove, &weight).expect_err(wanted);
            assert!(err.to_string().contains(wanted), "{err}");
        }
    }
}
