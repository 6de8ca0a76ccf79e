//! Tests of the `portal` type as the kernel calls it: validate, then render.

use super::*;

/// A portal proc as the kernel hands it over, before validation.
fn proc(service_name: Option<&str>, allow_clients: Option<&str>) -> Proc {
    Proc {
        app: "pg-cluster".into(),
        name: "portal-pg".into(),
        proc_type: "portal".into(),
        image: "registry.lain.local/pg-cluster:release-1".into(),
        cmd: Some(vec!["/usr/local/bin/pg-proxy".into()]),
        service_name: service_name.map(Into::into),
        allow_clients: allow_clients.map(Into::into),
        ..Default::default()
    }
}

fn ctx() -> AppContext {
    AppContext {
        app: "pg-cluster".into(),
        app_domain: "pg-cluster".into(),
        cluster_domains: vec!["lain.local".into()],
        release: "1".into(),
    }
}

fn problems(proc: Proc) -> Vec<(String, String)> {
    PortalType
        .validate(proc, ctx())
        .err()
        .unwrap_or_default()
        .into_iter()
        .map(|p| (p.path.join("."), p.message))
        .collect()
}

#[test]
fn allow_clients_defaults_to_every_app() {
    let validated = PortalType.validate(proc(Some("pg"), None), ctx());
    let allow = validated.map(|p| p.allow_clients).map_err(|p| p.len());
    assert_eq!(allow, Ok(Some("**".to_string())));
}

#[test]
fn missing_service_name_is_lains_error() {
    assert_eq!(
        problems(proc(None, None)),
        [(
            "service_name".to_string(),
            "proc (type is portal) should have own service_name.".to_string()
        )]
    );
}

#[test]
fn every_problem_is_reported() {
    let found = problems(proc(Some("pg_cluster"), Some("a/b, **")));
    let paths: Vec<&str> = found.iter().map(|(path, _)| path.as_str()).collect();
    assert_eq!(paths, ["service_name", "allow_clients"]);
    assert!(found[0].1.contains("pg_cluster"));
    assert!(found[1].1.contains("a/b"));
}

#[test]
fn render_sets_portal_and_env_and_keeps_no_port() {
    let plan = PortalType.render(proc(Some("pg"), Some("bookshelf")), ctx());
    let Ok(plan) = plan else {
        panic!("render failed: {plan:?}");
    };
    let portal = plan
        .portal
        .as_ref()
        .map(|p| (p.service_name.as_str(), p.allow_clients.as_str()));
    assert_eq!(portal, Some(("pg", "bookshelf")));
    let env: Vec<(&str, &str)> = plan
        .env
        .iter()
        .map(|e| (e.name.as_str(), e.value.as_str()))
        .collect();
    assert_eq!(env, [("LAIN_SERVICE_NAME", "pg")]);
    assert_eq!(plan.restart.policy, RestartPolicy::Always);
    assert!(plan.ports.is_empty());
    assert!(plan.routes.is_empty());
}

#[test]
fn render_refuses_unvalidated_and_other_types() {
    assert!(matches!(
        PortalType.render(proc(None, None), ctx()),
        Err(PluginError::InvalidInput(_))
    ));
    let mut worker = proc(Some("pg"), None);
    worker.proc_type = "worker".into();
    assert!(matches!(
        PortalType.render(worker, ctx()),
        Err(PluginError::InvalidInput(_))
    ));
}
