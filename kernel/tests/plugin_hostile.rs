//! Hostile components are contained with the right error while the kernel goes on serving.

mod common;

use common::{builtin, engine, engine_with, fixture, fixture_plugin};
use lain::plugin::bindings::types::{AppContext, Proc};
use lain::plugin::engine::PluginEngine;
use lain::plugin::kinds::proc_type::ProcTypePlugin;
use lain::plugin::kinds::scheduler::LiveScheduler;
use lain::plugin::{Cause, FailurePolicy, InstallError, Limits, LoadedPlugin, Manifest};
use lain::schedule::{Backend, MemberSpec, Pipeline, ScheduleError};
use lain_builtin_plugins::fixtures;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn ctx() -> AppContext {
    AppContext {
        app: "evil".into(),
        app_domain: "evil".into(),
        cluster_domains: vec!["lain.local".into()],
        release: "1".into(),
    }
}

fn proc(name: &str) -> Proc {
    common::proc(name, "hostile")
}

/// Renders `name` with the hostile plugin and returns the failure.
fn render_fails(plugin: &LoadedPlugin, name: &str) -> lain::plugin::CallError {
    match ProcTypePlugin(plugin).render(&proc(name), &ctx()) {
        Ok(_) => panic!("{name}: the hostile call succeeded"),
        Err(e) => e,
    }
}

/// A well-behaved call to another plugin on the same engine still works.
fn kernel_still_serves(engine: &Arc<PluginEngine>) {
    let worker = builtin(engine, "worker", None);
    let mut p = proc("fine");
    p.proc_type = "worker".into();
    ProcTypePlugin(&worker)
        .render(&p, &ctx())
        .expect("a well-behaved plugin still works");
}

