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

/// Parses nodes until one of the `stop` tags; returns the nodes and the
/// stopping tag (its full text) with its line.
fn parse_nodes(
    pieces: &[Piece],
    pos: &mut usize,
    stop: &[&str],
) -> Result<(Vec<Node>, Option<(String, usize)>), TemplateError> {
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

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Int(i64),
    Op(&'static str),
}

fn tokenize(src: &str, line: usize) -> Result<Vec<Tok>, TemplateError> {
    let mut toks = Vec::new();
    let chars: Vec<char> = src.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '"' || c == '\'' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(syntax(line, "unterminated string")),
                    Some(&q) if q == c => break,
                    Some('\\') => {
                        i += 1;
                        match chars.get(i) {
                            Some('n') => s.push('\n'),
                            Some('t') => s.push('\t'),
                            Some(&o) => s.push(o),
                            None => return Err(syntax(line, "unterminated string")),
                        }
                    }
                    Some(&o) => s.push(o),
                }
                i += 1;
            }
            i += 1;
            toks.push(Tok::Str(s));
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            let n = text
                .parse()
                .map_err(|_| syntax(line, format!("number {text} is too large")))?;
            toks.push(Tok::Int(n));
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            toks.push(Tok::Ident(chars[start..i].iter().collect()));
        } else {
            let two: String = chars[i..chars.len().min(i + 2)].iter().collect();
            let op = ["==", "!=", "<=", ">=", "&&", "||"]
                .into_iter()
                .find(|o| *o == two);
            if let Some(op) = op {
                toks.push(Tok::Op(op));
                i += 2;
                continue;
            }
            let op = ["<", ">", "!", "(", ")", "[", "]", ".", ",", "|", ":"]
                .into_iter()
                .find(|o| o.starts_with(c))
                .ok_or_else(|| syntax(line, format!("unexpected character {c:?}")))?;
            toks.push(Tok::Op(op));
            i += 1;
        }
    }
    Ok(toks)
}

