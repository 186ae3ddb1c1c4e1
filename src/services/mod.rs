//! What the fabric itself answers, as AWS's does: DHCP and the Amazon DNS server (instance
//! metadata is still to come). Each service is pure: request bytes and facts in, reply bytes out.

pub mod dhcp;
pub mod dns;
