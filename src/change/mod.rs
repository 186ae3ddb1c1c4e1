//! Changes to a running lab: one path for every face (a file given to `apply`, an EC2-named verb,
//! later the EC2 API).
//!
//! 1. An [`Operation`] edits a copy of the checked model ([`ops`]), or `apply` parses a whole new
//!    file; either way the new model goes through the same validation as `vpclab check` (the copy
//!    is exported as a topology file and parsed again), so a refusal names the field.
//! 2. [`diff()`] compares the old and new models by id into a [`Plan`]: one line per step, named like
//!    the EC2 action it mirrors. What AWS cannot change in place is refused there.
//! 3. [`live`] applies the plan: namespaces and links first (each step with its undo), then the
//!    forwarder swaps in a freshly compiled lab, then what cannot be undone (processes killed,
//!    namespaces deleted). A failure part-way undoes what was done; the lab is as before.
//!
//! Refusals carry AWS's error codes ([`AwsError`]), so a person who knows the EC2 API reads them
//! as they would read AWS's.

pub mod create;
pub mod diff;
pub mod events;
pub mod live;
pub mod ops;

use std::fmt;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

pub use diff::{diff, Plan};
pub use ops::Operation;

/// A refused or failed change, as the EC2 API words it: a code and a message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwsError {
    /// AWS's error code, e.g. `InvalidNetworkInterface.InUse`.
    pub code: String,
    /// What is wrong.
    pub message: String,
}

impl AwsError {
    /// An error with `code`.
    pub fn new(code: &str, message: impl Into<String>) -> AwsError {
        AwsError { code: code.into(), message: message.into() }
    }

    /// `InvalidParameterValue`, AWS's answer to a value that cannot be used.
    pub fn invalid(message: impl Into<String>) -> AwsError {
        AwsError::new("InvalidParameterValue", message)
    }

    /// `OperationNotPermitted`: AWS cannot do this at all (change a CIDR, detach a primary ENI).
    pub fn not_permitted(message: impl Into<String>) -> AwsError {
        AwsError::new("OperationNotPermitted", message)
    }

    /// `InternalError`: the change was valid but applying it failed; it was rolled back.
    pub fn internal(message: impl Into<String>) -> AwsError {
        AwsError::new("InternalError", message)
    }
}

impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for AwsError {}

/// A request to change a lab: one operation, or a whole topology file to converge to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// An EC2-named operation.
    Operation {
        /// The operation.
        op: Operation,
    },
    /// A topology file's text; `file` names it in messages.
    File {
        /// The file's contents.
        text: String,
        /// Its name.
        file: String,
    },
}

/// What a change did (or, with `dry_run`, would do).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// One line per step, named like the EC2 action.
    pub plan: Vec<String>,
    /// Whether it was applied (false for a dry run or an empty plan).
    pub applied: bool,
    /// The forwarder's configuration generation after the change.
    pub generation: u64,
    /// How long applying took, in milliseconds.
    pub millis: u64,
    /// How long the forwarding thread spent on the swap, in microseconds.
    pub swap_micros: u64,
    /// The ids of the objects the change created (or would create), in creation order:
    /// `run-instances` gives each instance's id, then its primary ENI's.
    #[serde(default)]
    pub created: Vec<String>,
}

/// Parses an IPv4 address given to a verb.
pub fn parse_ip(s: &str) -> Result<Ipv4Addr, AwsError> {
    s.trim().parse().map_err(|_| AwsError::invalid(format!("`{s}` is not an IPv4 address")))
}

#[cfg(test)]
mod tests;
