//! The path tree and the token rules on a small model.

use super::*;

const LAB: &str = r#"
name = "meta"

[[vpc]]
id = "vpc-a"
cidr = "10.0.0.0/16"

[[subnet]]
id = "subnet-1"
vpc = "vpc-a"
cidr = "10.0.1.0/24"
availability_zone = "us-east-1b"

[[security_group]]
id = "sg-web"
vpc = "vpc-a"
name = "web"

[[instance]]
id = "web"
instance_type = "t3.micro"

[[instance]]
id = "locked"
metadata_options = { http_tokens = "required", http_put_response_hop_limit = 2 }

[[instance]]
id = "off"
metadata_options = { http_endpoint = "disabled" }

[[network_interface]]
id = "eni-web"
subnet = "subnet-1"
private_ip = "10.0.1.10"
secondary_private_ips = ["10.0.1.11"]
security_groups = ["sg-web"]
mac_address = "02:00:00:00:00:0a"
attachment = { instance = "web", device_index = 0 }

[[network_interface]]
id = "eni-web-2"
subnet = "subnet-1"
private_ip = "10.0.1.12"
mac_address = "02:00:00:00:00:0b"
attachment = { instance = "web", device_index = 1 }

[[network_interface]]
id = "eni-locked"
subnet = "subnet-1"
private_ip = "10.0.1.20"
attachment = { instance = "locked", device_index = 0 }

[[network_interface]]
id = "eni-off"
subnet = "subnet-1"
private_ip = "10.0.1.30"
attachment = { instance = "off", device_index = 0 }

[[elastic_ip]]
id = "eipalloc-web"
public_ip = "203.0.113.20"
network_interface = "eni-web"
private_ip = "10.0.1.11"
"#;

fn model() -> Model {
    crate::topology::parse(LAB, "meta.toml").expect("the test lab is valid")
}

fn get(m: &Model, path: &str) -> Option<String> {
    lookup(m, m.instance_by_id("web").unwrap(), path)
}

#[test]
fn instance_paths_describe_the_primary_eni() {
    let m = model();
    assert_eq!(get(&m, "/latest/meta-data/instance-id").as_deref(), Some("web"));
    assert_eq!(get(&m, "/latest/meta-data/instance-type").as_deref(), Some("t3.micro"));
    assert_eq!(get(&m, "/latest/meta-data/local-ipv4").as_deref(), Some("10.0.1.10"));
    assert_eq!(get(&m, "/latest/meta-data/mac").as_deref(), Some("02:00:00:00:00:0a"));
    assert_eq!(get(&m, "/latest/meta-data/placement/availability-zone").as_deref(), Some("us-east-1b"));
    assert_eq!(get(&m, "/latest/meta-data/hostname").as_deref(), Some("ip-10-0-1-10.ec2.internal"));
    assert_eq!(get(&m, "/latest/meta-data/local-hostname").as_deref(), Some("ip-10-0-1-10.ec2.internal"));
    // The Elastic IP is on a secondary address: the primary has no public IPv4.
    assert_eq!(get(&m, "/latest/meta-data/public-ipv4"), None);
}

