//! The one expression language of the engine: a safe subset of FEEL as Camunda 8 models use it
//! (`=amount > 100`), also accepting the JUEL spellings of Camunda 7 models (`${amount > 100}`,
//! `==`, `&&`, `||`, `!`).
//!
//! Expressions are parsed once at deploy time into an [`Expr`] tree and evaluated against the
//! variables of an instance. There is no way to call code: only the operators and the small
//! function library below. Evaluation never panics; errors come back as [`ExprError`], which the
//! engine turns into an incident.
//!
//! Supported: numbers, strings, `true`/`false`/`null`, variable names (letters including Chinese,
//! digits, `_`), paths `a.b`, indexes `a[1]` (FEEL lists are 1-based), lists `[1, 2]`, contexts
//! `{a: 1}`, `+ - * / %`, comparisons, `and`/`or`/`not(..)`, `between .. and ..`, `in [..]`,
//! `if .. then .. else ..`, and the functions `not`, `is defined`, `string length`, `contains`,
//! `starts with`, `ends with`, `upper case`, `lower case`, `string`, `number`, `count`, `sum`,
//! `min`, `max`, `abs`, `floor`, `ceiling`, `list contains`, `append`.

use serde_json::{Map, Number, Value};
use std::fmt;

/// Something that answers variable lookups (an instance's scopes).
pub trait Vars {
    fn get(&self, name: &str) -> Option<&Value>;
}

impl Vars for Map<String, Value> {
    fn get(&self, name: &str) -> Option<&Value> {
        Map::get(self, name)
    }
}

/// Why an expression could not be parsed or evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct ExprError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, ExprError> {
    Err(ExprError(msg.into()))
}

/// A parsed expression with its source text.
#[derive(Clone, PartialEq)]
pub struct Expr {
    source: String,
    node: Node,
}

impl fmt::Debug for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Expr({:?})", self.source)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Lit(Value),
    Var(String),
    Path(Box<Node>, String),
    Index(Box<Node>, Box<Node>),
    List(Vec<Node>),
    Context(Vec<(String, Node)>),
    Unary(UnOp, Box<Node>),
    Binary(BinOp, Box<Node>, Box<Node>),
    Between(Box<Node>, Box<Node>, Box<Node>),
    In(Box<Node>, Vec<Node>),
    If(Box<Node>, Box<Node>, Box<Node>),
    Call(String, Vec<Node>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum UnOp {
    Neg,
    Not,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum BinOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

impl Expr {
    /// Parses an expression. A leading `=` (FEEL in Camunda 8) or a `${..}` wrapper (JUEL in
    /// Camunda 7) is accepted and removed.
    pub fn parse(text: &str) -> Result<Expr, ExprError> {
        let inner = strip_wrapper(text);
        if inner.trim().is_empty() {
            return err("the expression is empty");
        }
        if inner.len() > 4096 {
            return err("the expression is longer than 4096 characters");
        }
        let tokens = lex(inner)?;
        let mut p = Parser { tokens, pos: 0, depth: 0 };
        let node = p.expr()?;
        if p.pos != p.tokens.len() {
            return err(format!("unexpected '{}' after the end of the expression", p.tokens[p.pos]));
        }
        Ok(Expr { source: text.trim().to_string(), node })
    }

    /// The text the expression was parsed from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates the expression against `vars`.
    pub fn eval(&self, vars: &dyn Vars) -> Result<Value, ExprError> {
        eval(&self.node, vars, 0)
    }

    /// Evaluates a condition: the result must be a boolean.
    pub fn eval_bool(&self, vars: &dyn Vars) -> Result<bool, ExprError> {
        match self.eval(vars)? {
            Value::Bool(b) => Ok(b),
            Value::Null => err(format!("condition '{}' evaluated to null (is a variable missing?)", self.source)),
            other => err(format!("condition '{}' evaluated to {} instead of true or false", self.source, kind(&other))),
        }
    }

    /// Evaluates to a string (numbers and booleans are formatted; null is an error).
    pub fn eval_string(&self, vars: &dyn Vars) -> Result<String, ExprError> {
        match self.eval(vars)? {
            Value::String(s) => Ok(s),
            Value::Null => err(format!("'{}' evaluated to null (is a variable missing?)", self.source)),
            v @ (Value::Number(_) | Value::Bool(_)) => Ok(v.to_string()),
            other => err(format!("'{}' evaluated to {} instead of a string", self.source, kind(&other))),
        }
    }

    /// True when `text` is an expression rather than a literal (`=..` or `${..}`).
    pub fn is_expression(text: &str) -> bool {
        let t = text.trim();
        t.starts_with('=') || (t.starts_with("${") && t.ends_with('}'))
    }
}

fn strip_wrapper(text: &str) -> &str {
    let t = text.trim();
    if let Some(rest) = t.strip_prefix('=') {
        return rest;
    }
    if t.starts_with("${") && t.ends_with('}') {
        return &t[2..t.len() - 1];
    }
    t
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a context",
    }
}

// ---------------------------------------------------------------------------------------------
// Lexer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Str(String),
    Name(String),
    Sym(&'static str),
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Num(n) => write!(f, "{n}"),
            Tok::Str(s) => write!(f, "\"{s}\""),
            Tok::Name(s) => f.write_str(s),
            Tok::Sym(s) => f.write_str(s),
        }
    }
}

