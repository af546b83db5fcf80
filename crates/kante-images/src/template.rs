//! The template language of LXD image templates (`templates/*.tpl`): the
//! subset of pongo2 (Django/Jinja-like) that public images use.
//!
//! Supported: `{{ expr }}`, `{% if %}/{% elif %}/{% else %}/{% endif %}`,
//! `{% for x in seq %}` / `{% for k, v in map %}` with `{% empty %}` and
//! `forloop.first`/`forloop.Counter`…, `{% autoescape %}` (a no-op: output is
//! never escaped, as LXD renders with autoescape off), `{# comments #}` and
//! the `{%-`/`-%}` whitespace trimmers. Expressions: strings, integers,
//! `true`/`false`, variables with `.attr` and `[key]`, calls of the
//! functions the caller provides (`config_get(key, default)`), the filters
//! `default`, `lower`, `upper`, `trim` and `length`, comparisons, `in`,
//! `and`/`or`/`not`. Unknown variables are empty, as in pongo2.

use std::collections::BTreeMap;

use expr::{eval, parse_expr, Expr, Scopes};

#[path = "template_expr.rs"]
mod expr;

/// A value in a template context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Str(String),
    List(Vec<Value>),
    Map(BTreeMap<String, Value>),
}

impl Value {
    fn truthy(&self) -> bool {
        match self {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Str(s) => !s.is_empty(),
            Value::List(l) => !l.is_empty(),
            Value::Map(m) => !m.is_empty(),
        }
    }

    fn render(&self, out: &mut String) {
        match self {
            Value::Null => {}
            Value::Bool(true) => out.push_str("True"),
            Value::Bool(false) => out.push_str("False"),
            Value::Int(i) => out.push_str(&i.to_string()),
            Value::Str(s) => out.push_str(s),
            Value::List(l) => {
                out.push('[');
                for (i, v) in l.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    v.render(out);
                }
                out.push(']');
            }
            Value::Map(m) => {
                out.push('{');
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(k);
                    out.push_str(": ");
                    v.render(out);
                }
                out.push('}');
            }
        }
    }

    fn to_text(&self) -> String {
        let mut s = String::new();
        self.render(&mut s);
        s
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s)
    }
}

impl<V: Into<Value>> From<BTreeMap<String, V>> for Value {
    fn from(m: BTreeMap<String, V>) -> Self {
        Value::Map(m.into_iter().map(|(k, v)| (k, v.into())).collect())
    }
}

/// A function callable from a template (`config_get(...)`).
pub type Function<'a> = &'a dyn Fn(&[Value]) -> Value;

/// What a template sees: variables and functions.
#[derive(Default)]
pub struct Context<'a> {
    pub vars: BTreeMap<String, Value>,
    pub functions: BTreeMap<String, Function<'a>>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TemplateError {
    #[error("template syntax error on line {line}: {message}")]
    Syntax { line: usize, message: String },
    #[error("template error: {0}")]
    Eval(String),
}

/// Renders `src` with `ctx`.
pub fn render(src: &str, ctx: &Context) -> Result<String, TemplateError> {
    let pieces = lex(src)?;
    let mut pos = 0;
    let (nodes, end) = parse_nodes(&pieces, &mut pos, &[])?;
    if let Some((tag, line)) = end {
        return Err(syntax(line, format!("unexpected {{% {tag} %}}")));
    }
    let mut out = String::new();
    let mut scopes = Vec::new();
    render_nodes(&nodes, ctx, &mut scopes, &mut out)?;
    Ok(out)
}

fn syntax(line: usize, message: impl Into<String>) -> TemplateError {
    TemplateError::Syntax {
        line,
        message: message.into(),
    }
}

// ---- lexing --------------------------------------------------------------

#[derive(Debug)]
enum Piece {
    Text(String),
    Var(String, usize),
    Tag(String, usize),
}

