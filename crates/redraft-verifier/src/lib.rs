//! redraft-verifier: see the crate description. Filled in by issue #3.
