//! Numeric evaluation: exact rationals where possible, `f64` otherwise, under a work budget.
//!
//! Symbols take seeded pseudo-random rational values (one assignment per evaluation point), so
//! two rational expressions that agree at several random rational points are equal (with high
//! probability, by the Schwartz–Zippel lemma), exactly. Big numbers are capped: an exact result
//! over [`MAX_BITS`] falls back to `f64`, and an `f64` overflow is [`Limit::TooLarge`].

use num_bigint::BigInt;
use num_rational::BigRational;
use num_traits::{One, Signed, ToPrimitive, Zero};

use super::parse::{Constant, Expr};
use crate::budget::{Budget, Limit};

/// The largest exact numerator or denominator, in bits.
pub const MAX_BITS: u64 = 16_384;

/// A value: exact rational or floating point.
#[derive(Clone, Debug, PartialEq)]
pub enum Num {
    /// An exact rational.
    Q(BigRational),
    /// A floating-point approximation.
    F(f64),
}

/// Why an expression has no scalar value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvalError {
    /// A budget or size limit was hit.
    Limit(Limit),
    /// Not a scalar (a tuple, set, relation or matrix).
    NotScalar,
    /// Outside the domain (division by zero, `\sqrt{-1}`, ...).
    Undefined,
}

impl From<Limit> for EvalError {
    fn from(l: Limit) -> Self {
        EvalError::Limit(l)
    }
}

impl Num {
    /// The value as `f64` (may be infinite for huge rationals).
    pub fn to_f64(&self) -> f64 {
        match self {
            Num::Q(q) => q.to_f64().unwrap_or(f64::NAN),
            Num::F(f) => *f,
        }
    }

    fn finite(f: f64) -> Result<Num, EvalError> {
        if f.is_nan() {
            Err(EvalError::Undefined)
        } else {
            Ok(Num::F(f))
        }
    }
}

fn bits(q: &BigRational) -> u64 {
    q.numer().bits().max(q.denom().bits())
}

fn exact(q: BigRational, budget: &mut Budget) -> Result<Num, EvalError> {
    let b = bits(&q);
    budget.spend(1 + b / 64)?;
    if b > MAX_BITS {
        let f = q.to_f64().unwrap_or(f64::INFINITY);
        if !f.is_finite() {
            return Err(EvalError::Limit(Limit::TooLarge));
        }
        return Ok(Num::F(f));
    }
    Ok(Num::Q(q))
}

/// One assignment of values to symbols: evaluation point `point`.
#[derive(Clone, Copy, Debug)]
pub struct Point(pub u64);

fn hash(s: &str, seed: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h ^ (h >> 29)
}

/// The value of symbol `name` at `point`: a rational in roughly `[0.3, 3]`.
pub fn symbol_value(name: &str, point: Point) -> BigRational {
    const DENOMS: [i64; 5] = [7, 11, 13, 17, 19];
    let h = hash(name, point.0);
    let q = DENOMS[(h % 5) as usize];
    let lo = q / 3 + 1;
    let p = lo + ((h >> 8) % (3 * q - lo) as u64) as i64;
    BigRational::new(p.into(), q.into())
}

fn add(a: Num, b: Num, budget: &mut Budget) -> Result<Num, EvalError> {
    match (a, b) {
        (Num::Q(x), Num::Q(y)) => exact(x + y, budget),
        (x, y) => Num::finite(x.to_f64() + y.to_f64()),
    }
}

fn mul(a: Num, b: Num, budget: &mut Budget) -> Result<Num, EvalError> {
    match (a, b) {
        (Num::Q(x), Num::Q(y)) => exact(x * y, budget),
        (x, y) => Num::finite(x.to_f64() * y.to_f64()),
    }
}

fn div(a: Num, b: Num, budget: &mut Budget) -> Result<Num, EvalError> {
    match (a, b) {
        (_, Num::Q(y)) if y.is_zero() => Err(EvalError::Undefined),
        (Num::Q(x), Num::Q(y)) => exact(x / y, budget),
        (x, y) => {
            let d = y.to_f64();
            if d == 0.0 {
                Err(EvalError::Undefined)
            } else {
                Num::finite(x.to_f64() / d)
            }
        }
    }
}

/// Exact `n`-th root of a non-negative integer, if it is a perfect power.
fn exact_root(x: &BigInt, n: u32) -> Option<BigInt> {
    if x.is_negative() {
        return None;
    }
    let r = x.nth_root(n);
    (num_traits::pow(r.clone(), n as usize) == *x).then_some(r)
}

