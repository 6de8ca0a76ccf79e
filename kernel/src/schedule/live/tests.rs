use super::{Config, MAX_WEIGHT, Misfit, check};
use crate::plugin::bindings::scheduling::Roles;
use std::collections::BTreeMap;

fn roles(name: &str) -> Result<Roles, String> {
    match name {
        "resources" | "constraint" | "zone" => Ok(Roles::FILTER),
        "spread" => Ok(Roles::SCORE),
        "both" => Ok(Roles::FILTER | Roles::SCORE),
        "mute" => Ok(Roles::empty()),
        other => Err(format!("no plugin named `{other}` is installed")),
    }
}

fn config(plugins: &[&str], weights: &[(&str, u32)]) -> Config {
    Config {
        plugins: plugins.iter().map(|s| s.to_string()).collect(),
        weights: weights
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect::<BTreeMap<_, _>>(),
    }
}

#[test]
fn a_valid_pipeline_passes() {
    check(
        &config(&["resources", "zone", "spread"], &[("spread", 3)]),
        roles,
    )
    .expect("valid");
    check(&config(&["both"], &[("both", MAX_WEIGHT)]), roles).expect("a filter that scores");
    check(&config(&["spread"], &[("spread", 0)]), roles).expect("weight 0 mutes a scorer");
}

#[test]
fn every_problem_is_named() {
    let err = check(
        &config(
            &["resources", "nope", "resources", "mute"],
            &[("constraint", 1), ("resources", 2)],
        ),
        roles,
    )
    .expect_err("refused");
    for part in [
        "no plugin named `nope` is installed",
        "`resources` is listed twice",
        "`mute` says it neither filters nor scores",
        "weight for `constraint`, which is not a member",
        "weight for `resources`, which only filters",
    ] {
        assert!(err.contains(part), "{part:?} missing from {err}");
    }
    let err = check(&config(&["spread"], &[("spread", MAX_WEIGHT + 1)]), roles)
        .expect_err("out of range");
    assert!(
        err.contains("weight 101 for `spread` is out of range (0 to 100)"),
        "{err}"
    );
    let err = check(&config(&[], &[]), roles).expect_err("empty");
    assert!(err.contains("at least one member"), "{err}");
}

#[test]
fn a_misfit_says_what_to_do() {
    let mut m = Misfit {
        instance: "x".into(),
        app: "hello".into(),
        proc: "hello.worker.worker".into(),
        number: 2,
        node: "n1".into(),
        stateful: false,
        filter: "zone".into(),
    };
    assert_eq!(
        m.describe(),
        "instance 2 on n1 no longer fits the scheduler pipeline (`zone` removes n1); move it \
         with `lain scheduler check --move`"
    );
    m.stateful = true;
    assert!(
        m.describe().contains("stateful, so it stays"),
        "{}",
        m.describe()
    );
}