#[test]
fn endless_loop_is_stopped_by_the_cpu_budget() {
    let engine = engine_with(Limits {
        cpu_ms: 100,
        ..Limits::default()
    });
    let hostile = fixture_plugin(&engine, fixtures::HOSTILE);
    let started = Instant::now();
    let err = render_fails(&hostile, "loop");
    assert!(
        matches!(err.cause, Cause::CpuBudget { budget_ms: 100 }),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    let text = err.to_string();
    assert!(
        text.contains("plugin `hostile` 0.1.0")
            && text.contains("`render`")
            && text.contains("CPU budget"),
        "{text}"
    );
    kernel_still_serves(&engine);
}

#[test]
fn memory_bomb_is_stopped_by_the_memory_cap() {
    let engine = engine();
    let hostile = fixture_plugin(&engine, fixtures::HOSTILE);
    let err = render_fails(&hostile, "alloc");
    assert!(
        matches!(err.cause, Cause::MemoryCap { cap_bytes } if cap_bytes == 64 << 20),
        "{err}"
    );
    kernel_still_serves(&engine);
}

#[test]
fn panic_is_reported_with_its_message() {
    let engine = engine();
    let hostile = fixture_plugin(&engine, fixtures::HOSTILE);
    let err = render_fails(&hostile, "panic");
    match &err.cause {
        Cause::Panic(message) => assert!(
            message.contains("hostile plugin panicked on purpose"),
            "{message}"
        ),
        other => panic!("expected a panic, got {other}"),
    }
    // A trapped instance is never reused: the next call gets a fresh one and works.
    ProcTypePlugin(&hostile)
        .render(&proc("fine"), &ctx())
        .expect("fresh instance works");
}

#[test]
fn deep_recursion_is_a_stack_overflow() {
    let engine = engine();
    let hostile = fixture_plugin(&engine, fixtures::HOSTILE);
    let err = render_fails(&hostile, "recurse");
    assert!(matches!(err.cause, Cause::StackOverflow), "{err}");
    kernel_still_serves(&engine);
}

#[test]
fn enormous_results_are_refused() {
    // Building half a million strings takes a while in a debug build; the budget is raised so that
    // the defence under test, the result-size check, is the one that stops the call.
    let engine = engine_with(Limits {
        cpu_ms: 10_000,
        wall_ms: 20_000,
        ..Limits::default()
    });
    let hostile = fixture_plugin(&engine, fixtures::HOSTILE);
    for name in ["huge", "huge-string"] {
        let err = render_fails(&hostile, name);
        assert!(
            matches!(err.cause, Cause::ResultTooLarge { limit, .. } if limit == 8 << 20),
            "{name}: {err}"
        );
    }
    kernel_still_serves(&engine);
}

#[test]
fn component_for_the_wrong_world_is_refused_naming_the_export() {
    let engine = engine();
    let bytes = common::builtin_bytes("spread");
    let mut manifest = Manifest::embedded(bytes)
        .expect("parses")
        .expect("embedded");
    manifest.kind = lain::plugin::Kind::ProcType;
    let err = LoadedPlugin::load(&engine, manifest, bytes, false, None)
        .err()
        .expect("refused");
    match &err {
        InstallError::WrongWorld { world, reason } => {
            assert_eq!(world, "lain:plugin/proc-type@0.1.0");
            assert!(
                reason.contains("missing export `lain:plugin/proc-rendering@0.1.0`"),
                "{reason}"
            );
            assert!(reason.contains("lain:plugin/scheduling@0.1.0"), "{reason}");
        }
        other => panic!("expected wrong world, got {other}"),
    }
}

#[test]
fn import_that_was_not_granted_is_refused() {
    let engine = engine();
    let bytes = fixture(fixtures::FORBIDDEN_IMPORT);
    let manifest = Manifest::embedded(&bytes)
        .expect("parses")
        .expect("embedded");
    let err = LoadedPlugin::load(&engine, manifest, &bytes, false, None)
        .err()
        .expect("refused");
    match &err {
        InstallError::ForbiddenImport { import, .. } => {
            assert!(import.starts_with("wasi:sockets/"), "{import}")
        }
        other => panic!("expected a forbidden import, got {other}"),
    }
}

#[test]
fn a_plugin_that_keeps_failing_is_quarantined_and_released() {
    let engine = engine_with(Limits {
        quarantine_after: 3,
        quarantine_secs: 3600,
        ..Limits::default()
    });
    let hostile = fixture_plugin(&engine, fixtures::HOSTILE);
    for _ in 0..3 {
        assert!(matches!(
            render_fails(&hostile, "panic").cause,
            Cause::Panic(_)
        ));
    }
    let err = render_fails(&hostile, "fine");
    assert!(
        matches!(err.cause, Cause::Quarantined { failures: 3, .. }),
        "{err}"
    );
    let report = hostile.health().report(hostile.policy());
    assert!(
        report.quarantined && report.failures == 3 && report.policy == FailurePolicy::Closed,
        "{report:?}"
    );
    hostile.health().release();
    ProcTypePlugin(&hostile)
        .render(&proc("fine"), &ctx())
        .expect("released plugin is called again");
}

#[test]
fn scheduler_that_panics_fails_its_placement_then_recovers_by_replay() {
    let engine = engine();
    let hostile = fixture_plugin(&engine, fixtures::HOSTILE_SCHEDULER);
    let factory = move || Ok(Box::new(LiveScheduler::start(hostile.clone())?) as Box<dyn Backend>);
    let spec = MemberSpec {
        name: "hostile-scheduler".into(),
        weight: 1,
        policy: FailurePolicy::Closed,
        factory: Box::new(factory),
    };
    let mut pipeline = Pipeline::new(vec![spec]).expect("pipeline");
    pipeline
        .upsert_node("n0", &[], 1 << 30, 1000)
        .expect("node");
    let good = pipeline
        .define_proc("app.worker.ok", "app", 1, 0, &[], &[])
        .expect("define");
    let bad = pipeline
        .define_proc("app.worker.panic", "app", 1, 0, &[], &[])
        .expect("define");
    assert_eq!(pipeline.place(good).expect("place"), Some(0));
    match pipeline.place(bad) {
        Err(ScheduleError::Plugin(e)) => assert!(
            matches!(e.cause, Cause::Panic(_)) && e.plugin == "hostile-scheduler",
            "{e}"
        ),
        other => panic!("expected the plugin's panic, got {other:?}"),
    }
    // The dead instance is replaced by a fresh one that gets the whole state replayed.
    assert_eq!(pipeline.place(good).expect("place after replay"), Some(0));
}

#[test]
fn scheduler_that_fails_open_is_skipped() {
    let engine = engine_with(Limits {
        cpu_ms: 50,
        ..Limits::default()
    });
    let hostile = fixture_plugin(&engine, fixtures::HOSTILE_SCHEDULER);
    let factory = move || Ok(Box::new(LiveScheduler::start(hostile.clone())?) as Box<dyn Backend>);
    let spec = MemberSpec {
        name: "hostile-scheduler".into(),
        weight: 1,
        policy: FailurePolicy::Open,
        factory: Box::new(factory),
    };
    let mut pipeline = Pipeline::new(vec![spec]).expect("pipeline");
    pipeline
        .upsert_node("n0", &[], 1 << 30, 1000)
        .expect("node");
    let looping = pipeline
        .define_proc("app.worker.loop", "app", 1, 0, &[], &[])
        .expect("define");
    assert_eq!(
        pipeline.place(looping).expect("skipped, not failed"),
        Some(0)
    );
}

#[tokio::test]
async fn wall_clock_bound_stops_waiting() {
    // A generous CPU budget, a short wall clock: the caller gives up first.
    let engine = engine_with(Limits {
        cpu_ms: 3_000,
        wall_ms: 100,
        ..Limits::default()
    });
    let hostile = fixture_plugin(&engine, fixtures::HOSTILE);
    let started = Instant::now();
    let wall = engine.limits().wall();
    let result = lain::plugin::limits::within_wall_clock(wall, move || {
        ProcTypePlugin(&hostile)
            .render(&proc("loop"), &ctx())
            .map(|_| ())
    })
    .await;
    assert!(
        matches!(result, Err(Cause::WallClock { wall_ms: 100 })),
        "{result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "waited {:?}",
        started.elapsed()
    );
}
