//! redraft-feedback-protocol: see the crate description. Filled in by issue #4.
