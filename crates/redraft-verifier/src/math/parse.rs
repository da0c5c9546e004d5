//! A small LaTeX-math parser: tokens to an [`Expr`] tree.
//!
//! It covers what final answers use: numbers, symbols (with subscripts), `+ - \pm \cdot \times /
//! \div :`, implicit products, powers, `\frac`, `\sqrt[n]{}`, `\binom`, functions (`\sin^2 x`,
//! `\ln`, `f(x)`), `|x|`, factorials, constants (`\pi`, `e`, `\infty`), tuples, intervals, sets,
//! unions, relation chains (`=`, `<`, `\le`, `\ne`, `\approx`, `\in`), lists, and matrices.
//! Every recursion goes through [`Budget::enter`], so depth and work are capped.

use num_bigint::BigInt;
use num_rational::BigRational;
use num_traits::{One, Zero};

use crate::budget::{Budget, Limit};

/// The largest number of digits in one numeric literal.
pub const MAX_LITERAL_DIGITS: usize = 400;

/// A relation operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelOp {
    /// `=`
    Eq,
    /// `\ne`, `!=`
    Ne,
    /// `<`
    Lt,
    /// `\le`, `<=`
    Le,
    /// `>`
    Gt,
    /// `\ge`, `>=`
    Ge,
    /// `\approx`
    Approx,
    /// `\in`
    In,
}

/// A mathematical constant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Constant {
    /// π
    Pi,
    /// Euler's number.
    E,
    /// ∞
    Infinity,
}

/// A parsed math answer.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// A numeric literal, exactly; `decimals` is the number of digits after the point, if any.
    Num {
        /// The exact value of the literal.
        value: BigRational,
        /// Digits after the decimal point in the literal (`None` for integers).
        decimals: Option<u32>,
    },
    /// A constant.
    Const(Constant),
    /// A symbol such as `x`, `a_3`, `\alpha`.
    Sym(String),
    /// A sum.
    Add(Vec<Expr>),
    /// Negation.
    Neg(Box<Expr>),
    /// A product.
    Mul(Vec<Expr>),
    /// A quotient.
    Div(Box<Expr>, Box<Expr>),
    /// A power.
    Pow(Box<Expr>, Box<Expr>),
    /// A function application: built-ins (`sin`, `sqrt`, `root`, `abs`, `ln`, `log`, `exp`,
    /// `factorial`, `binom`, ...) or an unknown function (`f`).
    Func(String, Vec<Expr>),
    /// `a \pm b`.
    PlusMinus(Box<Expr>, Box<Expr>),
    /// A bracketed or bare sequence: tuples `(a, b)`, intervals `[a, b)`, sets `\{a, b\}`
    /// (`open` = `{`), bare lists `a, b` (`open` = `close` = ' ').
    Seq {
        /// Opening delimiter.
        open: char,
        /// Closing delimiter.
        close: char,
        /// The elements.
        items: Vec<Expr>,
    },
    /// A union of sets or intervals.
    Union(Vec<Expr>),
    /// A relation chain `t0 op0 t1 op1 t2 ...`.
    Rel {
        /// The operators, one fewer than the terms.
        ops: Vec<RelOp>,
        /// The terms.
        terms: Vec<Expr>,
    },
    /// A matrix, row by row.
    Matrix(Vec<Vec<Expr>>),
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Num(String),
    Letter(char),
    Cmd(String),
    Punct(char),
    Rel(RelOp),
}

/// Why an answer could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// The text is not an expression this parser understands.
    Syntax(String),
    /// A budget limit was hit.
    Limit(Limit),
}

impl From<Limit> for ParseError {
    fn from(l: Limit) -> Self {
        ParseError::Limit(l)
    }
}

