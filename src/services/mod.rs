//! What the fabric itself answers, as AWS's does: DHCP and instance metadata (the Amazon DNS
//! server is still to come). Each service's decisions are pure: request and facts in, reply out;
//! the metadata service's I/O is apart, in `imds::server`.

pub mod dhcp;
pub mod imds;
