//! redraft-model.
