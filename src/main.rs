//! The `vpclab` command: parses arguments, calls the library, prints. No logic of its own.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use vpclab::control::{self, LabStatus, Request, Response};
use vpclab::lab;
use vpclab::model::{InstanceIdx, Model};
use vpclab::{netns, topology};

/// An AWS VPC data plane on one Linux box: instances are network namespaces, ENIs are TAP
/// devices, and one forwarder judges and moves every frame.
#[derive(Parser, Debug)]
#[command(name = "vpclab", version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Validate a topology, create its instances and ENIs, and start forwarding.
    Up {
        /// The topology file; without it, the embedded default lab (netns-setup/default.toml).
        topology: Option<PathBuf>,
        /// Stay attached and tear the lab down on Ctrl-C, instead of running a background daemon.
        #[arg(long)]
        foreground: bool,
    },
    /// Stop a lab's forwarder and remove every namespace and device it created.
    Down {
        /// The lab; may be left out when one lab is running.
        lab: Option<String>,
    },
    /// List running labs, or show one lab's ENIs with live counters.
    Status {
        /// The lab; without it, every lab is listed (and the only one shown in detail).
        lab: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run a command inside an instance.
    Exec {
        /// The lab; may be left out when one lab is running.
        #[arg(long)]
        lab: Option<String>,
        /// The instance id.
        instance: String,
        /// The command and its arguments (after `--`).
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Validate a topology without creating anything.
    Check {
        /// The topology file.
        topology: PathBuf,
    },
    /// The forwarder process that `up` starts (internal).
    #[command(hide = true)]
    Daemon {
        /// The topology file, or none for the embedded default.
        topology: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vpclab: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cmd: Cmd) -> anyhow::Result<ExitCode> {
    match cmd {
        Cmd::Up { topology, foreground } => up(topology, foreground),
        Cmd::Down { lab } => down(lab.as_deref()),
        Cmd::Status { lab, json } => status(lab.as_deref(), json),
        Cmd::Exec { lab, instance, command } => exec(lab.as_deref(), &instance, &command),
        Cmd::Check { topology } => {
            let model = load(Some(&topology))?;
            println!(
                "{}: lab `{}` is valid: {} VPC(s), {} subnet(s), {} instance(s), {} ENI(s)",
                topology.display(),
                model.name,
                model.vpcs.len(),
                model.subnets.len(),
                model.instances.len(),
                model.enis.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Daemon { topology } => daemon(topology),
    }
}

/// Reads and validates a topology; `None` is the embedded default lab.
fn load(path: Option<&PathBuf>) -> anyhow::Result<Model> {
    let model = match path {
        Some(p) => topology::load(p)?,
        None => topology::parse(topology::DEFAULT_TOPOLOGY, topology::DEFAULT_TOPOLOGY_FILE)?,
    };
    Ok(model)
}

fn topology_label(path: Option<&PathBuf>) -> String {
    match path {
        Some(p) => p.display().to_string(),
        None => format!("{} (embedded)", topology::DEFAULT_TOPOLOGY_FILE),
    }
}

fn need_root() -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("creating namespaces and TAP devices needs root: run with sudo");
    }
    Ok(())
}

fn up(path: Option<PathBuf>, foreground: bool) -> anyhow::Result<ExitCode> {
    let model = load(path.as_ref())?;
    need_root()?;
    let label = topology_label(path.as_ref());
    if foreground {
        lab::run_forwarder(model, &label, |m| {
            print_lab(m, std::process::id());
            println!("forwarding in the foreground; Ctrl-C stops the lab and removes it");
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(rec) = lab::read_record(&model.name).filter(|r| lab::forwarder_alive(r.pid)) {
        bail!(
            "lab `{}` is already running (forwarder pid {}); `vpclab down {}` stops it",
            model.name,
            rec.pid,
            model.name
        );
    }
    std::fs::create_dir_all(lab::RUN_DIR).with_context(|| format!("creating {}", lab::RUN_DIR))?;
    let log_path = lab::log_path(&model.name);
    let log = std::fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.arg("daemon");
    if let Some(p) = &path {
        cmd.arg(std::fs::canonicalize(p)?);
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(log);
    // SAFETY: setsid is async-signal-safe; it detaches the forwarder from our terminal and
    // process group so Ctrl-C in this shell does not reach it.
    unsafe {
        cmd.pre_exec(|| nix::unistd::setsid().map(drop).map_err(std::io::Error::from));
    }
    let mut child = cmd.spawn().context("starting the forwarder")?;
    let stdout = child.stdout.take().expect("stdout was piped");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    match line.trim_end() {
        "ready" => {
            print_lab(&model, child.id());
            Ok(ExitCode::SUCCESS)
        }
        other => {
            let _ = child.wait();
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let msg = other.strip_prefix("error: ").unwrap_or(other);
            let detail = if msg.is_empty() { log.trim().to_string() } else { msg.to_string() };
            bail!("the lab did not come up (nothing was left behind): {detail}");
        }
    }
}

fn daemon(path: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let mut stdout = std::io::stdout();
    let result = load(path.as_ref()).and_then(|model| {
        let label = topology_label(path.as_ref());
        lab::run_forwarder(model, &label, |_| {
            let _ = writeln!(stdout, "ready");
            let _ = stdout.flush();
            // `up` stops reading after this line; nothing else may go to the pipe.
            if let Ok(null) = std::fs::File::open("/dev/null") {
                let _ = nix::unistd::dup2_stdout(null);
            }
        })
    });
    if let Err(e) = &result {
        let msg = format!("{e:#}").replace('\n', " ");
        let _ = writeln!(std::io::stdout(), "error: {msg}");
        eprintln!("vpclab daemon: {msg}");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_lab(model: &Model, pid: u32) {
    println!(
        "lab `{}` is up: {} instance(s), {} ENI(s); forwarder pid {pid}",
        model.name,
        model.instances.len(),
        model.enis.iter().filter(|e| e.attachment.is_some()).count()
    );
    println!("{:<12} {:<4} {:<16} {:<18} {:<18} ADDRESSES", "INSTANCE", "IF", "ENI", "SUBNET", "MAC");
    for i in 0..model.instances.len() {
        let inst = InstanceIdx(i as u32);
        for e in model.enis_of(inst) {
            let eni = &model.enis[e.index()];
            let subnet = model.subnet_of(e);
            let ips: Vec<String> = eni.private_ips().map(|ip| format!("{ip}/{}", subnet.cidr.prefix)).collect();
            println!(
                "{:<12} {:<4} {:<16} {:<18} {:<18} {}",
                model.instances[i].id,
                format!("eth{}", eni.attachment.map_or(0, |a| a.device_index)),
                eni.id,
                subnet.id,
                eni.mac,
                ips.join(", ")
            );
        }
    }
    let unenforced = model.unenforced_sections();
    if !unenforced.is_empty() {
        println!("validated but not yet enforced on packets: {}", unenforced.join(", "));
    }
}

fn down(named: Option<&str>) -> anyhow::Result<ExitCode> {
    need_root()?;
    let lab = lab::resolve_lab(named)?;
    let Some(rec) = lab::read_record(&lab) else {
        let _ = std::fs::remove_file(lab::log_path(&lab));
        println!("lab `{lab}` is not running; nothing to remove");
        return Ok(ExitCode::SUCCESS);
    };
    if lab::forwarder_alive(rec.pid) {
        // Ask nicely; the forwarder tears its lab down itself. Then make sure of it.
        let _ = control::request(&lab::socket_path(&lab), &Request::Shutdown);
        let deadline = Instant::now() + Duration::from_secs(10);
        while lab::forwarder_alive(rec.pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if lab::forwarder_alive(rec.pid) {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(rec.pid as i32), nix::sys::signal::Signal::SIGKILL);
        }
    }
    lab::teardown(&rec.namespaces)?;
    let _ = std::fs::remove_dir_all(lab::lab_dir(&lab));
    let _ = std::fs::remove_file(lab::log_path(&lab));
    println!("lab `{lab}` is down");
    Ok(ExitCode::SUCCESS)
}

fn status(named: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let labs = lab::known_labs();
    let detail = match named {
        Some(l) => Some(l.to_string()),
        None => {
            if !json {
                if labs.is_empty() {
                    println!("no lab is running");
                }
                for (name, rec, alive) in &labs {
                    let state = if *alive { "running" } else { "forwarder dead (`vpclab down` cleans up)" };
                    let pid = rec.as_ref().map_or("-".into(), |r| r.pid.to_string());
                    let topo = rec.as_ref().map_or("-".into(), |r| r.topology.clone());
                    println!("{name:<20} pid {pid:<8} {state:<10} {topo}");
                }
            }
            let running: Vec<&String> = labs.iter().filter(|l| l.2).map(|l| &l.0).collect();
            (running.len() == 1).then(|| running[0].clone())
        }
    };
    let Some(lab) = detail else { return Ok(ExitCode::SUCCESS) };
    let status = match control::request(&lab::socket_path(&lab), &Request::Status)? {
        Response::Status(s) => s,
        Response::Error { message } => bail!("the forwarder of `{lab}` refused: {message}"),
        Response::Ok => bail!("the forwarder of `{lab}` answered without a status"),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print_status(&status);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_status(s: &LabStatus) {
    println!("\nlab `{}` (forwarder pid {})", s.lab, s.pid);
    println!(
        "{:<16} {:<10} {:<4} {:<18} {:<26} {:>9} {:>11} {:>9} {:>11}  DROPS",
        "ENI", "INSTANCE", "IF", "MAC", "ADDRESSES", "RX PKTS", "RX BYTES", "TX PKTS", "TX BYTES"
    );
    for e in &s.enis {
        let ips: Vec<String> = e.ips.iter().map(|ip| ip.to_string()).collect();
        let drops: Vec<String> = e.drops.iter().map(|(r, n)| format!("{r}={n}")).collect();
        println!(
            "{:<16} {:<10} {:<4} {:<18} {:<26} {:>9} {:>11} {:>9} {:>11}  {}",
            e.id,
            e.instance.as_deref().unwrap_or("-"),
            e.interface.as_deref().unwrap_or("-"),
            e.mac,
            ips.join(","),
            e.rx_packets,
            e.rx_bytes,
            e.tx_packets,
            e.tx_bytes,
            if drops.is_empty() { "-".into() } else { drops.join(" ") }
        );
    }
}

fn exec(named: Option<&str>, instance: &str, command: &[String]) -> anyhow::Result<ExitCode> {
    need_root()?;
    let lab = lab::resolve_lab(named)?;
    let ns = format!("{lab}-{instance}");
    if !netns::netns_exists(&ns) {
        let instances: Vec<String> = lab::read_record(&lab)
            .map(|r| r.namespaces.iter().filter_map(|n| n.strip_prefix(&format!("{lab}-")).map(String::from)).collect())
            .unwrap_or_default();
        bail!("lab `{lab}` has no instance `{instance}` (instances: {})", instances.join(", "));
    }
    netns::enter_netns(&ns)?;
    let err = std::process::Command::new(&command[0]).args(&command[1..]).exec();
    bail!("cannot run `{}` in {ns}: {err}", command[0])
}
