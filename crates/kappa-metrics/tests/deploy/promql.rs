//! Enough PromQL to know which labels each part of a query has: a lexer, a syntax tree and a
//! precedence-climbing parser. Ranges, subqueries, `offset` and `@` are read and dropped (they
//! change no label); Grafana's `$variables` read as numbers, and inside strings or `[...]` as
//! written.

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// A number, a duration after `offset`, or a Grafana `$variable` standing for one.
    Num,
    Str(String),
    /// The inside of `[...]`: a range or a subquery.
    Range,
    LParen,
    RParen,
    LBrace,
    RBrace,
    Comma,
    Op(&'static str),
}

const OPS: [&str; 16] = [
    "==", "!=", ">=", "<=", "=~", "!~", ">", "<", "=", "+", "-", "*", "/", "%", "^", "@",
];

fn lex(text: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    while i < chars.len() {
        let c = chars[i];
        match c {
            _ if c.is_whitespace() => i += 1,
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '(' | ')' | '{' | '}' | ',' => {
                tokens.push(match c {
                    '(' => Tok::LParen,
                    ')' => Tok::RParen,
                    '{' => Tok::LBrace,
                    '}' => Tok::RBrace,
                    _ => Tok::Comma,
                });
                i += 1;
            }
            '[' => {
                let end = chars[i..]
                    .iter()
                    .position(|&c| c == ']')
                    .ok_or("unclosed [")?;
                tokens.push(Tok::Range);
                i += end + 1;
            }
            '"' | '\'' | '`' => {
                let quote = c;
                let mut value = String::new();
                i += 1;
                loop {
                    let c = *chars.get(i).ok_or("unclosed string")?;
                    i += 1;
                    if c == quote {
                        break;
                    }
                    if c == '\\' && quote != '`' {
                        value.push(*chars.get(i).ok_or("unclosed string")?);
                        i += 1;
                    } else {
                        value.push(c);
                    }
                }
                tokens.push(Tok::Str(value));
            }
            '$' => {
                i += 1;
                while i < chars.len() && word(chars[i]) {
                    i += 1;
                }
                tokens.push(Tok::Num);
            }
            _ if c.is_ascii_digit()
                || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
                tokens.push(Tok::Num);
            }
            _ if word(c) => {
                let start = i;
                while i < chars.len() && word(chars[i]) {
                    i += 1;
                }
                tokens.push(Tok::Ident(chars[start..i].iter().collect()));
            }
            _ => {
                let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
                let op = OPS
                    .iter()
                    .find(|op| rest.starts_with(**op))
                    .ok_or_else(|| format!("unexpected {c:?}"))?;
                tokens.push(Tok::Op(op));
                i += op.len();
            }
        }
    }
    Ok(tokens)
}

#[derive(Debug, Clone)]
pub(crate) struct Matcher {
    pub(crate) label: String,
    pub(crate) op: &'static str,
    pub(crate) value: String,
}

#[derive(Debug, Clone)]
pub(crate) enum Grouping {
    By(Vec<String>),
    Without(Vec<String>),
}

#[derive(Debug, Clone)]
pub(crate) enum Matching {
    On(Vec<String>),
    Ignoring(Vec<String>),
}

#[derive(Debug, Clone)]
pub(crate) enum Expr {
    Num,
    Str(String),
    Selector {
        name: String,
        matchers: Vec<Matcher>,
    },
    Call {
        func: String,
        args: Vec<Expr>,
    },
    Aggregate {
        op: String,
        grouping: Option<Grouping>,
        args: Vec<Expr>,
    },
    Binary {
        op: String,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
        returns_bool: bool,
        matching: Option<Matching>,
        /// `group_left(...)` (true) or `group_right(...)` and the labels they copy.
        group: Option<(bool, Vec<String>)>,
    },
    Negative(Box<Expr>),
}

