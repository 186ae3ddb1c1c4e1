//! The `dns_query` target: bytes as a UDP payload sent to the Amazon DNS server
//! (`vpclab::services::dns::respond`), for an ENI of the fuzz lab's first VPC. Never a panic; an
//! answer is a DNS response to the same id, and no longer than 512 bytes unless the query
//! carried EDNS (hickory-proto reads the answer back: the code under test does not check itself).

use std::sync::OnceLock;

use hickory_proto::op::{Message, MessageType};
use vpclab::model::VpcIdx;
use vpclab::services::dns::{respond, Names, EDNS_LIMIT, PLAIN_UDP_LIMIT};

fn names() -> &'static Names {
    static NAMES: OnceLock<Names> = OnceLock::new();
    NAMES.get_or_init(|| Names::new(crate::model()))
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let Ok(reply) = respond(data, VpcIdx(0), names()) else { return };
    let answer = Message::from_vec(&reply).expect("every answer is a DNS message");
    assert_eq!(answer.metadata.message_type, MessageType::Response);
    assert_eq!(reply[..2], data[..2], "the answer carries the query's id");
    let limit = if answer.edns.is_some() { usize::from(EDNS_LIMIT) } else { PLAIN_UDP_LIMIT };
    assert!(reply.len() <= limit, "{} bytes over the {limit} the client can take", reply.len());
}