#[test]
fn interfaces_are_listed_by_mac_with_their_fields() {
    let m = model();
    assert_eq!(
        get(&m, "/latest/meta-data/network/interfaces/macs/").as_deref(),
        Some("02:00:00:00:00:0a/\n02:00:00:00:00:0b/")
    );
    let dir = "/latest/meta-data/network/interfaces/macs/02:00:00:00:00:0a/";
    let at = |leaf: &str| get(&m, &format!("{dir}{leaf}"));
    assert_eq!(at("device-number").as_deref(), Some("0"));
    assert_eq!(at("interface-id").as_deref(), Some("eni-web"));
    assert_eq!(at("local-ipv4s").as_deref(), Some("10.0.1.10\n10.0.1.11"));
    assert_eq!(at("public-ipv4s").as_deref(), Some("203.0.113.20"));
    assert_eq!(at("ipv4-associations/").as_deref(), Some("203.0.113.20"));
    assert_eq!(at("ipv4-associations/203.0.113.20").as_deref(), Some("10.0.1.11"));
    assert_eq!(at("subnet-id").as_deref(), Some("subnet-1"));
    assert_eq!(at("subnet-ipv4-cidr-block").as_deref(), Some("10.0.1.0/24"));
    assert_eq!(at("vpc-id").as_deref(), Some("vpc-a"));
    assert_eq!(at("vpc-ipv4-cidr-blocks").as_deref(), Some("10.0.0.0/16"));
    assert_eq!(at("security-group-ids").as_deref(), Some("sg-web"));
    assert_eq!(at("security-groups").as_deref(), Some("web"));
    assert_eq!(at("owner-id"), Some(crate::api::describe::owner_id(&m)));
    let listing = at("").unwrap();
    assert!(listing.starts_with("device-number\ninterface-id\nipv4-associations/\nlocal-hostname\n"), "{listing}");
    let second = "/latest/meta-data/network/interfaces/macs/02:00:00:00:00:0b/device-number";
    assert_eq!(get(&m, second).as_deref(), Some("1"));
    assert_eq!(get(&m, "/latest/meta-data/network/interfaces/macs/02:00:00:00:00:0b/public-ipv4s"), None);
}

#[test]
fn directories_list_with_or_without_a_slash_and_the_rest_is_not_found() {
    let m = model();
    let root = get(&m, "/latest/meta-data/").unwrap();
    assert_eq!(
        root.split('\n').collect::<Vec<_>>(),
        ["hostname", "instance-id", "instance-type", "local-hostname", "local-ipv4", "mac", "network/", "placement/"]
    );
    assert_eq!(get(&m, "/latest/meta-data"), Some(root));
    assert_eq!(get(&m, "/latest/meta-data/placement").as_deref(), Some("availability-zone\nregion"));
    for missing in [
        "/latest/meta-data/iam/security-credentials/",
        "/latest/meta-data/iam/",
        "/latest/meta-data/nope",
        "/latest/meta-data/instance-id/x",
        "/latest/meta-dataX",
        "/2009-04-04/meta-data/",
        "/",
        "",
    ] {
        assert_eq!(get(&m, missing), None, "{missing}");
    }
}

fn ask<'a>(method: &'a str, target: &'a str, headers: &'a [(String, String)]) -> Ask<'a> {
    Ask { method, target, headers }
}

fn h(k: &str, v: &str) -> (String, String) {
    (k.to_string(), v.to_string())
}

fn eni(m: &Model, id: &str) -> EniIdx {
    EniIdx(m.enis.iter().position(|e| e.id == id).unwrap() as u32)
}

#[test]
fn v1_is_answered_where_tokens_are_optional_and_refused_where_required() {
    let (m, mut t, now) = (model(), Tokens::default(), Duration::from_secs(5));
    let r = answer(&m, eni(&m, "eni-web-2"), &mut t, now, [0; 24], ask("GET", "/latest/meta-data/instance-id", &[]));
    assert_eq!((r.status, r.body.as_str()), ("200 OK", "web"));
    let r = answer(&m, eni(&m, "eni-locked"), &mut t, now, [0; 24], ask("GET", "/latest/meta-data/instance-id", &[]));
    assert_eq!(r.status, "401 Unauthorized");
    let r = answer(&m, eni(&m, "eni-off"), &mut t, now, [0; 24], ask("GET", "/latest/meta-data/instance-id", &[]));
    assert_eq!(r.status, "403 Forbidden");
}

