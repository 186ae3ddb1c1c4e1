//! vpclab: an AWS VPC data plane on one Linux box. Instances are network namespaces, ENIs are TAP
//! devices, and one poll-driven forwarding core judges and moves every frame. See `DESIGN.md` for
//! the module map; dependencies point down it: `lab` -> `control`, `dataplane`, `netns`;
//! `dataplane` -> `pipeline` -> `packet`, `model`.

pub mod change;
pub mod conntrack;
pub mod control;
pub mod dataplane;
pub mod lab;
pub mod model;
pub mod nat;
pub mod netns;
pub mod packet;
pub mod pipeline;
pub mod policy;
pub mod topology;
