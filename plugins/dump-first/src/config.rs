//! The plugin's configuration (defaults in `lain-plugin.toml`) and its placeholders.

use lain_sdk_guest::PluginError;
use serde::Deserialize;

/// Words a command may hold at most.
const MAX_WORDS: usize = 256;
/// Bytes one word (or `dump`) may hold at most.
const MAX_WORD_BYTES: usize = 4096;

/// The `dump-first` configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The dump command (argv) run in the instance before the snapshot.
    pub command: Vec<String>,
    /// The dump's name in the volume's root directory: all the backup includes.
    pub dump: String,
    /// The command run in the instance after the snapshot; empty keeps the dump.
    pub cleanup: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            command: ["/lain/app/backup-dump", "{dump}"]
                .map(String::from)
                .to_vec(),
            dump: ".lain-dump".into(),
            cleanup: ["/bin/rm", "-rf", "--", "{dump}"]
                .map(String::from)
                .to_vec(),
        }
    }
}

impl Config {
    /// Checks every key; errors name the key (and the index).
    pub fn check(&self) -> Result<(), PluginError> {
        let bad = |m: String| Err(PluginError::BadConfig(m));
        // One name at the volume root: no directory on the way that the instance could swap
        // for a symbolic link between the plan's check and the snapshot (pre_run runs between).
        let plain = !matches!(self.dump.as_str(), "" | "." | "..")
            && !self.dump.contains(['/', '\0'])
            && self.dump.len() <= MAX_WORD_BYTES;
        if !plain {
            return bad(format!(
                "dump: `{}` must be one name in the volume's root directory (not `.` or `..`, no `/`)",
                self.dump.escape_debug()
            ));
        }
        if self.command.is_empty() {
            return bad("command: must name a program".into());
        }
        check_command("command", &self.command)?;
        check_command("cleanup", &self.cleanup)
    }

    /// `argv` with its placeholders replaced, for the volume at `volume` in the instance.
    pub fn expand(&self, argv: &[String], volume: &str) -> Vec<String> {
        let volume = volume.trim_end_matches('/');
        let dump = format!("{volume}/{}", self.dump);
        argv.iter()
            .map(|w| w.replace("{dump}", &dump).replace("{volume}", volume))
            .collect()
    }
}

/// Checks one command: bounded, an absolute program, only known placeholders.
fn check_command(key: &str, argv: &[String]) -> Result<(), PluginError> {
    let bad = |m: String| Err(PluginError::BadConfig(format!("{key}: {m}")));
    if argv.len() > MAX_WORDS {
        return bad(format!("more than {MAX_WORDS} words"));
    }
    if let Some(program) = argv.first()
        && !program.starts_with('/')
    {
        return bad(format!(
            "the program `{}` must be an absolute path",
            program.escape_debug()
        ));
    }
    for (i, word) in argv.iter().enumerate() {
        if word.len() > MAX_WORD_BYTES || word.contains('\0') {
            return bad(format!(
                "[{i}]: longer than {MAX_WORD_BYTES} bytes or holds NUL"
            ));
        }
        if let Some(unknown) = placeholders(word).find(|p| !matches!(*p, "dump" | "volume")) {
            return bad(format!(
                "[{i}]: unknown placeholder `{{{unknown}}}` (known: `{{dump}}`, `{{volume}}`)"
            ));
        }
    }
    Ok(())
}

/// The placeholders of `word`: `{name}` with `name` of lower-case letters.
fn placeholders(word: &str) -> impl Iterator<Item = &str> {
    word.split('{').skip(1).filter_map(|rest| {
        let name = rest.split_once('}')?.0;
        (!name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase())).then_some(name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lain_sdk_guest::testing::manifest_config;

    fn refused(config: Config) -> String {
        match config.check() {
            Err(PluginError::BadConfig(m)) => m,
            other => panic!("accepted: {other:?}"),
        }
    }

    #[test]
    fn manifest_defaults_match_the_built_in_ones() {
        let config: Config = manifest_config(include_str!("../lain-plugin.toml")).unwrap();
        assert_eq!(config, Config::default());
        assert!(config.check().is_ok());
    }

    #[test]
    fn placeholders_become_paths_in_the_instance() {
        let config = Config::default();
        assert_eq!(
            config.expand(&config.command, "/data/"),
            ["/lain/app/backup-dump", "/data/.lain-dump"]
        );
        let copy = ["/bin/cp", "{volume}/db", "x{dump}y"].map(String::from);
        assert_eq!(
            config.expand(&copy, "/var/lib/db"),
            ["/bin/cp", "/var/lib/db/db", "x/var/lib/db/.lain-dumpy"]
        );
    }

    #[test]
    fn bad_settings_name_their_key() {
        for dump in [
            "",
            ".",
            "..",
            "a/../b",
            "/etc/passwd",
            "./x",
            "a/./b",
            "a//b",
            "a/",
        ] {
            let m = refused(Config {
                dump: dump.into(),
                ..Config::default()
            });
            assert!(m.starts_with("dump: "), "{dump}: {m}");
        }
        let m = refused(Config {
            command: Vec::new(),
            ..Config::default()
        });
        assert!(m.starts_with("command: "), "{m}");
        let m = refused(Config {
            command: vec!["pg_dump".into()],
            ..Config::default()
        });
        assert!(m.starts_with("command: the program `pg_dump`"), "{m}");
        let m = refused(Config {
            cleanup: vec!["/bin/rm".into(), "{dumps}".into()],
            ..Config::default()
        });
        assert!(
            m.starts_with("cleanup: [1]: unknown placeholder `{dumps}`"),
            "{m}"
        );
        // Braces that are no placeholder stay as they are; an empty cleanup keeps the dump.
        let awk = Config {
            command: ["/usr/bin/awk", "{ print }", "{}"]
                .map(String::from)
                .to_vec(),
            cleanup: Vec::new(),
            ..Config::default()
        };
        assert!(awk.check().is_ok());
    }
}
