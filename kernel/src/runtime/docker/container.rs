//! From an [`InstanceSpec`] to a Docker container, and from a container back to [`Observed`].

use crate::plugin::bindings::types::Probe;
use crate::runtime::labels;
use crate::runtime::{Health, InstanceSpec, Observed, RunState};
use bollard::models::{
    ContainerCreateBody, ContainerSummary, ContainerSummaryStateEnum, EndpointSettings,
    HealthConfig, HostConfig, Mount, MountType, MountVolumeOptions, MountVolumeOptionsDriverConfig,
    NetworkingConfig, PortBinding,
};
use std::collections::HashMap;

/// Label holding the instance's container ports, in order (`80,8080`).
pub const PORTS_LABEL: &str = "lain.ports";
/// Label holding the memory limit the instance was created with.
pub const MEMORY_LABEL: &str = "lain.memory";
/// Label holding the CPU limit (milli-cores) the instance was created with.
pub const CPU_LABEL: &str = "lain.cpu";
/// Label holding the log store file the container's output is copied into.
pub const LOG_LABEL: &str = "lain.log";

/// The app's network: all its procs reach each other on it by proc name.
pub fn network_name(app: &str) -> String {
    format!("lain-{app}")
}

/// The container creation request for `spec` on network `network`.
pub fn create_body(
    spec: &InstanceSpec,
    network: &str,
    cloud: &super::config::CloudVolumes,
) -> ContainerCreateBody {
    let mut labels: HashMap<String, String> = spec.labels.clone().into_iter().collect();
    let ports: Vec<String> = spec.ports.iter().map(|p| format!("{p}/tcp")).collect();
    labels.insert(
        PORTS_LABEL.into(),
        spec.ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(","),
    );
    labels.insert(MEMORY_LABEL.into(), spec.memory.to_string());
    labels.insert(CPU_LABEL.into(), spec.cpu.to_string());
    labels.insert(
        LOG_LABEL.into(),
        spec.log_file.to_string_lossy().into_owned(),
    );
    let bindings = ports
        .iter()
        .map(|p| {
            let binding = PortBinding {
                host_ip: Some("0.0.0.0".into()),
                host_port: Some(String::new()),
            };
            (p.clone(), Some(vec![binding]))
        })
        .collect();
    let binds = spec
        .volumes
        .iter()
        .map(|path| {
            let host = spec.volume_root.join(path.trim_start_matches('/'));
            format!("{}:{path}", host.display())
        })
        .collect();
    let mounts = spec
        .cloud_volumes
        .iter()
        .map(|c| cloud_mount(c, spec, cloud))
        .collect();
    let memory = i64::try_from(spec.memory).unwrap_or(i64::MAX);
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        entrypoint: spec.entrypoint.clone(),
        cmd: spec.cmd.clone(),
        user: spec.user.clone(),
        working_dir: spec.workdir.clone(),
        labels: Some(labels),
        exposed_ports: Some(ports),
        healthcheck: spec
            .health
            .as_ref()
            .map(|h| health_config(h, spec.ports.first())),
        host_config: Some(HostConfig {
            memory: (memory > 0).then_some(memory),
            // Swap disabled, as LAIN did.
            memory_swap: (memory > 0).then_some(memory),
            nano_cpus: nano_cpus(spec.cpu),
            port_bindings: Some(bindings),
            binds: Some(binds),
            mounts: Some(mounts),
            network_mode: Some(network.to_string()),
            init: Some(true),
            ..Default::default()
        }),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                network.to_string(),
                EndpointSettings {
                    aliases: Some(spec.aliases.clone()),
                    ..Default::default()
                },
            )])),
        }),
        ..Default::default()
    }
}

