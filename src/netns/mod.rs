//! Network namespaces and links, from Rust: no `ip` child processes, no async runtime.
//!
//! A namespace `<name>` is what `ip netns add <name>` makes: the file `/run/netns/<name>` with a
//! fresh network namespace bind-mounted on it, and `/run/netns` itself a shared mount so that
//! mounts made here are seen by `ip netns` and by other mount namespaces (iproute2's own rule).
//! Names are plain file names (no `/`, not `.` or `..`); the module never follows a name outside
//! `/run/netns`. Namespace switches are per thread (`setns(2)` and `unshare(2)` with
//! `CLONE_NEWNET` affect only the calling thread): [`run_in_netns`] and [`Netlink::open_in`] do
//! their work on a short-lived scoped thread, so the caller's thread never changes namespace;
//! only [`enter_netns`] switches the caller's thread, for the moment before an `exec`.
//!
//! Links, addresses, routes and rules go through [`Netlink`], one blocking `NETLINK_ROUTE`
//! socket. A netlink socket belongs to the namespace it was created in for its whole life, so a
//! `Netlink` opened with [`Netlink::open_in`] keeps acting there from any thread. Messages are
//! built with `netlink-packet-route` and sent over a blocking `netlink_sys::Socket`: the crates'
//! typed messages cover everything needed, and the transport is a few lines here. Every request
//! asks for an acknowledgement; a kernel error becomes [`NetnsError::Netlink`] naming the
//! namespace, the operation and the errno (plus the kernel's extended-ACK text when it sends one).

#![deny(missing_docs, missing_debug_implementations, clippy::undocumented_unsafe_blocks)]

mod netlink;

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

pub use netlink::{LinkConfig, Netlink, RouteSpec};

/// Where named network namespaces live, as in iproute2.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// An operational failure of this module. Every variant names what was being done and where.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// A namespace, interface name or sysctl key that cannot be used as given.
    #[error("invalid {what} `{name}`: {reason}")]
    InvalidName {
        /// What kind of name: "namespace name", "interface name", "sysctl key".
        what: &'static str,
        /// The name as given.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// [`create_netns`] on a name that is already taken.
    #[error("network namespace `{netns}` already exists ({NETNS_RUN_DIR}/{netns})")]
    Exists {
        /// The namespace name.
        netns: String,
    },
    /// The named namespace does not exist.
    #[error("network namespace `{netns}` does not exist (no {NETNS_RUN_DIR}/{netns})")]
    NotFound {
        /// The namespace name.
        netns: String,
    },
    /// An operation named an interface that is not in the namespace.
    #[error("{op}: no interface `{ifname}` in {netns}")]
    NoSuchLink {
        /// The namespace, as the socket knows it.
        netns: String,
        /// The missing interface.
        ifname: String,
        /// What was being attempted.
        op: String,
    },
    /// A system call outside netlink failed (mount, unshare, setns, file, sysctl write, socket).
    #[error("{op}: {errno}")]
    Sys {
        /// What was being attempted, with the path or namespace involved.
        op: String,
        /// The error number.
        errno: Errno,
    },
    /// The kernel refused a netlink request.
    #[error("{op} in {netns}: {errno}{}", kernel_text(.message))]
    Netlink {
        /// The namespace the socket belongs to.
        netns: String,
        /// The request, e.g. "add address 10.0.1.10/24 to eth0".
        op: String,
        /// The kernel's error number.
        errno: Errno,
        /// The kernel's extended-ACK message, if it sent one.
        message: Option<String>,
    },
    /// The kernel's reply could not be understood.
    #[error("{op} in {netns}: malformed netlink reply: {detail}")]
    Protocol {
        /// The namespace the socket belongs to.
        netns: String,
        /// The request.
        op: String,
        /// What was wrong with the reply.
        detail: String,
    },
}

fn kernel_text(message: &Option<String>) -> String {
    match message {
        Some(m) => format!(" (kernel: {m})"),
        None => String::new(),
    }
}