#[test]
fn a_token_is_issued_with_the_hop_limit_and_opens_v2_for_its_instance_only() {
    let (m, mut t, now) = (model(), Tokens::default(), Duration::from_secs(5));
    let locked = eni(&m, "eni-locked");
    let ttl = [h("X-aws-ec2-metadata-token-ttl-seconds", "60")];
    let r = answer(&m, locked, &mut t, now, [7; 24], ask("PUT", "/latest/api/token", &ttl));
    assert_eq!((r.status, r.ttl), ("200 OK", Some(2)));
    assert_eq!(r.headers, [("X-aws-ec2-metadata-token-ttl-seconds", "60".to_string())]);
    let token = [h("x-aws-ec2-metadata-token", &r.body)];
    let later = now + Duration::from_secs(59);
    let r = answer(&m, locked, &mut t, later, [0; 24], ask("GET", "/latest/meta-data/local-ipv4", &token));
    assert_eq!((r.status, r.body.as_str(), r.ttl), ("200 OK", "10.0.1.20", None));
    assert_eq!(r.headers, [("X-aws-ec2-metadata-token-ttl-seconds", "1".to_string())]);
    // Another instance's token, or an expired one, is invalid: 401 even where v1 is allowed.
    let web = eni(&m, "eni-web");
    let r = answer(&m, web, &mut t, later, [0; 24], ask("GET", "/latest/meta-data/local-ipv4", &token));
    assert_eq!(r.status, "401 Unauthorized");
    let expired = now + Duration::from_secs(60);
    let r = answer(&m, locked, &mut t, expired, [0; 24], ask("GET", "/latest/meta-data/local-ipv4", &token));
    assert_eq!(r.status, "401 Unauthorized");
}

#[test]
fn token_requests_are_checked_as_aws_does() {
    let (m, mut t, now) = (model(), Tokens::default(), Duration::ZERO);
    let web = eni(&m, "eni-web");
    for bad in ["0", "21601", "x", ""] {
        let ttl = [h("X-aws-ec2-metadata-token-ttl-seconds", bad)];
        let r = answer(&m, web, &mut t, now, [0; 24], ask("PUT", "/latest/api/token", &ttl));
        assert_eq!(r.status, "400 Bad Request", "ttl {bad:?}");
    }
    let r = answer(&m, web, &mut t, now, [0; 24], ask("PUT", "/latest/api/token", &[]));
    assert_eq!(r.status, "400 Bad Request");
    let proxied = [h("X-aws-ec2-metadata-token-ttl-seconds", "21600"), h("X-Forwarded-For", "10.0.9.9")];
    let r = answer(&m, web, &mut t, now, [0; 24], ask("PUT", "/latest/api/token", &proxied));
    assert_eq!(r.status, "403 Forbidden");
    let r = answer(&m, web, &mut t, now, [0; 24], ask("GET", "/latest/api/token", &[]));
    assert_eq!(r.status, "405 Method Not Allowed");
    let r = answer(&m, web, &mut t, now, [0; 24], ask("POST", "/latest/meta-data/", &[]));
    assert_eq!(r.status, "405 Method Not Allowed");
    let r = answer(&m, web, &mut t, now, [0; 24], ask("GET", "/latest/meta-data/iam/security-credentials/", &[]));
    assert_eq!(r.status, "404 Not Found");
    assert!(t.is_empty());
}

#[test]
fn the_token_table_is_bounded() {
    let mut t = Tokens::default();
    for i in 0..MAX_TOKENS + 10 {
        let mut random = [0; 24];
        random[..8].copy_from_slice(&(i as u64).to_le_bytes());
        t.issue(Duration::ZERO, "web", Duration::from_secs(1 + i as u64), random);
    }
    assert_eq!(t.len(), MAX_TOKENS);
}

#[test]
fn pool_addresses_name_port_and_slot_and_nothing_else() {
    assert_eq!(client_address(0, 0), Some(Ipv4Addr::new(100, 64, 0, 0)));
    let a = client_address(300, 5).unwrap();
    assert_eq!(client_of(a), Some((300, 5)));
    assert_eq!(client_of(client_address(MAX_PORTS - 1, SLOTS - 1).unwrap()), Some((MAX_PORTS - 1, SLOTS - 1)));
    assert_eq!(client_address(MAX_PORTS, 0), None);
    assert_eq!(client_address(0, SLOTS), None);
    assert_eq!(client_of(Ipv4Addr::new(100, 128, 0, 0)), None);
    assert_eq!(client_of(Ipv4Addr::new(10, 0, 1, 10)), None);
}
