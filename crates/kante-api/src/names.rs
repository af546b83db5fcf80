//! Name rules shared by client and daemon, so both refuse the same input.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum NameError {
    #[error("{kind} name must not be empty")]
    Empty { kind: &'static str },
    #[error("{kind} name {name:?} is longer than 63 characters")]
    TooLong { kind: &'static str, name: String },
    #[error("{kind} name {name:?} may only contain letters, digits and dashes")]
    BadCharacter { kind: &'static str, name: String },
    #[error("{kind} name {name:?} must not start with a digit or a dash")]
    BadStart { kind: &'static str, name: String },
    #[error("{kind} name {name:?} must not end with a dash")]
    BadEnd { kind: &'static str, name: String },
    #[error("{kind} name {name:?} must not contain {what}")]
    Forbidden {
        kind: &'static str,
        name: String,
        what: &'static str,
    },
}

/// LXD's instance name rules: a valid hostname label, 1..=63 characters of
/// `[a-zA-Z0-9-]`, not starting with a digit or `-`, not ending with `-`.
pub fn validate_instance_name(name: &str) -> Result<(), NameError> {
    validate_hostname_label("Instance", name)
}

fn validate_hostname_label(kind: &'static str, name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty { kind });
    }
    if name.len() > 63 {
        return Err(NameError::TooLong {
            kind,
            name: name.into(),
        });
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(NameError::BadCharacter {
            kind,
            name: name.into(),
        });
    }
    let first = name.chars().next().expect("not empty");
    if first.is_ascii_digit() || first == '-' {
        return Err(NameError::BadStart {
            kind,
            name: name.into(),
        });
    }
    if name.ends_with('-') {
        return Err(NameError::BadEnd {
            kind,
            name: name.into(),
        });
    }
    Ok(())
}

/// Snapshot names: no `/`, no whitespace, not `.` or `..`, at most 255 bytes.
pub fn validate_snapshot_name(name: &str) -> Result<(), NameError> {
    validate_free_name("Snapshot", name, 255)
}

/// Image alias names may contain `/` (`debian/12`) but no whitespace or control characters.
pub fn validate_alias_name(name: &str) -> Result<(), NameError> {
    let kind = "Alias";
    if name.is_empty() {
        return Err(NameError::Empty { kind });
    }
    if name.len() > 255 {
        return Err(NameError::TooLong {
            kind,
            name: name.into(),
        });
    }
    if name
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == ':')
    {
        return Err(NameError::Forbidden {
            kind,
            name: name.into(),
            what: "whitespace, control characters or ':'",
        });
    }
    if name
        .split('/')
        .any(|p| p.is_empty() || p == "." || p == "..")
    {
        return Err(NameError::Forbidden {
            kind,
            name: name.into(),
            what: "empty, '.' or '..' path parts",
        });
    }
    Ok(())
}

/// Names of profiles, pools and networks: no `/`, no whitespace, not `.`/`..`.
pub fn validate_entity_name(kind: &'static str, name: &str) -> Result<(), NameError> {
    validate_free_name(kind, name, 63)
}

fn validate_free_name(kind: &'static str, name: &str, max: usize) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty { kind });
    }
    if name.len() > max {
        return Err(NameError::TooLong {
            kind,
            name: name.into(),
        });
    }
    if name.contains('/') {
        return Err(NameError::Forbidden {
            kind,
            name: name.into(),
            what: "'/'",
        });
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(NameError::Forbidden {
            kind,
            name: name.into(),
            what: "whitespace or control characters",
        });
    }
    if name == "." || name == ".." {
        return Err(NameError::Forbidden {
            kind,
            name: name.into(),
            what: "only dots",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_names_follow_lxd_rules() {
        for ok in ["c1", "web-01", "a", "Trc-c1", &"a".repeat(63)] {
            assert!(validate_instance_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "1abc",
            "-abc",
            "abc-",
            "a/b",
            "a_b",
            "a.b",
            "ä",
            &"a".repeat(64),
            "a b",
        ] {
            assert!(validate_instance_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn snapshot_and_alias_names() {
        assert!(validate_snapshot_name("snap0").is_ok());
        assert!(validate_snapshot_name("before upgrade").is_err());
        assert!(validate_snapshot_name("a/b").is_err());
        assert!(validate_snapshot_name("..").is_err());
        assert!(validate_alias_name("debian/12").is_ok());
        assert!(validate_alias_name("debian//12").is_err());
        assert!(validate_alias_name("../x").is_err());
        assert!(validate_alias_name("a b").is_err());
    }
}
