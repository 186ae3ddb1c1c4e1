//! The EC2 Query API face: `up --api ADDR` serves it over HTTP so that awscli, boto3 and SDK
//! scripts drive a lab with `--endpoint-url`. Requests arrive as botocore sends them (POST,
//! form-encoded `Action=...&Version=2016-11-15`), are parsed by the shape model
//! ([`wire`]), answered from the model in force (`Describe*`, [`describe`]) or turned into the
//! live-change operations every other face uses ([`act`]), and answered in EC2's XML. Requests
//! are served one at a time on a thread of their own, never on a forwarding thread.

mod act;
pub(crate) mod describe;
mod sigv4;
mod wire;

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

pub use sigv4::Credentials;

use crate::change::live::LiveLab;
use crate::change::AwsError;

/// The largest request body read; EC2 itself refuses requests past a few hundred KiB.
const MAX_BODY: usize = 1 << 20;
/// How long a client has to send its whole request.
const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// The most parameters one request may carry.
const MAX_PARAMS: usize = 4096;

/// An error as EC2 answers it: an HTTP status, a code and a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// EC2's error code, e.g. `InvalidVpcID.NotFound`.
    pub code: String,
    /// What is wrong.
    pub message: String,
}

impl ApiError {
    fn new(status: u16, code: &str, message: impl Into<String>) -> ApiError {
        ApiError { status, code: code.to_string(), message: message.into() }
    }

    /// An action this endpoint does not serve, in EC2's words.
    pub fn invalid_action(action: &str) -> ApiError {
        ApiError::new(400, "InvalidAction", format!("The action {action} is not valid for this web service."))
    }

    /// A parameter value that cannot be used.
    pub fn invalid_value(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "InvalidParameterValue", message)
    }

    /// A required parameter left out.
    pub fn missing(name: &str) -> ApiError {
        ApiError::new(400, "MissingParameter", format!("The request must contain the parameter {name}"))
    }

    /// A fault of the face itself.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, "InternalError", message)
    }
}

impl From<AwsError> for ApiError {
    fn from(e: AwsError) -> ApiError {
        let status = if e.code == "InternalError" { 500 } else { 400 };
        ApiError::new(status, &e.code, e.message)
    }
}

/// Binds the API's listener (before the lab is built, so an address in use fails `up`).
pub fn bind(addr: std::net::SocketAddr) -> anyhow::Result<TcpListener> {
    use anyhow::Context;
    TcpListener::bind(addr).with_context(|| format!("--api {addr}: cannot listen there"))
}

/// Serves the API on `listener` until the process ends, one request at a time (changes are
/// serialized anyway), each bounded as [`crate::http`] bounds it.
pub fn serve(listener: TcpListener, live: Arc<Mutex<LiveLab>>, credentials: Option<Credentials>) {
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        respond(conn, &live, credentials.as_ref());
    }
}

fn respond(mut conn: TcpStream, live: &Mutex<LiveLab>, credentials: Option<&Credentials>) {
    let request = match crate::http::read_request(&mut conn, MAX_BODY, REQUEST_DEADLINE) {
        Ok(r) => r,
        Err(e) => {
            if let Some(status) = e.status() {
                crate::http::respond(&mut conn, status, "", "", false);
            }
            return;
        }
    };
    let request_id = request_id();
    let (status, body) = match answer(&request, live, credentials, &request_id) {
        Ok(xml) => ("200 OK".to_string(), xml),
        Err(e) => (format!("{} {}", e.status, reason(e.status)), error_xml(&e, &request_id)),
    };
    crate::http::respond(&mut conn, &status, "text/xml;charset=UTF-8", &body, false);
}

/// The reason phrase of the statuses the API answers with.
fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        412 => "Precondition Failed",
        500 => "Internal Server Error",
        _ => "Error",
    }
}

fn answer(
    request: &crate::http::Request,
    live: &Mutex<LiveLab>,
    credentials: Option<&Credentials>,
    request_id: &str,
) -> Result<String, ApiError> {
    if let Some(c) = credentials {
        sigv4::verify(c, request)?;
    }
    let query = request.target.split_once('?').map_or("", |(_, q)| q);
    let (action, input) = parse(query.as_bytes(), &request.body)?;
    let output = dispatch(&action, &input, live)?;
    wire::write_output(&action, request_id, &output)
}

