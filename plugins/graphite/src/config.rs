//! The plugin's configuration (defaults in `lain-plugin.toml`) and its checked form.

use crate::plaintext::sanitise;
use lain_sdk_guest::PluginError;
use serde::Deserialize;

/// The `graphite` configuration as the operator wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Carbon's plaintext listener, `host:port`: only shown in the summary. Where the lines go
    /// is the operator's `[monitor.exporters.graphite] push` in the kernel config.
    pub address: Option<String>,
    /// Seconds between two pushes.
    pub interval: u32,
    /// First component(s) of every metric path, dot-separated.
    pub prefix: String,
    /// Labels whose values form the path between prefix and metric name, in order.
    pub path_labels: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            address: None,
            interval: 60,
            prefix: "lain".into(),
            path_labels: ["app", "proc", "instance"].map(String::from).to_vec(),
        }
    }
}

/// The configuration once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Carbon's plaintext listener, `host:port`, if configured.
    pub address: Option<String>,
    /// Seconds between two pushes, at least 1.
    pub interval: u32,
    /// The prefix's components, each sanitised; empty ones dropped.
    pub prefix: Vec<String>,
    /// Labels whose values form the path.
    pub path_labels: Vec<String>,
}

impl Config {
    /// Checks the configuration. Errors name the key.
    pub fn check(self) -> Result<Settings, PluginError> {
        let bad = |key: &str, why: String| PluginError::BadConfig(format!("{key}: {why}"));
        if let Some(address) = &self.address {
            check_address(address).map_err(|why| bad("address", why))?;
        }
        if self.interval == 0 {
            return Err(bad("interval", "must be at least 1 second".into()));
        }
        if let Some(i) = self.path_labels.iter().position(String::is_empty) {
            return Err(bad(&format!("path_labels[{i}]"), "empty label name".into()));
        }
        let prefix = self
            .prefix
            .split('.')
            .map(sanitise)
            .filter(|c| !c.is_empty())
            .collect();
        Ok(Settings {
            address: self.address,
            interval: self.interval,
            prefix,
            path_labels: self.path_labels,
        })
    }
}

/// Checks that `address` is `host:port`, the host a name, an IPv4 address or a bracketed IPv6 one.
fn check_address(address: &str) -> Result<(), String> {
    let malformed = || format!("`{address}` is not `host:port`");
    let (host, port) = address.rsplit_once(':').ok_or_else(malformed)?;
    match port.parse::<u16>() {
        Ok(1..) => {}
        _ => {
            return Err(format!(
                "`{address}`: `{port}` is not a port number (1-65535)"
            ));
        }
    }
    let name = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
    let valid = match name {
        Some(ipv6) => {
            !ipv6.is_empty()
                && ipv6
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        }
        None => {
            !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        }
    };
    if valid { Ok(()) } else { Err(malformed()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lain_sdk_guest::testing::manifest_config;

    fn with_address(address: &str) -> Config {
        Config {
            address: Some(address.into()),
            ..Config::default()
        }
    }

    fn error(result: Result<Settings, PluginError>) -> String {
        match result {
            Err(PluginError::BadConfig(message)) => message,
            other => panic!("expected bad-config, got {other:?}"),
        }
    }

    #[test]
    fn manifest_defaults_match_the_built_in_ones() {
        let config: Config = manifest_config(include_str!("../lain-plugin.toml")).unwrap();
        assert_eq!(config, Config::default());
    }

    #[test]
    fn accepts_names_and_addresses() {
        for address in [
            "graphite.lain.local:2003",
            "10.0.0.5:2003",
            "[::1]:2003",
            "carbon:1",
        ] {
            let settings = with_address(address).check().unwrap();
            assert_eq!(settings.address.as_deref(), Some(address));
            assert_eq!(settings.interval, 60);
            assert_eq!(settings.prefix, ["lain"]);
        }
    }

    #[test]
    fn address_is_optional_and_checked() {
        assert!(matches!(Config::default().check(), Ok(s) if s.address.is_none()));
        assert_eq!(
            error(with_address("graphite").check()),
            "address: `graphite` is not `host:port`"
        );
        assert_eq!(
            error(with_address("graphite:0").check()),
            "address: `graphite:0`: `0` is not a port number (1-65535)"
        );
        for bad in [
            ":2003",
            "a b:2003",
            "tcp://graphite:2003",
            "::1:2003",
            "[]:2003",
            "graphite:70000",
        ] {
            assert!(
                error(with_address(bad).check()).starts_with("address: "),
                "{bad} accepted"
            );
        }
    }

    #[test]
    fn other_keys_are_checked() {
        let zero = Config {
            interval: 0,
            ..with_address("g:2003")
        };
        assert_eq!(error(zero.check()), "interval: must be at least 1 second");
        let empty = Config {
            path_labels: vec!["app".into(), String::new()],
            ..with_address("g:2003")
        };
        assert_eq!(error(empty.check()), "path_labels[1]: empty label name");
    }

    #[test]
    fn prefix_components_are_sanitised() {
        let config = Config {
            prefix: "lain.prod env..x/y".into(),
            ..with_address("g:2003")
        };
        assert_eq!(config.check().unwrap().prefix, ["lain", "prod_env", "x_y"]);
        let none = Config {
            prefix: String::new(),
            ..with_address("g:2003")
        };
        assert!(none.check().unwrap().prefix.is_empty());
    }
}
