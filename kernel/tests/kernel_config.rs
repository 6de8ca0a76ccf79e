//! The kernel configuration decides which plugin serves each proc type and which scheduler
//! plugins run, in which order; plugin changes reach a running pipeline without losing its state.

mod common;

use lain::config::KernelConfig;
use lain::kernel::Kernel;
use lain::plugin::Cause;
use lain::schedule::Pipeline;
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
    assert_eq!(k.proc_type_plugin("web").expect("web").name(), "web");
    assert_eq!(k.proc_type_plugin("job").expect("job").name(), "oneshot");
    let err = k.proc_type_plugin("cron").err().expect("not installed yet");
    assert!(
        err.to_string()
            .contains("no proc-type plugin named `my-cron`"),
        "{err}"
    );
    let template = common::fixture(lain_builtin_plugins::fixtures::TEMPLATE);
    let manifest = "name = \"my-cron\"\nversion = \"1\"\nkind = \"proc-type\"\n";
    k.registry
        .install(&template, Some(manifest))
        .expect("install");
    assert_eq!(k.proc_type_plugin("cron").expect("cron").name(), "my-cron");
    let err = k.proc_type_plugin("spread").err().expect("wrong kind");
    assert!(
        err.to_string()
            .contains("`spread` is a scheduler-filter plugin, not a proc-type plugin"),
        "{err}"
    );
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

    // Re-enabled, new members take over with the inventory and placements replayed: the third
    // instance still goes where the fewest run (a tie, so the lowest id).
    k.registry.set_enabled("spread", true).expect("enable");
    pipeline
        .reconfigure(k.scheduler_members().expect("members"))
        .expect("reconfigure");
    assert_eq!(pipeline.place(web).expect("place"), Some(0));
    assert_eq!(pipeline.place(web).expect("place"), Some(1));
}
