//! Tests of the `web` type as the kernel calls it: validate, then render.

use super::*;
use lain_sdk_guest::{HealthCheck, HttpProbe, Probe};

/// A web proc of the app `bookshelf` as the kernel hands it over, before validation.
fn proc(name: &str, mountpoints: &[&str]) -> Proc {
    Proc {
        app: "bookshelf".into(),
        name: name.into(),
        proc_type: "web".into(),
        image: "registry.lain.local/bookshelf:release-1".into(),
        mountpoints: mountpoints.iter().map(|m| m.to_string()).collect(),
        setup_time: 30,
        ..Default::default()
    }
}

fn ctx() -> AppContext {
    AppContext {
        app: "bookshelf".into(),
        app_domain: "bookshelf".into(),
        cluster_domains: vec!["lain.local".into()],
        release: "1".into(),
    }
}

fn paths(problems: &[Problem]) -> Vec<String> {
    problems.iter().map(|p| p.path.join(".")).collect()
}

fn validated(proc: Proc) -> Proc {
    match Web.validate(proc, ctx()) {
        Ok(proc) => proc,
        Err(problems) => panic!("unexpected problems: {problems:?}"),
    }
}

fn rendered(proc: Proc) -> ContainerPlan {
    match Web.render(validated(proc), ctx()) {
        Ok(plan) => plan,
        Err(e) => panic!("render failed: {e}"),
    }
}

#[test]
fn defaults_are_filled_in() {
    let web = validated(proc("web", &[]));
    assert_eq!(web.ports.len(), 1);
    assert_eq!(web.ports[0].number, 80);
    assert_eq!(web.ports[0].protocol, Protocol::Tcp);
    assert_eq!(web.https_only, Some(false));
    assert_eq!(web.mountpoints, ["bookshelf.lain.local", "bookshelf.lain"]);
}

#[test]
fn validation_is_idempotent() {
    let once = validated(proc("web", &["/v1", "books.example.org"]));
    let twice = validated(once.clone());
    assert_eq!(once.mountpoints, twice.mountpoints);
    assert_eq!(once.ports.len(), twice.ports.len());
}

#[test]
fn every_problem_is_reported() {
    let mut admin = proc("admin", &[]);
    admin.service_name = Some("books".into());
    admin.allow_clients = Some("**".into());
    admin.healthcheck = Some("healthz".into());
    admin.ports = vec![Port {
        number: 53,
        protocol: Protocol::Udp,
    }];
    let problems = Web.validate(admin, ctx()).err().unwrap_or_default();
    assert_eq!(
        paths(&problems),
        [
            "service_name",
            "allow_clients",
            "port",
            "mountpoint",
            "healthcheck"
        ]
    );
    assert_eq!(problems[0].message, "only portal procs have service_name");
}

#[test]
fn routes_follow_mountpoints_and_https_only() {
    let mut web = proc("web", &["www.example.org/books"]);
    web.https_only = Some(true);
    let plan = rendered(web);
    let routes: Vec<(&str, &str, bool)> = plan
        .routes
        .iter()
        .map(|r| (r.host.as_str(), r.path.as_str(), r.https_only))
        .collect();
    assert_eq!(
        routes,
        [
            ("www.example.org", "/books", true),
            ("bookshelf.lain.local", "/", true),
            ("bookshelf.lain", "/", true),
        ]
    );
    assert_eq!(plan.restart.policy, RestartPolicy::Always);
    assert_eq!(plan.ports[0].number, 80);
}

#[test]
fn healthcheck_becomes_an_http_probe_on_the_main_port() {
    let mut web = proc("web", &[]);
    web.ports = vec![Port {
        number: 8080,
        protocol: Protocol::Tcp,
    }];
    web.healthcheck = Some("/healthz".into());
    let health = rendered(web).health;
    let Some(HealthCheck {
        probe: Probe::Http(HttpProbe { port, path }),
        interval,
        timeout,
        retries,
        start_period,
    }) = health
    else {
        panic!("expected an HTTP probe, got {health:?}");
    };
    assert_eq!((port, path.as_str()), (8080, "/healthz"));
    assert_eq!((interval, timeout, retries, start_period), (10, 3, 3, 30));
}

#[test]
fn container_healthcheck_wins_and_can_be_disabled() {
    let explicit = HealthCheck {
        probe: Probe::Command("curl -fsS localhost:8080/healthz".into()),
        interval: 15,
        timeout: 5,
        retries: 4,
        start_period: 30,
    };
    let mut web = proc("web", &[]);
    web.healthcheck = Some("/healthz".into());
    web.container_healthcheck = Some(explicit);
    let health = rendered(web.clone()).health;
    assert!(matches!(
        health,
        Some(HealthCheck { probe: Probe::Command(ref cmd), interval: 15, .. })
            if cmd == "curl -fsS localhost:8080/healthz"
    ));
    web.container_healthcheck = None;
    web.healthcheck_disabled = true;
    assert!(rendered(web).health.is_none());
    assert!(rendered(proc("web", &[])).health.is_none());
}

#[test]
fn render_refuses_other_types_and_unvalidated_procs() {
    let mut worker = proc("web", &[]);
    worker.proc_type = "worker".into();
    assert!(matches!(
        Web.render(worker, ctx()),
        Err(PluginError::InvalidInput(_))
    ));
    assert!(matches!(
        Web.render(proc("web", &[]), ctx()),
        Err(PluginError::InvalidInput(_))
    ));
    let mut relative = validated(proc("web", &[]));
    relative.mountpoints.push("/v1".into());
    assert!(matches!(
        Web.render(relative, ctx()),
        Err(PluginError::InvalidInput(_))
    ));
}
