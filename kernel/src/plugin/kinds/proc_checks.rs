//! What a proc-type plugin returns is re-checked like user input before the kernel uses it.
//!
//! `validate` returns the proc it was given, completed: the proc's identity (app, name, type) must
//! come back unchanged, and every value the plugin changed or added must pass the rules the
//! kernel's parser applies to `lain.yaml` (names, environment, ports, paths, volumes, secret
//! files, filters, bounds). `render` returns a plan whose values are checked the same way (routes,
//! health checks, portal, labels). Values the plugin passed through unchanged came from the user
//! and were checked when `lain.yaml` was parsed. A refusal is [`Cause::BadResult`], which names the
//! plugin, its version and the function, and counts as a fault of the plugin.

use crate::plugin::bindings::proc_rendering::{ContainerPlan, RestartPolicy, Schedule};
use crate::plugin::bindings::types::{EnvVar, HealthCheck, Label, Probe, Proc, Protocol};
use crate::plugin::error::Cause;
use crate::spec::values;

/// Volume paths a proc may not mount over (as in `lain.yaml`).
const FORBIDDEN_VOLUMES: &[&str] = &["/", "/lain", "/lain/app"];
/// Most items of any list a plugin returns.
const MAX_ITEMS: usize = 4096;
/// Longest string a plugin returns where the kernel expects a name, path or word.
const MAX_TEXT: usize = 4096;

/// Checks the proc `validate` returned for `input`.
pub fn validated(input: &Proc, out: &Proc) -> Result<(), Cause> {
    for (what, before, after) in [
        ("app", &input.app, &out.app),
        ("name", &input.name, &out.name),
        ("type", &input.proc_type, &out.proc_type),
    ] {
        if before != after {
            return bad(format!(
                "changed the proc's {what} from `{}` to `{}`; a plugin cannot rename a proc",
                before.escape_debug(),
                after.escape_debug()
            ));
        }
    }
    if out.image != input.image {
        word("image", &out.image)?;
    }
    if out.entrypoint != input.entrypoint {
        command("entrypoint", out.entrypoint.as_deref())?;
    }
    if out.cmd != input.cmd {
        command("cmd", out.cmd.as_deref())?;
    }
    if out.user != input.user
        && let Some(user) = &out.user
    {
        word("user", user)?;
    }
    if out.workdir != input.workdir
        && let Some(dir) = &out.workdir
    {
        container_path("workdir", dir)?;
    }
    env(&out.env, &input.env)?;
    if out.num_instances > 10_000 {
        return bad(format!(
            "num_instances {} is more than 10000",
            out.num_instances
        ));
    }
    if out.memory != input.memory && out.memory < values::MIN_MEMORY {
        return bad(format!("memory {} is below the minimum of 4m", out.memory));
    }
    count("ports", out.ports.len())?;
    if out.ports.iter().any(|p| p.number == 0) {
        return bad("port 0: expected a number from 1 to 65535".into());
    }
    count("stream ports", out.stream_ports.len())?;
    for p in &out.stream_ports {
        if !(9500..=10000).contains(&p.source) || p.destination == 0 {
            return bad(format!(
                "stream port {}:{}: the source must be 9500-10000 and the destination 1-65535",
                p.source, p.destination
            ));
        }
    }
    count("mountpoints", out.mountpoints.len())?;
    for m in out
        .mountpoints
        .iter()
        .filter(|m| !input.mountpoints.contains(m))
    {
        word("mountpoint", m)?;
    }
    if out.healthcheck != input.healthcheck
        && let Some(path) = &out.healthcheck
    {
        word("healthcheck", path)?;
    }
    if out.container_healthcheck != input.container_healthcheck
        && let Some(check) = &out.container_healthcheck
    {
        health("container_healthcheck", check)?;
    }
    volumes(out, input)?;
    count("logs", out.logs.len())?;
    for log in out.logs.iter().filter(|l| !input.logs.contains(l)) {
        relative_path("logs", log)?;
    }
    count("secret files", out.secret_files.len())?;
    for path in out
        .secret_files
        .iter()
        .filter(|p| !input.secret_files.contains(p))
    {
        container_path("secret file", path)?;
        if path == "/" {
            return bad("secret file `/` is not a file".into());
        }
    }
    if out.setup_time != input.setup_time && out.setup_time > 120 {
        return bad(format!("setup_time {} is more than 120", out.setup_time));
    }
    if out.kill_timeout != input.kill_timeout && !(10..=60).contains(&out.kill_timeout) {
        return bad(format!("kill_timeout {} is not 10-60", out.kill_timeout));
    }
    labels(&out.labels, &input.labels)?;
    count("filters", out.filters.len())?;
    for f in out.filters.iter().filter(|f| !input.filters.contains(f)) {
        values::filter(f).map_err(Cause::BadResult)?;
    }
    if out.service_name != input.service_name
        && let Some(name) = &out.service_name
    {
        values::check_name(name).map_err(|e| Cause::BadResult(format!("service_name: {e}")))?;
    }
    if out.allow_clients != input.allow_clients
        && let Some(glob) = &out.allow_clients
    {
        allow_clients(glob)?;
    }
    if out.extra != input.extra
        && (out.extra.len() > 64 << 10
            || !serde_json::from_str::<serde_json::Value>(&out.extra).is_ok_and(|v| v.is_object()))
    {
        return bad("extra is not a JSON object of at most 64 KiB".into());
    }
    Ok(())
}

