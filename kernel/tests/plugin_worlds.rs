//! Every plugin world driven through the real host with the real built-in plugins.

mod common;

use common::{builtin, engine, proc};
use lain::plugin::bindings::authentication::{AuthResult, Credentials};
use lain::plugin::bindings::backup::{BackupJob, BackupMode};
use lain::plugin::bindings::monitoring::{Delivery, MetricFamily, MetricKind, Sample, SampleBatch};
use lain::plugin::bindings::proc_rendering::RestartPolicy;
use lain::plugin::bindings::types::{AppContext, BackupPolicy, Label, Probe};
use lain::plugin::kinds::auth::AuthPlugin;
use lain::plugin::kinds::backup::BackupPlugin;
use lain::plugin::kinds::monitor::ExporterPlugin;
use lain::plugin::kinds::proc_type::ProcTypePlugin;
use lain::plugin::kinds::scheduler::LiveScheduler;
use lain::plugin::{Cause, FailurePolicy};
use lain::schedule::{MemberSpec, Pipeline, ScheduleError};
use serde_json::json;

fn ctx() -> AppContext {
    AppContext {
        app: "bookshelf".into(),
        app_domain: "bookshelf".into(),
        cluster_domains: vec!["lain.local".into()],
        release: "1700000000-abc".into(),
    }
}

#[test]
fn web_expands_mountpoints_and_turns_healthcheck_into_a_probe() {
    let engine = engine();
    let web = builtin(&engine, "web", None);
    let plugin = ProcTypePlugin(&web);
    assert_eq!(plugin.describe().expect("describe").name, "web");

    let mut p = proc("web", "web");
    p.mountpoints = vec!["books.example.org".into(), "/v1".into()];
    p.healthcheck = Some("/healthz".into());
    let validated = plugin
        .validate(&p, &ctx())
        .expect("call succeeds")
        .expect("valid");
    assert_eq!(validated.ports.len(), 1);
    assert_eq!(validated.ports[0].number, 80, "LAIN's default web port");
    assert_eq!(
        validated.mountpoints,
        [
            "books.example.org",
            "bookshelf.lain.local",
            "bookshelf.lain",
            "bookshelf.lain.local/v1",
            "bookshelf.lain/v1"
        ]
    );

    let plan = plugin.render(&validated, &ctx()).expect("render");
    assert_eq!(plan.restart.policy, RestartPolicy::Always);
    let routes: Vec<(String, String)> = plan
        .routes
        .iter()
        .map(|r| (r.host.clone(), r.path.clone()))
        .collect();
    assert!(
        routes.contains(&("bookshelf.lain.local".into(), "/v1".into())),
        "{routes:?}"
    );
    assert!(
        routes.contains(&("books.example.org".into(), "/".into())),
        "{routes:?}"
    );
    let health = plan.health.expect("a health check from `healthcheck`");
    match health.probe {
        Probe::Http(h) => assert_eq!((h.port, h.path.as_str()), (80, "/healthz")),
        other => panic!("expected an HTTP probe, got {other:?}"),
    }
}

#[test]
fn web_proc_not_named_web_needs_its_own_mountpoint() {
    let engine = engine();
    let web = builtin(&engine, "web", None);
    let problems = ProcTypePlugin(&web)
        .validate(&proc("admin", "web"), &ctx())
        .expect("call")
        .unwrap_err();
    assert!(
        problems
            .iter()
            .any(|p| p.path == ["mountpoint"] && p.message.contains("should have own mountpoint")),
        "{problems:?}"
    );
}