/// A request's action and its input under the API's member names.
fn parse(query: &[u8], body: &[u8]) -> Result<(String, Value), ApiError> {
    let params = params(query, body)?;
    let action = params
        .get("Action")
        .ok_or_else(|| ApiError::new(400, "MissingAction", "The request must contain the parameter Action"))?;
    if !wire::knows(action) {
        return Err(ApiError::invalid_action(action));
    }
    let input = wire::parse_input(action, &params)?;
    Ok((action.clone(), input))
}

/// What the API answers to a request body about `model` without a running lab: `Describe*`
/// answered, any other known action refused as needing one. The server's path up to the model,
/// for the fuzz target (`fuzz/`), which checks it never panics and never writes a response its
/// shape refuses.
pub fn answer_offline(body: &[u8], model: &crate::model::Model) -> Result<String, ApiError> {
    let (action, input) = parse(b"", body)?;
    if !action.starts_with("Describe") {
        return Err(ApiError::new(400, "UnsupportedOperation", format!("{action} needs a running lab")));
    }
    let output = describe::describe(&action, &input, model)?;
    wire::write_output(&action, "offline", &output)
}

/// The query string's and the form body's parameters together.
fn params(query: &[u8], body: &[u8]) -> Result<BTreeMap<String, String>, ApiError> {
    let mut out = BTreeMap::new();
    for (k, v) in form_urlencoded::parse(query).chain(form_urlencoded::parse(body)) {
        if out.len() == MAX_PARAMS {
            return Err(ApiError::invalid_value(format!("a request may carry at most {MAX_PARAMS} parameters")));
        }
        out.insert(k.into_owned(), v.into_owned());
    }
    Ok(out)
}

fn dispatch(action: &str, input: &Value, live: &Mutex<LiveLab>) -> Result<Value, ApiError> {
    if action.starts_with("Describe") {
        let model = live.lock().unwrap_or_else(|p| p.into_inner()).model();
        return describe::describe(action, input, &model);
    }
    act::act(action, input, live)
}

fn error_xml(e: &ApiError, request_id: &str) -> String {
    let esc = |s: &str| quick_xml::escape::escape(s).into_owned();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{}</Code><Message>{}</Message></Error></Errors><RequestID>{}</RequestID></Response>",
        esc(&e.code),
        esc(&e.message),
        request_id
    )
}

/// A request id shaped like EC2's (a UUID), unique within the process.
fn request_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        (t >> 32) as u32,
        (t >> 16) as u16,
        n >> 12 & 0xfff,
        n & 0xfff,
        t & 0xffff_ffff_ffff
    )
}

/// A string member of an action's input, if given.
fn text<'a>(input: &'a Value, name: &str) -> Option<&'a str> {
    input.get(name).and_then(Value::as_str)
}

/// A required string member of an action's input.
fn required<'a>(input: &'a Value, name: &str) -> Result<&'a str, ApiError> {
    text(input, name).ok_or_else(|| ApiError::missing(name))
}

/// A list of strings member, empty if not given.
fn strings(input: &Value, name: &str) -> Vec<String> {
    input
        .get(name)
        .and_then(Value::as_array)
        .map_or_else(Vec::new, |a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_in_ec2s_shape() {
        let xml = error_xml(&ApiError::invalid_action("Frobnicate"), "r-1");
        assert!(
            xml.contains(
                "<Response><Errors><Error><Code>InvalidAction</Code><Message>The action Frobnicate is not valid"
            ),
            "{xml}"
        );
        assert!(xml.ends_with("<RequestID>r-1</RequestID></Response>"), "{xml}");
    }

    #[test]
    fn request_ids_differ() {
        assert_ne!(request_id(), request_id());
    }

    #[test]
    fn query_and_body_parameters_are_read_and_bounded() {
        let p = params(b"Action=DescribeVpcs", b"Version=2016-11-15&VpcId.1=vpc-a%2Fb").unwrap();
        assert_eq!(p["Action"], "DescribeVpcs");
        assert_eq!(p["VpcId.1"], "vpc-a/b");
        let many: String = (0..=MAX_PARAMS).map(|i| format!("P{i}=x&")).collect();
        assert_eq!(params(b"", many.as_bytes()).unwrap_err().code, "InvalidParameterValue");
    }
}
