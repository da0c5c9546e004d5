//! The crate's error type.
//!
//! Every objective validates its inputs and returns [`Error`] instead of panicking or producing
//! NaN: shapes are checked against the batch (the message names the expected and the found
//! shape), empty batches are rejected, inputs an objective needs and did not get are named, and
//! rows an objective does not know how to train are refused.

use crate::batch::RowKind;

/// Invalid input to an objective, or an invalid configuration.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An input does not have the shape the batch requires.
    #[error("shape mismatch for {what}: expected {expected:?}, found {found:?}")]
    ShapeMismatch {
        /// Which input has the wrong shape.
        what: &'static str,
        /// The shape it must have.
        expected: Vec<usize>,
        /// The shape it has.
        found: Vec<usize>,
    },
    /// The batch has no row or no time step.
    #[error("empty batch: {batch} rows x {time} time steps")]
    EmptyBatch {
        /// Number of rows.
        batch: usize,
        /// Number of time steps.
        time: usize,
    },
    /// An input the objective needs was not supplied (for example reference log-probs for a
    /// KL term with a positive coefficient, or entropies for an entropy bonus).
    #[error("missing input {what}: {why}")]
    MissingInput {
        /// The missing input.
        what: &'static str,
        /// Why the objective needs it.
        why: &'static str,
    },
    /// The batch contains a row of a kind this objective does not train.
    #[error("objective {objective} does not accept rows of kind {kind:?} (row {row})")]
    UnsupportedRow {
        /// The objective's name.
        objective: &'static str,
        /// The row's kind.
        kind: RowKind,
        /// The row index.
        row: usize,
    },
    /// A preference pair is invalid (index out of range, a row that is not a
    /// [`RowKind::Pair`] row, a row used twice in one pair, or a side without a valid token).
    #[error("invalid pair {index}: {reason}")]
    InvalidPair {
        /// Index of the pair.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// A value on a trainable token (or a per-row value) is NaN or infinite.
    #[error("non-finite {what} {value} at flat index {index}")]
    NonFinite {
        /// What the value is ("advantage", "old log-prob", ...).
        what: &'static str,
        /// Flat row-major index of the value.
        index: usize,
        /// The value.
        value: f32,
    },
    /// A configuration parameter is out of its valid range.
    #[error("invalid parameter {name}: {reason}")]
    InvalidParameter {
        /// The parameter's name.
        name: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// An error from the credit-assignment crate (loss-aggregation weights).
    #[error(transparent)]
    CreditAssignment(#[from] redraft_credit_assignment::Error),
    /// Reading a metric back from the device failed.
    #[error("reading metrics from the device failed: {0}")]
    TensorRead(String),
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn check_param(name: &'static str, value: f64, ok: bool, rule: &str) -> Result<()> {
    if ok && value.is_finite() {
        Ok(())
    } else {
        Err(Error::InvalidParameter {
            name,
            reason: format!("{rule}, got {value}"),
        })
    }
}

/// `value` must be finite and `>= 0`.
pub(crate) fn check_non_negative(name: &'static str, value: f64) -> Result<()> {
    check_param(name, value, value >= 0.0, "must be finite and >= 0")
}

/// `value` must be finite and `> 0`.
pub(crate) fn check_positive(name: &'static str, value: f64) -> Result<()> {
    check_param(name, value, value > 0.0, "must be finite and > 0")
}
