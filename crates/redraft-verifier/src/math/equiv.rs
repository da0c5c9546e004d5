//! Equivalence of two parsed answers.
//!
//! Scalars are compared by value: exactly when both sides evaluate to rationals, else in `f64`.
//! Expressions with symbols are evaluated at several seeded random points (exact rational points
//! for rational functions). Decimal literals are compared after rounding: a literal with `k >= 2`
//! decimals matches anything that rounds to it (`0.33` matches `1/3`), and any decimal matches
//! within `5e-7` (six places). Structures are compared structurally: tuples and intervals in order
//! with the same brackets, bare lists and sets in any order, matrices element by element,
//! relations by canonical form (`a > b` is `b < a`; equations and inequalities match when
//! `lhs - rhs` agree up to a constant factor, positive for inequalities), and assignments
//! (`x = 3`) by their value. `a \pm b` is the list `a + b, a - b`.

use super::eval::{EvalError, Num, Point, close, eval};
use super::parse::{Constant, Expr, RelOp};
use crate::budget::{Budget, Limit};

/// Number of random evaluation points for expressions with symbols.
pub const POINTS: u64 = 4;

/// Whether `pred` is equivalent to `gold`.
pub fn equivalent(gold: &Expr, pred: &Expr, budget: &mut Budget) -> Result<bool, Limit> {
    let g = canon(gold.clone(), budget)?;
    let p = canon(pred.clone(), budget)?;
    eq(&g, &p, budget)
}

/// Canonical form: `x \in S` is `S`, `a < x \le b` is the interval `(a, b]`, `\pm` is expanded,
/// one-element lists and unions are their element.
fn canon(e: Expr, budget: &mut Budget) -> Result<Expr, Limit> {
    budget.enter()?;
    let r = match e {
        Expr::Rel { ops, mut terms } if ops.len() == 1 && ops[0] == RelOp::In => {
            canon(terms.pop().unwrap_or(Expr::Sym(String::new())), budget)?
        }
        Expr::Rel { ops, terms } if ops.len() == 2 && is_interval_chain(&ops, &terms) => {
            let ascending = matches!(ops[0], RelOp::Lt | RelOp::Le);
            let (lo, hi, lo_op, hi_op) = if ascending {
                (terms[0].clone(), terms[2].clone(), ops[0], ops[1])
            } else {
                (terms[2].clone(), terms[0].clone(), ops[1], ops[0])
            };
            let open = if matches!(lo_op, RelOp::Le | RelOp::Ge) {
                '['
            } else {
                '('
            };
            let close = if matches!(hi_op, RelOp::Le | RelOp::Ge) {
                ']'
            } else {
                ')'
            };
            Expr::Seq {
                open,
                close,
                items: vec![canon(lo, budget)?, canon(hi, budget)?],
            }
        }
        Expr::Rel { ops, terms } => {
            let mut t = Vec::with_capacity(terms.len());
            for x in terms {
                t.push(canon(x, budget)?);
            }
            Expr::Rel { ops, terms: t }
        }
        Expr::Seq { open, close, items } => {
            let mut t = Vec::with_capacity(items.len());
            for x in items {
                match canon(x, budget)? {
                    // A `\pm` inside a bare list adds both branches to the list.
                    Expr::Seq {
                        open: ' ',
                        items: inner,
                        ..
                    } if open == ' ' || open == '{' => t.extend(inner),
                    y => t.push(y),
                }
            }
            if t.len() == 1 && open == ' ' {
                t.pop().unwrap_or(Expr::Sym(String::new()))
            } else {
                Expr::Seq {
                    open,
                    close,
                    items: t,
                }
            }
        }
        Expr::Union(parts) if parts.len() == 1 => canon(
            parts.into_iter().next().unwrap_or(Expr::Sym(String::new())),
            budget,
        )?,
        Expr::Union(parts) => {
            let mut t = Vec::with_capacity(parts.len());
            for x in parts {
                t.push(canon(x, budget)?);
            }
            Expr::Union(t)
        }
        Expr::Matrix(rows) => {
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                let mut r = Vec::with_capacity(row.len());
                for x in row {
                    r.push(canon(x, budget)?);
                }
                out.push(r);
            }
            Expr::Matrix(out)
        }
        m @ (Expr::Add(_) | Expr::Mul(_)) if contains_matrix(&m) => match matrix_value(&m, budget)?
        {
            Some(rows) => Expr::Matrix(rows),
            None => m,
        },
        scalar if contains_pm(&scalar) => {
            let mut branches = expand_pm(&scalar, budget)?;
            if branches.len() == 1 {
                branches.pop().unwrap_or(scalar)
            } else {
                Expr::Seq {
                    open: ' ',
                    close: ' ',
                    items: branches,
                }
            }
        }
        scalar => scalar,
    };
    budget.leave();
    Ok(r)
}

