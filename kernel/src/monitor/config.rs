//! `[monitor]`: the monitor's section of the kernel configuration, and its checks.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `[monitor]`: which exporter plugins run and where their output goes.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Exporter plugins in use, by plugin name, and where each one's output goes. The operator
    /// decides: what an exporter's `describe()` says about delivery is never used.
    #[serde(deserialize_with = "exporters_table")]
    pub exporters: BTreeMap<String, ExporterConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            exporters: BTreeMap::from([(
                "prometheus".to_string(),
                ExporterConfig {
                    pull: Some("/metrics".into()),
                    push: None,
                    interval: 60,
                },
            )]),
        }
    }
}

/// `[monitor.exporters.<plugin>]`: exactly one of `pull` and `push`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExporterConfig {
    /// Serve the exporter's output on GET of this path of the API (to holders of the `metrics`
    /// right), e.g. `/metrics`.
    #[serde(default)]
    pub pull: Option<String>,
    /// Send the exporter's output over TCP to this `host:port` every `interval` seconds.
    #[serde(default)]
    pub push: Option<String>,
    /// Seconds between two pushes.
    #[serde(default = "default_interval")]
    pub interval: u32,
}

fn default_interval() -> u32 {
    60
}

/// `exporters` must be a table; the list of names it was before gets a message saying so.
fn exporters_table<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, ExporterConfig>, D::Error> {
    struct Table;
    impl<'de> serde::de::Visitor<'de> for Table {
        type Value = BTreeMap<String, ExporterConfig>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str(
                "a table per exporter plugin saying where its output goes, e.g. \
                 `[monitor.exporters.prometheus] pull = \"/metrics\"` or \
                 `[monitor.exporters.graphite] push = \"host:2003\"`",
            )
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            Deserialize::deserialize(serde::de::value::MapAccessDeserializer::new(map))
        }
    }
    d.deserialize_map(Table)
}

impl Config {
    /// Checks every exporter's delivery: exactly one of `pull` (an absolute path of plain
    /// segments, outside `/api/` and `/healthz`, used once) and `push` (`host:port`, an
    /// interval of at least 1 s). The error names the exporter.
    pub fn check(&self) -> Result<(), String> {
        let mut paths: BTreeMap<&str, &str> = BTreeMap::new();
        for (name, exporter) in &self.exporters {
            let at = format!("[monitor.exporters.{name}]");
            match (&exporter.pull, &exporter.push) {
                (Some(path), None) => {
                    check_pull_path(path).map_err(|e| format!("{at} pull: {e}"))?;
                    if let Some(other) = paths.insert(path, name) {
                        return Err(format!(
                            "{at} pull: `{path}` is already the path of exporter `{other}`"
                        ));
                    }
                }
                (None, Some(address)) => {
                    check_push_address(address).map_err(|e| format!("{at} push: {e}"))?;
                    if exporter.interval == 0 {
                        return Err(format!("{at} interval: at least 1 second"));
                    }
                }
                _ => {
                    return Err(format!(
                        "{at}: set exactly one of `pull = \"/path\"` (served to holders of the \
                         `metrics` right) and `push = \"host:port\"`"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A pull path: `/` and at most 16 plain segments of letters, digits, `.`, `_`, `~` and `-`;
/// not under `/api/` and not `/healthz` (the kernel's own routes).
fn check_pull_path(path: &str) -> Result<(), String> {
    let plain = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '~' | '-'))
    };
    let Some(rest) = path.strip_prefix('/') else {
        return Err(format!("`{}` does not start with `/`", path.escape_debug()));
    };
    if path.len() > 256 || rest.split('/').count() > 16 || !rest.split('/').all(plain) {
        return Err(format!(
            "`{}` is not `/` and plain segments (letters, digits, `.`, `_`, `~`, `-`)",
            path.escape_debug()
        ));
    }
    if rest == "healthz" || rest == "api" || rest.starts_with("api/") {
        return Err(format!("`{path}` is one of the kernel's own routes"));
    }
    Ok(())
}

/// A push address: `host:port`, the host a DNS name, an IPv4 address or a bracketed IPv6 one.
fn check_push_address(address: &str) -> Result<(), String> {
    let malformed = || format!("`{}` is not `host:port`", address.escape_debug());
    let (host, port) = address.rsplit_once(':').ok_or_else(malformed)?;
    if !matches!(port.parse::<u16>(), Ok(1..)) {
        return Err(malformed());
    }
    let ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => {
            !host.is_empty()
                && host.len() <= 253
                && host.split('.').all(|l| {
                    !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                })
        }
    };
    if ok { Ok(()) } else { Err(malformed()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exporters_are_delivered_where_the_operator_says() {
        let parse = |text: &str| toml::from_str::<Config>(text);
        let err = parse("exporters = [\"prometheus\"]").unwrap_err();
        assert!(
            err.to_string()
                .contains("[monitor.exporters.prometheus] pull"),
            "{err}"
        );
        let check = |body: &str| {
            parse(&format!("[exporters.x]\n{body}"))
                .expect("parses")
                .check()
        };
        check("pull = \"/metrics/x\"").expect("a pull path");
        check("push = \"[::1]:2003\"").expect("a push address");
        for (body, message) in [
            ("", "exactly one of"),
            ("pull = \"/m\"\npush = \"a:1\"", "exactly one of"),
            ("pull = \"metrics\"", "does not start with `/`"),
            ("pull = \"/api/v1/whoami\"", "kernel's own routes"),
            ("pull = \"/healthz\"", "kernel's own routes"),
            ("pull = \"/a/../b\"", "plain segments"),
            ("pull = \"/{app}\"", "plain segments"),
            ("pull = \"/\"", "plain segments"),
            ("push = \"evil\"", "not `host:port`"),
            ("push = \"a b:80\"", "not `host:port`"),
            ("push = \"a:1\"\ninterval = 0", "at least 1 second"),
        ] {
            let err = check(body).expect_err(body);
            assert!(
                err.contains("[monitor.exporters.x]") && err.contains(message),
                "{body}: {err}"
            );
        }
        let two = "[exporters.a]\npull = \"/m\"\n[exporters.b]\npull = \"/m\"";
        let err = parse(two)
            .expect("parses")
            .check()
            .expect_err("same path twice");
        assert!(err.contains("already the path of exporter `a`"), "{err}");
    }
}
