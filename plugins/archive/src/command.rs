//! LAIN's `pre_run` / `post_run` commands (LAIN reference §backups, "Execution on the node").

/// Where a relative command is looked up inside the instance: the app's directory.
const APP_DIR: &str = "/lain/app/";

/// Turns a `pre_run` / `post_run` string into the argv run inside the instance.
///
/// As LAIN's backupd did: the string is split on whitespace, no shell is involved (no quoting, no
/// expansion), and a relative first word is prefixed with `/lain/app/`. A blank string is no
/// command at all.
pub fn argv(command: &str) -> Option<Vec<String>> {
    let mut words = command.split_whitespace();
    let program = words.next()?;
    let program = if program.starts_with('/') {
        program.to_string()
    } else {
        format!("{APP_DIR}{program}")
    };
    Some(
        std::iter::once(program)
            .chain(words.map(String::from))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_whitespace_without_a_shell() {
        assert_eq!(
            argv("  /usr/bin/mysqldump  --all-databases\t-r /data/dump.sql\n"),
            Some(vec![
                "/usr/bin/mysqldump".to_string(),
                "--all-databases".into(),
                "-r".into(),
                "/data/dump.sql".into(),
            ])
        );
        assert_eq!(
            argv("echo 'a b' $HOME"),
            Some(vec![
                "/lain/app/echo".to_string(),
                "'a".into(),
                "b'".into(),
                "$HOME".into()
            ])
        );
    }

    #[test]
    fn relative_programs_are_run_from_the_app_directory() {
        assert_eq!(
            argv("backup.sh"),
            Some(vec!["/lain/app/backup.sh".to_string()])
        );
        assert_eq!(
            argv("./scripts/flush.sh now"),
            Some(vec![
                "/lain/app/./scripts/flush.sh".to_string(),
                "now".into()
            ])
        );
    }

    #[test]
    fn blank_commands_run_nothing() {
        assert_eq!(argv(""), None);
        assert_eq!(argv(" \t\n"), None);
    }
}