const AGGREGATIONS: [&str; 14] = [
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

pub(crate) const COMPARISONS: [&str; 6] = ["==", "!=", ">", "<", ">=", "<="];

/// Precedence of a binary operator (higher binds tighter); `^` is right-associative.
fn precedence(tok: &Tok) -> Option<(u8, String)> {
    let op = match tok {
        Tok::Op(op) => (*op).to_string(),
        Tok::Ident(word) if ["and", "or", "unless", "atan2"].contains(&word.as_str()) => {
            word.clone()
        }
        _ => return None,
    };
    let level = match op.as_str() {
        "or" => 1,
        "and" | "unless" => 2,
        "==" | "!=" | ">" | "<" | ">=" | "<=" => 3,
        "+" | "-" => 4,
        "*" | "/" | "%" | "atan2" => 5,
        "^" => 6,
        _ => return None,
    };
    Some((level, op))
}

pub(crate) struct Parser {
    tokens: Vec<Tok>,
    at: usize,
}

impl Parser {
    pub(crate) fn parse(text: &str) -> Result<Expr, String> {
        let mut parser = Parser {
            tokens: lex(text)?,
            at: 0,
        };
        let expr = parser.expr(0)?;
        match parser.peek() {
            None => Ok(expr),
            Some(tok) => Err(format!("unexpected {tok:?} after the expression")),
        }
    }

    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Result<Tok, String> {
        let tok = self.tokens.get(self.at).cloned().ok_or("unexpected end")?;
        self.at += 1;
        Ok(tok)
    }

    fn expect(&mut self, want: &Tok) -> Result<(), String> {
        match self.next()? {
            tok if &tok == want => Ok(()),
            tok => Err(format!("expected {want:?}, found {tok:?}")),
        }
    }

    fn is_ident(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(w)) if w == word)
    }

    fn expr(&mut self, min: u8) -> Result<Expr, String> {
        let mut lhs = self.unary()?;
        while let Some((level, op)) = self.peek().and_then(precedence) {
            if level < min {
                break;
            }
            self.at += 1;
            let returns_bool = self.is_ident("bool");
            if returns_bool {
                self.at += 1;
            }
            let matching = if self.is_ident("on") {
                self.at += 1;
                Some(Matching::On(self.label_list()?))
            } else if self.is_ident("ignoring") {
                self.at += 1;
                Some(Matching::Ignoring(self.label_list()?))
            } else {
                None
            };
            let group = if self.is_ident("group_left") || self.is_ident("group_right") {
                let left = self.is_ident("group_left");
                self.at += 1;
                let labels = if self.peek() == Some(&Tok::LParen) {
                    self.label_list()?
                } else {
                    Vec::new()
                };
                Some((left, labels))
            } else {
                None
            };
            let rhs = self.expr(if op == "^" { level } else { level + 1 })?;
            lhs = Expr::Binary {
                op,
                lhs: Box::new(lhs),
                rhs: Box::new(rhs),
                returns_bool,
                matching,
                group,
            };
        }
        Ok(lhs)
    }

    fn unary(&mut self) -> Result<Expr, String> {
        match self.peek() {
            Some(Tok::Op("-")) => {
                self.at += 1;
                Ok(Expr::Negative(Box::new(self.expr(6)?)))
            }
            Some(Tok::Op("+")) => {
                self.at += 1;
                self.expr(6)
            }
            _ => {
                let primary = self.primary()?;
                self.postfix()?;
                Ok(primary)
            }
        }
    }

    /// Ranges, subqueries, `offset` and `@` change no label.
    fn postfix(&mut self) -> Result<(), String> {
        loop {
            match self.peek() {
                Some(Tok::Range) => self.at += 1,
                Some(Tok::Ident(w)) if w == "offset" => {
                    self.at += 1;
                    if self.peek() == Some(&Tok::Op("-")) {
                        self.at += 1;
                    }
                    self.expect(&Tok::Num)?;
                }
                Some(Tok::Op("@")) => {
                    self.at += 1;
                    match self.next()? {
                        Tok::Num => {}
                        Tok::Ident(_) => {
                            self.expect(&Tok::LParen)?;
                            self.expect(&Tok::RParen)?;
                        }
                        tok => return Err(format!("unexpected {tok:?} after @")),
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    fn primary(&mut self) -> Result<Expr, String> {
        match self.next()? {
            Tok::LParen => {
                let expr = self.expr(0)?;
                self.expect(&Tok::RParen)?;
                Ok(expr)
            }
            Tok::Num => Ok(Expr::Num),
            Tok::Str(s) => Ok(Expr::Str(s)),
            Tok::LBrace => {
                let matchers = self.matchers()?;
                let name = matchers
                    .iter()
                    .find(|m| m.label == "__name__" && m.op == "=")
                    .map(|m| m.value.clone())
                    .ok_or("a selector without a metric name")?;
                Ok(Expr::Selector { name, matchers })
            }
            Tok::Ident(word) if ["Inf", "NaN", "inf", "nan"].contains(&word.as_str()) => {
                Ok(Expr::Num)
            }
            Tok::Ident(word)
                if AGGREGATIONS.contains(&word.as_str())
                    && (self.peek() == Some(&Tok::LParen)
                        || self.is_ident("by")
                        || self.is_ident("without")) =>
            {
                let mut grouping = self.grouping()?;
                let args = self.args()?;
                if grouping.is_none() {
                    grouping = self.grouping()?;
                }
                Ok(Expr::Aggregate {
                    op: word,
                    grouping,
                    args,
                })
            }
            Tok::Ident(word) if self.peek() == Some(&Tok::LParen) => Ok(Expr::Call {
                func: word,
                args: self.args()?,
            }),
            Tok::Ident(name) => {
                let matchers = if self.peek() == Some(&Tok::LBrace) {
                    self.at += 1;
                    self.matchers()?
                } else {
                    Vec::new()
                };
                Ok(Expr::Selector { name, matchers })
            }
            tok => Err(format!("unexpected {tok:?}")),
        }
    }

    fn grouping(&mut self) -> Result<Option<Grouping>, String> {
        if self.is_ident("by") {
            self.at += 1;
            Ok(Some(Grouping::By(self.label_list()?)))
        } else if self.is_ident("without") {
            self.at += 1;
            Ok(Some(Grouping::Without(self.label_list()?)))
        } else {
            Ok(None)
        }
    }

    fn args(&mut self) -> Result<Vec<Expr>, String> {
        self.expect(&Tok::LParen)?;
        let mut args = Vec::new();
        while self.peek() != Some(&Tok::RParen) {
            args.push(self.expr(0)?);
            if self.peek() == Some(&Tok::Comma) {
                self.at += 1;
            }
        }
        self.at += 1;
        Ok(args)
    }

    fn label_list(&mut self) -> Result<Vec<String>, String> {
        self.expect(&Tok::LParen)?;
        let mut labels = Vec::new();
        loop {
            match self.next()? {
                Tok::RParen => return Ok(labels),
                Tok::Comma => {}
                Tok::Ident(label) | Tok::Str(label) => labels.push(label),
                tok => return Err(format!("unexpected {tok:?} in a label list")),
            }
        }
    }

    /// After `{`: `label op "value"`, comma-separated, up to `}`.
    fn matchers(&mut self) -> Result<Vec<Matcher>, String> {
        let mut matchers = Vec::new();
        loop {
            let label = match self.next()? {
                Tok::RBrace => return Ok(matchers),
                Tok::Comma => continue,
                Tok::Ident(label) | Tok::Str(label) => label,
                tok => return Err(format!("unexpected {tok:?} in a selector")),
            };
            let op = match self.next()? {
                Tok::Op(op @ ("=" | "!=" | "=~" | "!~")) => op,
                tok => return Err(format!("expected a matcher after {label}, found {tok:?}")),
            };
            let value = match self.next()? {
                Tok::Str(value) => value,
                tok => {
                    return Err(format!(
                        "expected a string after {label}{op}, found {tok:?}"
                    ));
                }
            };
            matchers.push(Matcher { label, op, value });
        }
    }
}
