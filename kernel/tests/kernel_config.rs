//! The kernel configuration decides which plugin serves each proc type and which scheduler
//! plugins run, in which order; a plugin change is seen by the members built after it.

mod common;

use lain::config::KernelConfig;
use lain::kernel::Kernel;
use lain::plugin::{Cause, Kind};
use lain::schedule::Pipeline;
use lain::spec::PluginProcTypes;
use std::collections::BTreeMap;

fn kernel(dir: &std::path::Path, edit: impl FnOnce(&mut KernelConfig)) -> Kernel {
    let mut config = KernelConfig {
        data_dir: dir.to_path_buf(),
        cache_dir: Some(common::cache_dir()),
        ..KernelConfig::default()
    };
    edit(&mut config);
    common::open_kernel(config).expect("kernel opens")
}

#[test]
fn proc_types_are_served_by_the_configured_plugins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let k = kernel(dir.path(), |c| {
        c.proc_types = BTreeMap::from([
            ("cron".into(), "my-cron".into()),
            ("job".into(), "oneshot".into()),
        ]);
    });
    assert_eq!(served_by(&k, "web").as_deref(), Some("web"));
    assert_eq!(served_by(&k, "job").as_deref(), Some("oneshot"));
    assert_eq!(served_by(&k, "cron"), None, "my-cron is not installed yet");
    let template = common::fixture(lain_builtin_plugins::fixtures::TEMPLATE);
    let manifest = "name = \"my-cron\"\nversion = \"1\"\nkind = \"proc-type\"\n";
    k.registry
        .install(&template, Some(manifest))
        .expect("install");
    assert_eq!(served_by(&k, "cron").as_deref(), Some("my-cron"));
    assert_eq!(
        served_by(&k, "spread"),
        None,
        "spread is a scheduler plugin"
    );
}

/// The plugin serving proc type `ty`, by the rule the kernel plans and validates with.
fn served_by(k: &Kernel, ty: &str) -> Option<String> {
    let enabled = k.registry.enabled(Kind::ProcType);
    let types = PluginProcTypes::new(enabled, &k.config.proc_types).expect("proc types");
    types.plugin(ty).map(|p| p.name().to_string())
}

#[test]
fn scheduler_runs_the_configured_plugins_and_follows_plugin_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let k = kernel(dir.path(), |c| {
        c.scheduler.plugins = vec!["constraint".into(), "spread".into()];
        c.scheduler.weights = BTreeMap::from([("spread".into(), 3)]);
    });
    let members = k.scheduler_members().expect("members");
    let names: Vec<(&str, u32)> = members
        .iter()
        .map(|m| (m.name.as_str(), m.weight))
        .collect();
    assert_eq!(names, [("constraint", 1), ("spread", 3)]);

    let mut pipeline = Pipeline::new(members).expect("pipeline");
    for node in ["a", "b"] {
        pipeline
            .upsert_node(node, &[("group".into(), "default".into())], 1 << 30, 1000)
            .expect("node");
    }
    let web = pipeline
        .define_proc(
            "app.web.web",
            "app",
            1,
            0,
            &["constraint:group==default".into()],
            &[],
        )
        .expect("define");
    assert_eq!(pipeline.place(web).expect("place"), Some(0));
    assert_eq!(
        pipeline.place(web).expect("place"),
        Some(1),
        "spread prefers the empty node"
    );

    // Disabling a configured plugin changes the registry's generation; rebuilding the members
    // names the culprit.
    let generation = k.registry.generation();
    k.registry.set_enabled("spread", false).expect("disable");
    assert!(k.registry.generation() > generation);
    let err = k.scheduler_members().err().expect("spread is disabled");
    assert_eq!(err.plugin, "spread");
    assert!(matches!(err.cause, Cause::Disabled), "{err}");

    // Re-enabled, the members build again; a new pipeline (as the reconciler makes one after a
    // plugin change) spreads as before.
    k.registry.set_enabled("spread", true).expect("enable");
    let mut pipeline = Pipeline::new(k.scheduler_members().expect("members")).expect("pipeline");
    for node in ["a", "b"] {
        pipeline
            .upsert_node(node, &[("group".into(), "default".into())], 1 << 30, 1000)
            .expect("node");
    }
    let web = pipeline
        .define_proc(
            "app.web.web",
            "app",
            1,
            0,
            &["constraint:group==default".into()],
            &[],
        )
        .expect("define");
    assert_eq!(pipeline.place(web).expect("place"), Some(0));
    assert_eq!(pipeline.place(web).expect("place"), Some(1));
}