impl NetnsError {
    /// The error number behind this error, when there is one.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            NetnsError::Sys { errno, .. } | NetnsError::Netlink { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

pub(crate) fn errno_of(e: &io::Error) -> Errno {
    e.raw_os_error().map(Errno::from_raw).unwrap_or(Errno::EIO)
}

fn sys(op: impl Into<String>) -> impl FnOnce(Errno) -> NetnsError {
    let op = op.into();
    move |errno| NetnsError::Sys { op, errno }
}

fn sys_io(op: impl Into<String>) -> impl FnOnce(io::Error) -> NetnsError {
    let op = op.into();
    move |e| NetnsError::Sys { op, errno: errno_of(&e) }
}

/// Refuses names that are not a single, ordinary file name under `/run/netns`.
fn check_netns_name(name: &str) -> Result<(), NetnsError> {
    let reason = if name.is_empty() {
        "empty"
    } else if name == "." || name == ".." {
        "`.` and `..` are not names"
    } else if name.contains('/') || name.contains('\0') {
        "contains `/` or NUL"
    } else if name.len() > 255 {
        "longer than 255 bytes"
    } else {
        return Ok(());
    };
    Err(NetnsError::InvalidName { what: "namespace name", name: name.into(), reason })
}

fn netns_path(name: &str) -> Result<PathBuf, NetnsError> {
    check_netns_name(name)?;
    Ok(PathBuf::from(NETNS_RUN_DIR).join(name))
}

/// Opens `/run/netns/<name>`, the handle `setns(2)` and `IFLA_NET_NS_FD` take.
pub(crate) fn open_netns(name: &str) -> Result<File, NetnsError> {
    let path = netns_path(name)?;
    File::open(&path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => NetnsError::NotFound { netns: name.into() },
        _ => NetnsError::Sys { op: format!("open {}", path.display()), errno: errno_of(&e) },
    })
}

/// Serializes the one-time preparation of `/run/netns` between threads of this process.
static RUN_DIR_SETUP: Mutex<()> = Mutex::new(());

/// Makes `/run/netns` exist and be a shared mount point, as `ip netns add` does: try to mark it
/// shared; if it is not a mount point yet (EINVAL), bind-mount it onto itself and try again.
fn prepare_run_dir() -> Result<(), NetnsError> {
    let _guard = RUN_DIR_SETUP.lock().unwrap_or_else(|p| p.into_inner());
    match fs::create_dir(NETNS_RUN_DIR) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(sys_io(format!("create {NETNS_RUN_DIR}"))(e)),
    }
    let make_shared =
        || mount(None::<&str>, NETNS_RUN_DIR, Some("none"), MsFlags::MS_SHARED | MsFlags::MS_REC, None::<&str>);
    match make_shared() {
        Ok(()) => Ok(()),
        Err(Errno::EINVAL) => {
            mount(Some(NETNS_RUN_DIR), NETNS_RUN_DIR, Some("none"), MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
                .map_err(sys(format!("bind-mount {NETNS_RUN_DIR} onto itself")))?;
            make_shared().map_err(sys(format!("make {NETNS_RUN_DIR} a shared mount")))
        }
        Err(errno) => Err(sys(format!("make {NETNS_RUN_DIR} a shared mount"))(errno)),
    }
}

/// Creates the named network namespace, like `ip netns add <name>`, and sets its `lo` up.
///
/// Fails with [`NetnsError::Exists`] if the name is taken. On any later failure the half-made
/// namespace is removed again.
pub fn create_netns(name: &str) -> Result<(), NetnsError> {
    create_netns_with(name, || ())
}

