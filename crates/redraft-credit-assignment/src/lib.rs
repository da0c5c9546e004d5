//! redraft-credit-assignment: see the crate description. Filled in by issue #5.