#[test]
fn worker_oneshot_and_portal_render_their_restart_policies() {
    let engine = engine();
    for (ty, restart) in [
        ("worker", RestartPolicy::Always),
        ("oneshot", RestartPolicy::Never),
    ] {
        let plugin = builtin(&engine, ty, None);
        let p = ProcTypePlugin(&plugin)
            .validate(&proc("job", ty), &ctx())
            .expect("call")
            .expect("valid");
        assert_eq!(
            ProcTypePlugin(&plugin)
                .render(&p, &ctx())
                .expect("render")
                .restart
                .policy,
            restart,
            "{ty}"
        );
    }
    let portal = builtin(&engine, "portal", None);
    let problems = ProcTypePlugin(&portal)
        .validate(&proc("pg", "portal"), &ctx())
        .expect("call")
        .unwrap_err();
    assert!(
        problems
            .iter()
            .any(|p| p.message.contains("should have own service_name")),
        "{problems:?}"
    );
    let mut p = proc("portal-pg", "portal");
    p.service_name = Some("pg".into());
    let p = ProcTypePlugin(&portal)
        .validate(&p, &ctx())
        .expect("call")
        .expect("valid");
    let plan = ProcTypePlugin(&portal).render(&p, &ctx()).expect("render");
    let portal_info = plan.portal.expect("portal settings");
    assert_eq!(
        (
            portal_info.service_name.as_str(),
            portal_info.allow_clients.as_str()
        ),
        ("pg", "**")
    );
    assert!(
        plan.env
            .iter()
            .any(|e| e.name == "LAIN_SERVICE_NAME" && e.value == "pg")
    );
}

#[test]
fn template_cron_validates_its_own_keys() {
    let engine = engine();
    let bytes = common::fixture(lain_builtin_plugins::fixtures::TEMPLATE);
    let manifest = lain::plugin::Manifest::embedded(&bytes)
        .expect("parses")
        .expect("embedded");
    assert_eq!(manifest.name, "cron");
    let cron =
        lain::plugin::LoadedPlugin::load(&engine, manifest, &bytes, false, None).expect("loads");
    let plugin = ProcTypePlugin(&cron);
    assert_eq!(
        plugin.describe().expect("describe").extra_keys,
        [
            "schedule",
            "timezone",
            "concurrency",
            "missed",
            "retries",
            "history"
        ]
    );
    let mut p = proc("nightly", "cron");
    p.extra =
        json!({ "schedule": "0 3 * * *", "timezone": "Europe/Paris", "retries": 2 }).to_string();
    let p = plugin.validate(&p, &ctx()).expect("call").expect("valid");
    let plan = plugin.render(&p, &ctx()).expect("render");
    let schedule = plan.schedule.expect("the plan is scheduled");
    assert_eq!(
        (schedule.cron.as_str(), schedule.timezone.as_str()),
        ("0 3 * * *", "Europe/Paris")
    );
    assert_eq!(plan.restart.max_restarts, Some(2));
    assert!(plan.env.iter().all(|e| !e.name.starts_with("CRON_")));
    let mut bad = proc("nightly", "cron");
    bad.extra = json!({ "schedule": "61 3 * * *" }).to_string();
    let problems = plugin.validate(&bad, &ctx()).expect("call").unwrap_err();
    assert!(
        problems
            .iter()
            .any(|p| p.path.first().map(String::as_str) == Some("schedule")),
        "{problems:?}"
    );
}

fn wasm_member(
    engine: &std::sync::Arc<lain::plugin::engine::PluginEngine>,
    name: &str,
) -> MemberSpec {
    let plugin = builtin(engine, name, None);
    MemberSpec {
        name: name.into(),
        weight: 1,
        policy: FailurePolicy::Closed,
        factory: Box::new(move || {
            Ok(Box::new(LiveScheduler::start(plugin.clone())?) as Box<dyn lain::schedule::Backend>)
        }),
    }
}

