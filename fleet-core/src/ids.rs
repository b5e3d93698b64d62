//! Typed identifiers. String ids are checked once on the way in (non-empty, at most 64 characters of
//! `[A-Za-z0-9._-]`), so the rest of the code never re-validates them.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

use crate::CoreError;

/// Longest accepted string id, in bytes.
pub const MAX_ID_LEN: usize = 64;

fn check_id(kind: &str, s: &str) -> Result<(), CoreError> {
    if s.is_empty() {
        return Err(CoreError::invalid(format!("{kind} must not be empty")));
    }
    if s.len() > MAX_ID_LEN {
        return Err(CoreError::invalid(format!("{kind} is {} bytes long; the limit is {MAX_ID_LEN}", s.len())));
    }
    if let Some(c) = s.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))) {
        return Err(CoreError::invalid(format!("{kind} {s:?} contains {c:?}; use letters, digits, '-', '_' or '.'")));
    }
    Ok(())
}

macro_rules! string_id {
    ($(#[$m:meta])* $name:ident, $kind:literal) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        // Shared, not owned: ids are cloned into every plan, task and message, and a clone is then a count.
        pub struct $name(Arc<str>);

        impl $name {
            /// Checks `s` and wraps it.
            pub fn parse(s: &str) -> Result<Self, CoreError> {
                check_id($kind, s)?;
                Ok(Self(Arc::from(s)))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl TryFrom<String> for $name {
            type Error = CoreError;
            fn try_from(s: String) -> Result<Self, CoreError> {
                check_id($kind, &s)?;
                Ok(Self(Arc::from(s)))
            }
        }
        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0.to_string()
            }
        }
    };
}

string_id!(
    /// A robot, as registered by an operator.
    RobotId,
    "robot id"
);
string_id!(
    /// A shop (merchant), as registered by an operator.
    ShopId,
    "shop id"
);
string_id!(
    /// An order; assigned by the dispatcher, never by the caller.
    OrderId,
    "order id"
);

/// A node of the imported map graph (its index). Stable for one map import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub u32);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        assert!(RobotId::parse("r-1.a_b").is_ok());
        for bad in ["", "a b", "é", "x/y", &"x".repeat(65)] {
            let err = RobotId::parse(bad).expect_err(bad);
            assert!(matches!(err, CoreError::InvalidArgument(_)), "{bad}: {err}");
        }
        assert!(ShopId::parse(&"s".repeat(64)).is_ok());
    }

    #[test]
    fn serde_refuses_bad_ids() {
        let ok: Result<ShopId, _> = serde_json::from_str("\"shop-1\"");
        assert_eq!(ok.expect("valid").as_str(), "shop-1");
        let bad: Result<ShopId, _> = serde_json::from_str("\"\"");
        assert!(bad.is_err());
    }
}