fn pow(base: Num, exp: Num, budget: &mut Budget) -> Result<Num, EvalError> {
    if let (Num::Q(b), Num::Q(e)) = (&base, &exp) {
        if e.is_integer() {
            let e_int = e.to_integer();
            if b.is_zero() && e_int.is_negative() {
                return Err(EvalError::Undefined);
            }
            if b.is_zero() || b.is_one() {
                return Ok(Num::Q(b.clone()));
            }
            if let Some(k) = e_int.abs().to_u64()
                && bits(b).saturating_mul(k) <= MAX_BITS
            {
                budget.spend(1 + bits(b).saturating_mul(k) / 64)?;
                let r = num_traits::pow(b.clone(), k as usize);
                let r = if e_int.is_negative() { r.recip() } else { r };
                return exact(r, budget);
            }
        } else if e.denom() <= &BigInt::from(12) && !b.is_negative() {
            // Rational exponent p/q: exact when the q-th roots are integers.
            let q = e.denom().to_u32().unwrap_or(1);
            if let (Some(n), Some(d)) = (exact_root(b.numer(), q), exact_root(b.denom(), q)) {
                return pow(
                    Num::Q(BigRational::new(n, d)),
                    Num::Q(BigRational::from_integer(e.numer().clone())),
                    budget,
                );
            }
        }
    }
    let (b, e) = (base.to_f64(), exp.to_f64());
    let r = b.powf(e);
    if r.is_infinite() && b.is_finite() && e.is_finite() {
        return Err(EvalError::Limit(Limit::TooLarge));
    }
    Num::finite(r)
}

fn sqrt(x: Num, budget: &mut Budget) -> Result<Num, EvalError> {
    pow(x, Num::Q(BigRational::new(1.into(), 2.into())), budget)
}

fn factorial(x: Num, budget: &mut Budget) -> Result<Num, EvalError> {
    let Num::Q(q) = x else {
        return Err(EvalError::Undefined);
    };
    if !q.is_integer() || q.is_negative() {
        return Err(EvalError::Undefined);
    }
    let n = q
        .to_integer()
        .to_u64()
        .ok_or(EvalError::Limit(Limit::TooLarge))?;
    if n > 2000 {
        return Err(EvalError::Limit(Limit::TooLarge));
    }
    let mut acc = BigInt::one();
    for i in 2..=n {
        budget.spend(1 + acc.bits() / 64)?;
        acc *= i;
    }
    exact(BigRational::from_integer(acc), budget)
}

fn unknown_function(name: &str, args: &[Num]) -> f64 {
    let mut v = (hash(name, 7) % 1000) as f64 / 1000.0;
    for (i, a) in args.iter().enumerate() {
        v += (a.to_f64() * (1.3 + i as f64) + v).sin();
    }
    v + 3.0
}

/// Evaluates `e` at `point`.
pub fn eval(e: &Expr, point: Point, budget: &mut Budget) -> Result<Num, EvalError> {
    budget.enter()?;
    let r = eval_inner(e, point, budget);
    budget.leave();
    r
}

fn eval_inner(e: &Expr, point: Point, budget: &mut Budget) -> Result<Num, EvalError> {
    Ok(match e {
        Expr::Num { value, .. } => Num::Q(value.clone()),
        Expr::Const(Constant::Pi) => Num::F(std::f64::consts::PI),
        Expr::Const(Constant::E) => Num::F(std::f64::consts::E),
        Expr::Const(Constant::Infinity) => Num::F(f64::INFINITY),
        Expr::Sym(name) => Num::Q(symbol_value(name, point)),
        Expr::Add(terms) => {
            let mut acc = Num::Q(BigRational::zero());
            for t in terms {
                acc = add(acc, eval(t, point, budget)?, budget)?;
            }
            acc
        }
        Expr::Neg(x) => match eval(x, point, budget)? {
            Num::Q(q) => Num::Q(-q),
            Num::F(f) => Num::F(-f),
        },
        Expr::Mul(fs) => {
            let mut acc = Num::Q(BigRational::one());
            for f in fs {
                acc = mul(acc, eval(f, point, budget)?, budget)?;
            }
            acc
        }
        Expr::Div(a, b) => div(eval(a, point, budget)?, eval(b, point, budget)?, budget)?,
        Expr::Pow(a, b) => pow(eval(a, point, budget)?, eval(b, point, budget)?, budget)?,
        Expr::Func(name, args) => {
            let mut vals = Vec::with_capacity(args.len());
            for a in args {
                vals.push(eval(a, point, budget)?);
            }
            function(name, vals, budget)?
        }
        Expr::PlusMinus(..)
        | Expr::Seq { .. }
        | Expr::Union(_)
        | Expr::Rel { .. }
        | Expr::Matrix(_) => {
            return Err(EvalError::NotScalar);
        }
    })
}

