//! Every key the `lain.yaml` parser accepts, in one place: the parsers refuse what these lists
//! do not name, and [`keys`] spells each out as a dotted path for the table in
//! `docs/lain-yaml.md` ("What each key does"), which a test keeps complete.

pub use super::app::TOP_LEVEL_KEYS;
pub use super::proc_keys::COMMON_KEYS as PROC_KEYS;

/// `build:`.
pub const BUILD_KEYS: &[&str] = &["base", "script", "build_arg", "prepare", "volumes"];
/// `build.prepare:` in its mapping form.
pub const PREPARE_KEYS: &[&str] = &["version", "script", "keep", "build_arg"];
/// `release:`.
pub const RELEASE_KEYS: &[&str] = &["script", "dest_base", "copy"];
/// An item of `release.copy` in its mapping form.
pub const COPY_KEYS: &[&str] = &["src", "dest"];
/// `test:`.
pub const TEST_KEYS: &[&str] = &["script"];
/// A proc's `healthcheck:` / `container_healthcheck:` in its mapping form.
pub const HEALTHCHECK_KEYS: &[&str] = &["cmd", "options"];
/// `healthcheck.options:`.
pub const HEALTH_OPTION_KEYS: &[&str] = &["interval", "timeout", "retries"];
/// The policies of one volume (`volumes: [{/data: {backup_full: ...}}]`); `backup` is read
/// only to warn that LAIN never read it.
pub const VOLUME_KEYS: &[&str] = &["backup_full", "backup_increment", "backup"];
/// One backup policy of a volume.
pub const BACKUP_POLICY_KEYS: &[&str] = &["schedule", "expire", "pre_run", "post_run"];
/// `cloud_volumes:` in its mapping form.
pub const CLOUD_VOLUME_KEYS: &[&str] = &["type", "dirs"];

/// Every accepted key as a dotted path: top-level keys as they are (`giturl`, `build.base`),
/// a proc's keys under `PROC` (`PROC.memory`), a volume's under `PROC.volumes.PATH`.
/// Keys a proc type's plugin adds (the template's `cron` `schedule`, say) are the plugin's
/// and not listed.
pub fn keys() -> Vec<String> {
    let under = |prefix: &str, keys: &[&str]| -> Vec<String> {
        keys.iter().map(|k| format!("{prefix}.{k}")).collect()
    };
    let mut out: Vec<String> = TOP_LEVEL_KEYS.iter().map(|k| k.to_string()).collect();
    out.extend(under("build", BUILD_KEYS));
    out.extend(under("build.prepare", PREPARE_KEYS));
    out.extend(under("release", RELEASE_KEYS));
    out.extend(under("release.copy", COPY_KEYS));
    out.extend(under("test", TEST_KEYS));
    out.extend(under("PROC", PROC_KEYS));
    for health in ["PROC.healthcheck", "PROC.container_healthcheck"] {
        out.extend(under(health, HEALTHCHECK_KEYS));
        out.extend(under(&format!("{health}.options"), HEALTH_OPTION_KEYS));
    }
    out.extend(under("PROC.volumes.PATH", VOLUME_KEYS));
    for policy in ["backup_full", "backup_increment"] {
        out.extend(under(
            &format!("PROC.volumes.PATH.{policy}"),
            BACKUP_POLICY_KEYS,
        ));
    }
    out.extend(under("PROC.cloud_volumes", CLOUD_VOLUME_KEYS));
    out
}