fn contains_matrix(e: &Expr) -> bool {
    match e {
        Expr::Matrix(_) => true,
        Expr::Add(v) | Expr::Mul(v) => v.iter().any(contains_matrix),
        Expr::Neg(x) => contains_matrix(x),
        _ => false,
    }
}

/// Sums, products and scalar multiples of matrices, entry by entry (entries stay expressions).
fn matrix_value(e: &Expr, budget: &mut Budget) -> Result<Option<Vec<Vec<Expr>>>, Limit> {
    budget.step()?;
    Ok(match e {
        Expr::Matrix(rows) => Some(rows.clone()),
        Expr::Neg(x) => matrix_value(x, budget)?.map(|rows| {
            rows.into_iter()
                .map(|r| r.into_iter().map(|v| Expr::Neg(Box::new(v))).collect())
                .collect()
        }),
        Expr::Add(terms) => {
            let mut acc: Option<Vec<Vec<Expr>>> = None;
            for t in terms {
                let Some(m) = matrix_value(t, budget)? else {
                    return Ok(None);
                };
                acc = Some(match acc {
                    None => m,
                    Some(a) => {
                        if a.len() != m.len() || a.iter().zip(&m).any(|(x, y)| x.len() != y.len()) {
                            return Ok(None);
                        }
                        a.into_iter()
                            .zip(m)
                            .map(|(x, y)| {
                                x.into_iter()
                                    .zip(y)
                                    .map(|(p, q)| Expr::Add(vec![p, q]))
                                    .collect()
                            })
                            .collect()
                    }
                });
            }
            acc
        }
        Expr::Mul(factors) => {
            let mut acc: Option<Vec<Vec<Expr>>> = None;
            let mut scalars = Vec::new();
            for f in factors {
                if !contains_matrix(f) {
                    scalars.push(f.clone());
                    continue;
                }
                let Some(m) = matrix_value(f, budget)? else {
                    return Ok(None);
                };
                acc = Some(match acc {
                    None => m,
                    Some(a) => {
                        let inner = m.len();
                        if a.iter().any(|r| r.len() != inner) || inner == 0 {
                            return Ok(None);
                        }
                        let cols = m[0].len();
                        let mut out = Vec::with_capacity(a.len());
                        for row in &a {
                            let mut r = Vec::with_capacity(cols);
                            for j in 0..cols {
                                budget.spend(inner as u64)?;
                                let Some(terms) = (0..inner)
                                    .map(|k| {
                                        m[k].get(j)
                                            .map(|v| Expr::Mul(vec![row[k].clone(), v.clone()]))
                                    })
                                    .collect::<Option<Vec<_>>>()
                                else {
                                    return Ok(None);
                                };
                                r.push(Expr::Add(terms));
                            }
                            out.push(r);
                        }
                        out
                    }
                });
            }
            acc.map(|rows| {
                rows.into_iter()
                    .map(|r| {
                        r.into_iter()
                            .map(|v| {
                                if scalars.is_empty() {
                                    v
                                } else {
                                    Expr::Mul([scalars.clone(), vec![v]].concat())
                                }
                            })
                            .collect()
                    })
                    .collect()
            })
        }
        _ => None,
    })
}

fn is_interval_chain(ops: &[RelOp], terms: &[Expr]) -> bool {
    let asc = |o: &RelOp| matches!(o, RelOp::Lt | RelOp::Le);
    let desc = |o: &RelOp| matches!(o, RelOp::Gt | RelOp::Ge);
    ((asc(&ops[0]) && asc(&ops[1])) || (desc(&ops[0]) && desc(&ops[1])))
        && !has_symbol(&terms[0])
        && !has_symbol(&terms[2])
}

