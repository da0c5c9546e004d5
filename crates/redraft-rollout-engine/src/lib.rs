//! redraft-rollout-engine: see the crate description. Filled in by issue #4.