fn tokenize(s: &str, budget: &mut Budget) -> Result<Vec<Tok>, ParseError> {
    let chars: Vec<char> = s.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        budget.step()?;
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            if i + 1 < chars.len() && chars[i] == '.' && chars[i + 1].is_ascii_digit() {
                i += 1;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
            } else if i < chars.len() && chars[i] == '.' && (i + 1 == chars.len()) {
                i += 1;
            }
            // Scientific notation: `1.5e-3`, `2E6` (at most three exponent digits).
            if i + 1 < chars.len() && matches!(chars[i], 'e' | 'E') {
                let sign = usize::from(matches!(chars[i + 1], '+' | '-'));
                let first = i + 1 + sign;
                let mut end = first;
                while end < chars.len() && chars[end].is_ascii_digit() {
                    end += 1;
                }
                if end > first
                    && end - first <= 3
                    && !chars.get(end).is_some_and(|c| c.is_alphabetic())
                {
                    i = end;
                }
            }
            let lit: String = chars[start..i].iter().collect();
            if lit.len() > MAX_LITERAL_DIGITS {
                return Err(ParseError::Limit(Limit::TooLarge));
            }
            toks.push(Tok::Num(lit));
        } else if c == '\\' {
            let start = i + 1;
            let mut j = start;
            while j < chars.len() && chars[j].is_ascii_alphabetic() {
                j += 1;
            }
            if j == start {
                // A one-character command: `\{`, `\}`, `\\`, `\|`.
                let name: String = chars.get(start).map(|c| c.to_string()).unwrap_or_default();
                toks.push(Tok::Cmd(name));
                i = start + 1;
            } else {
                let name: String = chars[start..j].iter().collect();
                i = j;
                match name.as_str() {
                    "le" | "leq" | "leqslant" => toks.push(Tok::Rel(RelOp::Le)),
                    "ge" | "geq" | "geqslant" => toks.push(Tok::Rel(RelOp::Ge)),
                    "lt" => toks.push(Tok::Rel(RelOp::Lt)),
                    "gt" => toks.push(Tok::Rel(RelOp::Gt)),
                    "ne" | "neq" => toks.push(Tok::Rel(RelOp::Ne)),
                    "approx" | "simeq" | "sim" | "cong" => toks.push(Tok::Rel(RelOp::Approx)),
                    "in" => toks.push(Tok::Rel(RelOp::In)),
                    _ => toks.push(Tok::Cmd(name)),
                }
            }
        } else if c.is_alphabetic() {
            toks.push(Tok::Letter(c));
            i += 1;
        } else {
            let next = chars.get(i + 1).copied();
            let two = match (c, next) {
                ('<', Some('=')) => Some(RelOp::Le),
                ('>', Some('=')) => Some(RelOp::Ge),
                ('!', Some('=')) => Some(RelOp::Ne),
                ('=', Some('=')) => Some(RelOp::Eq),
                _ => None,
            };
            if let Some(op) = two {
                toks.push(Tok::Rel(op));
                i += 2;
                continue;
            }
            match c {
                '=' => toks.push(Tok::Rel(RelOp::Eq)),
                '<' => toks.push(Tok::Rel(RelOp::Lt)),
                '>' => toks.push(Tok::Rel(RelOp::Gt)),
                _ => toks.push(Tok::Punct(c)),
            }
            i += 1;
        }
    }
    Ok(toks)
}

/// Parses a normalised answer into an expression tree.
pub fn parse(s: &str, budget: &mut Budget) -> Result<Expr, ParseError> {
    let toks = tokenize(s, budget)?;
    if toks.is_empty() {
        return Err(ParseError::Syntax("empty answer".into()));
    }
    let mut p = Parser {
        toks,
        pos: 0,
        budget,
        in_abs: 0,
    };
    let e = p.list(&[])?;
    if p.pos < p.toks.len() {
        return Err(ParseError::Syntax(format!(
            "unexpected {:?}",
            p.toks[p.pos]
        )));
    }
    Ok(e)
}

struct Parser<'b> {
    toks: Vec<Tok>,
    pos: usize,
    budget: &'b mut Budget,
    in_abs: usize,
}

