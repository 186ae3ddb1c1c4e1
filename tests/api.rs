//! The EC2 Query API (`up --api ADDR`) driven by the real clients, awscli and boto3 from the
//! `.venv` that `scripts/install-deps.sh` makes: what they describe agrees with `status` and
//! `export`, refused calls carry EC2's codes and change nothing, and the scripts people run for
//! failover (a keepalived notify script, an HA route monitor) move real traffic.

mod common;

use std::net::TcpListener;
use std::process::{Command, Output};

use common::*;
use serde_json::Value;

const VENV: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin");
const SCRIPTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ec2api");

/// A loopback port nobody listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A lab with its API on a port of its own; returns it and the endpoint URL.
fn api_lab(tag: &str, body: &str) -> (TestLab, String) {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let lab = TestLab::up_with(tag, body, &["--api", &addr]);
    (lab, format!("http://{addr}"))
}

/// Runs a client from `tests/ec2api` (a Python script with the venv's Python, or a shell script
/// with the venv's awscli on the path).
fn client(script: &str, args: &[&str]) -> Output {
    let python = format!("{VENV}/python");
    assert!(
        std::path::Path::new(&python).exists(),
        "{python} is missing: scripts/install-deps.sh makes it (boto3, awscli)"
    );
    let path = format!("{SCRIPTS}/{script}");
    let mut cmd = if script.ends_with(".py") { Command::new(&python) } else { Command::new("bash") };
    cmd.arg(&path).args(args).output().expect("the client runs")
}

fn client_json(script: &str, args: &[&str]) -> Value {
    let out = client(script, args);
    assert!(out.status.success(), "{script} failed:\n{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{script} printed no JSON ({e}):\n{}", text(&out)))
}