/// Creates the named namespace as [`create_netns`] does, then runs `f` inside it, on the thread
/// that made it, and returns its result: what an instance needs from inside (sysctls written
/// with [`set_sysctl_here`], TAPs opened, a netlink socket) costs no further thread or `setns`.
///
/// If creating fails, nothing is left behind; once `f` runs the namespace exists, whatever `f`
/// returns, and removing it is the caller's business.
pub fn create_netns_with<T: Send>(name: &str, f: impl FnOnce() -> T + Send) -> Result<T, NetnsError> {
    let path = netns_path(name)?;
    prepare_run_dir()?;
    // The mount target: an empty file, created exclusively so two creators cannot share a name.
    OpenOptions::new().write(true).create_new(true).mode(0o000).open(&path).map_err(|e| match e.kind() {
        io::ErrorKind::AlreadyExists => NetnsError::Exists { netns: name.into() },
        _ => NetnsError::Sys { op: format!("create {}", path.display()), errno: errno_of(&e) },
    })?;
    let made = std::thread::scope(|s| {
        s.spawn(|| -> Result<T, NetnsError> {
            // This thread alone moves into a new namespace; it ends with the scope.
            unshare(CloneFlags::CLONE_NEWNET).map_err(sys(format!("unshare a new network namespace for `{name}`")))?;
            // `/proc/self` would name the thread-group leader's namespace: use this thread's.
            mount(Some("/proc/thread-self/ns/net"), &path, Some("none"), MsFlags::MS_BIND, None::<&str>)
                .map_err(sys(format!("bind-mount the new namespace on {}", path.display())))?;
            let mut nl = Netlink::open_labelled(format!("namespace `{name}`"))?;
            nl.set_link("lo", &LinkConfig { up: true, ..LinkConfig::default() })?;
            Ok(f())
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    });
    if made.is_err() {
        // Best effort: the original error is the one worth reporting.
        let _ = umount2(&path, MntFlags::MNT_DETACH);
        let _ = fs::remove_file(&path);
    }
    made
}

/// Deletes the named namespace, like `ip netns del <name>`: detaches the bind mount and removes
/// the file. The namespace itself ends when its last user (process, socket, fd) is gone.
/// Deleting a namespace that does not exist is not an error.
pub fn delete_netns(name: &str) -> Result<(), NetnsError> {
    let path = netns_path(name)?;
    match umount2(&path, MntFlags::MNT_DETACH) {
        // EINVAL: a plain file, not a mount point (a half-made namespace). ENOENT: absent.
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
        Err(errno) => return Err(sys(format!("unmount {}", path.display()))(errno)),
    }
    match fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(sys_io(format!("remove {}", path.display()))(e)),
    }
}

/// Whether `/run/netns/<name>` exists. An invalid name never exists.
pub fn netns_exists(name: &str) -> bool {
    netns_path(name).map(|p| p.exists()).unwrap_or(false)
}

/// The names under `/run/netns`, sorted; empty if the directory does not exist.
pub fn list_netns() -> Vec<String> {
    let Ok(dir) = fs::read_dir(NETNS_RUN_DIR) else {
        return Vec::new();
    };
    let mut names: Vec<String> = dir.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
    names.sort();
    names
}

/// Moves the calling thread into the named network namespace (`setns(2)`, `CLONE_NEWNET`).
///
/// Meant for a thread that is about to `exec` or is dedicated to that namespace; to run a
/// closure there without moving the caller, use [`run_in_netns`].
pub fn enter_netns(name: &str) -> Result<(), NetnsError> {
    let ns = open_netns(name)?;
    setns(&ns, CloneFlags::CLONE_NEWNET).map_err(sys(format!("enter network namespace `{name}`")))
}

/// Makes the calling process look like the instance from inside, as `ip netns exec` does and
/// more: a private mount namespace whose `/sys` is the instance's own (so `/sys/class/net` lists
/// its interfaces, not the host's), and a private UTS namespace named `hostname` (EC2's
/// `ip-10-0-1-10`). Call it after [`enter_netns`], in a process about to `exec`.
pub fn isolate_as_instance(hostname: &str) -> Result<(), NetnsError> {
    use nix::mount::{umount2, MntFlags};
    nix::sched::unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS)
        .map_err(sys("unshare the mount and UTS namespaces".to_string()))?;
    // Mounts made here must not propagate back to the host.
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_SLAVE | MsFlags::MS_REC, None::<&str>)
        .map_err(sys("make / a slave mount".to_string()))?;
    match umount2("/sys", MntFlags::MNT_DETACH) {
        Ok(()) | Err(Errno::EINVAL) => {}
        Err(e) => return Err(sys("unmount the host's /sys".to_string())(e)),
    }
    mount(Some("sysfs"), "/sys", Some("sysfs"), MsFlags::empty(), None::<&str>)
        .map_err(sys("mount the instance's /sys".to_string()))?;
    // SAFETY: sethostname reads `len` bytes from a valid buffer; the result is checked.
    let rc = unsafe { libc::sethostname(hostname.as_ptr().cast(), hostname.len()) };
    if rc != 0 {
        return Err(sys(format!("set the hostname {hostname}"))(Errno::last()));
    }
    Ok(())
}