const FUNCTIONS: [&str; 22] = [
    "sin", "cos", "tan", "sec", "csc", "cot", "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh",
    "ln", "log", "exp", "lg", "max", "min", "gcd", "lcm", "det", "deg",
];

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn eat_punct(&mut self, c: char) -> bool {
        if self.peek() == Some(&Tok::Punct(c)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn is_cmd(&self, name: &str) -> bool {
        matches!(self.peek(), Some(Tok::Cmd(n)) if n == name)
    }

    fn err<T>(&self, what: &str) -> Result<T, ParseError> {
        Err(ParseError::Syntax(format!("{what} at token {}", self.pos)))
    }

    /// Whether the next token ends the current list element.
    fn at_stop(&self, stops: &[char]) -> bool {
        match self.peek() {
            None => true,
            Some(Tok::Punct(c)) => stops.contains(c) || matches!(c, ')' | ']' | '&'),
            Some(Tok::Cmd(n)) => matches!(
                n.as_str(),
                "}" | "\\" | "end" | "rangle" | "rbrace" | "rfloor" | "rceil"
            ),
            _ => false,
        }
    }

    /// `rel (',' | ';' rel)*`: a bare list when there is more than one element.
    fn list(&mut self, stops: &[char]) -> Result<Expr, ParseError> {
        self.budget.enter()?;
        let mut items = Vec::new();
        loop {
            if self.at_stop(stops) && !matches!(self.peek(), Some(Tok::Punct(',' | ';'))) {
                break;
            }
            if matches!(self.peek(), Some(Tok::Punct(',' | ';'))) {
                self.pos += 1;
                continue;
            }
            items.push(self.relation(stops)?);
            if !(self.eat_punct(',') || self.eat_punct(';')) {
                break;
            }
        }
        self.budget.leave();
        match items.len() {
            0 => self.err("empty list"),
            1 => Ok(items.pop().unwrap_or(Expr::Sym(String::new()))),
            _ => Ok(Expr::Seq {
                open: ' ',
                close: ' ',
                items,
            }),
        }
    }

    fn relation(&mut self, stops: &[char]) -> Result<Expr, ParseError> {
        let first = self.union(stops)?;
        let mut ops = Vec::new();
        let mut terms = vec![first];
        while let Some(Tok::Rel(op)) = self.peek().cloned() {
            self.budget.step()?;
            self.pos += 1;
            ops.push(op);
            terms.push(self.union(stops)?);
        }
        if ops.is_empty() {
            Ok(terms.pop().unwrap_or(Expr::Sym(String::new())))
        } else {
            Ok(Expr::Rel { ops, terms })
        }
    }

    fn union(&mut self, stops: &[char]) -> Result<Expr, ParseError> {
        let first = self.additive(stops)?;
        let mut parts = vec![first];
        while self.is_cmd("cup") || self.is_cmd("cap") {
            self.budget.step()?;
            self.pos += 1;
            parts.push(self.additive(stops)?);
        }
        if parts.len() == 1 {
            Ok(parts.pop().unwrap_or(Expr::Sym(String::new())))
        } else {
            Ok(Expr::Union(parts))
        }
    }

    fn additive(&mut self, stops: &[char]) -> Result<Expr, ParseError> {
        self.budget.enter()?;
        // A leading `\pm` (`x = \pm 2`) is `0 \pm 2`.
        let mut terms = if self.is_cmd("pm") || self.is_cmd("mp") {
            vec![Expr::Num {
                value: BigRational::zero(),
                decimals: None,
            }]
        } else {
            vec![self.term(stops)?]
        };
        loop {
            self.budget.step()?;
            if self.eat_punct('+') {
                terms.push(self.term(stops)?);
            } else if self.eat_punct('-') {
                let t = self.term(stops)?;
                terms.push(Expr::Neg(Box::new(t)));
            } else if self.is_cmd("pm") || self.is_cmd("mp") {
                let minus_first = self.is_cmd("mp");
                self.pos += 1;
                let lhs = if terms.len() == 1 {
                    terms.pop().unwrap_or(Expr::Sym(String::new()))
                } else {
                    Expr::Add(std::mem::take(&mut terms))
                };
                let rhs = self.term(stops)?;
                let rhs = if minus_first {
                    Expr::Neg(Box::new(rhs))
                } else {
                    rhs
                };
                terms = vec![Expr::PlusMinus(Box::new(lhs), Box::new(rhs))];
            } else {
                break;
            }
        }
        self.budget.leave();
        Ok(if terms.len() == 1 {
            terms.pop().unwrap_or(Expr::Sym(String::new()))
        } else {
            Expr::Add(terms)
        })
    }

    fn starts_factor(&self) -> bool {
        match self.peek() {
            Some(Tok::Num(_) | Tok::Letter(_)) => true,
            Some(Tok::Punct(c)) => matches!(c, '(' | '[' | '{') || (*c == '|' && self.in_abs == 0),
            Some(Tok::Cmd(n)) => !matches!(
                n.as_str(),
                "cdot"
                    | "times"
                    | "div"
                    | "pm"
                    | "mp"
                    | "cup"
                    | "cap"
                    | "}"
                    | "\\"
                    | "end"
                    | "to"
                    | "rangle"
                    | "rbrace"
                    | "quad"
            ),
            _ => false,
        }
    }

    fn term(&mut self, stops: &[char]) -> Result<Expr, ParseError> {
        self.budget.enter()?;
        let mut acc = self.unary()?;
        loop {
            self.budget.step()?;
            if self.eat_punct('*') || self.is_cmd("cdot") || self.is_cmd("times") {
                if matches!(self.peek(), Some(Tok::Cmd(_))) {
                    self.pos += 1;
                }
                let rhs = self.unary()?;
                acc = mul(acc, rhs);
            } else if self.eat_punct('/') || self.eat_punct(':') || self.is_cmd("div") {
                if self.is_cmd("div") {
                    self.pos += 1;
                }
                let rhs = self.unary()?;
                acc = Expr::Div(Box::new(acc), Box::new(rhs));
            } else if self.starts_factor() && !self.at_stop(stops) {
                let rhs = self.power()?;
                acc = mul(acc, rhs);
            } else {
                break;
            }
        }
        self.budget.leave();
        Ok(acc)
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        self.budget.enter()?;
        let e = if self.eat_punct('-') {
            Expr::Neg(Box::new(self.unary()?))
        } else if self.eat_punct('+') {
            self.unary()?
        } else {
            self.power()?
        };
        self.budget.leave();
        Ok(e)
    }

    fn power(&mut self) -> Result<Expr, ParseError> {
        self.budget.enter()?;
        let mut base = self.postfix()?;
        if self.eat_punct('^') {
            let exp = self.exponent()?;
            base = Expr::Pow(Box::new(base), Box::new(exp));
            base = self.factorials(base)?;
        }
        self.budget.leave();
        Ok(base)
    }

    /// An exponent; `a^b^c` reads as `a^(b^c)`.
    fn exponent(&mut self) -> Result<Expr, ParseError> {
        self.budget.enter()?;
        let mut e = self.latex_arg(true)?;
        if self.eat_punct('^') {
            let rest = self.exponent()?;
            e = Expr::Pow(Box::new(e), Box::new(rest));
        }
        self.budget.leave();
        Ok(e)
    }

    fn factorials(&mut self, mut e: Expr) -> Result<Expr, ParseError> {
        while self.eat_punct('!') {
            self.budget.step()?;
            e = Expr::Func("factorial".into(), vec![e]);
        }
        while self.eat_punct('\'') {
            e = Expr::Func("prime".into(), vec![e]);
        }
        Ok(e)
    }

    fn postfix(&mut self) -> Result<Expr, ParseError> {
        let p = self.primary()?;
        self.factorials(p)
    }

    /// A LaTeX macro argument: `{...}`, or one token (one digit of a number: `\frac13`).
    fn latex_arg(&mut self, allow_sign: bool) -> Result<Expr, ParseError> {
        self.budget.enter()?;
        let e = match self.peek().cloned() {
            Some(Tok::Punct('{')) => {
                self.pos += 1;
                let e = self.list(&['}'])?;
                if !self.eat_punct('}') {
                    return self.err("missing }");
                }
                e
            }
            Some(Tok::Num(n)) if n.len() > 1 && !n.starts_with('.') => {
                let mut chars = n.chars();
                let first = chars.next().unwrap_or('0');
                self.toks[self.pos] = Tok::Num(chars.collect());
                number(&first.to_string())?
            }
            Some(Tok::Punct('-' | '+')) if allow_sign => {
                let neg = self.next() == Some(Tok::Punct('-'));
                let inner = self.latex_arg(false)?;
                if neg {
                    Expr::Neg(Box::new(inner))
                } else {
                    inner
                }
            }
            _ => self.primary()?,
        };
        self.budget.leave();
        Ok(e)
    }

    fn subscript(&mut self) -> Result<Option<String>, ParseError> {
        if !self.eat_punct('_') {
            return Ok(None);
        }
        let start = self.pos;
        let mut depth = 0usize;
        // Render the subscript tokens back to a canonical string.
        let mut out = String::new();
        loop {
            self.budget.step()?;
            let Some(t) = self.next() else { break };
            match &t {
                Tok::Punct('{') => depth += 1,
                Tok::Punct('}') => depth = depth.saturating_sub(1),
                _ => {}
            }
            out.push_str(&tok_text(&t));
            if depth == 0 {
                break;
            }
        }
        if self.pos == start {
            return self.err("empty subscript");
        }
        Ok(Some(
            out.trim_start_matches('{')
                .trim_end_matches('}')
                .to_string(),
        ))
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        self.budget.enter()?;
        let Some(t) = self.next() else {
            return self.err("unexpected end");
        };
        let e = match t {
            Tok::Num(n) => {
                if let Some(sub) = self.subscript()? {
                    based_number(&n, &sub).unwrap_or(Expr::Sym(format!("{n}_{sub}")))
                } else {
                    number(&n)?
                }
            }
            Tok::Letter(c) => {
                let mut name = c.to_string();
                if let Some(sub) = self.subscript()? {
                    name = format!("{name}_{sub}");
                }
                let function_name = matches!(c, 'f' | 'g' | 'h') || c.is_ascii_uppercase();
                if function_name && self.peek() == Some(&Tok::Punct('(')) && name.len() == 1 {
                    self.pos += 1;
                    let args = self.list(&[')'])?;
                    if !self.eat_punct(')') {
                        return self.err("missing )");
                    }
                    Expr::Func(name, seq_items(args))
                } else if name == "e" {
                    Expr::Const(Constant::E)
                } else {
                    Expr::Sym(name)
                }
            }
            Tok::Punct('(') | Tok::Punct('[') => {
                let open = if t == Tok::Punct('(') { '(' } else { '[' };
                let inner = self.list(&[])?;
                let close = match self.next() {
                    Some(Tok::Punct(c @ (')' | ']'))) => c,
                    _ => return self.err("missing closing bracket"),
                };
                bracket(open, close, inner)
            }
            Tok::Punct('{') => {
                let inner = self.list(&['}'])?;
                if !self.eat_punct('}') {
                    return self.err("missing }");
                }
                inner
            }
            Tok::Punct('|') => {
                self.in_abs += 1;
                let inner = self.additive(&['|'])?;
                self.in_abs -= 1;
                if !self.eat_punct('|') {
                    return self.err("missing |");
                }
                Expr::Func("abs".into(), vec![inner])
            }
            Tok::Cmd(name) => self.command(&name)?,
            other => return self.err(&format!("unexpected {other:?}")),
        };
        self.budget.leave();
        Ok(e)
    }

    fn command(&mut self, name: &str) -> Result<Expr, ParseError> {
        Ok(match name {
            "frac" => {
                let n = self.latex_arg(false)?;
                let d = self.latex_arg(false)?;
                Expr::Div(Box::new(n), Box::new(d))
            }
            "binom" => {
                let n = self.latex_arg(false)?;
                let k = self.latex_arg(false)?;
                Expr::Func("binom".into(), vec![n, k])
            }
            "sqrt" => {
                let index = if self.eat_punct('[') {
                    let i = self.list(&[']'])?;
                    if !self.eat_punct(']') {
                        return self.err("missing ]");
                    }
                    Some(i)
                } else {
                    None
                };
                let arg = self.latex_arg(false)?;
                match index {
                    Some(i) => Expr::Func("root".into(), vec![arg, i]),
                    None => Expr::Func("sqrt".into(), vec![arg]),
                }
            }
            "pi" => Expr::Const(Constant::Pi),
            "infty" | "infin" => Expr::Const(Constant::Infinity),
            "{" | "lbrace" => {
                let inner = self.list(&[])?;
                if !(self.is_cmd("}") || self.is_cmd("rbrace")) {
                    return self.err("missing \\}");
                }
                self.pos += 1;
                Expr::Seq {
                    open: '{',
                    close: '}',
                    items: seq_items(inner),
                }
            }
            "langle" => {
                let inner = self.list(&[])?;
                if !self.is_cmd("rangle") {
                    return self.err("missing \\rangle");
                }
                self.pos += 1;
                Expr::Seq {
                    open: '(',
                    close: ')',
                    items: seq_items(inner),
                }
            }
            "lfloor" | "lceil" => {
                let inner = self.list(&[])?;
                let f = if name == "lfloor" { "floor" } else { "ceil" };
                if !(self.is_cmd("rfloor") || self.is_cmd("rceil")) {
                    return self.err("missing floor/ceil close");
                }
                self.pos += 1;
                Expr::Func(f.into(), vec![inner])
            }
            "|" => {
                let inner = self.additive(&[])?;
                if !self.is_cmd("|") {
                    return self.err("missing \\|");
                }
                self.pos += 1;
                Expr::Func("abs".into(), vec![inner])
            }
            "begin" => self.environment()?,
            "boxed" | "fbox" | "overline" | "hat" | "vec" | "overrightarrow" | "bar" | "tilde"
            | "widehat" => {
                let inner = self.latex_arg(false)?;
                if matches!(name, "boxed" | "fbox") {
                    inner
                } else {
                    Expr::Func(name.into(), vec![inner])
                }
            }
            "ldots" | "dots" | "cdots" | "dotsm" | "dotsb" => Expr::Sym("...".into()),
            "pmod" | "mod" => {
                let _ = self.latex_arg(false)?;
                Expr::Num {
                    value: BigRational::one(),
                    decimals: None,
                }
            }
            f if FUNCTIONS.contains(&f) => self.function(f)?,
            other => {
                let mut sym = format!("\\{other}");
                if let Some(sub) = self.subscript()? {
                    sym = format!("{sym}_{sub}");
                }
                Expr::Sym(sym)
            }
        })
    }

    /// `\sin x`, `\sin^2(x)`, `\log_2 8`, `\max(a, b)`.
    fn function(&mut self, name: &str) -> Result<Expr, ParseError> {
        let base = if name == "log" && self.peek() == Some(&Tok::Punct('_')) {
            self.pos += 1;
            Some(self.latex_arg(false)?)
        } else {
            None
        };
        let power = if self.eat_punct('^') {
            Some(self.latex_arg(true)?)
        } else {
            None
        };
        let args = if self.eat_punct('(') {
            let inner = self.list(&[])?;
            if !self.eat_punct(')') {
                return self.err("missing )");
            }
            seq_items(inner)
        } else {
            vec![self.power()?]
        };
        let mut e = match base {
            Some(b) => Expr::Div(
                Box::new(Expr::Func("ln".into(), args)),
                Box::new(Expr::Func("ln".into(), vec![b])),
            ),
            None => Expr::Func(
                if name == "lg" {
                    "log".into()
                } else {
                    name.into()
                },
                args,
            ),
        };
        if let Some(p) = power {
            e = Expr::Pow(Box::new(e), Box::new(p));
        }
        Ok(e)
    }

    /// `\begin{pmatrix} a & b \\ c & d \end{pmatrix}` (also bmatrix, array with a column spec).
    fn environment(&mut self) -> Result<Expr, ParseError> {
        let name = self.group_text()?;
        if name == "array" && self.peek() == Some(&Tok::Punct('{')) {
            let _ = self.group_text()?;
        }
        let mut rows: Vec<Vec<Expr>> = Vec::new();
        let mut row = Vec::new();
        loop {
            self.budget.step()?;
            if self.is_cmd("end") {
                self.pos += 1;
                let _ = self.group_text()?;
                break;
            }
            if self.peek().is_none() {
                return self.err("missing \\end");
            }
            if self.eat_punct('&') {
                continue;
            }
            if self.is_cmd("\\") {
                self.pos += 1;
                rows.push(std::mem::take(&mut row));
                continue;
            }
            if self.is_cmd("hline") || self.is_cmd("cline") {
                self.pos += 1;
                continue;
            }
            row.push(self.relation(&['&'])?);
        }
        if !row.is_empty() {
            rows.push(row);
        }
        rows.retain(|r| !r.is_empty());
        if rows.is_empty() {
            return self.err("empty matrix");
        }
        if matches!(name.as_str(), "cases" | "align" | "align*" | "aligned") {
            let items = rows.into_iter().flatten().collect();
            return Ok(Expr::Seq {
                open: ' ',
                close: ' ',
                items,
            });
        }
        Ok(Expr::Matrix(rows))
    }

    /// The raw text of a `{...}` group (environment names, column specs).
    fn group_text(&mut self) -> Result<String, ParseError> {
        if !self.eat_punct('{') {
            return self.err("missing {");
        }
        let mut out = String::new();
        loop {
            self.budget.step()?;
            match self.next() {
                Some(Tok::Punct('}')) => break,
                Some(t) => out.push_str(&tok_text(&t)),
                None => return self.err("missing }"),
            }
        }
        Ok(out)
    }
}

fn tok_text(t: &Tok) -> String {
    match t {
        Tok::Num(n) => n.clone(),
        Tok::Letter(c) | Tok::Punct(c) => c.to_string(),
        Tok::Cmd(n) => format!("\\{n}"),
        Tok::Rel(r) => format!("{r:?}"),
    }
}

fn mul(a: Expr, b: Expr) -> Expr {
    match a {
        Expr::Mul(mut v) => {
            v.push(b);
            Expr::Mul(v)
        }
        a => Expr::Mul(vec![a, b]),
    }
}

fn seq_items(e: Expr) -> Vec<Expr> {
    match e {
        Expr::Seq {
            open: ' ', items, ..
        } => items,
        e => vec![e],
    }
}

/// Parenthesised or bracketed content: a single element with `()` or `[]` is just grouping.
fn bracket(open: char, close: char, inner: Expr) -> Expr {
    match inner {
        Expr::Seq {
            open: ' ', items, ..
        } => Expr::Seq { open, close, items },
        e if open == '(' && close == ')' => e,
        e if open == '[' && close == ']' => e,
        e => Expr::Seq {
            open,
            close,
            items: vec![e],
        },
    }
}

/// A decimal literal to an exact rational.
pub(crate) fn number(lit: &str) -> Result<Expr, ParseError> {
    if let Some((mantissa, exp)) = lit.split_once(['e', 'E']) {
        let Expr::Num { value, decimals } = number(mantissa)? else {
            return Err(ParseError::Syntax(format!("bad number {lit}")));
        };
        let exp: i32 = exp
            .parse()
            .map_err(|_| ParseError::Syntax(format!("bad exponent in {lit}")))?;
        let scale = BigRational::from_integer(num_traits::pow(
            BigInt::from(10),
            exp.unsigned_abs() as usize,
        ));
        let value = if exp >= 0 {
            value * scale
        } else {
            value / scale
        };
        let places = i64::from(decimals.unwrap_or(0)) - i64::from(exp);
        let decimals = (places > 0).then(|| u32::try_from(places).unwrap_or(u32::MAX));
        return Ok(Expr::Num { value, decimals });
    }
    let lit = lit.trim_end_matches('.');
    let (int, frac) = lit.split_once('.').unwrap_or((lit, ""));
    let digits = format!("{int}{frac}");
    let digits = if digits.is_empty() {
        "0".to_string()
    } else {
        digits
    };
    let n: BigInt = digits
        .parse()
        .map_err(|_| ParseError::Syntax(format!("bad number {lit}")))?;
    let d = num_traits::pow(BigInt::from(10), frac.len());
    Ok(Expr::Num {
        value: BigRational::new(n, d),
        decimals: if frac.is_empty() {
            None
        } else {
            Some(frac.len() as u32)
        },
    })
}

/// `204_5`: a number in base 2..=36, when every digit is valid in that base.
fn based_number(n: &str, sub: &str) -> Option<Expr> {
    let base: u32 = sub.parse().ok()?;
    if !(2..=36).contains(&base) || n.contains('.') {
        return None;
    }
    let mut v = BigInt::zero();
    for c in n.chars() {
        v = v * base + c.to_digit(base)?;
    }
    Some(Expr::Num {
        value: BigRational::from_integer(v),
        decimals: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn p(s: &str) -> Result<Expr, ParseError> {
        parse(s, &mut Budget::new(1_000_000, Duration::from_secs(1)))
    }

    #[test]
    fn parses_common_answers() {
        for s in [
            "\\frac{1}{2}",
            "\\frac13",
            "3\\sqrt{13}",
            "\\sqrt[3]{x}^2",
            "(1, 4.5)",
            "[0,1)",
            "\\{1,2\\}",
            "x \\le 5",
            "1 \\pm \\sqrt{19}",
            "\\tan^2(y)+1",
            "\\begin{pmatrix}1 & 0 \\\\ 0 & 1\\end{pmatrix}",
            "f(x)=2x",
            "|x-2|",
            "5!",
            "a_{37} = 19",
            "(2,12) \\cup (12,102)",
        ] {
            assert!(p(s).is_ok(), "{s}: {:?}", p(s));
        }
    }

    #[test]
    fn bare_lists_and_tuples() {
        assert!(matches!(p("1, 2").unwrap(), Expr::Seq { open: ' ', .. }));
        assert!(matches!(p("(1, 2)").unwrap(), Expr::Seq { open: '(', .. }));
        assert!(matches!(p("(x)").unwrap(), Expr::Sym(_)));
    }

    #[test]
    fn deep_nesting_is_capped() {
        let s = "(".repeat(100_000);
        assert_eq!(p(&s), Err(ParseError::Limit(Limit::TooLarge)));
    }

    #[test]
    fn scientific_notation() {
        let n = |s: &str| match p(s).unwrap() {
            Expr::Num { value, decimals } => (value, decimals),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            n("1.5e-3"),
            (BigRational::new(3.into(), 2000.into()), Some(4))
        );
        assert_eq!(
            n("2E6"),
            (BigRational::from_integer(2_000_000.into()), None)
        );
        assert!(matches!(p("2e").unwrap(), Expr::Mul(_)));
    }

    #[test]
    fn base_subscript() {
        assert_eq!(
            p("204_5").unwrap(),
            Expr::Num {
                value: BigRational::from_integer(54.into()),
                decimals: None
            }
        );
    }
}
