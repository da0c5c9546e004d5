//! The crate's error type.
//!
//! Every function of this crate validates its inputs and returns [`Error`] instead of panicking
//! or producing NaN: mismatched lengths, empty groups where a group must have members,
//! non-finite rewards (the index is named), and out-of-range parameters.

/// Invalid input to a credit-assignment function.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A reward (or another scalar input named by `what`) is NaN or infinite.
    ///
    /// `index` is the position in the flat input the caller passed; for nested inputs
    /// (`&[Vec<f32>]`) it is the position in the row-major concatenation, and `group` names the
    /// row.
    #[error("non-finite {what} {value} at index {index} (group {group:?})")]
    NonFinite {
        /// What the value is ("reward", "logprob", ...).
        what: &'static str,
        /// Flat index of the offending value.
        index: usize,
        /// Group (row) of the offending value, for nested inputs.
        group: Option<usize>,
        /// The offending value.
        value: f32,
    },
    /// Two inputs that must have the same length do not.
    #[error("length mismatch for {what}: expected {expected}, got {got}")]
    LengthMismatch {
        /// Which input has the wrong length.
        what: &'static str,
        /// The length it must have.
        expected: usize,
        /// The length it has.
        got: usize,
    },
    /// A group (or episode, or batch) that must have at least one member is empty.
    #[error("empty {what} at index {index}")]
    Empty {
        /// What is empty ("group", "episode", "batch").
        what: &'static str,
        /// Index of the empty item.
        index: usize,
    },
    /// A parameter is out of its valid range.
    #[error("invalid parameter {name}: {reason}")]
    InvalidParameter {
        /// The parameter's name.
        name: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// An estimator whose statistics span the whole batch was asked for the advantages of one
    /// group alone; call a batched method with every group of the batch instead.
    #[error("{estimator} needs the whole batch: use advantages_nested or advantages_by_id")]
    NeedsBatch {
        /// The estimator's config name.
        estimator: &'static str,
    },
    /// An input is inconsistent with the procedure it describes (for example a regeneration
    /// round recorded for a prompt that did not need one).
    #[error("inconsistent input: {0}")]
    Inconsistent(String),
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Checks that every value is finite; names the first that is not.
pub(crate) fn check_finite(what: &'static str, values: &[f32]) -> Result<()> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(Error::NonFinite {
            what,
            index,
            group: None,
            value: values[index],
        }),
        None => Ok(()),
    }
}

/// Checks that every value of every row is finite; names the first that is not by its flat
/// (row-major) index and its row.
pub(crate) fn check_finite_nested(what: &'static str, rows: &[Vec<f32>]) -> Result<()> {
    let mut offset = 0;
    for (g, row) in rows.iter().enumerate() {
        if let Some(i) = row.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite {
                what,
                index: offset + i,
                group: Some(g),
                value: row[i],
            });
        }
        offset += row.len();
    }
    Ok(())
}

/// Checks `got == expected`.
pub(crate) fn check_len(what: &'static str, expected: usize, got: usize) -> Result<()> {
    if expected == got {
        Ok(())
    } else {
        Err(Error::LengthMismatch {
            what,
            expected,
            got,
        })
    }
}

/// Checks that a parameter is finite and positive.
pub(crate) fn check_positive(name: &'static str, value: f32) -> Result<()> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(Error::InvalidParameter {
            name,
            reason: format!("must be finite and > 0, got {value}"),
        })
    }
}

/// Checks that a parameter is finite and non-negative.
pub(crate) fn check_non_negative(name: &'static str, value: f32) -> Result<()> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(Error::InvalidParameter {
            name,
            reason: format!("must be finite and >= 0, got {value}"),
        })
    }
}
