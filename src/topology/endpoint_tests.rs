//! `[[vpc_endpoint]]`, `service` tags and prefix-list rules: the model they give, each refused
//! mistake with its line and field, the export round trip, and the plan of a change.

use super::*;
use crate::model::{EndpointKind, PrefixList, SgPeer};

const LAB: &str = include_str!("../../netns-setup/endpoints.toml");

fn replaced(from: &str, to: &str) -> String {
    assert!(LAB.contains(from), "the lab holds `{from}`");
    LAB.replacen(from, to, 1)
}

/// The one problem of `text`, as `line field: message`.
fn problem(text: &str) -> String {
    match parse(text, "e.toml") {
        Ok(_) => panic!("expected a problem"),
        Err(e) => {
            assert_eq!(e.problems.len(), 1, "{e}");
            let p = &e.problems[0];
            format!("{} {}: {}", p.line, p.field, p.message)
        }
    }
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).expect("the needle is in the text") + 1
}

#[test]
fn the_endpoints_lab_gives_route_tables_interfaces_and_prefix_lists() {
    let m = parse(LAB, "e.toml").unwrap_or_else(|e| panic!("{e}"));
    let s3 = &m.vpc_endpoints[0];
    let EndpointKind::Gateway { route_tables } = &s3.kind else { panic!("vpce-s3 is a gateway") };
    let tables: Vec<&str> = route_tables.iter().map(|t| m.route_tables[t.index()].id.as_str()).collect();
    assert_eq!(tables, ["rtb-private", "rtb-mixed"]);
    let EndpointKind::Interface { interfaces, security_groups, private_dns_enabled } = &m.vpc_endpoints[1].kind else {
        panic!("vpce-sqs is an interface endpoint")
    };
    assert_eq!(interfaces[0].id, "eni-vpce-sqs-subnet-endpoints");
    assert_eq!(interfaces[0].private_ip.to_string(), "10.0.4.4", "the subnet's first free address");
    assert_eq!(m.security_groups[security_groups[0].index()].id, "sg-endpoint");
    assert!(private_dns_enabled, "AWS's default");
    let pl = m.prefix_list("s3").unwrap();
    assert_eq!(pl.name, "com.amazonaws.us-east-1.s3");
    assert_eq!(pl.id, PrefixList::id_of("us-east-1", "s3"));
    assert!(pl.id.starts_with("pl-") && pl.id.len() == 11, "{}", pl.id);
    let cidrs: Vec<String> = pl.cidrs.iter().map(|c| c.to_string()).collect();
    assert_eq!(cidrs, ["198.51.100.20/32", "198.51.100.21/32"]);
    assert_eq!(m.prefix_lists().len(), 1, "no dynamodb host");
    assert!(m.prefix_list("sqs").is_none(), "AWS manages prefix lists for gateway services only");
    assert_eq!(s3.service_name(m.region()), "com.amazonaws.us-east-1.s3");
}

#[test]
fn a_prefix_list_in_a_security_group_rule_becomes_its_cidrs_and_an_unknown_one_is_refused() {
    let pl = PrefixList::id_of("us-east-1", "s3");
    let text = replaced(
        "[[security_group]]\nid = \"sg-open\"",
        &format!("[[security_group]]\nid = \"sg-s3\"\nvpc = \"vpc-a\"\negress = [{{ protocol = \"tcp\", ports = 443, destination = \"{pl}\" }}]\n\n[[security_group]]\nid = \"sg-open\""),
    );
    let m = parse(&text, "e.toml").unwrap_or_else(|e| panic!("{e}"));
    let g = m.security_groups.iter().find(|g| g.id == "sg-s3").unwrap();
    let peers: Vec<SgPeer> = g.egress.iter().map(|r| r.peer).collect();
    assert_eq!(
        peers,
        [SgPeer::Cidr("198.51.100.20/32".parse().unwrap()), SgPeer::Cidr("198.51.100.21/32".parse().unwrap())]
    );
    let bad = text.replace(&pl, "pl-00000000");
    let line = line_of(&bad, "pl-00000000");
    let want = format!(
        "{line} security_group \"sg-s3\".egress[0].destination: `pl-00000000` is not a prefix list of this lab; its prefix lists: {pl} (com.amazonaws.us-east-1.s3)"
    );
    assert_eq!(problem(&bad), want);
}

