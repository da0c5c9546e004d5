//! redraft facade.