/// The mount of cloud volume `c` of `spec`: a named volume the engine creates with the
/// configured driver and options (`{name}` in a value is the volume's name) when it is missing,
/// labelled with the app and proc it belongs to.
fn cloud_mount(
    c: &crate::runtime::CloudMount,
    spec: &InstanceSpec,
    cloud: &super::config::CloudVolumes,
) -> Mount {
    let labels = [labels::APP, labels::PROC]
        .iter()
        .filter_map(|k| Some((k.to_string(), spec.labels.get(*k)?.clone())))
        .collect();
    let driver = (cloud.driver.is_some() || !cloud.options.is_empty()).then(|| {
        MountVolumeOptionsDriverConfig {
            name: cloud.driver.clone(),
            options: Some(
                cloud
                    .options
                    .iter()
                    .map(|(k, v)| (k.clone(), v.replace("{name}", &c.volume)))
                    .collect(),
            ),
        }
    });
    Mount {
        target: Some(c.path.clone()),
        source: Some(c.volume.clone()),
        typ: Some(MountType::VOLUME),
        volume_options: Some(MountVolumeOptions {
            labels: Some(labels),
            driver_config: driver,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Docker's HEALTHCHECK for a proc's health check. An HTTP probe becomes a `wget` (or `curl`)
/// of the container port inside the container.
/// A tar of `files` at their absolute paths (relative to `/` in the archive), mode 0400 and
/// owned by root like LAIN's secret files. No directory entries: the engine creates missing
/// parents (0755) and leaves existing ones, such as an app-owned `/lain/app`, as they are.
pub fn secrets_tar(files: &[crate::runtime::SecretFile]) -> std::io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    for file in files {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o400);
        header.set_size(file.content.len() as u64);
        header.set_mtime(0);
        tar.append_data(
            &mut header,
            file.path.trim_start_matches('/'),
            file.content.as_slice(),
        )?;
    }
    tar.into_inner()
}

fn health_config(
    h: &crate::plugin::bindings::types::HealthCheck,
    main: Option<&u16>,
) -> HealthConfig {
    let test = match &h.probe {
        Probe::Command(cmd) => vec!["CMD-SHELL".to_string(), cmd.clone()],
        Probe::Http(p) => {
            let port = if p.port == 0 {
                main.copied().unwrap_or(80)
            } else {
                p.port
            };
            let url = format!("http://127.0.0.1:{port}{}", p.path);
            vec![
                "CMD-SHELL".to_string(),
                format!("wget -q -O /dev/null {url} || curl -fsS -o /dev/null {url}"),
            ]
        }
    };
    let ns = |secs: u32| i64::from(secs.max(1)) * 1_000_000_000;
    HealthConfig {
        test: Some(test),
        interval: Some(ns(h.interval)),
        timeout: Some(ns(h.timeout)),
        retries: Some(i64::from(h.retries.max(1))),
        start_period: Some(ns(h.start_period)),
        start_interval: None,
    }
}

/// What a container summary says about an instance. `started_at` is when lain last started it
/// (the summary has no start time; a container found after a restart counts from its creation);
/// `memory` and `cpu` are limits lain set in place since (else those of the labels).
pub fn observe(
    c: &ContainerSummary,
    started_at: Option<i64>,
    memory: Option<u64>,
    cpu: Option<u32>,
) -> Option<Observed> {
    let name = c
        .names
        .as_ref()?
        .first()?
        .trim_start_matches('/')
        .to_string();
    let labels: std::collections::BTreeMap<String, String> =
        c.labels.clone().unwrap_or_default().into_iter().collect();
    let status = c.status.clone().unwrap_or_default();
    let state = match c.state {
        Some(ContainerSummaryStateEnum::RUNNING) | Some(ContainerSummaryStateEnum::RESTARTING) => {
            RunState::Running {
                pid: None,
                started_at: started_at.or(c.created).unwrap_or(0),
            }
        }
        Some(ContainerSummaryStateEnum::CREATED) => RunState::Created,
        _ => RunState::Exited {
            code: exit_code(&status),
            signal: None,
            finished_at: None,
        },
    };
    let health = if status.contains("(healthy)") {
        Some(Health::Healthy)
    } else if status.contains("(unhealthy)") {
        Some(Health::Unhealthy)
    } else if status.contains("(health: starting)") {
        Some(Health::Starting)
    } else {
        None
    };
    let published: HashMap<u16, u16> = c
        .ports
        .iter()
        .flatten()
        .filter_map(|p| Some((p.private_port, p.public_port?)))
        .collect();
    let host_ports = labels
        .get(PORTS_LABEL)
        .map(|ports| {
            ports
                .split(',')
                .filter_map(|p| p.parse::<u16>().ok())
                .filter_map(|p| published.get(&p).copied())
                .collect()
        })
        .unwrap_or_default();
    let memory = memory
        .or_else(|| labels.get(MEMORY_LABEL).and_then(|m| m.parse().ok()))
        .unwrap_or(0);
    let cpu = cpu
        .or_else(|| labels.get(CPU_LABEL).and_then(|m| m.parse().ok()))
        .unwrap_or(0);
    let networks = c
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
        .map(|n| {
            n.keys()
                .filter_map(|k| k.strip_prefix("lain-").map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    Some(Observed {
        name,
        labels,
        state,
        host_ports,
        memory,
        cpu,
        health,
        networks,
    })
}

/// Docker's `NanoCpus` for `millicores` (none for 0: no limit).
pub fn nano_cpus(millicores: u32) -> Option<i64> {
    (millicores > 0).then(|| i64::from(millicores) * 1_000_000)
}

/// The exit code in a status like `Exited (3) 5 seconds ago`.
fn exit_code(status: &str) -> Option<i32> {
    let rest = status.strip_prefix("Exited (")?;
    rest.split(')').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::exit_code;

    #[test]
    fn exit_codes_are_read_from_the_status() {
        assert_eq!(exit_code("Exited (3) 5 seconds ago"), Some(3));
        assert_eq!(exit_code("Exited (137) About a minute ago"), Some(137));
        assert_eq!(exit_code("Up 3 seconds"), None);
    }
}