/// Binds `file` over `/etc/resolv.conf` in a private mount namespace (after
/// [`isolate_as_instance`]), so the instance's programs use the instance's resolver, not the host's.
pub fn bind_resolv_conf(file: &Path) -> Result<(), NetnsError> {
    mount(Some(file), "/etc/resolv.conf", None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .map_err(sys(format!("bind {} over /etc/resolv.conf", file.display())))
}

/// Runs `f` on a scoped thread that has entered the named namespace, and returns its result.
/// The caller's thread never changes namespace. A panic in `f` is resumed on the caller.
pub fn run_in_netns<T: Send>(name: &str, f: impl FnOnce() -> T + Send) -> Result<T, NetnsError> {
    std::thread::scope(|s| {
        s.spawn(|| {
            enter_netns(name)?;
            Ok(f())
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// The `/proc/sys` path of a dotted sysctl key, refusing keys that could leave `/proc/sys`.
fn sysctl_path(key: &str) -> Result<PathBuf, NetnsError> {
    let bad = |reason| NetnsError::InvalidName { what: "sysctl key", name: key.into(), reason };
    if key.is_empty() {
        return Err(bad("empty"));
    }
    if key.contains('/') || key.contains('\0') {
        return Err(bad("contains `/` or NUL: write the key with dots"));
    }
    if key.split('.').any(str::is_empty) {
        return Err(bad("has an empty component"));
    }
    Ok(PathBuf::from("/proc/sys").join(key.replace('.', "/")))
}

/// Sets a sysctl inside the namespace, e.g. `set_sysctl("lab-web", "net.ipv4.ip_forward", "1")`.
///
/// The write happens on a thread inside the namespace: `/proc/sys/net` shows the namespace of the
/// thread that opens it.
pub fn set_sysctl(netns: &str, key: &str, value: &str) -> Result<(), NetnsError> {
    run_in_netns(netns, || set_sysctl_here(key, value))?.map_err(|e| match e {
        NetnsError::Sys { op, errno } => NetnsError::Sys { op: format!("{op} in namespace `{netns}`"), errno },
        other => other,
    })
}

/// Sets a sysctl of the calling thread's namespace (a thread inside a namespace, such as the
/// closure of [`create_netns_with`], writes its sysctls with no thread of its own).
pub fn set_sysctl_here(key: &str, value: &str) -> Result<(), NetnsError> {
    let path = sysctl_path(key)?;
    fs::write(&path, value).map_err(sys_io(format!("set sysctl {key}={value}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_names_stay_in_the_run_dir() {
        assert_eq!(netns_path("lab-web").unwrap(), PathBuf::from("/run/netns/lab-web"));
        for bad in ["", ".", "..", "a/b", "../etc", "x\0y"] {
            let err = netns_path(bad).unwrap_err();
            assert!(matches!(err, NetnsError::InvalidName { .. }), "{bad:?} accepted");
        }
        assert!(!netns_exists("../netns"));
    }

    #[test]
    fn sysctl_keys_map_to_proc_sys() {
        assert_eq!(
            sysctl_path("net.ipv6.conf.all.disable_ipv6").unwrap(),
            PathBuf::from("/proc/sys/net/ipv6/conf/all/disable_ipv6")
        );
        for bad in ["", "net..ipv4", "net/ipv4/ip_forward", ".net", "net."] {
            assert!(sysctl_path(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn errors_name_their_context() {
        let e = NetnsError::Netlink {
            netns: "namespace `lab-web`".into(),
            op: "add address 10.0.1.10/24 to eth0".into(),
            errno: Errno::EEXIST,
            message: None,
        };
        let text = e.to_string();
        assert!(text.contains("add address 10.0.1.10/24 to eth0"), "{text}");
        assert!(text.contains("lab-web") && text.contains("EEXIST"), "{text}");
        assert_eq!(e.errno(), Some(Errno::EEXIST));
    }
}