fn export(lab: &TestLab) -> String {
    let out = vpclab(&["export", &lab.name]);
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn boto3_describes_what_status_and_export_show() {
    let (lab, endpoint) = api_lab("apidesc", &default_body());
    let found = client_json("describe_all.py", &[&endpoint]);
    let status = lab.status();
    // `status` lists the internet side's port too; EC2 has no such interface.
    let enis: Vec<&Value> = status["enis"].as_array().unwrap().iter().filter(|e| e["id"] != "internet").collect();
    for eni in &enis {
        let id = eni["id"].as_str().unwrap();
        let mut ips: Vec<&str> = eni["ips"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        ips.sort_unstable();
        assert_eq!(found["enis"][id], serde_json::json!(ips), "{id}: {found:#}\n{eni:#}");
    }
    assert_eq!(found["enis"].as_object().unwrap().len(), enis.len(), "{found:#}");
    let exported = export(&lab);
    for (kind, section) in [
        ("vpcs", "vpc"),
        ("subnets", "subnet"),
        ("nat_gateways", "nat_gateway"),
        ("internet_gateways", "internet_gateway"),
    ] {
        for id in found[kind].as_array().unwrap() {
            assert!(exported.contains(&format!("id = {id}")), "{section} {id} is not in the export:\n{exported}");
        }
    }
    assert_eq!(found["instances"]["web"], "running");
    assert_eq!(found["addresses"]["eipalloc-web"], "203.0.113.20");
    assert_eq!(found["web_enis"], serde_json::json!(["eni-web"]));
    assert!(found["instance_types"].as_u64().unwrap() > 50, "{found:#}");
}

#[test]
fn refused_calls_carry_ec2s_codes_and_leave_the_lab_as_it_was() {
    let (lab, endpoint) = api_lab("apirefuse", &default_body());
    let before = export(&lab);
    let codes = client_json("refusals.py", &[&endpoint]);
    let expected = [
        ("describe_unknown_vpc", "InvalidVpcID.NotFound"),
        ("unknown_filter", "InvalidParameterValue"),
        ("duplicate_route", "RouteAlreadyExists"),
        ("route_to_nowhere", "InvalidGatewayID.NotFound"),
        ("duplicate_rule", "InvalidPermission.Duplicate"),
        ("half_duplicate_rules", "InvalidPermission.Duplicate"),
        ("taken_address", "PrivateIpAddressInUse"),
        ("attach_attached", "InvalidNetworkInterface.InUse"),
        ("dry_run", "DryRunOperation"),
        ("stop_unknown", "InvalidInstanceID.NotFound"),
        ("not_implemented", "InvalidAction"),
    ];
    for (call, code) in expected {
        assert_eq!(codes[call], code, "{call}: {codes:#}");
    }
    assert_eq!(export(&lab), before, "a refused call changed the lab");
    assert!(pings(&lab, "web", "10.0.2.10"), "the lab still forwards");
}

#[test]
fn a_keepalived_style_script_moves_a_floating_address_and_traffic_follows() {
    let (lab, endpoint) = api_lab("apifloat", &default_body());
    let vip = "10.0.2.51";
    let out = client("failover.sh", &[&endpoint, "eni-app", vip]);
    assert!(out.status.success(), "{}", text(&out));
    let app = tcp_listen(&lab.ns("app"), addr(vip, 8080));
    let served = tcp_echo_all(app, 1, 10);
    let mut c = tcp_connect(&lab.ns("web"), addr(vip, 8080), 5).expect("web reaches the address on app");
    assert_eq!(echo_over(&mut c, b"on app").unwrap(), b"on app");
    drop(c);
    assert_eq!(served.join().unwrap(), 1);

    // The standby takes it over, as a notify script does on becoming master.
    let out = client("failover.sh", &[&endpoint, "eni-standby", vip]);
    assert!(out.status.success(), "{}", text(&out));
    let standby = tcp_listen(&lab.ns("standby"), addr(vip, 8080));
    let served = tcp_echo_all(standby, 1, 10);
    let mut c = tcp_connect(&lab.ns("web"), addr(vip, 8080), 5).expect("web reaches the address on standby");
    assert_eq!(echo_over(&mut c, b"on standby").unwrap(), b"on standby");
    drop(c);
    assert_eq!(served.join().unwrap(), 1);
    let app_addrs = text(&lab.exec("app", &["ip", "-4", "-o", "addr"]));
    assert!(!app_addrs.contains(vip), "app still holds {vip}:\n{app_addrs}");
}

#[test]
fn an_ha_monitor_replaces_routes_when_its_appliance_stops_and_traffic_follows() {
    let (lab, endpoint) = api_lab("apiha", APPLIANCES);
    for appl in ["appl1", "appl2"] {
        for s in ["net.ipv4.ip_forward=1", "net.ipv4.conf.all.send_redirects=0", "net.ipv4.conf.eth0.send_redirects=0"]
        {
            lab.must(appl, &["sysctl", "-w", s]);
        }
    }
    let out = Command::new(format!("{VENV}/aws"))
        .args(["--endpoint-url", &endpoint, "ec2", "modify-network-interface-attribute"])
        .args(["--network-interface-id", "eni-appl2", "--no-source-dest-check"])
        .envs([("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"), ("AWS_DEFAULT_REGION", "us-east-1")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(lab.ping("a1", "10.0.2.10").status.success(), "a1 -> b1 through appl1");

    // appl1 dies (stopped through the API too); the monitor, probing from a1, swings the routes.
    let monitor = std::thread::spawn({
        let (endpoint, ns) = (endpoint.clone(), lab.ns("a1"));
        move || client("route_monitor.py", &[&endpoint, &ns, "10.0.3.10", "eni-appl1", "eni-appl2", "30"])
    });
    let stop = Command::new(format!("{VENV}/python"))
        .args(["-c", "import boto3,sys; boto3.client('ec2', endpoint_url=sys.argv[1], region_name='us-east-1', aws_access_key_id='t', aws_secret_access_key='t').stop_instances(InstanceIds=['appl1'])", &endpoint])
        .output()
        .unwrap();
    assert!(stop.status.success(), "{}", text(&stop));
    let out = monitor.join().unwrap();
    assert!(out.status.success(), "the monitor did not fail over:\n{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["replaced"].as_array().unwrap().len(), 2, "{report:#}");
    assert!(eventually(10, || pings(&lab, "a1", "10.0.2.10")), "a1 -> b1 through appl2");
    assert!(pings(&lab, "b1", "10.0.1.10"), "b1 -> a1 through appl2");
    let t = lab.trace(&["--from", "a1", "--to", "10.0.2.10"]);
    assert_eq!(t["delivered_to"], "eni-appl2", "{t:#}");
}

#[test]
fn a_lab_with_credentials_checks_signatures() {
    let body = format!("{}\n[api]\naccess_key_id = \"AKIDLAB\"\nsecret_access_key = \"lab-secret\"\n", default_body());
    let (_lab, endpoint) = api_lab("apiauth", &body);
    let call = |key: &str, secret: &str| {
        let code = "import boto3,sys\nfrom botocore.exceptions import ClientError\n\
            c = boto3.client('ec2', endpoint_url=sys.argv[1], region_name='us-east-1', aws_access_key_id=sys.argv[2], aws_secret_access_key=sys.argv[3])\n\
            try:\n    print(len(c.describe_vpcs()['Vpcs']))\nexcept ClientError as e:\n    print(e.response['Error']['Code'])";
        let out = Command::new(format!("{VENV}/python")).args(["-c", code, &endpoint, key, secret]).output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    assert_eq!(call("AKIDLAB", "lab-secret"), "1");
    assert_eq!(call("AKIDLAB", "wrong"), "SignatureDoesNotMatch");
    assert_eq!(call("AKIDOTHER", "lab-secret"), "AuthFailure");
}

#[test]
fn boto3_builds_a_lab_from_nothing_and_traffic_flows_through_it() {
    let (lab, endpoint) = api_lab("apinothing", "[internet]\nhosts = [{ id = \"example\", ip = \"198.51.100.7\" }]\n");
    let got = client_json("build_from_nothing.py", &[&endpoint]);
    let s = |k: &str| got[k].as_str().unwrap_or_else(|| panic!("{k}: {got:#}")).to_string();
    assert_eq!(got["delete_vpc"], "DependencyViolation", "{got:#}");
    let life = &got["lifecycle"];
    assert_eq!(life["peering"], serde_json::json!(["pending-acceptance", "active"]), "{got:#}");
    assert_eq!((life["nat_state"].as_str(), life["nat_gone"].as_u64()), (Some("available"), Some(0)), "{got:#}");
    assert_eq!(life["groups"], serde_json::json!(["default", "lab"]), "{got:#}");
    assert_eq!(life["addresses"], 1, "the NAT gateway's address was released: {got:#}");
    assert_eq!(got["states"], serde_json::json!(["running", "running"]));
    assert_eq!(got["back_enis"].as_array().unwrap().len(), 2, "the attached ENI is the back instance's: {got:#}");
    let (front, back) = (s("front"), s("back"));
    // Run-instances, then attach-network-interface, then traffic: to both of back's ENIs.
    assert!(pings(&lab, &front, &s("back_ip")), "front -> back");
    assert!(pings(&lab, &front, &s("extra_ip")), "front -> back's attached ENI");
    // The group admits its own members on 7000.
    let server = tcp_listen(&lab.ns(&back), addr(&s("back_ip"), 7000));
    let served = tcp_echo_all(server, 1, 10);
    let mut c = tcp_connect(&lab.ns(&front), addr(&s("back_ip"), 7000), 5).expect("front reaches back on 7000");
    assert_eq!(echo_over(&mut c, b"built").unwrap(), b"built");
    drop(c);
    assert_eq!(served.join().unwrap(), 1);
    // Out through the internet gateway with the allocated Elastic IP.
    assert!(pings(&lab, &front, "198.51.100.7"), "front -> the internet");
    let exported = export(&lab);
    for id in [s("vpc"), s("igw"), s("rtb"), front.clone(), back.clone(), s("extra_eni")] {
        assert!(exported.contains(&id), "{id} is not in the export:\n{exported}");
    }
    // The API changed the same model `apply` converges: its own export is no change.
    let file = std::env::temp_dir().join(format!("{}-exported.toml", lab.name));
    std::fs::write(&file, &exported).unwrap();
    let out = vpclab(&["apply", "--lab", &lab.name, file.to_str().unwrap()]);
    let _ = std::fs::remove_file(&file);
    assert!(out.status.success() && text(&out).contains("No changes."), "{}", text(&out));
}
