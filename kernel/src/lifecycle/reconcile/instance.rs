//! A new instance: its identity, runtime spec (LAIN's instance environment, log file, volumes)
//! and the secret files that go into it before it first starts.

use super::context::{Context, SecretReader};
use super::desired::Desired;
use super::identity::InstanceKey;
use crate::lifecycle::LifecycleError;
use crate::lifecycle::environment::instance_env;
use crate::runtime::{InstanceSpec, SecretFile};
use crate::secrets::vault::SecretError;

/// The identity of instance `no` of `d` on `node`.
pub fn key(d: &Desired, no: u32, node: &str) -> InstanceKey {
    InstanceKey {
        app: d.app.clone(),
        proc: d.plan.full_name.clone(),
        number: Some(no),
        release: d.release.clone(),
        node: node.to_string(),
        secrets: d.plan.secrets_stamp.clone(),
    }
}

/// The runtime spec of the instance `key` names, of `d`.
pub fn spec(ctx: &Context, d: &Desired, key: &InstanceKey) -> Result<InstanceSpec, LifecycleError> {
    let p = &d.plan.plan;
    let no = key.number.unwrap_or(0);
    let mut env = instance_env(&d.plan.env, no, &key.node);
    if let Some(tick) = d.runs.as_ref().and_then(|runs| runs.get(&no)) {
        env.extend(crate::lifecycle::runs::run_env(no, *tick));
    }
    Ok(InstanceSpec {
        name: key.name(),
        labels: key.labels(&ctx.kernel_id),
        image: d.image.clone(),
        entrypoint: p.entrypoint.clone(),
        cmd: p.cmd.clone(),
        user: p.user.clone(),
        env,
        workdir: p.workdir.clone(),
        ports: p.ports.iter().map(|p| p.number).collect(),
        memory: p.memory,
        cpu: p.cpu,
        log_file: ctx.settings.log_file(&d.app, &d.plan.name, no)?,
        aliases: vec![d.plan.name.clone()],
        volumes: d.plan.volumes.clone(),
        volume_root: ctx
            .settings
            .volumes
            .join(&d.app)
            .join(&d.plan.name)
            .join(no.to_string()),
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
