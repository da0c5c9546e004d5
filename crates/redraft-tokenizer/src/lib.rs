//! redraft-tokenizer: see the crate description. Filled in by issue #2.
