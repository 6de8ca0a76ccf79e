//! From an [`InstanceSpec`] to a Docker container, and from a container back to [`Observed`].

use crate::plugin::bindings::types::Probe;
use crate::runtime::labels;
use crate::runtime::{Health, InstancePort, InstanceSpec, Observed, Protocol, RunState};
use bollard::models::{
    ContainerCreateBody, ContainerSummary, ContainerSummaryStateEnum, EndpointSettings,
    HealthConfig, HostConfig, Mount, MountType, MountVolumeOptions, MountVolumeOptionsDriverConfig,
    NetworkingConfig, PortBinding, PortSummaryTypeEnum,
};
use std::collections::HashMap;

/// Label holding the instance's container ports with their protocols, in order
/// (`80/tcp,53/udp`; a bare number, as containers of older kernels have, is TCP).
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
    // `80/tcp`, `53/udp`: Docker's key for an exposed port and its binding.
    let ports: Vec<String> = spec.ports.iter().map(ToString::to_string).collect();
    labels.insert(PORTS_LABEL.into(), ports.join(","));
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
            .map(|h| health_config(h, main_tcp_port(spec))),
        host_config: Some(HostConfig {
            memory: (memory > 0).then_some(memory),
            // Swap disabled, as LAIN did.
            memory_swap: (memory > 0).then_some(memory),
            nano_cpus: nano_cpus(spec.cpu),
            port_bindings: Some(bindings),
            binds: Some(binds),
            mounts: Some(mounts),
            network_mode: Some(network.to_string()),
            dns_search: (!spec.dns_search.is_empty()).then(|| spec.dns_search.clone()),
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

/// The main port of `spec` when it is TCP: what an HTTP check of port 0 probes. A UDP main
/// port has none (the kernel refuses an HTTP check of a UDP port when a proc is rendered).
fn main_tcp_port(spec: &InstanceSpec) -> Option<u16> {
    spec.ports
        .first()
        .filter(|p| p.protocol == Protocol::Tcp)
        .map(|p| p.number)
}

/// Docker's HEALTHCHECK for a proc's health check. An HTTP probe becomes a `wget` (or `curl`)
/// of the container port inside the container.
fn health_config(
    h: &crate::plugin::bindings::types::HealthCheck,
    main: Option<u16>,
) -> HealthConfig {
    let test = match &h.probe {
        Probe::Command(cmd) => vec!["CMD-SHELL".to_string(), cmd.clone()],
        Probe::Http(p) => {
            let port = if p.port == 0 {
                main.unwrap_or(80)
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
    let published: HashMap<(u16, Protocol), u16> = c
        .ports
        .iter()
        .flatten()
        .filter_map(|p| {
            let protocol = match p.typ {
                Some(PortSummaryTypeEnum::UDP) => Protocol::Udp,
                Some(PortSummaryTypeEnum::TCP) => Protocol::Tcp,
                _ => return None,
            };
            Some(((p.private_port, protocol), p.public_port?))
        })
        .collect();
    let host_ports = labels
        .get(PORTS_LABEL)
        .map(|ports| {
            ports_of_label(ports)
                .filter_map(|p| published.get(&(p.number, p.protocol)).copied())
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

/// The ports a [`PORTS_LABEL`] lists: `80/tcp`, `53/udp`, or a bare `80` (TCP).
fn ports_of_label(label: &str) -> impl Iterator<Item = InstancePort> + '_ {
    label.split(',').filter_map(|p| {
        let (number, protocol) = p.split_once('/').unwrap_or((p, "tcp"));
        let protocol = match protocol {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            _ => return None,
        };
        Some(InstancePort {
            number: number.parse().ok()?,
            protocol,
        })
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
    use super::*;
    use bollard::models::PortSummary;

    fn spec(ports: Vec<InstancePort>) -> InstanceSpec {
        InstanceSpec {
            name: "dns.i1".into(),
            labels: [("team".to_string(), "dba".to_string())].into(),
            image: "dns:release-1".into(),
            entrypoint: None,
            cmd: None,
            user: None,
            env: Vec::new(),
            workdir: None,
            ports,
            memory: 0,
            cpu: 0,
            log_file: "/tmp/1.log".into(),
            aliases: Vec::new(),
            dns_search: Vec::new(),
            volumes: Vec::new(),
            volume_root: "/tmp".into(),
            cloud_volumes: Vec::new(),
            cloud_root: "/tmp".into(),
            health: None,
            secret_files: Vec::new(),
        }
    }

    #[test]
    fn dns_search_and_the_instance_names_reach_the_container() {
        let mut s = spec(Vec::new());
        s.aliases = vec!["web".into(), "web-2".into()];
        s.dns_search = vec!["corp.example.com".into(), "shop.lain".into()];
        let body = create_body(&s, "lain-shop", &Default::default());
        assert_eq!(
            body.host_config.and_then(|h| h.dns_search),
            Some(vec!["corp.example.com".into(), "shop.lain".into()])
        );
        let endpoints = body
            .networking_config
            .and_then(|n| n.endpoints_config)
            .expect("endpoints");
        assert_eq!(
            endpoints["lain-shop"].aliases,
            Some(vec!["web".into(), "web-2".into()])
        );
        // None at all: the engine's default search list.
        let body = create_body(&spec(Vec::new()), "lain-shop", &Default::default());
        assert_eq!(body.host_config.and_then(|h| h.dns_search), None);
    }

    #[test]
    fn a_udp_port_is_exposed_and_published_as_udp() {
        let udp = InstancePort {
            number: 53,
            protocol: Protocol::Udp,
        };
        let body = create_body(
            &spec(vec![udp, InstancePort::tcp(53), InstancePort::tcp(8080)]),
            "lain-dns",
            &Default::default(),
        );
        assert_eq!(
            body.exposed_ports,
            Some(vec!["53/udp".into(), "53/tcp".into(), "8080/tcp".into()])
        );
        let bindings = body.host_config.and_then(|h| h.port_bindings);
        let mut keys: Vec<String> = bindings.into_iter().flatten().map(|(k, _)| k).collect();
        keys.sort();
        assert_eq!(keys, ["53/tcp", "53/udp", "8080/tcp"]);
        let labels = body.labels.expect("labels");
        assert_eq!(labels[PORTS_LABEL], "53/udp,53/tcp,8080/tcp");
        assert_eq!(
            labels["team"], "dba",
            "the user's labels are the container's"
        );
    }

    #[test]
    fn host_ports_are_matched_by_number_and_protocol() {
        let published = |port, typ, public| PortSummary {
            ip: Some("0.0.0.0".into()),
            private_port: port,
            public_port: Some(public),
            typ: Some(typ),
        };
        let summary = |label: &str| ContainerSummary {
            names: Some(vec!["/dns.i1".into()]),
            labels: Some([(PORTS_LABEL.to_string(), label.to_string())].into()),
            ports: Some(vec![
                published(53, PortSummaryTypeEnum::TCP, 30001),
                published(53, PortSummaryTypeEnum::UDP, 30002),
                published(80, PortSummaryTypeEnum::TCP, 30003),
            ]),
            ..Default::default()
        };
        let seen = observe(&summary("53/udp,53/tcp"), None, None, None).expect("observed");
        assert_eq!(seen.host_ports, [30002, 30001]);
        let older = observe(&summary("80,53"), None, None, None).expect("observed");
        assert_eq!(older.host_ports, [30003, 30001], "a bare number is TCP");
    }

    #[test]
    fn exit_codes_are_read_from_the_status() {
        assert_eq!(exit_code("Exited (3) 5 seconds ago"), Some(3));
        assert_eq!(exit_code("Exited (137) About a minute ago"), Some(137));
        assert_eq!(exit_code("Up 3 seconds"), None);
    }
}