fn has_symbol(e: &Expr) -> bool {
    match e {
        Expr::Sym(_) => true,
        Expr::Func(name, args) => !is_builtin(name) || args.iter().any(has_symbol),
        Expr::Num { .. } | Expr::Const(_) => false,
        Expr::Neg(x) => has_symbol(x),
        Expr::Div(a, b) | Expr::Pow(a, b) | Expr::PlusMinus(a, b) => has_symbol(a) || has_symbol(b),
        Expr::Add(v) | Expr::Mul(v) | Expr::Union(v) => v.iter().any(has_symbol),
        Expr::Seq { items, .. } => items.iter().any(has_symbol),
        Expr::Rel { terms, .. } => terms.iter().any(has_symbol),
        Expr::Matrix(rows) => rows.iter().flatten().any(has_symbol),
    }
}

fn is_builtin(name: &str) -> bool {
    matches!(
        name,
        "sqrt"
            | "root"
            | "abs"
            | "factorial"
            | "binom"
            | "exp"
            | "sin"
            | "cos"
            | "tan"
            | "sec"
            | "csc"
            | "cot"
            | "arcsin"
            | "arccos"
            | "arctan"
            | "sinh"
            | "cosh"
            | "tanh"
            | "ln"
            | "log"
            | "floor"
            | "ceil"
            | "max"
            | "min"
    )
}

fn has_number(e: &Expr) -> bool {
    match e {
        Expr::Num { .. } => true,
        Expr::Sym(_) | Expr::Const(_) => false,
        Expr::Func(_, args) => args.iter().any(has_number),
        Expr::Neg(x) => has_number(x),
        Expr::Div(a, b) | Expr::Pow(a, b) | Expr::PlusMinus(a, b) => has_number(a) || has_number(b),
        Expr::Add(v) | Expr::Mul(v) | Expr::Union(v) => v.iter().any(has_number),
        Expr::Seq { items, .. } => items.iter().any(has_number),
        Expr::Rel { terms, .. } => terms.iter().any(has_number),
        Expr::Matrix(rows) => rows.iter().flatten().any(has_number),
    }
}

fn contains_pm(e: &Expr) -> bool {
    match e {
        Expr::PlusMinus(..) => true,
        Expr::Neg(x) => contains_pm(x),
        Expr::Div(a, b) | Expr::Pow(a, b) => contains_pm(a) || contains_pm(b),
        Expr::Add(v) | Expr::Mul(v) => v.iter().any(contains_pm),
        Expr::Func(_, v) => v.iter().any(contains_pm),
        _ => false,
    }
}

/// All sign choices of the `\pm` in a scalar expression (at most 8 branches).
fn expand_pm(e: &Expr, budget: &mut Budget) -> Result<Vec<Expr>, Limit> {
    budget.enter()?;
    let r = match e {
        Expr::PlusMinus(a, b) => {
            let mut out = Vec::new();
            for x in expand_pm(a, budget)? {
                for y in expand_pm(b, budget)? {
                    out.push(Expr::Add(vec![x.clone(), y.clone()]));
                    out.push(Expr::Add(vec![x.clone(), Expr::Neg(Box::new(y))]));
                }
            }
            out
        }
        Expr::Neg(x) => expand_pm(x, budget)?
            .into_iter()
            .map(|y| Expr::Neg(Box::new(y)))
            .collect(),
        Expr::Div(a, b) => product2(expand_pm(a, budget)?, expand_pm(b, budget)?, |x, y| {
            Expr::Div(Box::new(x), Box::new(y))
        }),
        Expr::Pow(a, b) => product2(expand_pm(a, budget)?, expand_pm(b, budget)?, |x, y| {
            Expr::Pow(Box::new(x), Box::new(y))
        }),
        Expr::Add(v) | Expr::Mul(v) | Expr::Func(_, v) => {
            let mut acc: Vec<Vec<Expr>> = vec![Vec::new()];
            for x in v {
                let opts = expand_pm(x, budget)?;
                acc = acc
                    .into_iter()
                    .flat_map(|pre| {
                        opts.iter().map(move |o| {
                            let mut p = pre.clone();
                            p.push(o.clone());
                            p
                        })
                    })
                    .collect();
            }
            acc.into_iter()
                .map(|items| match e {
                    Expr::Add(_) => Expr::Add(items),
                    Expr::Mul(_) => Expr::Mul(items),
                    Expr::Func(n, _) => Expr::Func(n.clone(), items),
                    _ => unreachable!("matched above"),
                })
                .collect()
        }
        other => vec![other.clone()],
    };
    budget.leave();
    if r.len() > 8 {
        return Err(Limit::TooLarge);
    }
    Ok(r)
}

