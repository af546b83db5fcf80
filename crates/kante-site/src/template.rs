//! `{{NAME}}` in a site's values: an instance's `vars` (and `name`,
//! `host`, `n`), a step's captured variables and `{{ip:INSTANCE}}`.
//! Names with a dot (`{{ v1.local_hostname }}`, cloud-init's own jinja)
//! are left as they are; any other unknown name is an error, so a typo
//! does not reach a guest.

use std::collections::BTreeMap;

use kante_client::kante_api::ConfigMap;

/// The `{{…}}` spans of `text`: (start, end after `}}`, trimmed name).
fn spans(text: &str) -> Vec<(usize, usize, String)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(open) = text[from..].find("{{").map(|i| i + from) {
        let Some(close) = text[open + 2..].find("}}").map(|i| i + open + 2) else {
            break;
        };
        out.push((open, close + 2, text[open + 2..close].trim().to_string()));
        from = close + 2;
    }
    out
}

/// The names `text` refers to (jinja names with a dot aside).
pub fn variables(text: &str) -> Vec<String> {
    spans(text)
        .into_iter()
        .map(|(_, _, n)| n)
        .filter(|n| !n.contains('.'))
        .collect()
}

/// `text` with each known `{{NAME}}` replaced.
pub fn render(text: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (start, end, name) in spans(text) {
        out.push_str(&text[last..start]);
        match vars.get(&name) {
            Some(v) => out.push_str(v),
            None if name.contains('.') => out.push_str(&text[start..end]),
            None => return Err(format!("unknown variable {{{{{name}}}}}")),
        }
        last = end;
    }
    out.push_str(&text[last..]);
    Ok(out)
}

/// Every value of `map` rendered.
pub fn render_map(map: &ConfigMap, vars: &BTreeMap<String, String>) -> Result<ConfigMap, String> {
    map.iter()
        .map(|(k, v)| Ok((k.clone(), render(v, vars)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> BTreeMap<String, String> {
        [("name", "docker1"), ("MAC", "00:16:3e:00:00:01")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn known_names_are_replaced_and_jinja_is_left_alone() {
        let t = "hostname: {{name}}\nmac: {{ MAC }}\nfqdn: {{ v1.local_hostname }}";
        assert_eq!(
            render(t, &vars()).unwrap(),
            "hostname: docker1\nmac: 00:16:3e:00:00:01\nfqdn: {{ v1.local_hostname }}"
        );
        assert_eq!(variables(t), ["name", "MAC"]);
        assert_eq!(render("no braces {", &vars()).unwrap(), "no braces {");
    }

    #[test]
    fn an_unknown_name_is_an_error() {
        let e = render("{{nmae}}", &vars()).unwrap_err();
        assert!(e.contains("nmae"), "{e}");
    }
}
