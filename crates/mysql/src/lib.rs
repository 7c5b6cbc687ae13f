//! placeholder until the source lands