#[derive(Debug, Clone)]
enum Expr {
    Lit(Value),
    Var(String),
    Attr(Box<Expr>, String),
    Index(Box<Expr>, Box<Expr>),
    Call(String, Vec<Expr>),
    Filter(Box<Expr>, String, Option<Box<Expr>>),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Cmp(&'static str, Box<Expr>, Box<Expr>),
}

fn parse_expr(src: &str, line: usize) -> Result<Expr, TemplateError> {
    let toks = tokenize(src, line)?;
    if toks.is_empty() {
        return Err(syntax(line, "empty expression"));
    }
    let mut p = ExprParser { toks, i: 0, line };
    let e = p.or()?;
    if p.i != p.toks.len() {
        return Err(syntax(line, format!("unexpected {:?} in {src:?}", p.toks[p.i])));
    }
    Ok(e)
}

struct ExprParser {
    toks: Vec<Tok>,
    i: usize,
    line: usize,
}

impl ExprParser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i)
    }

    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(s)) if s == w)
    }

    fn is_op(&self, o: &str) -> bool {
        matches!(self.peek(), Some(Tok::Op(s)) if *s == o)
    }

    fn expect_op(&mut self, o: &str) -> Result<(), TemplateError> {
        if self.is_op(o) {
            self.i += 1;
            Ok(())
        } else {
            Err(syntax(self.line, format!("expected {o:?}")))
        }
    }

    fn ident(&mut self) -> Result<String, TemplateError> {
        match self.toks.get(self.i) {
            Some(Tok::Ident(s)) => {
                self.i += 1;
                Ok(s.clone())
            }
            _ => Err(syntax(self.line, "expected a name")),
        }
    }

    fn or(&mut self) -> Result<Expr, TemplateError> {
        let mut e = self.and()?;
        while self.is_word("or") || self.is_op("||") {
            self.i += 1;
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }

    fn and(&mut self) -> Result<Expr, TemplateError> {
        let mut e = self.not()?;
        while self.is_word("and") || self.is_op("&&") {
            self.i += 1;
            e = Expr::And(Box::new(e), Box::new(self.not()?));
        }
        Ok(e)
    }

    fn not(&mut self) -> Result<Expr, TemplateError> {
        if self.is_word("not") || self.is_op("!") {
            self.i += 1;
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.cmp()
    }

    fn cmp(&mut self) -> Result<Expr, TemplateError> {
        let left = self.postfix()?;
        let op = match self.peek() {
            Some(Tok::Op(o)) if ["==", "!=", "<", ">", "<=", ">="].contains(o) => *o,
            Some(Tok::Ident(w)) if w == "in" => "in",
            Some(Tok::Ident(w))
                if w == "not"
                    && matches!(self.toks.get(self.i + 1), Some(Tok::Ident(n)) if n == "in") =>
            {
                self.i += 1;
                "not in"
            }
            _ => return Ok(left),
        };
        self.i += 1;
        let right = self.postfix()?;
        Ok(Expr::Cmp(op, Box::new(left), Box::new(right)))
    }

    fn postfix(&mut self) -> Result<Expr, TemplateError> {
        let mut e = self.primary()?;
        loop {
            if self.is_op(".") {
                self.i += 1;
                let name = match self.toks.get(self.i) {
                    Some(Tok::Ident(s)) => s.clone(),
                    Some(Tok::Int(n)) => n.to_string(),
                    _ => return Err(syntax(self.line, "expected an attribute after '.'")),
                };
                self.i += 1;
                e = Expr::Attr(Box::new(e), name);
            } else if self.is_op("[") {
                self.i += 1;
                let idx = self.or()?;
                self.expect_op("]")?;
                e = Expr::Index(Box::new(e), Box::new(idx));
            } else if self.is_op("(") {
                let Expr::Var(name) = e else {
                    return Err(syntax(self.line, "only named functions can be called"));
                };
                self.i += 1;
                let mut args = Vec::new();
                if !self.is_op(")") {
                    loop {
                        args.push(self.or()?);
                        if self.is_op(",") {
                            self.i += 1;
                        } else {
                            break;
                        }
                    }
                }
                self.expect_op(")")?;
                e = Expr::Call(name, args);
            } else if self.is_op("|") {
                self.i += 1;
                let name = self.ident()?;
                let arg = if self.is_op(":") {
                    self.i += 1;
                    Some(Box::new(self.primary()?))
                } else {
                    None
                };
                e = Expr::Filter(Box::new(e), name, arg);
            } else {
                return Ok(e);
            }
        }
    }

    fn primary(&mut self) -> Result<Expr, TemplateError> {
        let Some(t) = self.toks.get(self.i).cloned() else {
            return Err(syntax(self.line, "expression ends too early"));
        };
        self.i += 1;
        Ok(match t {
            Tok::Str(s) => Expr::Lit(Value::Str(s)),
            Tok::Int(n) => Expr::Lit(Value::Int(n)),
            Tok::Ident(w) => match w.as_str() {
                "true" | "True" => Expr::Lit(Value::Bool(true)),
                "false" | "False" => Expr::Lit(Value::Bool(false)),
                "nil" | "None" | "none" => Expr::Lit(Value::Null),
                _ => Expr::Var(w),
            },
            Tok::Op("(") => {
                let e = self.or()?;
                self.expect_op(")")?;
                e
            }
            Tok::Op(o) => return Err(syntax(self.line, format!("unexpected {o:?}"))),
        })
    }
}

// ---- evaluation ----------------------------------------------------------

type Scopes = Vec<BTreeMap<String, Value>>;

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

fn lookup(name: &str, ctx: &Context, scopes: &Scopes) -> Value {
    scopes
        .iter()
        .rev()
        .find_map(|s| s.get(name))
        .or_else(|| ctx.vars.get(name))
        .cloned()
        .unwrap_or(Value::Null)
}

fn member(v: Value, key: &Value) -> Value {
    match (v, key) {
        (Value::Map(mut m), k) => m.remove(&k.to_text()).unwrap_or(Value::Null),
        (Value::List(l), Value::Int(i)) => usize::try_from(*i)
            .ok()
            .and_then(|i| l.into_iter().nth(i))
            .unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

fn eval(e: &Expr, ctx: &Context, scopes: &Scopes) -> Result<Value, TemplateError> {
    Ok(match e {
        Expr::Lit(v) => v.clone(),
        Expr::Var(n) => lookup(n, ctx, scopes),
        Expr::Attr(base, name) => member(eval(base, ctx, scopes)?, &Value::Str(name.clone())),
        Expr::Index(base, idx) => {
            let idx = eval(idx, ctx, scopes)?;
            member(eval(base, ctx, scopes)?, &idx)
        }
        Expr::Call(name, args) => {
            let f = ctx
                .functions
                .get(name)
                .ok_or_else(|| TemplateError::Eval(format!("unknown function {name}()")))?;
            let args = args
                .iter()
                .map(|a| eval(a, ctx, scopes))
                .collect::<Result<Vec<_>, _>>()?;
            f(&args)
        }
        Expr::Filter(base, name, arg) => {
            let v = eval(base, ctx, scopes)?;
            match name.as_str() {
                "default" => match arg {
                    Some(a) if !v.truthy() => eval(a, ctx, scopes)?,
                    _ => v,
                },
                "lower" => Value::Str(v.to_text().to_lowercase()),
                "upper" => Value::Str(v.to_text().to_uppercase()),
                "trim" => Value::Str(v.to_text().trim().to_string()),
                "length" => Value::Int(match &v {
                    Value::List(l) => l.len(),
                    Value::Map(m) => m.len(),
                    other => other.to_text().chars().count(),
                } as i64),
                other => return Err(TemplateError::Eval(format!("unknown filter {other:?}"))),
            }
        }
        Expr::Not(x) => Value::Bool(!eval(x, ctx, scopes)?.truthy()),
        Expr::And(a, b) => {
            Value::Bool(eval(a, ctx, scopes)?.truthy() && eval(b, ctx, scopes)?.truthy())
        }
        Expr::Or(a, b) => {
            Value::Bool(eval(a, ctx, scopes)?.truthy() || eval(b, ctx, scopes)?.truthy())
        }
        Expr::Cmp(op, a, b) => {
            let (a, b) = (eval(a, ctx, scopes)?, eval(b, ctx, scopes)?);
            Value::Bool(compare(op, &a, &b))
        }
    })
}

fn compare(op: &str, a: &Value, b: &Value) -> bool {
    let ord = match (a, b) {
        (Value::Int(x), Value::Int(y)) => x.cmp(y),
        _ => a.to_text().cmp(&b.to_text()),
    };
    let equal = match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Null, _) | (_, Value::Null) => false,
        (Value::Str(_) | Value::Int(_) | Value::Bool(_), Value::Str(_) | Value::Int(_)) => {
            a.to_text() == b.to_text()
        }
        _ => a == b,
    };
    let contains = || match b {
        Value::Str(s) => s.contains(&a.to_text()),
        Value::List(l) => l.iter().any(|x| compare("==", a, x)),
        Value::Map(m) => m.contains_key(&a.to_text()),
        _ => false,
    };
    match op {
        "==" => equal,
        "!=" => !equal,
        "<" => ord.is_lt(),
        ">" => ord.is_gt(),
        "<=" => ord.is_le(),
        ">=" => ord.is_ge(),
        "in" => contains(),
        _ => !contains(),
    }
}

#[cfg(test)]
#[path = "template_tests.rs"]
mod tests;
