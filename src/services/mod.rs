//! What the fabric itself answers, as AWS's does: DHCP so far (the Amazon DNS server and instance
//! metadata are still to come). Each service is pure: request bytes and facts in, reply bytes out.

pub mod dhcp;
pub mod imds;
