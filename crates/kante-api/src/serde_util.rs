//! Tolerant deserializers: real clients send `null` for absent values and
//! numbers or booleans where LXD stores strings.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// Accepts `null` (or absence, with `#[serde(default)]`) as `T::default()`.
pub fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Renders a scalar JSON value the way LXD stores config values.
pub fn value_to_config_string(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

/// A string map whose values may arrive as any JSON scalar (preseed sends integers).
pub fn string_map<'de, D>(d: D) -> Result<BTreeMap<String, String>, D::Error>
where
    D: Deserializer<'de>,
{
    let raw: Option<BTreeMap<String, Value>> = Option::deserialize(d)?;
    Ok(raw
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, value_to_config_string(&v)))
        .collect())
}

/// A map of string maps (devices), values again any JSON scalar.
pub fn devices_map<'de, D>(d: D) -> Result<BTreeMap<String, BTreeMap<String, String>>, D::Error>
where
    D: Deserializer<'de>,
{
    let raw: Option<BTreeMap<String, Option<BTreeMap<String, Value>>>> = Option::deserialize(d)?;
    Ok(raw
        .unwrap_or_default()
        .into_iter()
        .map(|(name, props)| {
            let props = props
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, value_to_config_string(&v)))
                .collect();
            (name, props)
        })
        .collect())
}

/// An integer that may arrive as a number, a numeric string or null.
pub fn lenient_i64<'de, D>(d: D) -> Result<i64, D::Error>
where
    D: Deserializer<'de>,
{
    let v = Value::deserialize(d)?;
    match v {
        Value::Null => Ok(0),
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .ok_or_else(|| serde::de::Error::custom("integer out of range")),
        Value::String(s) if s.is_empty() => Ok(0),
        Value::String(s) => s.trim().parse().map_err(serde::de::Error::custom),
        other => Err(serde::de::Error::custom(format!(
            "expected integer, got {other}"
        ))),
    }
}

/// A boolean that may arrive as a bool, "true"/"false" or null.
pub fn lenient_bool<'de, D>(d: D) -> Result<bool, D::Error>
where
    D: Deserializer<'de>,
{
    let v = Value::deserialize(d)?;
    match v {
        Value::Null => Ok(false),
        Value::Bool(b) => Ok(b),
        Value::String(s) => Ok(matches!(s.as_str(), "true" | "1" | "yes" | "on")),
        Value::Number(n) => Ok(n.as_i64().unwrap_or(0) != 0),
        other => Err(serde::de::Error::custom(format!(
            "expected boolean, got {other}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Probe {
        #[serde(default, deserialize_with = "string_map")]
        config: BTreeMap<String, String>,
        #[serde(default, deserialize_with = "null_default")]
        name: String,
        #[serde(default, deserialize_with = "lenient_i64")]
        user: i64,
        #[serde(default, deserialize_with = "devices_map")]
        devices: BTreeMap<String, BTreeMap<String, String>>,
    }

    #[test]
    fn accepts_nulls_numbers_and_unknown_fields() {
        let p: Probe = serde_json::from_str(
            r#"{"config":{"limits.cpu":2,"boot.autostart":true,"x":"y"},"name":null,"user":null,
                "devices":{"root":{"path":"/","size":10}},"unknown":[1,2]}"#,
        )
        .unwrap();
        assert_eq!(p.config["limits.cpu"], "2");
        assert_eq!(p.config["boot.autostart"], "true");
        assert_eq!(p.name, "");
        assert_eq!(p.user, 0);
        assert_eq!(p.devices["root"]["size"], "10");

        let p: Probe = serde_json::from_str(r#"{"config":null,"devices":null}"#).unwrap();
        assert!(p.config.is_empty());
        assert!(p.devices.is_empty());
    }
}
