//! Checks of a portal's `service_name` and `allow_clients`.

/// Whether `name` matches LAIN's name pattern `^[a-zA-Z]([a-zA-Z0-9]*)(-[a-zA-Z0-9]+)*$`
/// (LAIN reference §proc-sections): groups of letters and digits joined by single `-`, starting
/// with a letter.
pub fn is_service_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .split('-')
            .all(|group| !group.is_empty() && group.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// What is wrong with an `allow_clients` value, one message per faulty pattern (none if it is
/// valid).
///
/// The value is a comma-separated list of globs of client app names (spaces around the commas
/// are ignored). A glob is made of letters, digits, `-` and `.` (the characters of app names),
/// `?` (one character), `*` (any characters within one dot-separated segment of the name) and
/// `**` (any characters, dots included: `**` alone allows every app).
pub fn allow_clients_faults(globs: &str) -> Vec<String> {
    globs
        .split(',')
        .map(str::trim)
        .filter_map(|glob| {
            if glob.is_empty() {
                Some("empty pattern in allow_clients".to_string())
            } else if let Some(c) = glob.chars().find(|c| !is_glob_char(*c)) {
                Some(format!("pattern `{glob}` contains {c:?}"))
            } else if glob.contains("***") {
                Some(format!("pattern `{glob}` contains `***`"))
            } else {
                None
            }
        })
        .collect()
}

/// Characters allowed in an `allow_clients` glob.
fn is_glob_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-.*?".contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_follow_lains_pattern() {
        for good in ["pg", "redis-master", "a1-b2-c3", "X"] {
            assert!(is_service_name(good), "{good}");
        }
        for bad in [
            "",
            "1pg",
            "-pg",
            "pg-",
            "pg--master",
            "pg.master",
            "pg_master",
            "pg master",
        ] {
            assert!(!is_service_name(bad), "{bad}");
        }
    }

    #[test]
    fn valid_globs_have_no_faults() {
        for good in [
            "**",
            "bookshelf",
            "bookshelf, admin-ui",
            "resource.*.hello",
            "app?",
            "team-*,**",
        ] {
            assert_eq!(allow_clients_faults(good), Vec::<String>::new(), "{good}");
        }
    }

    #[test]
    fn every_faulty_pattern_is_reported() {
        assert_eq!(
            allow_clients_faults("ok, bad/app,,***, a b"),
            [
                "pattern `bad/app` contains '/'",
                "empty pattern in allow_clients",
                "pattern `***` contains `***`",
                "pattern `a b` contains ' '",
            ]
        );
        assert_eq!(allow_clients_faults(""), ["empty pattern in allow_clients"]);
    }
}
