//! One module per group of subcommands, plus small shared helpers.

pub mod config;
pub mod exec;
pub mod file;
pub mod image;
pub mod info;
pub mod lifecycle;
pub mod list;
pub mod misc;

use anyhow::{bail, Result};
use kante_api::names::validate_instance_name;

/// Splits `key=value` (lxc's message when there is no `=`).
pub fn parse_kv(s: &str) -> Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => bail!("Bad key=value pair: {s}"),
    }
}

/// Client-side name check, as lxc does before sending anything.
pub fn check_name(name: &str) -> Result<()> {
    validate_instance_name(name)?;
    Ok(())
}

/// YAML for `show` commands.
pub fn to_yaml<T: serde::Serialize>(v: &T) -> Result<String> {
    Ok(serde_yaml::to_string(v)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_pairs() {
        assert_eq!(parse_kv("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert_eq!(parse_kv("a=").unwrap(), ("a".into(), "".into()));
        assert_eq!(
            parse_kv("novalue").unwrap_err().to_string(),
            "Bad key=value pair: novalue"
        );
        assert!(parse_kv("=x").is_err());
    }
}
