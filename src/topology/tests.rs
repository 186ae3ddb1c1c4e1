use super::*;

#[test]
fn scratch() {
    match parse(DEFAULT_TOPOLOGY, DEFAULT_TOPOLOGY_FILE) {
        Ok(m) => println!("{}", serde_json::to_string(&m).unwrap()),
        Err(e) => println!("{e}"),
    }
    for t in [
        "name = \"x\"\n[[subnet]]\nid = \"s\"\nvpc = \"v\"\n",
        "name = \"x\"\n[[subnet]]\nid = \"s\"\nvpc = \"v\"\ncidr = 5\n",
        "name = \"x\"\n[[subnet]]\nid = \"s\"\nvpc = \"v\"\nfoo = 5\n",
        "name = \"x\"\n[[route_table]]\nid = \"r\"\nvpc = \"v\"\nroutes = [\n  { destination = \"1.0.0.0/8\", target = 5 },\n]\n",
        "name = \"x\"\n[[route_table]]\nid = \"r\"\nvpc = \"v\"\nroutes = [\n  { destination = \"1.0.0.0/8\", targt = \"x\" },\n]\n",
        "name = \"x\"\n[[network_interface]]\nid = \"r\"\nattachment = { instance = \"a\", device_index = \"x\" }\n",
        "name = \"x\"\nnme = 3\n",
        "name = \"x\"\n[internet]\nhosts = [ { id = \"h\", ip = 5 } ]\n",
        "name = \"x\n",
    ] {
        println!("{}", parse(t, "t.toml").unwrap_err());
    }
}