/// Checks the plan `render` returned for the validated `proc`.
pub fn rendered(proc: &Proc, plan: &ContainerPlan) -> Result<(), Cause> {
    if plan.image != proc.image {
        word("image", &plan.image)?;
    }
    command("entrypoint", plan.entrypoint.as_deref())?;
    command("cmd", plan.cmd.as_deref())?;
    env(&plan.env, &proc.env)?;
    if plan.user != proc.user
        && let Some(user) = &plan.user
    {
        word("user", user)?;
    }
    if plan.workdir != proc.workdir
        && let Some(dir) = &plan.workdir
    {
        container_path("workdir", dir)?;
    }
    count("ports", plan.ports.len())?;
    if plan.ports.iter().any(|p| p.number == 0) {
        return bad("port 0: expected a number from 1 to 65535".into());
    }
    if plan.memory != proc.memory && plan.memory < values::MIN_MEMORY {
        return bad(format!("memory {} is below the minimum of 4m", plan.memory));
    }
    if let Some(check) = &plan.health {
        health("health", check)?;
        http_probe_on_tcp(plan, check)?;
    }
    if let Some(s) = &plan.schedule {
        schedule(plan, s)?;
    }
    count("routes", plan.routes.len())?;
    for route in &plan.routes {
        if !crate::spec::values::is_dns_name(&route.host) {
            return bad(format!(
                "route host `{}` is not a host name",
                route.host.escape_debug()
            ));
        }
        url_path("route path", &route.path)?;
    }
    if let Some(portal) = &plan.portal {
        values::check_name(&portal.service_name)
            .map_err(|e| Cause::BadResult(format!("portal service name: {e}")))?;
        allow_clients(&portal.allow_clients)?;
    }
    labels(&plan.labels, &proc.labels)?;
    if plan.setup_time != proc.setup_time && plan.setup_time > 120 {
        return bad(format!("setup_time {} is more than 120", plan.setup_time));
    }
    if plan.kill_timeout != proc.kill_timeout && !(10..=60).contains(&plan.kill_timeout) {
        return bad(format!("kill_timeout {} is not 10-60", plan.kill_timeout));
    }
    Ok(())
}

/// A schedule the kernel can tick: a cron it reads in an IANA time zone, a history of 0-1000
/// runs, and a restart rule under which a run ends.
fn schedule(plan: &ContainerPlan, s: &Schedule) -> Result<(), Cause> {
    crate::cron::Schedule::parse(&s.cron, &s.timezone)
        .map_err(|e| Cause::BadResult(e.to_string()))?;
    if s.history > 1000 {
        return bad(format!("schedule history {} is more than 1000", s.history));
    }
    if plan.restart.policy == RestartPolicy::Always {
        return bad(
            "a scheduled proc's restart policy is `always`: its runs would never end (use `never` or `on-failure`)"
                .into(),
        );
    }
    Ok(())
}

fn bad<T>(message: String) -> Result<T, Cause> {
    Err(Cause::BadResult(message))
}