fn lex(src: &str) -> Result<Vec<Piece>, TemplateError> {
    let mut pieces = Vec::new();
    let mut rest = src;
    let mut line = 1;
    let mut trim_next = false;
    loop {
        let next = ["{{", "{%", "{#"]
            .iter()
            .filter_map(|m| rest.find(m).map(|i| (i, *m)))
            .min_by_key(|(i, _)| *i);
        let Some((at, open)) = next else {
            push_text(&mut pieces, rest, trim_next, false);
            return Ok(pieces);
        };
        let close = match open {
            "{{" => "}}",
            "{%" => "%}",
            _ => "#}",
        };
        let inner_start = at + 2;
        let Some(len) = rest[inner_start..].find(close) else {
            let line = line + rest[..at].matches('\n').count();
            return Err(syntax(line, format!("{open} is never closed")));
        };
        let mut inner = &rest[inner_start..inner_start + len];
        let trim_before = inner.starts_with('-');
        let trim_after = inner.ends_with('-');
        if trim_before {
            inner = &inner[1..];
        }
        if trim_after && !inner.is_empty() {
            inner = &inner[..inner.len() - 1];
        }
        push_text(&mut pieces, &rest[..at], trim_next, trim_before);
        line += rest[..at].matches('\n').count();
        match open {
            "{{" => pieces.push(Piece::Var(inner.trim().to_string(), line)),
            "{%" => pieces.push(Piece::Tag(inner.trim().to_string(), line)),
            _ => {}
        }
        line += inner.matches('\n').count();
        trim_next = trim_after;
        rest = &rest[inner_start + len + 2..];
    }
}

fn push_text(pieces: &mut Vec<Piece>, text: &str, trim_start: bool, trim_end: bool) {
    let mut t = text;
    if trim_start {
        t = t.trim_start();
    }
    if trim_end {
        t = t.trim_end();
    }
    if !t.is_empty() {
        pieces.push(Piece::Text(t.to_string()));
    }
}

// ---- parsing -------------------------------------------------------------

#[derive(Debug)]
enum Node {
    Text(String),
    Expr(Expr),
    If {
        branches: Vec<(Expr, Vec<Node>)>,
        otherwise: Vec<Node>,
    },
    For {
        key: String,
        value: Option<String>,
        seq: Expr,
        body: Vec<Node>,
        empty: Vec<Node>,
    },
}

/// A tag that ended a block (its full text) and its line.
type StopTag = (String, usize);

/// Parses nodes until one of the `stop` tags; returns the nodes and the
/// stopping tag (its full text) with its line.
fn parse_nodes(
    pieces: &[Piece],
    pos: &mut usize,
    stop: &[&str],
) -> Result<(Vec<Node>, Option<StopTag>), TemplateError> {
    let mut nodes = Vec::new();
    while let Some(p) = pieces.get(*pos) {
        *pos += 1;
        match p {
            Piece::Text(t) => nodes.push(Node::Text(t.clone())),
            Piece::Var(e, line) => nodes.push(Node::Expr(parse_expr(e, *line)?)),
            Piece::Tag(tag, line) => {
                let word = tag.split_whitespace().next().unwrap_or("");
                if stop.contains(&word) {
                    return Ok((nodes, Some((tag.clone(), *line))));
                }
                match word {
                    "if" => nodes.push(parse_if(pieces, pos, &tag[2..], *line)?),
                    "for" => nodes.push(parse_for(pieces, pos, &tag[3..], *line)?),
                    "autoescape" => {
                        let (inner, end) = parse_nodes(pieces, pos, &["endautoescape"])?;
                        if end.is_none() {
                            return Err(syntax(*line, "{% autoescape %} without endautoescape"));
                        }
                        nodes.extend(inner);
                    }
                    other => {
                        return Err(syntax(*line, format!("unsupported tag {other:?}")));
                    }
                }
            }
        }
    }
    Ok((nodes, None))
}

fn parse_if(
    pieces: &[Piece],
    pos: &mut usize,
    cond: &str,
    line: usize,
) -> Result<Node, TemplateError> {
    let mut branches = Vec::new();
    let mut cond = parse_expr(cond, line)?;
    loop {
        let (body, end) = parse_nodes(pieces, pos, &["elif", "else", "endif"])?;
        let Some((tag, tline)) = end else {
            return Err(syntax(line, "{% if %} without endif"));
        };
        branches.push((cond, body));
        match tag.split_whitespace().next() {
            Some("elif") => cond = parse_expr(&tag[4..], tline)?,
            Some("else") => {
                let (otherwise, end) = parse_nodes(pieces, pos, &["endif"])?;
                if end.is_none() {
                    return Err(syntax(line, "{% if %} without endif"));
                }
                return Ok(Node::If {
                    branches,
                    otherwise,
                });
            }
            _ => {
                return Ok(Node::If {
                    branches,
                    otherwise: Vec::new(),
                })
            }
        }
    }
}

