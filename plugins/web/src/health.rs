//! Health checks of web procs (LAIN reference §health).

use lain_sdk_guest::proc_type::Proc;
use lain_sdk_guest::{HealthCheck, HttpProbe, Probe, Problem};

/// Seconds between probes of the default HTTP check (LAIN's default).
const INTERVAL: u32 = 10;
/// Seconds before one probe of the default HTTP check fails (LAIN's default).
const TIMEOUT: u32 = 3;
/// Failures before an instance is unhealthy under the default HTTP check (LAIN's default).
const RETRIES: u32 = 3;

/// Reports a `healthcheck` that is not an absolute URL path without spaces.
pub fn check_path(path: &str, problems: &mut Vec<Problem>) {
    if !path.starts_with('/') || path.chars().any(char::is_whitespace) {
        problems.push(
            Problem::at(
                &["healthcheck"],
                format!("healthcheck `{path}` is not an absolute URL path"),
            )
            .with_hint("write a path such as `/healthz`, without host or spaces"),
        );
    }
}

/// The health check of a web proc, as LAIN's deployd built it (LAIN reference §health):
/// none when disabled (`container_healthcheck: {cmd: none}`); else `container_healthcheck` if
/// given; else, if `healthcheck` is given, an HTTP GET of that path on `port` with LAIN's defaults
/// (every 10 s, 3 s timeout, 3 retries, failures ignored during `setup_time`); else none.
pub fn plan_health(proc: &Proc, port: u16) -> Option<HealthCheck> {
    if proc.healthcheck_disabled {
        return None;
    }
    if let Some(explicit) = &proc.container_healthcheck {
        return Some(explicit.clone());
    }
    proc.healthcheck.as_ref().map(|path| HealthCheck {
        probe: Probe::Http(HttpProbe {
            port,
            path: path.clone(),
        }),
        interval: INTERVAL,
        timeout: TIMEOUT,
        retries: RETRIES,
        start_period: proc.setup_time,
    })
}