fn product2(a: Vec<Expr>, b: Vec<Expr>, f: impl Fn(Expr, Expr) -> Expr) -> Vec<Expr> {
    let mut out = Vec::new();
    for x in &a {
        for y in &b {
            out.push(f(x.clone(), y.clone()));
        }
    }
    out
}

/// Index of the term that is the value of an `=` / `\approx` chain: the term before the first
/// `\approx` that follows an `=` (`x = 1/3 \approx 0.33` has value `1/3`), else the last term.
fn value_index(ops: &[RelOp], n_terms: usize) -> usize {
    match ops.iter().position(|o| *o == RelOp::Approx) {
        Some(k) if k > 0 => k,
        _ => n_terms - 1,
    }
}

fn is_equation(ops: &[RelOp]) -> bool {
    ops.iter().all(|o| matches!(o, RelOp::Eq | RelOp::Approx))
}

/// `x = 3`, `f(x) = 3`, `(p, q) = (3, 2)`: an equation whose last left side holds no numbers.
fn is_assignment(ops: &[RelOp], terms: &[Expr]) -> bool {
    is_equation(ops) && {
        let v = value_index(ops, terms.len());
        v > 0 && !has_number(&terms[v - 1])
    }
}

fn eq(g: &Expr, p: &Expr, budget: &mut Budget) -> Result<bool, Limit> {
    budget.enter()?;
    let r = eq_inner(g, p, budget);
    budget.leave();
    r
}

