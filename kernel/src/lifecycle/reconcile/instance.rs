//! A new instance: its identity, runtime spec (LAIN's instance environment, log file, volumes)
//! and the secret files that go into it before it first starts.

use super::context::{Context, SecretReader};
use super::desired::Desired;
use super::identity::InstanceKey;
use crate::lifecycle::LifecycleError;
use crate::lifecycle::environment::instance_env;
use crate::plugin::bindings::types::Protocol;
use crate::runtime::{CloudMount, InstancePort, InstanceSpec, SecretFile};
use crate::secrets::vault::SecretError;
use crate::spec::model::CloudVolumeKind;
use std::collections::BTreeMap;

/// The identity of instance `no` of `d` on `node`.
pub fn key(d: &Desired, no: u32, node: &str) -> InstanceKey {
    InstanceKey {
        app: d.app.clone(),
        proc: d.plan.full_name.clone(),
        number: Some(no),
        release: d.release.clone(),
        node: node.to_string(),
        secrets: d.plan.secrets_stamp.clone(),
        plan: d.plan.plan_stamp.clone(),
        attempt: 1,
        restart: d.restarts.of(no),
    }
}

/// The labels of an instance of `d` that `key` names: the user's `labels` and the plan's (the
/// user's win on the same key), then the kernel's own, which nothing overrides (a key under
/// `lain.` is refused where it is written: in `lain.yaml`, or in what a plugin returns).
pub fn labels(ctx: &Context, d: &Desired, key: &InstanceKey) -> BTreeMap<String, String> {
    let plan = d
        .plan
        .plan
        .labels
        .iter()
        .map(|l| (l.key.as_str(), l.value.as_str()));
    let user = d
        .plan
        .labels
        .iter()
        .map(|l| l.split_once('=').unwrap_or((l.as_str(), "")));
    let mut out: BTreeMap<String, String> = plan
        .chain(user)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    out.extend(key.labels(&ctx.kernel_id));
    out
}

/// What instances of `d` run: the proc's own `image` as the runtime runs it (refused by a
/// runtime that runs only releases, which deploy refuses first), else the release.
pub fn image(ctx: &Context, d: &Desired) -> Result<String, LifecycleError> {
    let own = &d.plan.plan.image;
    if own.is_empty() {
        return Ok(d.image.clone());
    }
    ctx.runtime
        .own_image(own)
        .map_err(|why| LifecycleError::Invalid(format!("proc `{}`: {why}", d.plan.name)))
}

/// A plan's port as the runtime takes it.
fn instance_port(p: &crate::plugin::bindings::types::Port) -> InstancePort {
    InstancePort {
        number: p.number,
        protocol: match p.protocol {
            Protocol::Tcp => crate::runtime::Protocol::Tcp,
            Protocol::Udp => crate::runtime::Protocol::Udp,
        },
    }
}

/// The instance port a stream port forwards to: its destination, TCP or UDP.
pub fn stream_destination(s: &crate::plugin::bindings::types::StreamPort) -> InstancePort {
    InstancePort {
        number: s.destination,
        protocol: match s.protocol {
            Protocol::Tcp => crate::runtime::Protocol::Tcp,
            Protocol::Udp => crate::runtime::Protocol::Udp,
        },
    }
}

/// The ports an instance of `plan` listens on: the plan's, then each stream port's destination
/// (TCP or UDP) that is not among them (so it gets a host port the router reaches it by).
pub fn ports(plan: &crate::lifecycle::records::ProcPlan) -> Vec<InstancePort> {
    let mut out: Vec<InstancePort> = plan.plan.ports.iter().map(instance_port).collect();
    for s in &plan.stream_ports {
        let port = stream_destination(s);
        if !out.contains(&port) {
            out.push(port);
        }
    }
    out
}

/// The user's volumes, then the plan's that are not among them.
pub fn volumes(d: &Desired) -> Vec<String> {
    let mut out = d.plan.volumes.clone();
    for v in &d.plan.plan.volumes {
        if !out.contains(v) {
            out.push(v.clone());
        }
    }
    out
}

/// The cloud volumes of instance `no` of `d`: one directory per path, shared by every instance
/// (`single`) or its own (`multi`, LAIN's default), as LAIN laid them out under its
/// cloud-volume root (`<app>/<proc>[/<no>]/<path>`).
pub fn cloud_mounts(d: &Desired, no: u32) -> Vec<CloudMount> {
    let Some(cloud) = &d.plan.cloud_volumes else {
        return Vec::new();
    };
    let own = cloud.kind == CloudVolumeKind::Multi;
    cloud
        .dirs
        .iter()
        .map(|path| {
            let rel = path.trim_start_matches('/');
            let mut dir = format!("{}/{}", d.app, d.plan.name);
            let mut volume = format!("lain-cv.{}.{}", d.app, d.plan.name);
            if own {
                dir.push_str(&format!("/{no}"));
                volume.push_str(&format!(".{no}"));
            }
            dir.push_str(&format!("/{rel}"));
            volume.push_str(&format!(".{}", rel.replace('/', "_")));
            CloudMount {
                path: path.clone(),
                dir,
                volume,
            }
        })
        .collect()
}

