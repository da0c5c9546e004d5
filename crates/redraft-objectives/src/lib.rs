//! redraft-objectives: see the crate description. Filled in by issue #5.