fn parse_for(
    pieces: &[Piece],
    pos: &mut usize,
    spec: &str,
    line: usize,
) -> Result<Node, TemplateError> {
    let (vars, seq) = spec
        .split_once(" in ")
        .ok_or_else(|| syntax(line, "{% for %} needs `x in sequence`"))?;
    // pongo2's optional trailing `sorted`: maps are iterated sorted anyway.
    let seq = seq.trim().strip_suffix(" sorted").unwrap_or(seq.trim());
    let names: Vec<&str> = vars.split(',').map(str::trim).collect();
    let valid = |n: &str| {
        !n.is_empty()
            && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !n.starts_with(|c: char| c.is_ascii_digit())
    };
    let (key, value) = match names.as_slice() {
        [k] if valid(k) => (k.to_string(), None),
        [k, v] if valid(k) && valid(v) => (k.to_string(), Some(v.to_string())),
        _ => return Err(syntax(line, format!("bad loop variables {vars:?}"))),
    };
    let seq = parse_expr(seq, line)?;
    let (body, end) = parse_nodes(pieces, pos, &["empty", "endfor"])?;
    let Some((tag, _)) = end else {
        return Err(syntax(line, "{% for %} without endfor"));
    };
    let empty = if tag == "empty" {
        let (e, end) = parse_nodes(pieces, pos, &["endfor"])?;
        if end.is_none() {
            return Err(syntax(line, "{% for %} without endfor"));
        }
        e
    } else {
        Vec::new()
    };
    Ok(Node::For {
        key,
        value,
        seq,
        body,
        empty,
    })
}

// ---- evaluation ----------------------------------------------------------

fn render_nodes(
    nodes: &[Node],
    ctx: &Context,
    scopes: &mut Scopes,
    out: &mut String,
) -> Result<(), TemplateError> {
    for n in nodes {
        match n {
            Node::Text(t) => out.push_str(t),
            Node::Expr(e) => eval(e, ctx, scopes)?.render(out),
            Node::If {
                branches,
                otherwise,
            } => {
                let mut taken = false;
                for (cond, body) in branches {
                    if eval(cond, ctx, scopes)?.truthy() {
                        render_nodes(body, ctx, scopes, out)?;
                        taken = true;
                        break;
                    }
                }
                if !taken {
                    render_nodes(otherwise, ctx, scopes, out)?;
                }
            }
            Node::For {
                key,
                value,
                seq,
                body,
                empty,
            } => {
                let items: Vec<(Value, Value)> = match eval(seq, ctx, scopes)? {
                    Value::List(l) => l
                        .into_iter()
                        .enumerate()
                        .map(|(i, v)| (Value::Int(i as i64), v))
                        .collect(),
                    Value::Map(m) => m.into_iter().map(|(k, v)| (Value::Str(k), v)).collect(),
                    Value::Str(s) => s
                        .chars()
                        .enumerate()
                        .map(|(i, c)| (Value::Int(i as i64), Value::Str(c.to_string())))
                        .collect(),
                    _ => Vec::new(),
                };
                if items.is_empty() {
                    render_nodes(empty, ctx, scopes, out)?;
                    continue;
                }
                let total = items.len();
                let is_list = !matches!(items.first(), Some((Value::Str(_), _)));
                for (i, (k, v)) in items.into_iter().enumerate() {
                    let mut scope = BTreeMap::new();
                    match value {
                        Some(vn) => {
                            scope.insert(key.clone(), k);
                            scope.insert(vn.clone(), v);
                        }
                        // One variable: the item of a list, the key of a map.
                        None => {
                            scope.insert(key.clone(), if is_list { v } else { k });
                        }
                    }
                    scope.insert("forloop".into(), forloop(i, total));
                    scopes.push(scope);
                    let r = render_nodes(body, ctx, scopes, out);
                    scopes.pop();
                    r?;
                }
            }
        }
    }
    Ok(())
}

/// pongo2's `forloop` (capitalised) with Jinja's lower-case names too.
fn forloop(i: usize, total: usize) -> Value {
    let mut m = BTreeMap::new();
    for (names, v) in [
        (["Counter", "counter"], Value::Int(i as i64 + 1)),
        (["Counter0", "counter0"], Value::Int(i as i64)),
        (["First", "first"], Value::Bool(i == 0)),
        (["Last", "last"], Value::Bool(i + 1 == total)),
    ] {
        for n in names {
            m.insert(n.to_string(), v.clone());
        }
    }
    Value::Map(m)
}

#[cfg(test)]
#[path = "template_tests.rs"]
mod tests;
