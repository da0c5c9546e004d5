//! redraft-trainer: see the crate description. Filled in by issue #6.