#[test]
fn scheduler_plugins_spread_constrain_and_fit() {
    let engine = engine();
    let mut pipeline = Pipeline::new(vec![
        wasm_member(&engine, "resources"),
        wasm_member(&engine, "constraint"),
        wasm_member(&engine, "spread"),
    ])
    .expect("pipeline starts");
    let labels = |disk: &str| {
        vec![
            ("disk".to_string(), disk.to_string()),
            ("group".into(), "default".into()),
        ]
    };
    for (name, disk) in [("n0", "ssd"), ("n1", "hdd"), ("n2", "ssd"), ("n3", "ssd")] {
        pipeline
            .upsert_node(name, &labels(disk), 4 << 30, 4000)
            .expect("node");
    }
    let filters = vec![
        "constraint:disk==ssd".to_string(),
        "constraint:group==default".to_string(),
    ];
    let web = pipeline
        .define_proc("bookshelf.web.web", "bookshelf", 1 << 30, 0, &filters, &[])
        .expect("define");

    // Spread: three instances land on the three ssd nodes, one each.
    let mut nodes: Vec<u32> = (0..3)
        .map(|_| pipeline.place(web).expect("place").expect("a node"))
        .collect();
    nodes.sort();
    assert_eq!(nodes, [0, 2, 3]);

    // Maintenance excludes a node; memory exhaustion ends placement.
    pipeline
        .set_node_state(
            "n0",
            lain::plugin::bindings::scheduling::NodeState::Maintenance,
            0,
            0,
        )
        .expect("state");
    let mut placed = 0;
    while let Some(node) = pipeline.place(web).expect("place") {
        assert_ne!(node, 0, "node in maintenance took an instance");
        assert_ne!(node, 1, "hdd node took an instance");
        placed += 1;
        assert!(placed < 100, "memory fit was not enforced");
    }
    assert_eq!(
        placed, 6,
        "n2 and n3 have 4 GiB each, one 1 GiB instance already on each"
    );

    // A malformed filter is refused, naming the plugin and the filter; nothing changes.
    let err = pipeline
        .define_proc(
            "bookshelf.worker.w",
            "bookshelf",
            1,
            0,
            &["constraint:disk=ssd".to_string()],
            &[],
        )
        .unwrap_err();
    match err {
        ScheduleError::Rejected(e) => {
            assert_eq!(e.plugin, "constraint");
            assert!(e.to_string().contains("constraint:disk=ssd"), "{e}");
        }
        other => panic!("expected a rejection, got {other}"),
    }
}

#[test]
fn archive_plans_from_the_volume_it_is_shown() {
    let engine = engine();
    let archive = builtin(&engine, "archive", None);
    let volume = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(volume.path().join("db")).expect("mkdir");
    std::fs::write(volume.path().join("db/data.bin"), b"data").expect("write");
    std::fs::write(volume.path().join("db/scratch.tmp"), b"tmp").expect("write");
    std::fs::write(volume.path().join(".lainbackupignore"), "cache/\n").expect("write");
    std::fs::create_dir_all(volume.path().join("cache")).expect("mkdir");
    let job = BackupJob {
        app: "pg".into(),
        proc: "pg.worker.db".into(),
        instance: 1,
        volume: "/data".into(),
        mode: BackupMode::Full,
        policy: BackupPolicy {
            schedule: "0 3 * * *".into(),
            expire: Some("7d".into()),
            pre_run: Some("scripts/dump.sh /data".into()),
            post_run: None,
        },
    };
    let plan = BackupPlugin(&archive)
        .plan(&job, volume.path())
        .expect("plan");
    assert_eq!(
        plan.pre_run,
        Some(vec![
            "/lain/app/scripts/dump.sh".to_string(),
            "/data".to_string()
        ])
    );
    assert!(
        plan.exclude_paths.iter().any(|p| p == "db/scratch.tmp"),
        "{:?}",
        plan.exclude_paths
    );
    assert!(
        plan.exclude_paths.iter().any(|p| p == "cache"),
        "{:?}",
        plan.exclude_paths
    );
    assert!(
        !plan.exclude_paths.iter().any(|p| p.contains("data.bin")),
        "{:?}",
        plan.exclude_paths
    );
}

fn batch() -> SampleBatch {
    SampleBatch {
        timestamp_ms: 1_700_000_000_000,
        label_sets: vec![vec![
            Label {
                key: "app".into(),
                value: "hello".into(),
            },
            Label {
                key: "proc".into(),
                value: "web".into(),
            },
            Label {
                key: "instance".into(),
                value: "1".into(),
            },
        ]],
        families: vec![MetricFamily {
            name: "lain_instance_memory_bytes".into(),
            help: "Memory in use.".into(),
            kind: MetricKind::Gauge,
            samples: vec![Sample {
                label_set: 0,
                value: 1024.0,
            }],
        }],
    }
}