/// The runtime spec of the instance `key` names, of `d`: its run is `key.attempt`, given to it
/// as `LAIN_ATTEMPT`.
pub fn spec(ctx: &Context, d: &Desired, key: &InstanceKey) -> Result<InstanceSpec, LifecycleError> {
    let p = &d.plan.plan;
    let no = key.number.unwrap_or(0);
    let mut env = instance_env(&d.plan.env, no, &key.node);
    env.push(("LAIN_ATTEMPT".into(), key.attempt.to_string()));
    if let Some(tick) = d.runs.as_ref().and_then(|runs| runs.get(&no)) {
        env.extend(crate::lifecycle::runs::run_env(no, *tick));
    }
    Ok(InstanceSpec {
        name: key.name(),
        labels: labels(ctx, d, key),
        image: image(ctx, d)?,
        entrypoint: p.entrypoint.clone(),
        cmd: p.cmd.clone(),
        user: p.user.clone(),
        env,
        workdir: p.workdir.clone(),
        ports: ports(&d.plan),
        memory: p.memory,
        cpu: p.cpu,
        log_file: ctx.settings.log_file(&d.app, &d.plan.name, no)?,
        aliases: vec![d.plan.name.clone(), format!("{}-{no}", d.plan.name)],
        dns_search: d.plan.dns_search.clone(),
        volumes: volumes(d),
        volume_root: ctx
            .settings
            .volumes
            .join(&d.app)
            .join(&d.plan.name)
            .join(no.to_string()),
        cloud_volumes: cloud_mounts(d, no),
        cloud_root: ctx.settings.cloud_volumes.clone(),
        health: p.health.clone(),
        secret_files: Vec::new(),
    })
}

/// The secret files of `d`'s instances. A missing one is skipped with `secret_files_bypass`,
/// else it is a problem that keeps the instance from being created.
pub fn secret_files(secrets: &SecretReader, d: &Desired) -> Result<Vec<SecretFile>, String> {
    let mut out = Vec::with_capacity(d.plan.secret_files.len());
    for path in &d.plan.secret_files {
        match secrets.get(&d.app, &d.plan.name, path) {
            Ok(content) => out.push(SecretFile {
                path: path.clone(),
                content,
            }),
            Err(SecretError::NotFound { .. }) if d.plan.secret_files_bypass => {}
            Err(e) => return Err(format!("secret file {path}: {e}")),
        }
    }
    Ok(out)
}

/// Lines of a failed run's log shown with its failure.
const TAIL_LINES: usize = 5;
/// Bytes read from the end of the log for them.
const TAIL_BYTES: u64 = 4096;
/// Characters kept of each line.
const TAIL_LINE_CHARS: usize = 200;

/// The last few lines of the log file `path` (at most [`TAIL_LINES`] lines of at most
/// [`TAIL_LINE_CHARS`] characters, from its last [`TAIL_BYTES`] bytes); none when it cannot be
/// read.
pub fn log_tail(path: &std::path::Path) -> Vec<String> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let Ok(mut file) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let len = file.metadata().map_or(0, |m| m.len());
    let start = len.saturating_sub(TAIL_BYTES);
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(start)).is_err()
        || file.take(TAIL_BYTES).read_to_end(&mut bytes).is_err()
    {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    let mut lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if start > 0 && !lines.is_empty() {
        // The first line read may be cut.
        lines.remove(0);
    }
    let from = lines.len().saturating_sub(TAIL_LINES);
    lines[from..]
        .iter()
        .map(|l| {
            let mut line: String = l.chars().take(TAIL_LINE_CHARS).collect();
            if l.chars().count() > TAIL_LINE_CHARS {
                line.push_str(" ...");
            }
            line
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_tail_is_the_last_lines_bounded_in_number_and_length() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("1.log");
        assert!(log_tail(&path).is_empty(), "no log, no tail");
        let mut text = String::new();
        for n in 0..2000 {
            text.push_str(&format!("[1] line {n}\n"));
        }
        text.push_str(&format!("[1] {}\n\n", "x".repeat(1000)));
        std::fs::write(&path, text).expect("write");
        let tail = log_tail(&path);
        assert_eq!(tail.len(), TAIL_LINES, "{tail:?}");
        assert_eq!(tail[0], "[1] line 1996");
        assert_eq!(tail[3], "[1] line 1999");
        assert!(tail[4].ends_with("x ...") && tail[4].len() == TAIL_LINE_CHARS + 4);
    }
}
