//! The template's component, built for wasm32-wasip2, run under the kernel's real plugin host
//! (`lain-plugin-harness`): what an operator installs is what is tested here.

use lain_plugin_harness::{Harness, HarnessError, build, context, proc};
use serde_json::json;

#[test]
fn the_built_component_validates_and_renders_under_the_real_host() -> Result<(), HarnessError> {
    let wasm = build(env!("CARGO_MANIFEST_DIR"))?;
    let plugin = Harness::new()?.load(&wasm)?;
    assert_eq!(plugin.manifest().name, "cron");

    // `describe`: the type this plugin serves and its extra keys.
    let info = plugin.describe()?;
    assert_eq!(info.name, "cron");
    assert!(info.extra_keys.iter().any(|k| k == "schedule"), "{info:?}");

    // `validate` through the host: a bad schedule is a problem at its key.
    let bad = proc("shop", "nightly", "cron", json!({"schedule": "0 3 * *"}));
    let problems = plugin
        .validate(&bad, &context("shop"))?
        .expect_err("a four-field schedule is refused");
    assert_eq!(problems[0].path, ["schedule"]);

    // A whole lain.yaml, parsed by the kernel's parser: located diagnostics...
    let yaml = "appname: shop\nbuild: {base: busybox}\ncron.nightly:\n  cmd: ./report\n  schedule: \"0 3 * *\"\n";
    let diagnostics = plugin.check_yaml(yaml)?;
    let shown: Vec<String> = diagnostics.iter().map(|d| d.to_string()).collect();
    assert!(
        shown
            .iter()
            .any(|d| d.starts_with("lain.yaml:5:") && d.contains("cron.nightly.schedule")),
        "{shown:?}"
    );
    // ...and the plan the kernel would record for a good one.
    let plans = plugin.render_yaml(&yaml.replace("0 3 * *", "0 3 * * *"))?;
    let nightly = &plans[0];
    assert_eq!(
        (nightly.proc.as_str(), nightly.plugin.as_str()),
        ("nightly", "cron")
    );
    let plan = nightly.plan.as_ref().expect("rendered");
    assert_eq!(plan.cmd.as_deref(), Some(&["./report".to_string()][..]));
    Ok(())
}

#[test]
fn a_bad_operator_config_fails_like_on_a_kernel() -> Result<(), HarnessError> {
    let wasm = build(env!("CARGO_MANIFEST_DIR"))?;
    let plugin =
        Harness::new()?.load_with_config(&wasm, Some(json!({"timezone": "not a zone"})))?;
    let err = plugin
        .render(
            &proc("shop", "nightly", "cron", json!({"schedule": "@daily"})),
            &context("shop"),
        )
        .expect_err("the configured time zone is refused");
    let text = err.to_string();
    assert!(
        text.contains("plugin `cron`") && text.contains("not a zone"),
        "{text}"
    );
    Ok(())
}