#[test]
fn prometheus_and_graphite_encode_samples() {
    let engine = engine();
    let prom = builtin(&engine, "prometheus", None);
    let info = ExporterPlugin(&prom).describe().expect("describe");
    assert!(matches!(info.delivery, Delivery::Pull(ref p) if p == "/metrics"));
    let text =
        String::from_utf8(ExporterPlugin(&prom).encode(&batch()).expect("encode")).expect("utf-8");
    assert!(
        text.contains("# TYPE lain_instance_memory_bytes gauge"),
        "{text}"
    );
    assert!(
        text.contains(r#"lain_instance_memory_bytes{app="hello",proc="web",instance="1"} 1024"#),
        "{text}"
    );

    // Where graphite's lines go is the operator's `[monitor.exporters.graphite] push`: the
    // plugin needs no address of its own, and a malformed one is still refused.
    let graphite = builtin(&engine, "graphite", None);
    let info = ExporterPlugin(&graphite).describe().expect("describe");
    assert!(matches!(info.delivery, Delivery::Push(ref t) if t.address.is_empty()));
    let bad = builtin(&engine, "graphite", Some(json!({ "address": "nowhere" })));
    let err = ExporterPlugin(&bad).describe().unwrap_err();
    assert!(
        matches!(err.cause, Cause::Guest(_)) && err.to_string().contains("address"),
        "{err}"
    );
    let lines = String::from_utf8(ExporterPlugin(&graphite).encode(&batch()).expect("encode"))
        .expect("utf-8");
    assert_eq!(
        lines,
        "lain.hello.web.1.lain_instance_memory_bytes 1024 1700000000\n"
    );
}

fn bearer(token: &str) -> Credentials {
    Credentials {
        scheme: "bearer".into(),
        token: token.into(),
    }
}

#[test]
fn token_provider_recognises_only_its_tokens() {
    use sha2::Digest;
    let engine = engine();
    let hash = hex::encode(sha2::Sha256::digest(b"s3cret-token-for-ci"));
    let config = json!({ "tokens": [{ "user": "ci", "groups": ["admins"], "sha256": hash }] });
    let token = builtin(&engine, "token", Some(config));
    match AuthPlugin(&token)
        .authenticate(&bearer("s3cret-token-for-ci"))
        .expect("call")
    {
        AuthResult::Authenticated(p) => assert_eq!(
            (p.subject.as_str(), p.groups.as_slice()),
            ("ci", &["admins".to_string()][..])
        ),
        other => panic!("expected authenticated, got {other:?}"),
    }
    assert!(matches!(
        AuthPlugin(&token)
            .authenticate(&bearer("other"))
            .expect("call"),
        AuthResult::NotMine
    ));
    let basic = Credentials {
        scheme: "basic".into(),
        token: "eDp5".into(),
    };
    assert!(matches!(
        AuthPlugin(&token).authenticate(&basic).expect("call"),
        AuthResult::NotMine
    ));
}

/// An HS256 JWT signed with `secret`.
fn hs256(header: serde_json::Value, claims: serde_json::Value, secret: &[u8]) -> String {
    use base64::Engine as _;
    use hmac::Mac;
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let signing_input = format!("{}.{}", b64(&header), b64(&claims));
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(signing_input.as_bytes());
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{sig}")
}

#[test]
fn jwt_provider_checks_signature_expiry_issuer_audience_and_alg() {
    let engine = engine();
    let secret_file = tempfile::NamedTempFile::new().expect("tempfile");
    std::fs::write(secret_file.path(), b"a-very-long-shared-secret-for-hs256").expect("write");
    let config = json!({
        "issuer": "https://sso.example.org", "audience": "lain",
        "hs256_secrets": ["sso"], "files": { "sso": secret_file.path() },
    });
    let jwt = builtin(&engine, "jwt", Some(config));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let key = b"a-very-long-shared-secret-for-hs256";
    let claims = |exp: i64, iss: &str, aud: &str| json!({ "sub": "alice", "groups": ["team-a"], "iss": iss, "aud": aud, "exp": exp, "iat": now });
    let header = json!({ "alg": "HS256", "typ": "JWT" });
    let ok = hs256(
        header.clone(),
        claims(now + 600, "https://sso.example.org", "lain"),
        key,
    );
    match AuthPlugin(&jwt).authenticate(&bearer(&ok)).expect("call") {
        AuthResult::Authenticated(p) => {
            assert_eq!(p.subject, "alice");
            assert_eq!(p.groups, ["team-a"]);
            assert_eq!(p.expires_at, Some(now + 600));
        }
        other => panic!("expected authenticated, got {other:?}"),
    }
    let refused = [
        (
            "wrong signature",
            hs256(
                header.clone(),
                claims(now + 600, "https://sso.example.org", "lain"),
                b"another-secret-of-enough-length!!",
            ),
        ),
        (
            "expired",
            hs256(
                header.clone(),
                claims(now - 3600, "https://sso.example.org", "lain"),
                key,
            ),
        ),
        (
            "wrong issuer",
            hs256(
                header.clone(),
                claims(now + 600, "https://evil.example.org", "lain"),
                key,
            ),
        ),
        (
            "wrong audience",
            hs256(
                header.clone(),
                claims(now + 600, "https://sso.example.org", "other"),
                key,
            ),
        ),
        ("alg none", {
            let t = hs256(
                json!({ "alg": "none" }),
                claims(now + 600, "https://sso.example.org", "lain"),
                key,
            );
            let (head, _) = t.rsplit_once('.').expect("three parts");
            format!("{head}.")
        }),
    ];
    for (what, token) in refused {
        match AuthPlugin(&jwt)
            .authenticate(&bearer(&token))
            .expect("call")
        {
            AuthResult::Denied(_) => {}
            other => panic!("{what}: expected denied, got {other:?}"),
        }
    }
    assert!(matches!(
        AuthPlugin(&jwt)
            .authenticate(&bearer("not-a-jwt"))
            .expect("call"),
        AuthResult::NotMine
    ));
}

/// A plugin built against `lain:plugin@0.1.0` keeps loading and working: its proc type's plan
/// reaches the kernel in the current shape (its policy kept, 0.2.0's additions at their
/// defaults), and its scheduling filter's verdict is applied.
#[test]
fn a_plugin_built_against_0_1_0_still_renders_and_filters() {
    use lain::plugin::bindings::proc_rendering::PlacementMode;
    use lain::plugin::world::WitVersion;
    use lain::plugin::{LoadedPlugin, Manifest};
    use lain::schedule::Backend;
    use std::sync::Arc;

    let engine = engine();
    let legacy = common::fixture_plugin(&engine, lain_builtin_plugins::fixtures::PLUGIN_V0_1);
    assert_eq!(legacy.wit_version(), WitVersion::V0_1);
    let plugin = ProcTypePlugin(&legacy);
    assert_eq!(plugin.describe().expect("describe").name, "legacy");
    let p = plugin
        .validate(&proc("job", "legacy"), &ctx())
        .expect("call")
        .expect("valid");
    let plan = plugin.render(&p, &ctx()).expect("render");
    assert_eq!(plan.restart.policy, RestartPolicy::OnFailure);
    assert_eq!(plan.restart.max_restarts, None);
    assert_eq!(plan.schedule, None);
    assert_eq!(plan.placement, PlacementMode::Spread);
    assert!(
        plan.env
            .iter()
            .any(|e| e.name == "LEGACY_PLAN" && e.value == "0.1.0"),
        "{:?}",
        plan.env
    );

    let bytes = common::fixture(lain_builtin_plugins::fixtures::PLUGIN_V0_1);
    let manifest = Manifest::parse(
        "name = \"legacy-filter\"\nversion = \"0.1.0\"\nkind = \"scheduler-filter\"\n",
    )
    .expect("manifest");
    let filter =
        Arc::new(LoadedPlugin::load(&engine, manifest, &bytes, false, None).expect("loads"));
    let factory = move || Ok(Box::new(LiveScheduler::start(filter.clone())?) as Box<dyn Backend>);
    let spec = MemberSpec {
        name: "legacy-filter".into(),
        weight: 1,
        policy: FailurePolicy::Closed,
        factory: Box::new(factory),
    };
    let mut pipeline = Pipeline::new(vec![spec]).expect("pipeline");
    for node in ["n0", "n1"] {
        pipeline
            .upsert_node(node, &[], 1 << 30, 1000)
            .expect("node");
    }
    let job = pipeline
        .define_proc("bookshelf.worker.job", "bookshelf", 1, 0, &[], &[])
        .expect("define");
    assert_eq!(
        pipeline.place(job).expect("place"),
        Some(1),
        "the 0.1.0 filter removes node id 0"
    );
    // 0.1.0 has no `scheduling-levels`: an announced deploy is placed instance by instance.
    pipeline.expect(job, 3);
    for _ in 0..3 {
        assert_eq!(pipeline.place(job).expect("place"), Some(1));
    }
}
