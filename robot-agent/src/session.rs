//! placeholder until the proto crate lands