fn count(what: &str, n: usize) -> Result<(), Cause> {
    if n > MAX_ITEMS {
        return bad(format!("{n} {what}, more than {MAX_ITEMS}"));
    }
    Ok(())
}

/// One word: 1-4096 characters, no whitespace or control characters.
fn word(what: &str, text: &str) -> Result<(), Cause> {
    if text.is_empty()
        || text.len() > MAX_TEXT
        || text.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return bad(format!(
            "{what} `{}` is not one word of 1-{MAX_TEXT} characters",
            text.escape_debug()
        ));
    }
    Ok(())
}

/// A command's words: none holds a NUL (which no program can receive).
fn command(what: &str, words: Option<&[String]>) -> Result<(), Cause> {
    let words = words.unwrap_or_default();
    count(what, words.len())?;
    if words.iter().any(|w| w.contains('\0')) {
        return bad(format!("{what} holds a NUL character"));
    }
    Ok(())
}

/// An absolute container path in the kernel's normal form (no `.`, `..` or empty components).
fn container_path(what: &str, path: &str) -> Result<(), Cause> {
    if path.len() > MAX_TEXT
        || !path.starts_with('/')
        || values::container_path(path) != path
        || path.chars().any(char::is_control)
    {
        return bad(format!(
            "{what} `{}` is not an absolute path without `.`, `..` or empty components",
            path.escape_debug()
        ));
    }
    Ok(())
}

/// A relative path of plain components (as under `/lain/logs`).
fn relative_path(what: &str, path: &str) -> Result<(), Cause> {
    let plain = !path.is_empty()
        && path.len() <= MAX_TEXT
        && !path.chars().any(char::is_control)
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..");
    if !plain {
        return bad(format!(
            "{what} `{}` is not a relative path of plain components",
            path.escape_debug()
        ));
    }
    Ok(())
}

/// An absolute URL path: no whitespace, control characters, query or fragment.
fn url_path(what: &str, path: &str) -> Result<(), Cause> {
    if !path.starts_with('/')
        || path.len() > MAX_TEXT
        || path
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#')
    {
        return bad(format!(
            "{what} `{}` is not an absolute URL path",
            path.escape_debug()
        ));
    }
    Ok(())
}

/// Environment entries the plugin added (not in `given`): names as in `lain.yaml` (no `=`, no
/// whitespace), no NUL anywhere.
fn env(out: &[EnvVar], given: &[EnvVar]) -> Result<(), Cause> {
    count("environment variables", out.len())?;
    for var in out.iter().filter(|v| !given.contains(v)) {
        let ok = !var.name.is_empty()
            && var.name.len() <= 256
            && !var
                .name
                .chars()
                .any(|c| c == '=' || c.is_whitespace() || c.is_control())
            && !var.value.contains('\0');
        if !ok {
            return bad(format!(
                "environment variable `{}`: a name without `=`, whitespace or control characters, a value without NUL",
                var.name.escape_debug()
            ));
        }
    }
    Ok(())
}

/// An HTTP health check probes a TCP port: one the plan lists as TCP, or does not list (then it
/// is probed inside the instance). A check of a port listed as UDP only could never pass.
fn http_probe_on_tcp(plan: &ContainerPlan, check: &HealthCheck) -> Result<(), Cause> {
    let Probe::Http(http) = &check.probe else {
        return Ok(());
    };
    let listed = |protocol| {
        plan.ports
            .iter()
            .any(|p| p.number == http.port && p.protocol == protocol)
    };
    if listed(Protocol::Udp) && !listed(Protocol::Tcp) {
        return bad(format!(
            "the HTTP health check probes port {}, which the proc has as UDP only: an HTTP check needs a TCP port",
            http.port
        ));
    }
    Ok(())
}

