//! The metadata service's I/O: a thread of the forwarder accepting on 169.254.169.254:80 in the
//! lab's service namespace (the listening socket was made there, and stays there), one thread
//! per connection up to [`MAX_CONNECTIONS`], each request read by the project's bounded HTTP
//! reader and answered by [`super::answer`] against the lab's current model. The client's
//! address is a pool address the pipeline wrote: it names the asking ENI's port.

use std::io::Read;
use std::net::{IpAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Ask, Tokens};
use crate::http;
use crate::model::{EniIdx, Model};

/// Connections served at once; more are closed unanswered.
pub const MAX_CONNECTIONS: usize = 64;
/// How long a client may take to send its request.
const READ_DEADLINE: Duration = Duration::from_secs(5);
/// The largest request body read (IMDS requests have none).
const MAX_BODY: usize = 1024;

struct Shared<F> {
    tokens: Mutex<Tokens>,
    start: Instant,
    busy: AtomicUsize,
    model: F,
}

/// Serves metadata on `listener` until the process ends; `model` gives the lab's model now
/// (the one the forwarder's ports are indexed by).
pub fn serve<F>(listener: TcpListener, model: F)
where
    F: Fn() -> Arc<Model> + Send + Sync + 'static,
{
    let shared = Arc::new(Shared { tokens: Mutex::default(), start: Instant::now(), busy: AtomicUsize::new(0), model });
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        if shared.busy.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
            shared.busy.fetch_sub(1, Ordering::AcqRel);
            continue;
        }
        let s = Arc::clone(&shared);
        let spawned = std::thread::Builder::new().name("imds".into()).spawn(move || {
            handle(&s, conn);
            s.busy.fetch_sub(1, Ordering::AcqRel);
        });
        if spawned.is_err() {
            shared.busy.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

fn handle<F: Fn() -> Arc<Model>>(s: &Shared<F>, mut conn: TcpStream) {
    let Some((port, _)) = conn.peer_addr().ok().and_then(|a| match a.ip() {
        IpAddr::V4(ip) => super::client_of(ip),
        IpAddr::V6(_) => None,
    }) else {
        return;
    };
    let request = match http::read_request(&mut conn, MAX_BODY, READ_DEADLINE) {
        Ok(r) => r,
        Err(e) => {
            if let Some(status) = e.status() {
                http::respond(&mut conn, status, "", "", false);
            }
            return;
        }
    };
    let Some(random) = random() else {
        return http::respond(&mut conn, "500 Internal Server Error", "", "", false);
    };
    let model = (s.model)();
    let ask = Ask { method: &request.method, target: &request.target, headers: &request.headers };
    let reply = {
        let mut tokens = s.tokens.lock().unwrap_or_else(|p| p.into_inner());
        super::answer(&model, EniIdx(port as u32), &mut tokens, s.start.elapsed(), random, ask)
    };
    if let Some(ttl) = reply.ttl {
        // The PUT response hop limit: the answer leaves with this IP TTL, and the fabric does
        // not decrement it, so it reaches the instance but no further than `ttl - 1` routers.
        let _ = conn.set_ttl(u32::from(ttl));
    }
    let mut status = reply.status.to_string();
    for (k, v) in &reply.headers {
        status.push_str(&format!("\r\n{k}: {v}"));
    }
    status.push_str("\r\nServer: EC2ws");
    http::respond(&mut conn, &status, "text/plain", &reply.body, request.method == "HEAD");
}

/// Random bytes for a token, from the kernel.
fn random() -> Option<[u8; 24]> {
    let mut b = [0u8; 24];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)).ok()?;
    Some(b)
}
