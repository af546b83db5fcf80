//! The `filter=` query of list endpoints: LXD's OData-like syntax, in the
//! subset clients send (`field eq value` joined by `and`/`or`, `not`).

use serde_json::Value;

/// Why a filter cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("unterminated quote in filter")]
    UnterminatedQuote,
    #[error("incomplete filter expression")]
    Incomplete,
    #[error("unsupported filter operator {0:?}")]
    UnsupportedOperator(String),
    #[error("unexpected {0:?} in filter")]
    Unexpected(String),
}

/// Returns whether `obj` matches `filter` (an empty filter matches all).
pub fn matches(filter: &str, obj: &Value) -> Result<bool, FilterError> {
    let tokens = tokenize(filter)?;
    if tokens.is_empty() {
        return Ok(true);
    }
    let mut pos = 0;
    let r = parse_or(&tokens, &mut pos, obj)?;
    if pos != tokens.len() {
        return Err(FilterError::Unexpected(tokens[pos].clone()));
    }
    Ok(r)
}

fn tokenize(s: &str) -> Result<Vec<String>, FilterError> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' || c == '\'' {
            chars.next();
            let mut t = String::new();
            loop {
                match chars.next() {
                    Some(x) if x == c => break,
                    Some(x) => t.push(x),
                    None => return Err(FilterError::UnterminatedQuote),
                }
            }
            out.push(t);
        } else {
            let mut t = String::new();
            while let Some(&x) = chars.peek() {
                if x.is_whitespace() {
                    break;
                }
                t.push(x);
                chars.next();
            }
            out.push(t);
        }
    }
    Ok(out)
}

fn parse_or(t: &[String], pos: &mut usize, obj: &Value) -> Result<bool, FilterError> {
    let mut v = parse_and(t, pos, obj)?;
    while *pos < t.len() && t[*pos] == "or" {
        *pos += 1;
        let r = parse_and(t, pos, obj)?;
        v = v || r;
    }
    Ok(v)
}

fn parse_and(t: &[String], pos: &mut usize, obj: &Value) -> Result<bool, FilterError> {
    let mut v = parse_term(t, pos, obj)?;
    while *pos < t.len() && t[*pos] == "and" {
        *pos += 1;
        let r = parse_term(t, pos, obj)?;
        v = v && r;
    }
    Ok(v)
}

fn parse_term(t: &[String], pos: &mut usize, obj: &Value) -> Result<bool, FilterError> {
    if *pos < t.len() && t[*pos] == "not" {
        *pos += 1;
        return parse_term(t, pos, obj).map(|v| !v);
    }
    if *pos + 3 > t.len() {
        return Err(FilterError::Incomplete);
    }
    let (field, op, value) = (&t[*pos], &t[*pos + 1], &t[*pos + 2]);
    *pos += 3;
    let actual = lookup(obj, field);
    let eq = actual
        .map(|a| a.eq_ignore_ascii_case(value))
        .unwrap_or(false);
    match op.as_str() {
        "eq" => Ok(eq),
        "ne" => Ok(!eq),
        other => Err(FilterError::UnsupportedOperator(other.to_string())),
    }
}

/// `name`, `status`, or a dotted path such as `config.user.x` (config keys contain dots).
fn lookup(obj: &Value, field: &str) -> Option<String> {
    if let Some(v) = obj.get(field) {
        return Some(scalar(v));
    }
    let (head, rest) = field.split_once('.')?;
    let inner = obj.get(head)?;
    if let Some(v) = inner.get(rest) {
        return Some(scalar(v));
    }
    lookup(inner, rest)
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn filters_like_lxc_sends_them() {
        let o = json!({"name": "c1", "status": "Running", "config": {"user.tier": "web"}});
        assert!(matches("", &o).unwrap());
        assert!(matches("name eq c1", &o).unwrap());
        assert!(matches("name eq c1 and status eq running", &o).unwrap());
        assert!(!matches("name eq c2 and status eq Running", &o).unwrap());
        assert!(matches("name eq c2 or status eq Running", &o).unwrap());
        assert!(matches("not name eq c2", &o).unwrap());
        assert!(matches("config.user.tier eq web", &o).unwrap());
        assert!(matches("name eq 'c1'", &o).unwrap());
        assert_eq!(
            matches("name gt c1", &o),
            Err(FilterError::UnsupportedOperator("gt".into()))
        );
        assert_eq!(matches("name eq", &o), Err(FilterError::Incomplete));
        assert_eq!(
            matches("name eq c1 c2", &o),
            Err(FilterError::Unexpected("c2".into()))
        );
        assert_eq!(
            matches("name eq 'c1", &o),
            Err(FilterError::UnterminatedQuote)
        );
    }
}
