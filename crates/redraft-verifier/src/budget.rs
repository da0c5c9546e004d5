//! Work budgets: the cancellation mechanism behind every check's time limit.
//!
//! Every loop and recursion of the math parser and evaluator calls [`Budget::step`]; once the
//! step budget or the wall-clock deadline is spent, the check stops with [`Limit::TimedOut`] and
//! becomes a "timed out" verdict. Steps make verdicts deterministic on ordinary inputs; the
//! deadline is a backstop.

use std::time::{Duration, Instant};

/// The deepest recursion a check may reach (parser and evaluator levels, several per bracket).
pub const MAX_DEPTH: usize = 600;

/// Why a check was cancelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// The step budget or deadline ran out.
    TimedOut,
    /// An input or an intermediate value exceeds a size cap.
    TooLarge,
}

/// A step counter plus a deadline, checked inside every loop and recursion of a check.
#[derive(Clone, Debug)]
pub struct Budget {
    steps_left: u64,
    deadline: Instant,
    depth: usize,
    max_depth: usize,
}

impl Budget {
    /// A budget of `steps` elementary steps and `time` of wall clock, whichever ends first.
    pub fn new(steps: u64, time: Duration) -> Self {
        Self {
            steps_left: steps,
            deadline: Instant::now() + time,
            depth: 0,
            max_depth: MAX_DEPTH,
        }
    }

    /// Spends one step; fails once the budget or the deadline is exhausted.
    pub fn step(&mut self) -> Result<(), Limit> {
        self.spend(1)
    }

    /// Spends `n` steps at once (for work proportional to a size, such as big-number products).
    pub fn spend(&mut self, n: u64) -> Result<(), Limit> {
        if self.steps_left < n {
            self.steps_left = 0;
            return Err(Limit::TimedOut);
        }
        self.steps_left -= n;
        if self.steps_left % 256 < n.min(256) && Instant::now() > self.deadline {
            self.steps_left = 0;
            return Err(Limit::TimedOut);
        }
        Ok(())
    }

    /// Enters one level of recursion; fails with [`Limit::TooLarge`] past the depth cap.
    pub fn enter(&mut self) -> Result<(), Limit> {
        self.step()?;
        if self.depth >= self.max_depth {
            return Err(Limit::TooLarge);
        }
        self.depth += 1;
        Ok(())
    }

    /// Leaves one level of recursion entered with [`Budget::enter`].
    pub fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }
}
