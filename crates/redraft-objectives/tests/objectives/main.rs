//! Tests of redraft-objectives (one test binary; see each module).

mod budget;
mod common;
mod config;
mod gradcheck;
mod properties;
mod reference;
mod trainer_step;
mod trinity;
mod worked_examples;