/// Labels the plugin added: a key without control characters or `=`, not under `lain.` (the
/// kernel's), a value without control characters.
fn labels(out: &[Label], given: &[Label]) -> Result<(), Cause> {
    count("labels", out.len())?;
    if let Some(l) = out.iter().find(|l| l.key.starts_with("lain.")) {
        return bad(format!(
            "label `{}`: keys under `lain.` belong to the kernel",
            l.key.escape_debug()
        ));
    }
    if let Some(l) = out.iter().find(|l| l.key.contains('=')) {
        return bad(format!(
            "label `{}`: a key cannot hold `=`",
            l.key.escape_debug()
        ));
    }
    for l in out.iter().filter(|l| !given.contains(l)) {
        if l.key.trim().is_empty()
            || l.key.len() > 256
            || l.value.len() > MAX_TEXT
            || l.key.chars().chain(l.value.chars()).any(char::is_control)
        {
            return bad(format!(
                "label `{}`: a key of 1-256 characters, no control characters",
                l.key.escape_debug()
            ));
        }
    }
    Ok(())
}

/// Volumes: the plugin's own must be normal absolute paths, not `/`, `/lain` or `/lain/app`;
/// none twice.
fn volumes(out: &Proc, input: &Proc) -> Result<(), Cause> {
    count("volumes", out.volumes.len())?;
    for (i, v) in out.volumes.iter().enumerate() {
        if !input.volumes.iter().any(|given| given.path == v.path) {
            container_path("volume", &v.path)?;
            if FORBIDDEN_VOLUMES.contains(&v.path.as_str()) {
                return bad(format!("volume {} is /, /lain or /lain/app", v.path));
            }
        }
        if out.volumes[..i].iter().any(|o| o.path == v.path) {
            return bad(format!("volume {} is listed twice", v.path.escape_debug()));
        }
    }
    Ok(())
}

fn health(what: &str, check: &HealthCheck) -> Result<(), Cause> {
    match &check.probe {
        Probe::Command(cmd) if cmd.contains('\0') || cmd.len() > MAX_TEXT => {
            bad(format!("{what}: the command holds a NUL or is too long"))
        }
        Probe::Http(http) if http.port == 0 => bad(format!("{what}: port 0")),
        Probe::Http(http) => url_path(&format!("{what} path"), &http.path),
        Probe::Command(_) => Ok(()),
    }
}