const SYMBOLS: &[&str] = &[
    "==", "!=", "<=", ">=", "&&", "||", "=", "<", ">", "+", "-", "*", "/", "%", "(", ")", "[", "]", "{", "}", ",", ".",
    ":", "!",
];

fn lex(src: &str) -> Result<Vec<Tok>, ExprError> {
    let mut out = Vec::new();
    let chars: Vec<char> = src.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                // A '.' followed by a non-digit ends the number (path access on a literal is nonsense anyway).
                if chars[i] == '.' && !chars.get(i + 1).is_some_and(|c| c.is_ascii_digit()) {
                    break;
                }
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            let n: f64 = text.parse().map_err(|_| ExprError(format!("'{text}' is not a number")))?;
            out.push(Tok::Num(n));
            continue;
        }
        if c == '"' || c == '\'' {
            let quote = c;
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return err("a string is not closed"),
                    Some(&ch) if ch == quote => {
                        i += 1;
                        break;
                    }
                    Some('\\') => {
                        let esc =
                            chars.get(i + 1).copied().ok_or_else(|| ExprError("a string is not closed".into()))?;
                        s.push(match esc {
                            'n' => '\n',
                            't' => '\t',
                            other => other,
                        });
                        i += 2;
                    }
                    Some(&ch) => {
                        s.push(ch);
                        i += 1;
                    }
                }
            }
            out.push(Tok::Str(s));
            continue;
        }
        if c.is_alphabetic() || c == '_' || c == '$' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$') {
                i += 1;
            }
            out.push(Tok::Name(chars[start..i].iter().collect()));
            continue;
        }
        let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
        match SYMBOLS.iter().find(|s| rest.starts_with(**s)) {
            Some(sym) => {
                out.push(Tok::Sym(sym));
                i += sym.chars().count();
            }
            None => return err(format!("unexpected character '{c}'")),
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Parser (recursive descent with a depth limit, so hostile input cannot overflow the stack)

const MAX_DEPTH: usize = 64;
const KEYWORDS: &[&str] = &["and", "or", "not", "if", "then", "else", "between", "in", "true", "false", "null"];

struct Parser {
    tokens: Vec<Tok>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos)
    }

    fn peek_sym(&self, s: &str) -> bool {
        matches!(self.peek(), Some(Tok::Sym(x)) if *x == s)
    }

    fn peek_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Name(x)) if x == kw)
    }

    fn eat_sym(&mut self, s: &str) -> bool {
        if self.peek_sym(s) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        if self.peek_kw(kw) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_sym(&mut self, s: &str) -> Result<(), ExprError> {
        if self.eat_sym(s) {
            return Ok(());
        }
        match self.peek() {
            Some(t) => err(format!("expected '{s}' but found '{t}'")),
            None => err(format!("expected '{s}' but the expression ended")),
        }
    }

    fn expect_kw(&mut self, kw: &str) -> Result<(), ExprError> {
        if self.eat_kw(kw) { Ok(()) } else { err(format!("expected '{kw}'")) }
    }

    fn expr(&mut self) -> Result<Node, ExprError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return err("the expression is nested too deeply");
        }
        let node = if self.eat_kw("if") {
            let cond = self.expr()?;
            self.expect_kw("then")?;
            let then = self.expr()?;
            self.expect_kw("else")?;
            let other = self.expr()?;
            Node::If(Box::new(cond), Box::new(then), Box::new(other))
        } else {
            self.or()?
        };
        self.depth -= 1;
        Ok(node)
    }

    fn or(&mut self) -> Result<Node, ExprError> {
        let mut left = self.and()?;
        while self.eat_kw("or") || self.eat_sym("||") {
            let right = self.and()?;
            left = Node::Binary(BinOp::Or, Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Node, ExprError> {
        let mut left = self.comparison()?;
        while self.eat_kw("and") || self.eat_sym("&&") {
            let right = self.comparison()?;
            left = Node::Binary(BinOp::And, Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn comparison(&mut self) -> Result<Node, ExprError> {
        let left = self.additive()?;
        let op = match self.peek() {
            Some(Tok::Sym("=" | "==")) => BinOp::Eq,
            Some(Tok::Sym("!=")) => BinOp::Ne,
            Some(Tok::Sym("<")) => BinOp::Lt,
            Some(Tok::Sym("<=")) => BinOp::Le,
            Some(Tok::Sym(">")) => BinOp::Gt,
            Some(Tok::Sym(">=")) => BinOp::Ge,
            Some(Tok::Name(n)) if n == "between" => {
                self.pos += 1;
                let low = self.additive()?;
                self.expect_kw("and")?;
                let high = self.additive()?;
                return Ok(Node::Between(Box::new(left), Box::new(low), Box::new(high)));
            }
            Some(Tok::Name(n)) if n == "in" => {
                self.pos += 1;
                let items = if self.eat_sym("[") { self.list_items("]")? } else { vec![self.additive()?] };
                return Ok(Node::In(Box::new(left), items));
            }
            _ => return Ok(left),
        };
        self.pos += 1;
        let right = self.additive()?;
        Ok(Node::Binary(op, Box::new(left), Box::new(right)))
    }

    fn additive(&mut self) -> Result<Node, ExprError> {
        let mut left = self.multiplicative()?;
        loop {
            let op = if self.eat_sym("+") {
                BinOp::Add
            } else if self.eat_sym("-") {
                BinOp::Sub
            } else {
                return Ok(left);
            };
            let right = self.multiplicative()?;
            left = Node::Binary(op, Box::new(left), Box::new(right));
        }
    }

    fn multiplicative(&mut self) -> Result<Node, ExprError> {
        let mut left = self.unary()?;
        loop {
            let op = if self.eat_sym("*") {
                BinOp::Mul
            } else if self.eat_sym("/") {
                BinOp::Div
            } else if self.eat_sym("%") {
                BinOp::Rem
            } else {
                return Ok(left);
            };
            let right = self.unary()?;
            left = Node::Binary(op, Box::new(left), Box::new(right));
        }
    }

    fn unary(&mut self) -> Result<Node, ExprError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return err("the expression is nested too deeply");
        }
        let node = if self.eat_sym("-") {
            Node::Unary(UnOp::Neg, Box::new(self.unary()?))
        } else if self.eat_sym("!") {
            Node::Unary(UnOp::Not, Box::new(self.unary()?))
        } else {
            self.postfix()?
        };
        self.depth -= 1;
        Ok(node)
    }

    fn postfix(&mut self) -> Result<Node, ExprError> {
        let mut node = self.primary()?;
        loop {
            if self.eat_sym(".") {
                match self.peek().cloned() {
                    Some(Tok::Name(n)) => {
                        self.pos += 1;
                        node = Node::Path(Box::new(node), n);
                    }
                    _ => return err("expected a name after '.'"),
                }
            } else if self.eat_sym("[") {
                let idx = self.expr()?;
                self.expect_sym("]")?;
                node = Node::Index(Box::new(node), Box::new(idx));
            } else {
                return Ok(node);
            }
        }
    }

    fn list_items(&mut self, close: &str) -> Result<Vec<Node>, ExprError> {
        let mut items = Vec::new();
        if self.eat_sym(close) {
            return Ok(items);
        }
        loop {
            items.push(self.expr()?);
            if self.eat_sym(close) {
                return Ok(items);
            }
            self.expect_sym(",")?;
        }
    }

    fn primary(&mut self) -> Result<Node, ExprError> {
        let Some(tok) = self.peek().cloned() else { return err("the expression ended too early") };
        self.pos += 1;
        match tok {
            Tok::Num(n) => Ok(Node::Lit(number(n))),
            Tok::Str(s) => Ok(Node::Lit(Value::String(s))),
            Tok::Sym("(") => {
                let e = self.expr()?;
                self.expect_sym(")")?;
                Ok(e)
            }
            Tok::Sym("[") => Ok(Node::List(self.list_items("]")?)),
            Tok::Sym("{") => {
                let mut entries = Vec::new();
                if self.eat_sym("}") {
                    return Ok(Node::Context(entries));
                }
                loop {
                    let key = match self.peek().cloned() {
                        Some(Tok::Name(n)) | Some(Tok::Str(n)) => n,
                        _ => return err("expected a key in the context"),
                    };
                    self.pos += 1;
                    self.expect_sym(":")?;
                    entries.push((key, self.expr()?));
                    if self.eat_sym("}") {
                        return Ok(Node::Context(entries));
                    }
                    self.expect_sym(",")?;
                }
            }
            Tok::Name(n) => self.name(n),
            Tok::Sym(s) => err(format!("unexpected '{s}'")),
        }
    }

    fn name(&mut self, first: String) -> Result<Node, ExprError> {
        match first.as_str() {
            "true" => return Ok(Node::Lit(Value::Bool(true))),
            "false" => return Ok(Node::Lit(Value::Bool(false))),
            "null" => return Ok(Node::Lit(Value::Null)),
            "not" if self.peek_sym("(") => {
                self.pos += 1;
                let args = self.list_items(")")?;
                return Ok(Node::Call("not".into(), args));
            }
            _ => {}
        }
        if KEYWORDS.contains(&first.as_str()) {
            return err(format!("unexpected '{first}'"));
        }
        // FEEL function names may contain spaces ("string length"): join names up to a '('.
        let mut look = self.pos;
        let mut words = vec![first.clone()];
        while let Some(Tok::Name(w)) = self.tokens.get(look) {
            if KEYWORDS.contains(&w.as_str()) {
                break;
            }
            words.push(w.clone());
            look += 1;
        }
        if matches!(self.tokens.get(look), Some(Tok::Sym("("))) {
            self.pos = look + 1;
            let name = words.join(" ");
            let args = self.list_items(")")?;
            if !FUNCTIONS.contains(&name.as_str()) {
                return err(format!("unknown function '{name}'"));
            }
            return Ok(Node::Call(name, args));
        }
        Ok(Node::Var(first))
    }
}

const FUNCTIONS: &[&str] = &[
    "not",
    "is defined",
    "string length",
    "contains",
    "starts with",
    "ends with",
    "upper case",
    "lower case",
    "string",
    "number",
    "count",
    "sum",
    "min",
    "max",
    "abs",
    "floor",
    "ceiling",
    "list contains",
    "append",
];

// ---------------------------------------------------------------------------------------------
// Evaluation

fn number(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        Value::Number(Number::from(n as i64))
    } else {
        Number::from_f64(n).map(Value::Number).unwrap_or(Value::Null)
    }
}

fn as_f64(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn eval(node: &Node, vars: &dyn Vars, depth: usize) -> Result<Value, ExprError> {
    if depth > MAX_DEPTH * 2 {
        return err("the expression is nested too deeply");
    }
    let ev = |n: &Node| eval(n, vars, depth + 1);
    Ok(match node {
        Node::Lit(v) => v.clone(),
        Node::Var(name) => vars.get(name).cloned().unwrap_or(Value::Null),
        Node::Path(base, key) => match ev(base)? {
            Value::Object(map) => map.get(key).cloned().unwrap_or(Value::Null),
            Value::Array(items) => {
                Value::Array(items.iter().map(|i| i.get(key).cloned().unwrap_or(Value::Null)).collect())
            }
            _ => Value::Null,
        },
        Node::Index(base, idx) => {
            let base = ev(base)?;
            let idx = ev(idx)?;
            match (&base, idx.as_i64()) {
                (Value::Array(items), Some(i)) if i > 0 => items.get(i as usize - 1).cloned().unwrap_or(Value::Null),
                (Value::Array(items), Some(i)) if i < 0 => {
                    let k = items.len() as i64 + i;
                    if k >= 0 { items[k as usize].clone() } else { Value::Null }
                }
                _ => Value::Null,
            }
        }
        Node::List(items) => Value::Array(items.iter().map(ev).collect::<Result<_, _>>()?),
        Node::Context(entries) => {
            let mut m = Map::new();
            for (k, v) in entries {
                m.insert(k.clone(), ev(v)?);
            }
            Value::Object(m)
        }
        Node::Unary(UnOp::Neg, e) => match ev(e)? {
            Value::Null => Value::Null,
            v => match as_f64(&v) {
                Some(n) => number(-n),
                None => return err(format!("cannot negate {}", kind(&v))),
            },
        },
        Node::Unary(UnOp::Not, e) => match ev(e)? {
            Value::Bool(b) => Value::Bool(!b),
            _ => Value::Null,
        },
        Node::Binary(BinOp::And, a, b) => match ev(a)? {
            Value::Bool(false) => Value::Bool(false),
            Value::Bool(true) => match ev(b)? {
                Value::Bool(x) => Value::Bool(x),
                _ => Value::Null,
            },
            _ => match ev(b)? {
                Value::Bool(false) => Value::Bool(false),
                _ => Value::Null,
            },
        },
        Node::Binary(BinOp::Or, a, b) => match ev(a)? {
            Value::Bool(true) => Value::Bool(true),
            Value::Bool(false) => match ev(b)? {
                Value::Bool(x) => Value::Bool(x),
                _ => Value::Null,
            },
            _ => match ev(b)? {
                Value::Bool(true) => Value::Bool(true),
                _ => Value::Null,
            },
        },
        Node::Binary(op, a, b) => binary(*op, ev(a)?, ev(b)?)?,
        Node::Between(x, lo, hi) => {
            let x = ev(x)?;
            let ge = binary(BinOp::Ge, x.clone(), ev(lo)?)?;
            let le = binary(BinOp::Le, x, ev(hi)?)?;
            match (ge, le) {
                (Value::Bool(a), Value::Bool(b)) => Value::Bool(a && b),
                _ => Value::Null,
            }
        }
        Node::In(x, items) => {
            let x = ev(x)?;
            let mut found = false;
            for item in items {
                match ev(item)? {
                    Value::Array(list) => found |= list.iter().any(|v| loose_eq(&x, v)),
                    v => found |= loose_eq(&x, &v),
                }
            }
            Value::Bool(found)
        }
        Node::If(c, t, e) => match ev(c)? {
            Value::Bool(true) => ev(t)?,
            _ => ev(e)?,
        },
        Node::Call(name, args) => {
            if name == "is defined" {
                return Ok(match args.first() {
                    Some(Node::Var(v)) => Value::Bool(vars.get(v).is_some()),
                    Some(other) => Value::Bool(!ev(other)?.is_null()),
                    None => return err("is defined() needs one argument"),
                });
            }
            let vals = args.iter().map(ev).collect::<Result<Vec<_>, _>>()?;
            call(name, vals)?
        }
    })
}

fn loose_eq(a: &Value, b: &Value) -> bool {
    match (as_f64(a), as_f64(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn binary(op: BinOp, a: Value, b: Value) -> Result<Value, ExprError> {
    use std::cmp::Ordering;
    if matches!(op, BinOp::Eq | BinOp::Ne) {
        let eq = loose_eq(&a, &b);
        return Ok(Value::Bool(if op == BinOp::Eq { eq } else { !eq }));
    }
    if a.is_null() || b.is_null() {
        return Ok(Value::Null);
    }
    if matches!(op, BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge) {
        let ord = match (&a, &b) {
            (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
            _ => match (as_f64(&a), as_f64(&b)) {
                (Some(x), Some(y)) => x.partial_cmp(&y),
                _ => None,
            },
        };
        let Some(ord) = ord else {
            return err(format!("cannot compare {} with {}", kind(&a), kind(&b)));
        };
        return Ok(Value::Bool(match op {
            BinOp::Lt => ord == Ordering::Less,
            BinOp::Le => ord != Ordering::Greater,
            BinOp::Gt => ord == Ordering::Greater,
            _ => ord != Ordering::Less,
        }));
    }
    if op == BinOp::Add
        && let (Value::String(x), Value::String(y)) = (&a, &b)
    {
        return Ok(Value::String(format!("{x}{y}")));
    }
    let (Some(x), Some(y)) = (as_f64(&a), as_f64(&b)) else {
        return err(format!("cannot do arithmetic on {} and {}", kind(&a), kind(&b)));
    };
    Ok(match op {
        BinOp::Add => number(x + y),
        BinOp::Sub => number(x - y),
        BinOp::Mul => number(x * y),
        BinOp::Div if y == 0.0 => Value::Null,
        BinOp::Div => number(x / y),
        BinOp::Rem if y == 0.0 => Value::Null,
        BinOp::Rem => number(x % y),
        _ => Value::Null,
    })
}

fn call(name: &str, args: Vec<Value>) -> Result<Value, ExprError> {
    let arg = |i: usize| args.get(i).cloned().unwrap_or(Value::Null);
    let want = |n: usize| {
        if args.len() == n { Ok(()) } else { err(format!("{name}() takes {n} argument(s), got {}", args.len())) }
    };
    let s = |v: &Value| v.as_str().map(str::to_string);
    let list = |v: &Value| match v {
        Value::Array(a) => Some(a.clone()),
        _ => None,
    };
    Ok(match name {
        "not" => {
            want(1)?;
            match arg(0) {
                Value::Bool(b) => Value::Bool(!b),
                _ => Value::Null,
            }
        }
        "string length" => {
            want(1)?;
            s(&arg(0)).map(|x| Value::from(x.chars().count())).unwrap_or(Value::Null)
        }
        "contains" | "starts with" | "ends with" => {
            want(2)?;
            match (s(&arg(0)), s(&arg(1))) {
                (Some(a), Some(b)) => Value::Bool(match name {
                    "contains" => a.contains(&b),
                    "starts with" => a.starts_with(&b),
                    _ => a.ends_with(&b),
                }),
                _ => Value::Null,
            }
        }
        "upper case" | "lower case" => {
            want(1)?;
            s(&arg(0))
                .map(|x| Value::String(if name == "upper case" { x.to_uppercase() } else { x.to_lowercase() }))
                .unwrap_or(Value::Null)
        }
        "string" => {
            want(1)?;
            match arg(0) {
                Value::Null => Value::Null,
                Value::String(x) => Value::String(x),
                other => Value::String(other.to_string()),
            }
        }
        "number" => {
            want(1)?;
            match arg(0) {
                Value::Number(n) => Value::Number(n),
                Value::String(x) => x.trim().parse::<f64>().map(number).unwrap_or(Value::Null),
                _ => Value::Null,
            }
        }
        "count" => {
            want(1)?;
            list(&arg(0)).map(|l| Value::from(l.len())).unwrap_or(Value::Null)
        }
        "sum" | "min" | "max" => {
            let items = if args.len() == 1 { list(&arg(0)).unwrap_or_default() } else { args.clone() };
            let nums: Option<Vec<f64>> = items.iter().map(as_f64).collect();
            match nums {
                Some(n) if name == "sum" => number(n.iter().sum()),
                Some(n) if !n.is_empty() && name == "min" => number(n.iter().copied().fold(f64::INFINITY, f64::min)),
                Some(n) if !n.is_empty() => number(n.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
                _ => Value::Null,
            }
        }
        "abs" | "floor" | "ceiling" => {
            want(1)?;
            as_f64(&arg(0))
                .map(|n| {
                    number(match name {
                        "abs" => n.abs(),
                        "floor" => n.floor(),
                        _ => n.ceil(),
                    })
                })
                .unwrap_or(Value::Null)
        }
        "list contains" => {
            want(2)?;
            list(&arg(0)).map(|l| Value::Bool(l.iter().any(|v| loose_eq(v, &arg(1))))).unwrap_or(Value::Null)
        }
        "append" => {
            let mut l = list(&arg(0)).ok_or_else(|| ExprError("append() needs a list first".into()))?;
            l.extend(args.into_iter().skip(1));
            Value::Array(l)
        }
        other => return err(format!("unknown function '{other}'")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(src: &str, vars: Value) -> Result<Value, ExprError> {
        let map = vars.as_object().cloned().unwrap_or_default();
        Expr::parse(src)?.eval(&map)
    }

    #[test]
    fn feel_and_juel_conditions_agree() {
        let vars = json!({"amount": 150, "level": "urgent", "金额": 20});
        for src in [
            "=amount > 100",
            "${amount > 100}",
            "amount >= 101 and level = \"urgent\"",
            "${amount > 100 && level == 'urgent'}",
        ] {
            assert_eq!(run(src, vars.clone()).unwrap(), json!(true), "{src}");
        }
        assert_eq!(run("=金额 < 100", vars.clone()).unwrap(), json!(true));
        assert_eq!(run("not(amount > 100) or !(level = \"urgent\")", vars).unwrap(), json!(false));
    }

    #[test]
    fn arithmetic_paths_lists_and_functions() {
        let vars = json!({"a": 7, "b": 2, "order": {"items": [{"qty": 2}, {"qty": 3}]}, "names": ["李", "王"]});
        assert_eq!(run("a * b + 1", vars.clone()).unwrap(), json!(15));
        assert_eq!(run("a / b", vars.clone()).unwrap(), json!(3.5));
        assert_eq!(run("sum(order.items.qty)", vars.clone()).unwrap(), json!(5));
        assert_eq!(run("order.items[2].qty", vars.clone()).unwrap(), json!(3));
        assert_eq!(run("count(names)", vars.clone()).unwrap(), json!(2));
        assert_eq!(run("string length(\"网格员\")", vars.clone()).unwrap(), json!(3));
        assert_eq!(run("a between 1 and 10", vars.clone()).unwrap(), json!(true));
        assert_eq!(run("\"王\" in names", vars.clone()).unwrap(), json!(true));
        assert_eq!(run("b in [1, 3]", vars.clone()).unwrap(), json!(false));
        assert_eq!(run("if a > 5 then \"high\" else \"low\"", vars.clone()).unwrap(), json!("high"));
        assert_eq!(run("{x: a, y: [b]}", vars.clone()).unwrap(), json!({"x": 7, "y": [2]}));
        assert_eq!(run("is defined(missing)", vars.clone()).unwrap(), json!(false));
        assert_eq!(run("upper case(\"ab\") + \"c\"", vars).unwrap(), json!("ABc"));
    }

    #[test]
    fn missing_variables_are_null_and_conditions_say_so() {
        let e = Expr::parse("=amount > 100").unwrap();
        let err = e.eval_bool(&Map::new()).unwrap_err();
        assert!(err.0.contains("null"), "{err}");
        let e = Expr::parse("=\"x\" < 3").unwrap();
        assert!(e.eval(&Map::new()).unwrap_err().0.contains("cannot compare"));
    }

    #[test]
    fn bad_syntax_is_refused_with_a_message() {
        for (src, want) in [
            ("", "empty"),
            ("=a >", "ended"),
            ("=(a", "expected ')'"),
            ("=a # b", "unexpected character"),
            ("=launch missiles(1)", "unknown function"),
            ("=\"open", "not closed"),
            ("=a b", "unexpected 'b'"),
        ] {
            let e = Expr::parse(src).unwrap_err();
            assert!(e.0.contains(want), "{src}: {e}");
        }
    }

    #[test]
    fn hostile_nesting_is_refused_not_overflowed() {
        let deep = format!("={}1{}", "(".repeat(5000), ")".repeat(5000));
        assert!(Expr::parse(&deep).is_err());
        let neg = format!("={}1", "-".repeat(5000));
        assert!(Expr::parse(&neg).is_err());
    }
}