fn function(name: &str, mut vals: Vec<Num>, budget: &mut Budget) -> Result<Num, EvalError> {
    let one = |v: &[Num]| v.first().map_or(f64::NAN, Num::to_f64);
    let x = one(&vals);
    let f = match (name, vals.len()) {
        ("sqrt", 1) => return sqrt(vals.remove(0), budget),
        ("root", 2) => {
            let n = vals.remove(1);
            let inv = div(Num::Q(BigRational::one()), n, budget)?;
            return pow(vals.remove(0), inv, budget);
        }
        ("abs", 1) => {
            return Ok(match vals.remove(0) {
                Num::Q(q) => Num::Q(q.abs()),
                Num::F(f) => Num::F(f.abs()),
            });
        }
        ("factorial", 1) => return factorial(vals.remove(0), budget),
        ("binom", 2) => {
            let k = vals.remove(1);
            let n = vals.remove(0);
            let num = factorial(n.clone(), budget)?;
            let den1 = factorial(k.clone(), budget)?;
            let nk = add(
                n,
                match k {
                    Num::Q(q) => Num::Q(-q),
                    Num::F(f) => Num::F(-f),
                },
                budget,
            )?;
            let den2 = factorial(nk, budget)?;
            let den = mul(den1, den2, budget)?;
            return div(num, den, budget);
        }
        ("exp", 1) => x.exp(),
        ("sin", 1) => x.sin(),
        ("cos", 1) => x.cos(),
        ("tan", 1) => x.tan(),
        ("sec", 1) => 1.0 / x.cos(),
        ("csc", 1) => 1.0 / x.sin(),
        ("cot", 1) => 1.0 / x.tan(),
        ("arcsin", 1) => x.asin(),
        ("arccos", 1) => x.acos(),
        ("arctan", 1) => x.atan(),
        ("sinh", 1) => x.sinh(),
        ("cosh", 1) => x.cosh(),
        ("tanh", 1) => x.tanh(),
        ("ln" | "log", 1) => {
            if x <= 0.0 {
                return Err(EvalError::Undefined);
            }
            x.ln()
        }
        ("floor", 1) => {
            if let Num::Q(q) = &vals[0] {
                return Ok(Num::Q(q.floor()));
            }
            x.floor()
        }
        ("ceil", 1) => {
            if let Num::Q(q) = &vals[0] {
                return Ok(Num::Q(q.ceil()));
            }
            x.ceil()
        }
        ("gcd" | "lcm", 2) => {
            if let (Num::Q(a), Num::Q(b)) = (&vals[0], &vals[1])
                && a.is_integer()
                && b.is_integer()
            {
                use num_integer::Integer;
                let (a, b) = (a.to_integer(), b.to_integer());
                let r = if name == "gcd" { a.gcd(&b) } else { a.lcm(&b) };
                return Ok(Num::Q(BigRational::from_integer(r)));
            }
            return Err(EvalError::Undefined);
        }
        ("max" | "min", n) if n >= 1 => {
            let mut best = vals[0].clone();
            for v in &vals[1..] {
                let better = if name == "max" {
                    v.to_f64() > best.to_f64()
                } else {
                    v.to_f64() < best.to_f64()
                };
                if better {
                    best = v.clone();
                }
            }
            return Ok(best);
        }
        _ => unknown_function(name, &vals),
    };
    Num::finite(f)
}

/// Whether two values agree: exactly for rationals (unless `atol > 0`), else within `atol` plus a
/// relative `1e-9`. Equal infinities agree.
pub fn close(a: &Num, b: &Num, atol: f64) -> bool {
    if let (Num::Q(x), Num::Q(y)) = (a, b) {
        if x == y {
            return true;
        }
        if atol == 0.0 {
            return false;
        }
    }
    let (x, y) = (a.to_f64(), b.to_f64());
    if x.is_infinite() || y.is_infinite() {
        return x == y;
    }
    (x - y).abs() <= atol + 1e-9 * x.abs().max(y.abs()) + 1e-12
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::parse::parse;
    use std::time::Duration;

    fn ev(s: &str) -> Result<Num, EvalError> {
        let mut b = Budget::new(1_000_000, Duration::from_secs(1));
        let e = parse(s, &mut b).expect("parses");
        eval(&e, Point(0), &mut b)
    }

    #[test]
    fn exact_arithmetic() {
        assert_eq!(
            ev("\\frac{1}{3}+\\frac{1}{6}").unwrap(),
            Num::Q(BigRational::new(1.into(), 2.into()))
        );
        assert_eq!(
            ev("\\sqrt{16}").unwrap(),
            Num::Q(BigRational::from_integer(4.into()))
        );
        assert_eq!(
            ev("8^{2/3}").unwrap(),
            Num::Q(BigRational::from_integer(4.into()))
        );
        assert_eq!(
            ev("5!").unwrap(),
            Num::Q(BigRational::from_integer(120.into()))
        );
        assert_eq!(
            ev("\\gcd(12, 18)").unwrap(),
            Num::Q(BigRational::from_integer(6.into()))
        );
    }

    #[test]
    fn hostile_powers_are_too_large() {
        assert_eq!(ev("2^2^2^2^2^2^2"), Err(EvalError::Limit(Limit::TooLarge)));
        assert_eq!(ev("10^{10^{10}}"), Err(EvalError::Limit(Limit::TooLarge)));
    }

    #[test]
    fn domain_errors() {
        assert_eq!(ev("1/0"), Err(EvalError::Undefined));
    }
}
