//! Data-driven math equivalence cases beyond the conformance suite: typical final answers of
//! MATH / GSM8K-style datasets.

use redraft_verifier::math_equivalent;

const SAME: &[(&str, &str)] = &[
    ("\\frac{\\sqrt{3}}{2}", "\\frac{1}{2}\\sqrt{3}"),
    ("\\dfrac{3}{4}", "0.75"),
    ("2\\sqrt{2}", "\\sqrt{8}"),
    ("(-\\infty, 3]", "(-\\infty,3]"),
    ("x^2+2x+1", "(x+1)^2"),
    ("\\pi/2", "\\frac{\\pi}{2}"),
    ("90^\\circ", "90"),
    ("\\$5.00", "5"),
    ("10\\%", "10"),
    ("3", "3.0"),
    ("1,000,000", "10^6"),
    ("\\{1,2,3\\}", "\\{3,2,1\\}"),
    ("y = 2x + 3", "y=3+2x"),
    ("\\text{(B)}", "B"),
    ("-\\frac{1}{2}", "-0.5"),
    ("\\frac{1}{\\sqrt{2}}", "\\frac{\\sqrt{2}}{2}"),
    ("e^{2}", "e^2"),
    ("\\left[ 1, 2 \\right)", "[1,2)"),
    ("2^{10}", "1024"),
    ("\\binom{5}{2}", "10"),
    ("5!", "120"),
    ("\\log_2 8", "3"),
    ("12", "The answer is $\\boxed{12}$."),
    ("\\tfrac{1}{2}", "1/2"),
    ("\\frac{a+b}{2}", "\\frac{b+a}{2}"),
    ("x \\in (0, 1)", "(0,1)"),
    ("4", "x = 4"),
    ("\\sqrt[3]{27}", "3"),
    ("C", "the answer is (C)"),
    (
        "18",
        "Janet sells 16 - 3 - 4 = 9 duck eggs, so she makes 9 * 2 = $18 every day.\n#### 18",
    ),
    ("\\frac{7}{2}", "<answer>3.5</answer>"),
    ("(3, -1)", "\\boxed{\\left(3,-1\\right)}"),
    (
        "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}",
        "\\boxed{\\begin{pmatrix}1\\\\2\\end{pmatrix}}",
    ),
    ("k \\ge 2", "2 \\le k"),
    ("3\\sqrt{2}", "\\boxed{\\sqrt{18}}"),
    ("\\frac{1}{4}", "\\boxed{25\\%}"),
    ("10\\%", "0.1"),
    ("1500000", "about 1.5e6 people"),
    ("\\pm 2", "x = \\pm 2"),
    ("-2, 2", "\\boxed{\\pm 2}"),
    ("6", "\\boxed{\\gcd(12, 18)}"),
    ("0.0015", "\\boxed{1.5 \\times 10^{-3}}"),
];

const DIFFERENT: &[(&str, &str)] = &[
    ("3", "4"),
    ("\\frac{1}{2}", "\\frac{1}{3}"),
    ("x+1", "x-1"),
    ("(1,2)", "(2,1)"),
    ("[1,2]", "(1,2)"),
    ("\\{1,2\\}", "\\{1,2,3\\}"),
    ("x^2", "x^3"),
    ("1000", "100"),
    ("10\\%", "0.2"),
    ("y=2x+3", "y=2x+4"),
    ("A", "B"),
    ("\\frac{1}{3}", "0.3"),
    ("x > 1", "x \\ge 1"),
    ("2", "\\boxed{}"),
    ("5", "I don't know"),
    ("2", "\\boxed{2^{2^{2^{2^{2^{2}}}}}}"),
];

#[test]
fn equivalent_answers_match() {
    let fails: Vec<_> = SAME
        .iter()
        .filter(|(g, p)| !math_equivalent(g, p))
        .collect();
    assert!(fails.is_empty(), "should match: {fails:#?}");
}

#[test]
fn different_answers_do_not_match() {
    let fails: Vec<_> = DIFFERENT
        .iter()
        .filter(|(g, p)| math_equivalent(g, p))
        .collect();
    assert!(fails.is_empty(), "should not match: {fails:#?}");
}