#[test]
fn each_endpoint_mistake_names_its_line_and_field() {
    let cases: Vec<(String, &str, &str)> = vec![
        (
            replaced("route_tables = [\"rtb-private\", \"rtb-mixed\"]", "route_tables = [\"rtb-nope\"]"),
            "rtb-nope",
            "vpc_endpoint \"vpce-s3\".route_tables[0]: `rtb-nope` does not exist: no object has this id (a route table expected)",
        ),
        (
            replaced("service = \"s3\"\nroute_tables", "service = \"sqs\"\nroute_tables"),
            "service = \"sqs\"\nroute_tables",
            "vpc_endpoint \"vpce-s3\".service: a gateway endpoint serves s3 or dynamodb only, not `sqs`",
        ),
        (
            replaced("{ id = \"sqs\", ip = \"198.51.100.40\", service = \"sqs\" }", "{ id = \"sqs\", ip = \"198.51.100.40\" }"),
            "service = \"sqs\"\nsubnets",
            "vpc_endpoint \"vpce-sqs\".service: no [internet] host plays `sqs`: give one `service = \"sqs\"` to stand for the service",
        ),
        (
            replaced("type = \"Gateway\"", "type = \"Gateway\"\nsubnets = [\"subnet-private\"]"),
            "subnets = [\"subnet-private\"]",
            "vpc_endpoint \"vpce-s3\".subnets: a Gateway endpoint takes no `subnets`",
        ),
        (
            replaced("type = \"Interface\"", "type = \"Interfaces\""),
            "type = \"Interfaces\"",
            "vpc_endpoint \"vpce-sqs\".type: `Interfaces` is not an endpoint type: `Gateway` or `Interface`",
        ),
        (
            replaced("subnets = [\"subnet-endpoints\"]", "subnets = [\"subnet-endpoints\", \"subnet-private\"]"),
            "subnets = [\"subnet-endpoints\", \"subnet-private\"]",
            "vpc_endpoint \"vpce-sqs\".subnets: `subnet-endpoints` is in az-a already: an endpoint takes one subnet per availability zone",
        ),
        (
            replaced("subnets = [\"subnet-endpoints\"]", "subnets = [\"subnet-endpoints\"]\nprivate_ips = [\"10.0.2.10\"]"),
            "private_ips = [\"10.0.2.10\"]",
            "vpc_endpoint \"vpce-sqs\".private_ips[0]: 10.0.2.10 is outside subnet `subnet-endpoints` (10.0.4.0/24)",
        ),
        (
            replaced("subnets = [\"subnet-endpoints\"]", "subnets = [\"subnet-endpoints\"]\nprivate_ips = []"),
            "private_ips = []",
            "vpc_endpoint \"vpce-sqs\".private_ips: give one address per subnet: 1 subnets, 0 addresses",
        ),
        (
            replaced("[[vpc_endpoint]]\nid = \"vpce-sqs\"", "[[vpc_endpoint]]\nid = \"vpce-s3-again\"\nvpc = \"vpc-a\"\ntype = \"Gateway\"\nservice = \"s3\"\nroute_tables = [\"rtb-mixed\"]\n\n[[vpc_endpoint]]\nid = \"vpce-sqs\""),
            "route_tables = [\"rtb-mixed\"]",
            "vpc_endpoint \"vpce-s3-again\".route_tables: `rtb-mixed` already routes s3 to endpoint `vpce-s3`",
        ),
        (
            replaced("{ id = \"s3-a\", ip = \"198.51.100.20\", service = \"s3\" }", "{ id = \"s3-a\", ip = \"198.51.100.20\", service = \"S3!\" }"),
            "service = \"S3!\"",
            "internet.hosts \"s3-a\".service: `S3!` is not a service name: use a-z, 0-9 and '-', like s3 or dynamodb",
        ),
    ];
    for (text, needle, want) in cases {
        let line = line_of(&text, needle.lines().next().unwrap());
        assert_eq!(problem(&text), format!("{line} {want}"), "{needle}");
    }
}

#[test]
fn a_route_table_of_another_vpc_is_refused() {
    let text = format!(
        "{LAB}\n[[vpc]]\nid = \"vpc-b\"\ncidr = \"10.1.0.0/16\"\n\n[[route_table]]\nid = \"rtb-b\"\nvpc = \"vpc-b\"\n"
    )
    .replacen("route_tables = [\"rtb-private\", \"rtb-mixed\"]", "route_tables = [\"rtb-b\"]", 1);
    let line = line_of(&text, "route_tables = [\"rtb-b\"]");
    assert_eq!(
        problem(&text),
        format!("{line} vpc_endpoint \"vpce-s3\".route_tables[0]: `rtb-b` is in VPC `vpc-b`, not the endpoint's VPC `vpc-a`")
    );
}

#[test]
fn endpoints_and_service_tags_export_and_parse_back_to_the_same_model() {
    let m = parse(LAB, "e.toml").unwrap();
    export::assert_round_trip(&m, parse);
    let text = export(&m);
    assert!(text.contains("[[vpc_endpoint]]") && text.contains("service = \"s3\""), "{text}");
    let no_dns = parse(
        &replaced("service = \"sqs\"\nsubnets", "service = \"sqs\"\nprivate_dns_enabled = false\nsubnets"),
        "e.toml",
    )
    .unwrap();
    export::assert_round_trip(&no_dns, parse);
}

#[test]
fn a_changed_lab_plans_create_delete_and_modify_vpc_endpoint() {
    let old = parse(LAB, "e.toml").unwrap();
    let new = parse(
        &replaced("route_tables = [\"rtb-private\", \"rtb-mixed\"]", "route_tables = [\"rtb-private\"]").replacen(
            "id = \"vpce-sqs\"",
            "id = \"vpce-sqs2\"",
            1,
        ),
        "e.toml",
    )
    .unwrap();
    let plan = crate::change::diff(&old, &new).unwrap();
    assert!(
        plan.steps.contains(&"ModifyVpcEndpoint vpce-s3 Gateway s3 route-tables rtb-private".to_string()),
        "{plan:?}"
    );
    assert!(
        plan.steps
            .iter()
            .any(|s| s.starts_with("CreateVpcEndpoint vpce-sqs2 Interface sqs subnets subnet-endpoints=10.0.4.4")),
        "{plan:?}"
    );
    assert!(plan.steps.contains(&"DeleteVpcEndpoint vpce-sqs".to_string()), "{plan:?}");
    let other_service = parse(
        &LAB.replace("service = \"s3\"\nroute_tables", "service = \"dynamodb\"\nroute_tables")
            .replace("service = \"s3\" }", "service = \"dynamodb\" }"),
        "e.toml",
    )
    .unwrap();
    assert!(crate::change::diff(&old, &other_service).is_err(), "an endpoint's service cannot change in place");
}
