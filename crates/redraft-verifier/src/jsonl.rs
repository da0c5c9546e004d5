//! JSONL.
