//! What the fabric itself answers, as AWS's does: DHCP, the Amazon DNS server and instance
//! metadata. Each service's decisions are pure: request and facts in, reply out; the metadata
//! service's I/O is apart, in `imds::server`.

pub mod dhcp;
pub mod dns;
pub mod imds;