fn eq_inner(g: &Expr, p: &Expr, budget: &mut Budget) -> Result<bool, Limit> {
    match (g, p) {
        (Expr::Rel { ops: go, terms: gt }, Expr::Rel { ops: po, terms: pt }) => {
            rel_eq(go, gt, po, pt, budget)
        }
        (Expr::Rel { ops, terms }, _) => {
            if is_assignment(ops, terms) {
                eq(&terms[value_index(ops, terms.len())], p, budget)
            } else {
                Ok(false)
            }
        }
        (_, Expr::Rel { ops, terms }) => {
            if is_equation(ops) {
                eq(g, &terms[value_index(ops, terms.len())], budget)
            } else {
                Ok(false)
            }
        }
        (
            Expr::Seq {
                open: go,
                close: gc,
                items: gi,
            },
            Expr::Seq {
                open: po,
                close: pc,
                items: pi,
            },
        ) => {
            let set_like = |o: char| o == ' ' || o == '{';
            if set_like(*go) && set_like(*po) {
                unordered(gi, pi, budget)
            } else if ((*go == ' ' || *po == ' ') && !(*go == '{' || *po == '{'))
                || (go == po && gc == pc)
            {
                // A bare list matches a tuple in order; brackets must otherwise agree.
                ordered(gi, pi, budget)
            } else {
                Ok(false)
            }
        }
        (Expr::Union(a), Expr::Union(b)) => unordered(a, b, budget),
        (Expr::Matrix(a), Expr::Matrix(b)) => {
            if a.len() != b.len() || a.iter().zip(b).any(|(x, y)| x.len() != y.len()) {
                return Ok(false);
            }
            for (x, y) in a.iter().flatten().zip(b.iter().flatten()) {
                if !eq(x, y, budget)? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        (Expr::Seq { .. } | Expr::Union(_) | Expr::Matrix(_), _)
        | (_, Expr::Seq { .. } | Expr::Union(_) | Expr::Matrix(_)) => Ok(false),
        _ => scalar_eq(g, p, budget),
    }
}

fn ordered(a: &[Expr], b: &[Expr], budget: &mut Budget) -> Result<bool, Limit> {
    if a.len() != b.len() {
        return Ok(false);
    }
    for (x, y) in a.iter().zip(b) {
        if !eq(x, y, budget)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Set equality: every element of each side matches some element of the other.
fn unordered(a: &[Expr], b: &[Expr], budget: &mut Budget) -> Result<bool, Limit> {
    for x in a {
        let mut found = false;
        for y in b {
            if eq(x, y, budget)? {
                found = true;
                break;
            }
        }
        if !found {
            return Ok(false);
        }
    }
    for y in b {
        let mut found = false;
        for x in a {
            if eq(x, y, budget)? {
                found = true;
                break;
            }
        }
        if !found {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The name an assignment assigns to: `f(x)` and `f(y)` both assign to `f`.
fn head(e: &Expr) -> String {
    match e {
        Expr::Func(name, _) => name.clone(),
        other => format!("{other:?}"),
    }
}

fn flip(op: RelOp) -> RelOp {
    match op {
        RelOp::Gt => RelOp::Lt,
        RelOp::Ge => RelOp::Le,
        o => o,
    }
}

fn rel_eq(
    go: &[RelOp],
    gt: &[Expr],
    po: &[RelOp],
    pt: &[Expr],
    budget: &mut Budget,
) -> Result<bool, Limit> {
    if is_equation(go) && is_equation(po) {
        let (gv, pv) = (value_index(go, gt.len()), value_index(po, pt.len()));
        if is_assignment(go, gt)
            && is_assignment(po, pt)
            && head(&gt[gv - 1]) == head(&pt[pv - 1])
            && eq(&gt[gv], &pt[pv], budget)?
        {
            return Ok(true);
        }
        return proportional(&gt[0], &gt[gv], &pt[0], &pt[pv], false, budget);
    }
    if go.len() == 1 && po.len() == 1 {
        // Canonical direction: `a > b` is `b < a`.
        let orient = |op: RelOp, t: &[Expr]| -> (RelOp, Expr, Expr) {
            if matches!(op, RelOp::Gt | RelOp::Ge) {
                (flip(op), t[1].clone(), t[0].clone())
            } else {
                (op, t[0].clone(), t[1].clone())
            }
        };
        let (gop, gl, gr) = orient(go[0], gt);
        let (pop, pl, pr) = orient(po[0], pt);
        if gop != pop {
            return Ok(false);
        }
        if eq(&gl, &pl, budget)? && eq(&gr, &pr, budget)? {
            return Ok(true);
        }
        let positive = matches!(gop, RelOp::Lt | RelOp::Le);
        return proportional(&gl, &gr, &pl, &pr, positive, budget);
    }
    if go.iter().map(|o| flip(*o)).ne(po.iter().map(|o| flip(*o))) {
        return Ok(false);
    }
    ordered(gt, pt, budget)
}

/// Whether `gl - gr` and `pl - pr` agree up to a constant non-zero factor (positive if asked).
fn proportional(
    gl: &Expr,
    gr: &Expr,
    pl: &Expr,
    pr: &Expr,
    positive: bool,
    budget: &mut Budget,
) -> Result<bool, Limit> {
    let dg = Expr::Add(vec![gl.clone(), Expr::Neg(Box::new(gr.clone()))]);
    let dp = Expr::Add(vec![pl.clone(), Expr::Neg(Box::new(pr.clone()))]);
    let mut ratio: Option<Num> = None;
    let mut compared = 0;
    for k in 0..POINTS {
        let (a, b) = match (eval(&dg, Point(k), budget), eval(&dp, Point(k), budget)) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(EvalError::Limit(l)), _) | (_, Err(EvalError::Limit(l))) => return Err(l),
            (Err(EvalError::NotScalar), _) | (_, Err(EvalError::NotScalar)) => return Ok(false),
            _ => continue,
        };
        let zero = Num::F(0.0);
        let (az, bz) = (close(&a, &zero, 1e-12), close(&b, &zero, 1e-12));
        if az && bz {
            continue;
        }
        if az != bz {
            return Ok(false);
        }
        let r = match (&a, &b) {
            (Num::Q(x), Num::Q(y)) => Num::Q(x / y),
            _ => Num::F(a.to_f64() / b.to_f64()),
        };
        if positive && r.to_f64() <= 0.0 {
            return Ok(false);
        }
        match &ratio {
            None => ratio = Some(r),
            Some(r0) => {
                if !close(r0, &r, 1e-9) {
                    return Ok(false);
                }
            }
        }
        compared += 1;
    }
    Ok(compared > 0 || (ratio.is_none() && format!("{dg:?}") == format!("{dp:?}")))
}

fn literal_decimals(e: &Expr) -> Option<u32> {
    match e {
        Expr::Num { decimals, .. } => *decimals,
        Expr::Neg(x) => literal_decimals(x),
        _ => None,
    }
}

fn scalar_eq(g: &Expr, p: &Expr, budget: &mut Budget) -> Result<bool, Limit> {
    if g == p {
        return Ok(true);
    }
    let decimals = match (literal_decimals(g), literal_decimals(p)) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let atol = match decimals {
        Some(k) if k >= 2 => (0.5 * 10f64.powi(-(k as i32))).max(5e-7) * (1.0 + 1e-9),
        Some(_) => 5e-7,
        None => 0.0,
    };
    let symbolic = has_symbol(g) || has_symbol(p);
    let points = if symbolic { POINTS } else { 1 };
    let mut compared = 0;
    for k in 0..points {
        match (eval(g, Point(k), budget), eval(p, Point(k), budget)) {
            (Ok(a), Ok(b)) => {
                let tol = if matches!((&a, &b), (Num::Q(_), Num::Q(_))) {
                    atol
                } else {
                    atol.max(1e-9)
                };
                if !close(&a, &b, tol) {
                    return Ok(false);
                }
                compared += 1;
            }
            (Err(EvalError::Limit(l)), _) | (_, Err(EvalError::Limit(l))) => return Err(l),
            (Err(EvalError::Undefined), Err(EvalError::Undefined)) => {}
            _ => return Ok(false),
        }
    }
    Ok(compared > 0
        || matches!(
            (g, p),
            (
                Expr::Const(Constant::Infinity),
                Expr::Const(Constant::Infinity)
            )
        ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::parse::parse;
    use std::time::Duration;

    fn same(a: &str, b: &str) -> bool {
        let mut bud = Budget::new(1_000_000, Duration::from_secs(1));
        let x = parse(a, &mut bud).expect("gold parses");
        let y = parse(b, &mut bud).expect("pred parses");
        equivalent(&x, &y, &mut bud).expect("within budget")
    }

    #[test]
    fn numbers() {
        assert!(same("\\frac{10}{9}", "10/9"));
        assert!(same("\\frac{1}{12}", "0.0833333333333333"));
        assert!(same("\\frac{1}{3}", "0.33"));
        assert!(!same("\\frac{1}{3}", "0.3"));
        assert!(same("3\\sqrt{13}", "\\sqrt{117}"));
        assert!(!same("4", "4\\sqrt{2}"));
    }

    #[test]
    fn algebra() {
        assert!(same("\\frac{x+2}{7}", "\\frac{x}{7}+\\frac{2}{7}"));
        assert!(same("\\tan^2(y)+1", "\\sec^2(y)"));
        assert!(!same("(a+5)(b+2)", "(+5)(b+2)"));
    }

    #[test]
    fn structures() {
        assert!(same("(1,\\frac{9}{2})", "(1,4.5)"));
        assert!(!same("(0,9)", "[0,9)"));
        assert!(same("1,2,3", "3,2,1"));
        assert!(same("\\{1,2\\}", "2,1"));
        assert!(same("1 \\pm \\sqrt{19}", "1-\\sqrt{19}, 1+\\sqrt{19}"));
        assert!(same("-2 \\le x \\le 7", "x \\in [-2,7]"));
        assert!(same(
            "\\begin{pmatrix}6 & 8 \\\\ 10 & 12\\end{pmatrix}",
            "\\begin{pmatrix}1 & 2 \\\\ 3 & 4\\end{pmatrix} + \\begin{pmatrix}5 & 6 \\\\ 7 & 8\\end{pmatrix}"
        ));
        assert!(same(
            "\\begin{pmatrix}19 & 22 \\\\ 43 & 50\\end{pmatrix}",
            "\\begin{pmatrix}1 & 2 \\\\ 3 & 4\\end{pmatrix} \\begin{pmatrix}5 & 6 \\\\ 7 & 8\\end{pmatrix}"
        ));
    }

    #[test]
    fn relations() {
        assert!(same("x \\le 5", "5 \\ge x"));
        assert!(same("x < 1", "-x > -1"));
        assert!(!same("x < 1", "x > -1"));
        assert!(same("k = 1", "1"));
        assert!(!same("7 = 11a+c", "11a+c"));
        assert!(same("2x+4y-3=0", "y=-\\frac{1}{2}x+\\frac{3}{4}"));
    }
}
