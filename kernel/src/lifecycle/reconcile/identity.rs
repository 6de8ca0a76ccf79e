//! Instance identity: who an instance is, written into its runtime labels and name when it is
//! created ([`InstanceKey::labels`], [`InstanceKey::name`]) and read back from them once per pass
//! ([`InstanceKey::of`]), so no other part of the reconciler looks labels up by hand.

use crate::runtime::{Observed, labels};
use std::collections::BTreeMap;

/// Who an instance is: the labels the kernel gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceKey {
    /// App name.
    pub app: String,
    /// Proc full name `<app>.<type>.<name>`.
    pub proc: String,
    /// Instance number (1..N); `None` when the label is missing or not a number.
    pub number: Option<u32>,
    /// Release version.
    pub release: String,
    /// Node name.
    pub node: String,
    /// The secrets stamp of the deploy that created it (empty without secret files).
    pub secrets: String,
    /// The plan stamp of the deploy that created it (empty on instances of older kernels).
    pub plan: String,
    /// Which run this is: 1 for the first, one more for each restart (1 when the label is
    /// missing, on instances of older kernels). Not part of the name: a restart recreates the
    /// instance under the same name.
    pub attempt: u32,
    /// The restart generation it runs (`lain restart`); 0 when the label is missing. A new
    /// generation is a new instance, as a new release is.
    pub restart: u64,
}

impl InstanceKey {
    /// The key of an instance the runtime lists (a missing label reads as empty).
    pub fn of(o: &Observed) -> InstanceKey {
        InstanceKey {
            app: o.label(labels::APP).to_string(),
            proc: o.label(labels::PROC).to_string(),
            number: o.label(labels::INSTANCE).parse().ok(),
            release: o.label(labels::RELEASE).to_string(),
            node: o.label(labels::NODE).to_string(),
            secrets: o.label(labels::SECRETS).to_string(),
            plan: o.label(labels::PLAN).to_string(),
            attempt: o.label(labels::ATTEMPT).parse().unwrap_or(1),
            restart: o.label(labels::RESTART).parse().unwrap_or(0),
        }
    }

    /// The proc's own name (the last part of its full name).
    pub fn proc_name(&self) -> &str {
        self.proc.rsplit('.').next().unwrap_or(&self.proc)
    }

    /// The runtime name of the instance:
    /// `<proc>.i<no>.<release>[.s<secrets>][.p<plan>][.r<restart>].<node>`. A new version of the
    /// secrets or of the plan, or a restart, is a new instance, as a new release is.
    pub fn name(&self) -> String {
        let no = self.number.unwrap_or(0);
        let mut name = format!("{}.i{no}.{}", self.proc, self.release);
        for (tag, stamp) in [('s', &self.secrets), ('p', &self.plan)] {
            if !stamp.is_empty() {
                name.push('.');
                name.push(tag);
                name.push_str(stamp);
            }
        }
        if self.restart > 0 {
            name.push_str(&format!(".r{}", self.restart));
        }
        name.push('.');
        name.push_str(&self.node);
        name
    }

    /// The labels of the instance, owned by kernel `kernel`.
    pub fn labels(&self, kernel: &str) -> BTreeMap<String, String> {
        let no = self.number.unwrap_or(0).to_string();
        let attempt = self.attempt.to_string();
        let restart = self.restart.to_string();
        [
            (labels::KERNEL, kernel),
            (labels::APP, self.app.as_str()),
            (labels::PROC, self.proc.as_str()),
            (labels::INSTANCE, no.as_str()),
            (labels::RELEASE, self.release.as_str()),
            (labels::NODE, self.node.as_str()),
            (labels::ATTEMPT, attempt.as_str()),
        ]
        .into_iter()
        .chain((!self.secrets.is_empty()).then_some((labels::SECRETS, self.secrets.as_str())))
        .chain((!self.plan.is_empty()).then_some((labels::PLAN, self.plan.as_str())))
        .chain((self.restart > 0).then_some((labels::RESTART, restart.as_str())))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}

/// An instance the runtime lists, with its key read once.
pub struct Instance {
    /// Who it is.
    pub key: InstanceKey,
    /// What the runtime reports.
    pub seen: Observed,
}

impl Instance {
    /// Reads the key of `seen`.
    pub fn new(seen: Observed) -> Instance {
        Instance {
            key: InstanceKey::of(&seen),
            seen,
        }
    }

    /// Its runtime name.
    pub fn name(&self) -> &str {
        &self.seen.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::RunState;

    #[test]
    fn a_key_written_into_labels_reads_back_the_same_and_names_the_instance() {
        for (secrets, plan) in [("", ""), ("abc123", ""), ("", "9f8e"), ("abc123", "9f8e")] {
            let key = InstanceKey {
                app: "hello".into(),
                proc: "hello.web.web".into(),
                number: Some(3),
                release: "r1".into(),
                node: "n2".into(),
                secrets: secrets.into(),
                plan: plan.into(),
                attempt: 2,
                restart: 0,
            };
            let seen = Observed {
                name: key.name(),
                labels: key.labels("k1"),
                state: RunState::Created,
                host_ports: Vec::new(),
                memory: 0,
                cpu: 0,
                health: None,
                networks: Vec::new(),
            };
            assert_eq!(seen.label(labels::KERNEL), "k1");
            assert_eq!(InstanceKey::of(&seen), key);
            assert_eq!(key.proc_name(), "web");
        }
        let key = InstanceKey {
            app: "a".into(),
            proc: "a.web.web".into(),
            number: Some(1),
            release: "r".into(),
            node: "local".into(),
            secrets: "s9".into(),
            plan: String::new(),
            attempt: 1,
            restart: 0,
        };
        assert_eq!(key.name(), "a.web.web.i1.r.ss9.local");
        let key = InstanceKey {
            plan: "77".into(),
            ..key
        };
        assert_eq!(key.name(), "a.web.web.i1.r.ss9.p77.local");
        assert_eq!(key.labels("k")[labels::PLAN], "77");
        let key = InstanceKey { restart: 4, ..key };
        assert_eq!(key.name(), "a.web.web.i1.r.ss9.p77.r4.local");
        assert_eq!(key.labels("k")[labels::RESTART], "4");
        let seen = Observed {
            name: key.name(),
            labels: key.labels("k"),
            state: RunState::Created,
            host_ports: Vec::new(),
            memory: 0,
            cpu: 0,
            health: None,
            networks: Vec::new(),
        };
        assert_eq!(InstanceKey::of(&seen).restart, 4);
    }
}