fn allow_clients(glob: &str) -> Result<(), Cause> {
    word("allow_clients", glob)?;
    glob::Pattern::new(glob)
        .map(|_| ())
        .map_err(|e| Cause::BadResult(format!("allow_clients `{}`: {e}", glob.escape_debug())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::bindings::proc_rendering::{
        ConcurrencyPolicy, MissedPolicy, PlacementMode, RestartPolicy, RestartRule, Route,
    };
    use crate::plugin::bindings::types::Volume;

    fn proc() -> Proc {
        Proc::with_lain_defaults("app", "web", "web")
    }

    fn refused(out: &Proc) -> String {
        match validated(&proc(), out) {
            Err(Cause::BadResult(m)) => m,
            other => panic!("accepted: {other:?}"),
        }
    }

    #[test]
    fn validate_may_complete_a_proc_but_not_rename_it_or_escape() {
        let mut out = proc();
        out.ports.push(crate::plugin::bindings::types::Port {
            number: 80,
            protocol: crate::plugin::bindings::types::Protocol::Tcp,
        });
        out.mountpoints.push("app.lain.local".into());
        validated(&proc(), &out).expect("defaults are fine");

        let mut out = proc();
        out.name = "../../../canary/x".into();
        assert!(refused(&out).contains("cannot rename"));
        let mut out = proc();
        out.volumes.push(Volume {
            path: "/data/../../etc".into(),
            backup_full: None,
            backup_increment: None,
        });
        assert!(refused(&out).contains("volume `/data/../../etc`"));
        let mut out = proc();
        out.secret_files.push("relative/secret".into());
        assert!(refused(&out).contains("secret file"));
        let mut out = proc();
        out.env.push(EnvVar {
            name: "A=B".into(),
            value: "x".into(),
        });
        assert!(refused(&out).contains("environment variable `A=B`"));
        let mut out = proc();
        out.logs.push("../x".into());
        assert!(refused(&out).contains("logs `../x`"));
        let mut out = proc();
        out.filters.push("constraint:bad".into());
        assert!(refused(&out).contains("invalid filter"));
        let mut out = proc();
        out.service_name = Some("a b".into());
        assert!(refused(&out).contains("service_name"));
        let mut out = proc();
        out.kill_timeout = 100_000;
        assert!(refused(&out).contains("kill_timeout"));
        let mut out = proc();
        out.labels.push(Label {
            key: "lain.node".into(),
            value: "elsewhere".into(),
        });
        assert!(refused(&out).contains("label `lain.node`"));
    }

    #[test]
    fn render_routes_health_and_labels_are_checked() {
        let mut plan = ContainerPlan {
            image: String::new(),
            entrypoint: None,
            cmd: None,
            env: vec![],
            user: None,
            workdir: None,
            ports: vec![],
            cpu: 0,
            memory: 32 << 20,
            health: None,
            restart: RestartRule {
                policy: RestartPolicy::Always,
                max_restarts: None,
                backoff_initial: 0,
                backoff_max: 0,
            },
            schedule: None,
            placement: PlacementMode::Spread,
            volumes: vec![],
            routes: vec![Route {
                host: "app.lain.local".into(),
                path: "/".into(),
                https_only: false,
            }],
            portal: None,
            labels: vec![],
            kill_timeout: 10,
            setup_time: 0,
        };
        rendered(&proc(), &plan).expect("a plain plan is fine");
        plan.routes[0].host = "app.lain.local; include /etc/passwd".into();
        assert!(
            matches!(rendered(&proc(), &plan), Err(Cause::BadResult(m)) if m.contains("route host"))
        );
        plan.routes[0].host = "app.lain.local".into();
        plan.routes[0].path = "/x y".into();
        assert!(
            matches!(rendered(&proc(), &plan), Err(Cause::BadResult(m)) if m.contains("route path"))
        );
        plan.routes.clear();
        plan.labels.push(Label {
            key: "lain.app".into(),
            value: "other".into(),
        });
        assert!(
            matches!(rendered(&proc(), &plan), Err(Cause::BadResult(m)) if m.contains("belong to the kernel"))
        );
        plan.labels.clear();
        plan.ports = vec![crate::plugin::bindings::types::Port {
            number: 53,
            protocol: Protocol::Udp,
        }];
        plan.health = Some(HealthCheck {
            probe: Probe::Http(crate::plugin::bindings::types::HttpProbe {
                port: 53,
                path: "/".into(),
            }),
            interval: 10,
            timeout: 3,
            retries: 3,
            start_period: 0,
        });
        assert!(
            matches!(rendered(&proc(), &plan), Err(Cause::BadResult(m)) if m.contains("UDP only")),
            "an HTTP check of a UDP-only port"
        );
        plan.ports.push(crate::plugin::bindings::types::Port {
            number: 53,
            protocol: Protocol::Tcp,
        });
        rendered(&proc(), &plan).expect("53 is TCP too");
        plan.ports.clear();
        plan.health = None;
        plan.workdir = Some("../../etc".into());
        assert!(
            matches!(rendered(&proc(), &plan), Err(Cause::BadResult(m)) if m.contains("workdir"))
        );
        plan.workdir = None;
        let refused = |plan: &ContainerPlan| match rendered(&proc(), plan) {
            Err(Cause::BadResult(m)) => m,
            other => format!("not refused: {other:?}"),
        };
        plan.restart.policy = RestartPolicy::Never;
        let mut s = Schedule {
            cron: "@every 2s".into(),
            timezone: "Europe/Paris".into(),
            concurrency: ConcurrencyPolicy::Forbid,
            missed: MissedPolicy::Skip,
            history: 0,
        };
        plan.schedule = Some(s.clone());
        rendered(&proc(), &plan).expect("a good schedule");
        s.cron = "* * *".into();
        plan.schedule = Some(s.clone());
        assert!(refused(&plan).contains("schedule `* * *`: 3 fields"));
        s.cron = "@daily".into();
        s.timezone = "Paris".into();
        plan.schedule = Some(s.clone());
        assert!(refused(&plan).contains("time zone `Paris`"));
        s.timezone = "UTC".into();
        s.history = 1001;
        plan.schedule = Some(s.clone());
        assert!(refused(&plan).contains("history 1001"));
        s.history = 5;
        plan.schedule = Some(s);
        plan.restart.policy = RestartPolicy::Always;
        assert!(refused(&plan).contains("would never end"));
    }
}
