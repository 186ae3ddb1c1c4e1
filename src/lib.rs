//! vpclab: an AWS VPC data plane on one Linux box. Instances are network namespaces, ENIs are TAP
//! devices, and one poll-driven forwarding core judges and moves every frame. See `DESIGN.md` for
//! the module map; dependencies point down it: `lab` -> `control`, `dataplane`, `netns`;
//! `dataplane` -> `pipeline` -> `packet`, `model`.

/// One line to the forwarder's log (its standard error, `<run dir>/<lab>.log`), stamped with the
/// wall-clock time to the millisecond.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {
        eprintln!("{} {}", humantime::format_rfc3339_millis(std::time::SystemTime::now()), format_args!($($arg)*))
    };
}

pub mod api;
pub mod capture;
pub mod change;
pub mod conntrack;
pub mod control;
pub mod dataplane;
pub mod http;
pub mod lab;
pub mod model;
pub mod nat;
pub mod netns;
pub mod packet;
pub mod pipeline;
pub mod policy;
pub mod services;
pub mod topology;
