//! `Describe*` against the embedded default lab: every action writes a response its shape
//! accepts, and ids, filters and pages narrow as EC2's do.

use serde_json::{json, Value};

use super::*;
use crate::api::wire;

const ACTIONS: &[&str] = &[
    "DescribeVpcs",
    "DescribeSubnets",
    "DescribeNetworkInterfaces",
    "DescribeInstances",
    "DescribeSecurityGroups",
    "DescribeSecurityGroupRules",
    "DescribeRouteTables",
    "DescribeNetworkAcls",
    "DescribeAddresses",
    "DescribeNatGateways",
    "DescribeInternetGateways",
    "DescribeVpcPeeringConnections",
    "DescribeAvailabilityZones",
    "DescribeInstanceTypes",
    "DescribeFlowLogs",
];

fn lab() -> Model {
    crate::topology::parse(crate::topology::DEFAULT_TOPOLOGY, "default.toml").expect("valid")
}

fn ask(action: &str, input: Value) -> Result<Value, ApiError> {
    describe(action, &input, &lab())
}

fn ids(v: &Value, list: &str, id: &str) -> Vec<String> {
    v[list].as_array().unwrap().iter().map(|x| x[id].as_str().unwrap().to_string()).collect()
}

#[test]
fn every_action_answers_in_its_own_shape() {
    for action in ACTIONS {
        let body = ask(action, json!({})).unwrap_or_else(|e| panic!("{action}: {e:?}"));
        let xml = wire::write_output(action, "r", &body).unwrap_or_else(|e| panic!("{action}: {e:?}"));
        assert!(xml.contains(&format!("<{action}Response xmlns=")), "{xml}");
    }
}

#[test]
fn network_interfaces_filter_by_instance_address_group_and_status() {
    let m = lab();
    let web = &m.enis[m.eni_by_id("eni-web").unwrap().index()];
    let instance = &m.instances[web.attachment.unwrap().instance.index()].id;
    let f = |name: &str, value: &str| json!({"Filters": [{"Name": name, "Values": [value]}]});
    let by = |name: &str, value: &str| {
        ids(&ask("DescribeNetworkInterfaces", f(name, value)).unwrap(), "NetworkInterfaces", "NetworkInterfaceId")
    };
    assert!(by("attachment.instance-id", instance).contains(&"eni-web".to_string()));
    assert_eq!(by("private-ip-address", &web.private_ip.to_string()), ["eni-web"]);
    assert_eq!(by("addresses.private-ip-address", "10.0.1.11"), ["eni-web"], "a secondary address");
    let group = &m.security_groups[web.security_groups[0].index()].id;
    assert!(by("group-id", group).contains(&"eni-web".to_string()));
    assert!(by("status", "in-use").contains(&"eni-web".to_string()));
    assert!(!by("status", "available").contains(&"eni-web".to_string()));
    assert!(by("subnet-id", "subnet-nope").is_empty());
    // Wildcards, as EC2 takes them.
    assert!(by("network-interface-id", "eni-w?b*").contains(&"eni-web".to_string()));
}

#[test]
fn an_unknown_id_or_filter_is_refused_with_ec2s_code() {
    let e = ask("DescribeVpcs", json!({"VpcIds": ["vpc-nope"]})).unwrap_err();
    assert_eq!((e.status, e.code.as_str()), (400, "InvalidVpcID.NotFound"));
    assert!(e.message.contains("vpc-nope"), "{}", e.message);
    let e = ask("DescribeNetworkInterfaces", json!({"NetworkInterfaceIds": ["eni-nope"]})).unwrap_err();
    assert_eq!(e.code, "InvalidNetworkInterfaceID.NotFound");
    let e = ask("DescribeSubnets", json!({"Filters": [{"Name": "colour", "Values": ["blue"]}]})).unwrap_err();
    assert_eq!(e.code, "InvalidParameterValue");
    // Tags: the lab's objects have none, so a tag filter matches nothing.
    let v = ask("DescribeSubnets", json!({"Filters": [{"Name": "tag:Name", "Values": ["x"]}]})).unwrap();
    assert_eq!(v["Subnets"], json!([]));
}

