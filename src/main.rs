//! The `vpclab` command: parses arguments, calls the library, prints. No logic of its own.

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use nix::sys::signal::Signal;

use vpclab::control::{self, LabStatus, Request, Response};
use vpclab::lab;
use vpclab::model::{InstanceIdx, Model};
use vpclab::packet::IpProto;
use vpclab::{netns, topology};

#[path = "cli/verbs.rs"]
mod verbs;

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
        /// Run the lab under this name instead of the file's `name` (e.g. two copies of one file).
        #[arg(long)]
        name: Option<String>,
        /// Serve every counter for Prometheus on http://ADDR/metrics (e.g. 127.0.0.1:9464).
        #[arg(long, value_name = "ADDR")]
        metrics: Option<std::net::SocketAddr>,
        /// Serve the EC2 Query API on http://ADDR/ (e.g. 127.0.0.1:4566), for awscli and boto3
        /// with `--endpoint-url`; overrides the topology's `[api] listen`.
        #[arg(long, value_name = "ADDR")]
        api: Option<std::net::SocketAddr>,
        /// Forwarding threads, each reading its own queue of every (multiqueue) TAP; a frame (or
        /// traffic mirror copy) is judged by the worker that owns its flow.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
        workers: u16,
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
    /// Explain, stage by stage, what the lab would do with a packet (changes nothing).
    Trace {
        /// The lab; may be left out when one lab is running.
        #[arg(long)]
        lab: Option<String>,
        /// The sending ENI, an instance (its device-0 ENI), an internet host, or `internet`
        /// (its first host).
        #[arg(long)]
        from: String,
        /// The destination address.
        #[arg(long)]
        to: std::net::Ipv4Addr,
        /// tcp, udp, icmp or a protocol number; default tcp with --dport, else icmp.
        #[arg(long)]
        proto: Option<String>,
        /// Source port (ICMP: the echo id).
        #[arg(long)]
        sport: Option<u16>,
        /// Destination port.
        #[arg(long)]
        dport: Option<u16>,
        /// Print JSON instead of one line per stage.
        #[arg(long)]
        json: bool,
    },
    /// List tracked connections with state and idle time left.
    Conntrack {
        /// The lab; may be left out when one lab is running.
        #[arg(long)]
        lab: Option<String>,
        /// Only this ENI (or instance's device-0 ENI).
        eni: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Capture what the fabric does, as pcapng: every frame an ENI sent or was handed, each
    /// with the fabric's verdict in its comment (dropped frames too, with stage, reason and rule).
    Capture {
        /// The lab; may be left out when one lab is running.
        #[arg(long)]
        lab: Option<String>,
        /// ENI ids, instance ids (all their ENIs), NAT gateway ids, `internet`, or `all`.
        #[arg(required = true)]
        targets: Vec<String>,
        /// Write to this file instead of standard output.
        #[arg(short = 'w', long = "write")]
        file: Option<PathBuf>,
        /// Stop after this many frames.
        #[arg(short = 'c', long)]
        count: Option<u64>,
        /// Bytes kept of each frame (default: all of it).
        #[arg(long, default_value_t = vpclab::capture::MAX_SNAPLEN)]
        snaplen: u32,
        /// Only frames the fabric dropped.
        #[arg(long)]
        drops_only: bool,
        /// Stop after this many seconds.
        #[arg(long)]
        duration: Option<f64>,
    },
    /// Print every counter of a lab in the OpenMetrics text format (what `up --metrics` serves).
    Metrics {
        /// The lab; may be left out when one lab is running.
        #[arg(long)]
        lab: Option<String>,
    },
    /// Validate a topology without creating anything.
    Check {
        /// The topology file.
        topology: PathBuf,
    },
    /// Write a topology file from what `aws ec2 describe-*` printed about a real VPC (ids, CIDRs,
    /// addresses, MACs, groups, routes, ACLs); what vpclab cannot carry is listed on standard
    /// error and at the top of the file.
    Import {
        /// JSON files (one per describe call, known by their top-level key), or folders of them.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Write the topology here instead of to standard output.
        #[arg(short = 'o', long = "output", value_name = "OUT.toml")]
        output: Option<PathBuf>,
        /// The lab's name.
        #[arg(long, default_value = topology::import::DEFAULT_LAB_NAME)]
        name: String,
    },
    #[command(flatten)]
    Change(verbs::Verb),
    /// Runs a command as a process of an instance (internal: the lab's DHCP clients).
    #[command(hide = true)]
    GuestRun {
        /// The instance's network namespace.
        #[arg(long)]
        netns: String,
        /// Its hostname.
        #[arg(long)]
        hostname: String,
        /// Its resolver file, bound over /etc/resolv.conf.
        #[arg(long)]
        resolv_conf: Option<PathBuf>,
        /// The command and its arguments (after `--`).
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// The forwarder process that `up` starts (internal).
    #[command(hide = true)]
    Daemon {
        /// The topology file, or none for the embedded default.
        topology: Option<PathBuf>,
        /// The lab name to use instead of the file's.
        #[arg(long)]
        name: Option<String>,
        /// Re-adopt the lab `--name` whose forwarder died instead of building one.
        #[arg(long)]
        resume: bool,
        /// Serve metrics on http://ADDR/metrics.
        #[arg(long)]
        metrics: Option<std::net::SocketAddr>,
        /// Serve the EC2 Query API on ADDR.
        #[arg(long)]
        api: Option<std::net::SocketAddr>,
        /// Forwarding threads (bounded as `up`'s: each pair of workers has its own handoff rings).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
        workers: u16,
    },
    /// Re-adopt a lab whose forwarder died: its instances, processes and interfaces stay as they
    /// are, a new forwarder attaches to the TAPs; connection tables start empty.
    Resume {
        /// The lab; may be left out when one lab is known.
        lab: Option<String>,
        /// Serve every counter for Prometheus on http://ADDR/metrics.
        #[arg(long, value_name = "ADDR")]
        metrics: Option<std::net::SocketAddr>,
        /// Serve the EC2 Query API on http://ADDR/ (e.g. 127.0.0.1:4566), for awscli and boto3
        /// with `--endpoint-url`; overrides the topology's `[api] listen`.
        #[arg(long, value_name = "ADDR")]
        api: Option<std::net::SocketAddr>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Cmd::Daemon { .. } | Cmd::Up { foreground: true, .. }) {
        // A command piped into `head` ends quietly when the pipe closes, as Unix tools do. Not
        // the forwarder (`up --foreground` runs it here): a control client that goes away must
        // not kill it.
        // SAFETY: setting a signal's disposition to the default is async-signal-safe and done
        // before any other thread exists.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
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
        Cmd::Up { topology, foreground, name, metrics, api, workers } => {
            up(topology, foreground, name, lab::Endpoints { metrics, api }, workers)
        }
        Cmd::Down { lab } => down(lab.as_deref()),
        Cmd::Status { lab, json } => status(lab.as_deref(), json),
        Cmd::Exec { lab, instance, command } => exec(lab.as_deref(), &instance, &command),
        Cmd::GuestRun { netns, hostname, resolv_conf, command } => {
            run_as_instance(&netns, &hostname, resolv_conf.as_deref(), &command)
        }
        Cmd::Trace { lab, from, to, proto, sport, dport, json } => {
            trace(lab.as_deref(), from, to, proto.as_deref(), sport, dport, json)
        }
        Cmd::Conntrack { lab, eni, json } => conntrack(lab.as_deref(), eni, json),
        Cmd::Capture { lab, targets, file, count, snaplen, drops_only, duration } => {
            let duration_ms = match duration {
                Some(d) if !(d > 0.0 && d <= 1e9) => bail!("--duration must be a positive number of seconds"),
                d => d.map(|d| (d * 1000.0).ceil() as u64),
            };
            let req = Request::Capture { targets, snaplen, drops_only, count, duration_ms };
            capture(lab.as_deref(), &req, file.as_deref())
        }
        Cmd::Metrics { lab } => metrics(lab.as_deref()),
        Cmd::Check { topology } => {
            let model = load(Some(&topology), None)?;
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
        Cmd::Import { paths, output, name } => import(&paths, output.as_deref(), &name),
        Cmd::Daemon { topology, name, resume, metrics, api, workers } => {
            daemon(topology, name, resume, lab::Endpoints { metrics, api }, workers)
        }
        Cmd::Resume { lab, metrics, api } => resume(lab.as_deref(), lab::Endpoints { metrics, api }),
        Cmd::Change(verb) => verbs::run(verb),
    }
}

/// `vpclab import`: the topology to a file or standard output, what was not carried to standard error.
fn import(paths: &[PathBuf], output: Option<&Path>, name: &str) -> anyhow::Result<ExitCode> {
    topology::check_lab_name(name).map_err(anyhow::Error::msg)?;
    let imported = topology::import::import_paths(paths, name)?;
    for line in &imported.not_carried {
        eprintln!("vpclab import: not carried: {line}");
    }
    match output {
        Some(path) => {
            std::fs::write(path, &imported.text).with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!(
                "vpclab import: wrote lab `{name}` to {} ({} not carried, listed at its top)",
                path.display(),
                imported.not_carried.len()
            );
        }
        None => print!("{}", imported.text),
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads and validates a topology (`None`: the embedded default lab), optionally renamed.
fn load(path: Option<&PathBuf>, name: Option<&str>) -> anyhow::Result<Model> {
    let mut model = match path {
        Some(p) => topology::load(p)?,
        None => topology::parse(topology::DEFAULT_TOPOLOGY, topology::DEFAULT_TOPOLOGY_FILE)?,
    };
    if let Some(name) = name {
        topology::check_lab_name(name).map_err(anyhow::Error::msg).context("--name")?;
        model.name = name.to_string();
    }
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

fn up(
    path: Option<PathBuf>,
    foreground: bool,
    name: Option<String>,
    endpoints: lab::Endpoints,
    workers: u16,
) -> anyhow::Result<ExitCode> {
    let model = load(path.as_ref(), name.as_deref())?;
    need_root()?;
    let label = topology_label(path.as_ref());
    if foreground {
        lab::run_forwarder(model, &label, endpoints, usize::from(workers), |m| {
            print_lab(m, std::process::id());
            println!("forwarding in the foreground; Ctrl-C stops the lab and removes it");
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    if lab::lab_running(&model.name) && !lab::wait_until_released(&model.name, Duration::from_secs(5)) {
        bail!("lab `{}` is already running; `vpclab down {}` stops it", model.name, model.name);
    }
    let mut args = vec!["daemon".into(), "--name".into(), model.name.clone().into()];
    args.extend(endpoint_args(endpoints));
    args.extend(["--workers".into(), workers.to_string().into()]);
    if let Some(p) = &path {
        args.push(std::fs::canonicalize(p)?.into_os_string());
    }
    let pid =
        start_daemon(&model.name, &args).map_err(|e| e.context("the lab did not come up (nothing was left behind)"))?;
    print_lab(&model, pid);
    if let Some(a) = endpoints.api.or(model.api.listen) {
        println!("EC2 API on http://{a}/: aws --endpoint-url http://{a} ec2 describe-instances");
    }
    Ok(ExitCode::SUCCESS)
}

/// The daemon's arguments for the endpoints asked for.
fn endpoint_args(e: lab::Endpoints) -> Vec<std::ffi::OsString> {
    let mut args = Vec::new();
    for (flag, addr) in [("--metrics", e.metrics), ("--api", e.api)] {
        if let Some(a) = addr {
            args.extend([flag.into(), a.to_string().into()]);
        }
    }
    args
}

/// Starts the forwarder daemon (`vpclab ARGS`) detached, its standard error appended to the
/// lab's log, and waits for its `ready` line; returns its pid, or what went wrong.
fn start_daemon(lab: &str, args: &[std::ffi::OsString]) -> anyhow::Result<u32> {
    std::fs::create_dir_all(lab::run_dir()).with_context(|| format!("creating {}", lab::run_dir().display()))?;
    let log_path = lab::log_path(lab);
    // Appended to, never truncated: a racing `up` of a running lab must not wipe its log.
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let log_start = log.metadata().map_or(0, |m| m.len());
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.args(args);
    // The forwarder keeps no directory of the caller's busy.
    cmd.current_dir("/").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(log);
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
        "ready" => Ok(child.id()),
        other => {
            let _ = child.wait();
            let log = std::fs::read(&log_path).unwrap_or_default();
            let log = String::from_utf8_lossy(log.get(log_start as usize..).unwrap_or_default());
            let msg = other.strip_prefix("error: ").unwrap_or(other);
            let detail = if msg.is_empty() { log.trim().to_string() } else { msg.to_string() };
            bail!("{detail}");
        }
    }
}

/// Re-adopts a lab whose forwarder died, its instances untouched.
fn resume(named: Option<&str>, endpoints: lab::Endpoints) -> anyhow::Result<ExitCode> {
    need_root()?;
    let lab = lab::resolve_lab(named, true)?;
    if lab::lab_running(&lab) && !lab::wait_until_released(&lab, Duration::from_secs(5)) {
        bail!("lab `{lab}` is running: there is nothing to resume");
    }
    if !lab::lab_dir(&lab).join("running.toml").exists() {
        bail!("no lab `{lab}` to resume");
    }
    let start = Instant::now();
    let mut args = vec!["daemon".into(), "--resume".into(), "--name".into(), lab.clone().into()];
    args.extend(endpoint_args(endpoints));
    let pid = start_daemon(&lab, &args)
        .map_err(|e| e.context(format!("lab `{lab}` could not be resumed (left as it was)")))?;
    println!(
        "lab `{lab}` resumed in {} ms by forwarder pid {pid}: instances, their processes and interfaces untouched; \
         connection tables start empty (tracked connections are judged anew by their next packet)",
        start.elapsed().as_millis()
    );
    Ok(ExitCode::SUCCESS)
}

fn daemon(
    path: Option<PathBuf>,
    name: Option<String>,
    resume: bool,
    endpoints: lab::Endpoints,
    workers: u16,
) -> anyhow::Result<ExitCode> {
    let mut stdout = std::io::stdout();
    let ready = |_: &Model| {
        let _ = writeln!(stdout, "ready");
        let _ = stdout.flush();
        // `up` stops reading after this line; nothing else may go to the pipe.
        if let Ok(null) = std::fs::File::open("/dev/null") {
            let _ = nix::unistd::dup2_stdout(null);
        }
    };
    let result = match (resume, &name) {
        (true, Some(lab)) => lab::resume_forwarder(lab, endpoints, ready),
        (true, None) => Err(anyhow::anyhow!("--resume needs --name")),
        (false, _) => load(path.as_ref(), name.as_deref()).and_then(|model| {
            let label = topology_label(path.as_ref());
            lab::run_forwarder(model, &label, endpoints, usize::from(workers.max(1)), ready)
        }),
    };
    if let Err(e) = &result {
        let msg = format!("{e:#}").replace('\n', " ");
        let _ = writeln!(std::io::stdout(), "error: {msg}");
        vpclab::log!("the forwarder failed: {msg}");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_lab(model: &Model, pid: u32) {
    let internet = if let Some(u) = &model.uplink {
        format!("; internet through uplink {} (gateway {})", u.interface, u.gateway)
    } else if model.has_emulated_internet() {
        let hosts: Vec<String> = model.internet_hosts.iter().map(|h| format!("{} {}", h.id, h.ip)).collect();
        format!("; internet `{}` ({})", model.internet_netns(), hosts.join(", "))
    } else {
        String::new()
    };
    println!(
        "lab `{}` is up: {} instance(s), {} ENI(s){internet}; forwarder pid {pid}",
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
}

fn down(named: Option<&str>) -> anyhow::Result<ExitCode> {
    need_root()?;
    let lab = lab::resolve_lab(named, true)?;
    let known = lab::lab_running(&lab) || lab::lab_dir(&lab).exists() || !lab::lab_namespaces(&lab).is_empty();
    if !known {
        // Idempotent, and leaves nothing behind (not even a lock file).
        println!("no such lab `{lab}`: nothing to remove");
        return Ok(ExitCode::SUCCESS);
    }
    let was_running = lab::lab_running(&lab);
    if was_running {
        // Ask nicely: the forwarder tears its lab down itself. Then SIGTERM, then SIGKILL.
        let _ = control::request(&lab::socket_path(&lab), &Request::Shutdown);
        let pid = lab::read_record(&lab).map(|r| nix::unistd::Pid::from_raw(r.pid as i32));
        for signal in [None, Some(Signal::SIGTERM), Some(Signal::SIGKILL)] {
            if let (Some(sig), Some(pid)) = (signal, pid) {
                let _ = nix::sys::signal::kill(pid, sig);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while lab::lab_running(&lab) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if !lab::lab_running(&lab) {
                break;
            }
        }
    }
    let Some(lock) = lab::LabLock::acquire(&lab, Duration::from_secs(2))? else {
        bail!("lab `{lab}` is still owned by another process; nothing was removed");
    };
    lab::clean_up(&lab)?;
    let _ = std::fs::remove_file(lab::log_path(&lab));
    lock.remove();
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
    let Some(lab) = detail else {
        if json {
            let list: Vec<serde_json::Value> = labs
                .iter()
                .map(|(name, rec, running)| serde_json::json!({ "lab": name, "running": running, "record": rec }))
                .collect();
            println!("{}", serde_json::to_string_pretty(&list)?);
        }
        return Ok(ExitCode::SUCCESS);
    };
    let status = match ask(&lab, &Request::Status)? {
        Response::Status(s) => s,
        other => bail!("the forwarder of `{lab}` answered {other:?}"),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print_status(&status);
    }
    Ok(ExitCode::SUCCESS)
}

/// One request to a lab's forwarder, which must be alive: a dead one is named as such.
fn request(lab: &str, req: &Request) -> anyhow::Result<Response> {
    request_possible(lab)?;
    control::request(&lab::socket_path(lab), req)
}

/// Whether the lab's forwarder is there to ask; why not otherwise.
fn request_possible(lab: &str) -> anyhow::Result<()> {
    if !lab::lab_running(lab) {
        if lab::lab_dir(lab).exists() || !lab::lab_namespaces(lab).is_empty() {
            bail!("lab `{lab}`: forwarder dead (`vpclab up` brings the lab back, `vpclab down {lab}` removes it)");
        }
        bail!("no such lab `{lab}`");
    }
    Ok(())
}

/// One request to a lab's forwarder; an error answer becomes an error.
fn ask(lab: &str, req: &Request) -> anyhow::Result<Response> {
    match request(lab, req)? {
        Response::Error { message } => bail!("the forwarder of `{lab}` refused: {message}"),
        other => Ok(other),
    }
}

fn parse_proto(p: &str) -> anyhow::Result<IpProto> {
    Ok(match p.to_ascii_lowercase().as_str() {
        "tcp" => IpProto::TCP,
        "udp" => IpProto::UDP,
        "icmp" => IpProto::ICMP,
        n => IpProto(n.parse().map_err(|_| anyhow::anyhow!("--proto `{p}`: use tcp, udp, icmp or a protocol number"))?),
    })
}

fn trace(
    named: Option<&str>,
    from: String,
    to: std::net::Ipv4Addr,
    proto: Option<&str>,
    sport: Option<u16>,
    dport: Option<u16>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let lab = lab::resolve_lab(named, false)?;
    let protocol = match proto {
        Some(p) => parse_proto(p)?,
        None if dport.is_some() => IpProto::TCP,
        None => IpProto::ICMP,
    };
    if protocol.has_ports() && dport.is_none() {
        bail!("--dport is needed for tcp and udp");
    }
    if !protocol.has_ports() && dport.is_some() {
        bail!("--dport applies to tcp and udp only (an ICMP echo has no ports; --sport sets its id)");
    }
    let src_port = sport.unwrap_or(if protocol == IpProto::ICMP { 1 } else { 49152 });
    let req = Request::Trace { from, to, protocol, src_port, dst_port: dport.unwrap_or(0) };
    let Response::Trace(t) = ask(&lab, &req)? else { bail!("the forwarder of `{lab}` answered without a trace") };
    if json {
        println!("{}", serde_json::to_string_pretty(&t)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("trace from {}: {}", t.from, t.packet);
    for st in &t.stages {
        println!("  {:<18} {}", st.stage, st.detail);
    }
    match (&t.delivered_to, &t.drop_reason) {
        (Some(to), _) => println!("verdict: delivered to {to}"),
        (_, Some(reason)) => println!(
            "verdict: dropped at {} ({reason}) [{}]",
            t.dropped_at.as_deref().unwrap_or("?"),
            t.explanation_code.as_deref().unwrap_or("?")
        ),
        _ => println!("verdict: {}", t.verdict),
    }
    Ok(ExitCode::SUCCESS)
}

fn capture(named: Option<&str>, req: &Request, file: Option<&Path>) -> anyhow::Result<ExitCode> {
    let lab = lab::resolve_lab(named, false)?;
    request_possible(&lab)?;
    use std::os::fd::AsFd;
    let socket = lab::socket_path(&lab);
    let summary = match file {
        Some(path) => {
            let f = std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
            vpclab::capture::client::capture(&socket, req, f.as_fd())?
        }
        None => {
            if std::io::stdout().is_terminal() {
                bail!(
                    "pcapng is binary: write it to a file (-w FILE) or pipe it (| wireshark -k -i -, | tcpdump -r -)"
                );
            }
            vpclab::capture::client::capture(&socket, req, std::io::stdout().as_fd())?
        }
    };
    let lost: u64 = summary.lost.iter().sum();
    eprintln!(
        "{} frame(s) captured on {}; {lost} lost (the capture queue was full)",
        summary.packets,
        summary.interfaces.join(" ")
    );
    Ok(ExitCode::SUCCESS)
}

/// Prints the lab's counters as OpenMetrics text, as `up --metrics` serves them.
fn metrics(named: Option<&str>) -> anyhow::Result<ExitCode> {
    let lab = lab::resolve_lab(named, false)?;
    let Response::Metrics { text } = ask(&lab, &Request::Metrics)? else {
        bail!("the forwarder of `{lab}` answered without metrics")
    };
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

fn conntrack(named: Option<&str>, eni: Option<String>, json: bool) -> anyhow::Result<ExitCode> {
    let lab = lab::resolve_lab(named, false)?;
    let Response::Connections { connections } = ask(&lab, &Request::Conntrack { eni })? else {
        bail!("the forwarder of `{lab}` answered without connections")
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&connections)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<16} {:<6} {:<22} {:<22} {:<24} {:>8} {:>10}",
        "ENI/NAT", "PROTO", "INITIATOR", "RESPONDER", "STATE", "PACKETS", "EXPIRES IN"
    );
    for c in &connections {
        // Named when it has a name; else the bare number (not `proto N`: the column says PROTO).
        let proto = c.protocol.name().map_or_else(|| c.protocol.0.to_string(), str::to_string);
        println!(
            // A NAT translation's state is the address and port it gives the initiator.
            "{:<16} {:<6} {:<22} {:<22} {:<24} {:>8} {:>9}s",
            c.eni,
            proto,
            format!("{}:{}", c.initiator.0, c.initiator.1),
            format!("{}:{}", c.responder.0, c.responder.1),
            match c.translated {
                Some((ip, port)) => format!("as {ip}:{port}"),
                None => c.state.clone(),
            },
            c.packets,
            c.expires_in_secs
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn print_status(s: &LabStatus) {
    println!("\nlab `{}` (forwarder pid {}); SENT and RCVD as each instance counts them", s.lab, s.pid);
    println!(
        "{:<16} {:<10} {:<4} {:<18} {:<26} {:>9} {:>11} {:>9} {:>11}  DROPS",
        "ENI", "INSTANCE", "IF", "MAC", "ADDRESSES", "SENT PKTS", "SENT BYTES", "RCVD PKTS", "RCVD BYTES"
    );
    for e in &s.enis {
        let ips: Vec<String> = e.ips.iter().map(|ip| ip.to_string()).collect();
        let drops: Vec<String> = e.drops.iter().map(|(r, n)| format!("{r}={n}")).collect();
        println!(
            "{:<16} {:<10} {:<4} {:<18} {:<26} {:>9} {:>11} {:>9} {:>11}  {}",
            e.id,
            match (&e.instance, e.instance_state.as_deref()) {
                (Some(i), Some("stopped")) => format!("{i}(stopped)"),
                (Some(i), _) => i.clone(),
                (None, _) => "-".into(),
            },
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
    if !s.nat_gateways.is_empty() {
        println!(
            "\n{:<16} {:<18} {:<20} {:<16} {:<16} PORTS",
            "NAT GATEWAY", "SUBNET", "INTERFACE", "PRIVATE IP", "ELASTIC IP"
        );
        for n in &s.nat_gateways {
            let eip = n.elastic_ip.map_or("- (private)".to_string(), |e| e.to_string());
            println!(
                "{:<16} {:<18} {:<20} {:<16} {:<16} {}",
                n.id, n.subnet, n.network_interface_id, n.private_ip, eip, n.ports
            );
        }
    }
    println!("\n{:<18} {:<28} {:<18} {:<18} STATE", "ROUTE TABLE", "SUBNETS", "DESTINATION", "TARGET");
    for r in &s.routes {
        let subnets = if r.subnets.is_empty() { "-".to_string() } else { r.subnets.join(",") };
        println!("{:<18} {:<28} {:<18} {:<18} {}", r.table, subnets, r.destination, r.target, r.state);
    }
}

fn exec(named: Option<&str>, instance: &str, command: &[String]) -> anyhow::Result<ExitCode> {
    need_root()?;
    let lab = lab::resolve_lab(named, false)?;
    let ns = format!("{lab}-{instance}");
    let namespaces = lab::read_record(&lab).map(|r| r.namespaces).unwrap_or_default();
    if !namespaces.contains(&ns) || !netns::netns_exists(&ns) {
        let prefix = format!("{lab}-");
        let instances: Vec<&str> = namespaces.iter().filter_map(|n| n.strip_prefix(&prefix)).collect();
        bail!("lab `{lab}` has no instance `{instance}` (instances: {})", instances.join(", "));
    }
    // A stopped instance runs nothing, as on EC2.
    let running = std::fs::read_to_string(lab::lab_dir(&lab).join("running.toml")).ok();
    let model = running.and_then(|t| topology::parse(&t, "running.toml").ok());
    if let Some(i) = model.as_ref().and_then(|m| m.instances.iter().find(|i| i.id == instance)) {
        if i.state != vpclab::model::InstanceState::Running {
            bail!(
                "instance `{instance}` is {}: `vpclab start-instances --instance-ids {instance}` starts it",
                i.state.name()
            );
        }
    }
    // EC2's private DNS name of the instance's primary address is its hostname.
    let hostname = model
        .as_ref()
        .and_then(|m| m.instance_by_id(instance).map(|i| m.instance_hostname(i)))
        .unwrap_or_else(|| instance.to_string());
    let resolv = lab::guest::resolv_conf(&lab, instance);
    run_as_instance(&ns, &hostname, resolv.exists().then_some(resolv.as_path()), command)
}

/// Becomes a process of the instance (its network, mount and UTS namespaces, hostname and
/// resolver file) and runs `command` there.
fn run_as_instance(
    ns: &str,
    hostname: &str,
    resolv_conf: Option<&std::path::Path>,
    command: &[String],
) -> anyhow::Result<ExitCode> {
    netns::enter_netns(ns)?;
    netns::isolate_as_instance(hostname)?;
    if let Some(file) = resolv_conf {
        // A host without /etc/resolv.conf has nothing to bind over; the command still runs.
        if let Err(e) = netns::bind_resolv_conf(file) {
            eprintln!("vpclab: the instance keeps the host's resolver: {e}");
        }
    }
    let err = std::process::Command::new(&command[0]).args(&command[1..]).exec();
    bail!("cannot run `{}` in {ns}: {err}", command[0])
}
