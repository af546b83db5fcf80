//! Expressions of the template language: tokens, parsing, evaluation.

use std::collections::BTreeMap;

use super::{syntax, Context, TemplateError, Value};

pub(super) type Scopes = Vec<BTreeMap<String, Value>>;

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
pub(super) enum Expr {
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

pub(super) fn parse_expr(src: &str, line: usize) -> Result<Expr, TemplateError> {
    let toks = tokenize(src, line)?;
    if toks.is_empty() {
        return Err(syntax(line, "empty expression"));
    }
    let mut p = ExprParser { toks, i: 0, line };
    let e = p.or()?;
    if p.i != p.toks.len() {
        return Err(syntax(
            line,
            format!("unexpected {:?} in {src:?}", p.toks[p.i]),
        ));
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

pub(super) fn eval(e: &Expr, ctx: &Context, scopes: &Scopes) -> Result<Value, TemplateError> {
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