#[test]
fn pages_cover_every_item_once() {
    let all = ids(&ask("DescribeInstanceTypes", json!({})).unwrap(), "InstanceTypes", "InstanceType");
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut input = json!({"MaxResults": 7});
        if let Some(t) = &token {
            input["NextToken"] = t.clone().into();
        }
        let v = ask("DescribeInstanceTypes", input).unwrap();
        let page = ids(&v, "InstanceTypes", "InstanceType");
        assert!(page.len() <= 7);
        seen.extend(page);
        match v["NextToken"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, all);
    assert_eq!(ask("DescribeVpcs", json!({"MaxResults": 2})).unwrap_err().code, "InvalidParameterValue");
    assert_eq!(ask("DescribeVpcs", json!({"NextToken": "forged"})).unwrap_err().code, "InvalidParameterValue");
}

#[test]
fn instances_come_in_reservations_with_their_interfaces_and_public_address() {
    let v =
        ask("DescribeInstances", json!({"Filters": [{"Name": "instance-state-name", "Values": ["running"]}]})).unwrap();
    let reservations = v["Reservations"].as_array().unwrap();
    assert_eq!(reservations.len(), lab().instances.len());
    let web = reservations
        .iter()
        .map(|r| &r["Instances"][0])
        .find(|i| i["NetworkInterfaces"][0]["NetworkInterfaceId"] == "eni-web")
        .expect("the web instance");
    assert_eq!(web["PublicIpAddress"], "203.0.113.20");
    assert_eq!(web["State"]["Name"], "running");
    assert!(web["NetworkInterfaces"][0]["Attachment"]["AttachmentId"].as_str().unwrap().starts_with("eni-attach-"));
}

#[test]
fn groups_rules_routes_and_acls_read_as_ec2_reports_them() {
    let m = lab();
    let groups = ask("DescribeSecurityGroups", json!({})).unwrap();
    let default = groups["SecurityGroups"].as_array().unwrap().iter().find(|g| g["GroupName"] == "default").unwrap();
    // A default group admits its own members: a group pair naming itself.
    assert_eq!(default["IpPermissions"][0]["IpProtocol"], "-1");
    assert_eq!(default["IpPermissions"][0]["UserIdGroupPairs"][0]["GroupId"], default["GroupId"]);
    let rules = ask("DescribeSecurityGroupRules", json!({})).unwrap();
    let ids: Vec<&str> = rules["SecurityGroupRules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["SecurityGroupRuleId"].as_str().unwrap())
        .collect();
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "rule ids are distinct");
    let tables = ask(
        "DescribeRouteTables",
        json!({"Filters": [{"Name": "association.subnet-id", "Values": ["subnet-private"]}]}),
    )
    .unwrap();
    let routes = &tables["RouteTables"][0]["Routes"];
    assert_eq!(routes[0]["GatewayId"], "local");
    assert!(routes.as_array().unwrap().iter().any(|r| r["NatGatewayId"].is_string()), "{routes}");
    let acls = ask("DescribeNetworkAcls", json!({})).unwrap();
    for acl in acls["NetworkAcls"].as_array().unwrap() {
        let last = acl["Entries"].as_array().unwrap().iter().filter(|e| e["RuleNumber"] == 32767).count();
        assert_eq!(last, 2, "the final deny both ways");
    }
    assert_eq!(owner_id(&m).len(), 12);
}

#[test]
fn glob_matches_as_ec2_filters_do() {
    assert!(glob("*", ""));
    assert!(glob("10.0.*", "10.0.1.10"));
    assert!(glob("eni-?eb", "eni-web"));
    assert!(!glob("eni-?eb", "eni-webb"));
    assert!(glob("a*b*c", "aXXbYYc"));
    assert!(!glob("a*b*c", "aXXbYY"));
}
