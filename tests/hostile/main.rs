//! Hostile inputs to the `redraft` program: each ends in a clear error naming what is wrong and a
//! non-zero exit (no output file), or in the right answer; none panics, and outputs are checked
//! before the work starts.

#[path = "../common/mod.rs"]
mod common;

mod inputs;
mod lora;
mod reasoning_gym;
mod resume;
mod runs;
