//! AWS Signature Version 4, checked as EC2 checks it, for labs that set API credentials: the
//! client's canonical request is rebuilt from what arrived and signed with the lab's secret.
//! Without credentials any signature (or none) is accepted, as LocalStack and moto do.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::ApiError;

/// The access key a lab accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key_id: String,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: String,
}

/// The parts of an `Authorization: AWS4-HMAC-SHA256 ...` header.
#[derive(Debug, PartialEq, Eq)]
struct Authorization<'a> {
    access_key_id: &'a str,
    /// `date/region/service/aws4_request`.
    scope: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn auth_failure(message: impl Into<String>) -> ApiError {
    ApiError::new(401, "AuthFailure", message)
}

fn parse_authorization(header: &str) -> Option<Authorization<'_>> {
    let rest = header.strip_prefix("AWS4-HMAC-SHA256")?.trim_start();
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        match part.trim().split_once('=')? {
            ("Credential", v) => credential = Some(v),
            ("SignedHeaders", v) => signed = Some(v),
            ("Signature", v) => signature = Some(v),
            _ => {}
        }
    }
    let (access_key_id, scope) = credential?.split_once('/')?;
    Some(Authorization { access_key_id, scope, signed_headers: signed?.split(';').collect(), signature: signature? })
}

/// Checks the request's signature with `credentials`.
pub fn verify(credentials: &Credentials, request: &crate::http::Request) -> Result<(), ApiError> {
    let header = |name: &str| request.header(name);
    let authorization = header("Authorization");
    let Some(auth) = authorization.first().and_then(|h| parse_authorization(h)) else {
        return Err(auth_failure("AWS was not able to validate the provided access credentials: the request is not signed with Signature Version 4"));
    };
    if auth.access_key_id != credentials.access_key_id {
        return Err(auth_failure(format!("the access key id {} is not this lab's", auth.access_key_id)));
    }
    let date = header("X-Amz-Date");
    let date = date.first().ok_or_else(|| auth_failure("the signed request has no X-Amz-Date"))?;
    let (path, query) = request.target.split_once('?').unwrap_or((&request.target, ""));
    let headers: Vec<(String, String)> = auth
        .signed_headers
        .iter()
        .map(|name| (name.to_string(), header(name).iter().map(|v| collapse(v)).collect::<Vec<_>>().join(",")))
        .collect();
    let canonical = canonical_request(&request.method, path, query, &headers, &request.body);
    let expected = signature(&credentials.secret_access_key, date, auth.scope, &canonical);
    if expected != auth.signature {
        return Err(ApiError::new(
            403,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.",
        ));
    }
    Ok(())
}

/// A header value as SigV4 signs it: trimmed, inner runs of spaces collapsed to one.
fn collapse(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn canonical_request(method: &str, path: &str, query: &str, headers: &[(String, String)], body: &[u8]) -> String {
    let mut pairs: Vec<(String, String)> =
        form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (encode(&k), encode(&v))).collect();
    pairs.sort();
    let query = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed = headers.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(";");
    let path = if path.is_empty() { "/" } else { path };
    format!("{method}\n{path}\n{query}\n{canonical_headers}\n{signed}\n{}", hex::encode(Sha256::digest(body)))
}

/// RFC 3986 encoding as SigV4 wants it: unreserved characters kept, the rest `%XX`.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    m.update(data.as_bytes());
    m.finalize().into_bytes().to_vec()
}

fn signature(secret: &str, amz_date: &str, scope: &str, canonical_request: &str) -> String {
    let to_sign =
        format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", hex::encode(Sha256::digest(canonical_request.as_bytes())));
    let mut key = format!("AWS4{secret}").into_bytes();
    for part in scope.split('/') {
        key = hmac(&key, part);
    }
    hex::encode(hmac(&key, &to_sign))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's documented example (IAM ListUsers, "Create a signed AWS API request", SigV4 docs):
    /// the secret, the date, the canonical request and the signature they give.
    #[test]
    fn the_documented_example_signs_as_aws_says() {
        let headers = vec![
            ("content-type".to_string(), "application/x-www-form-urlencoded; charset=utf-8".to_string()),
            ("host".to_string(), "iam.amazonaws.com".to_string()),
            ("x-amz-date".to_string(), "20150830T123600Z".to_string()),
        ];
        let canonical = canonical_request("GET", "/", "Action=ListUsers&Version=2010-05-08", &headers, b"");
        assert_eq!(
            hex::encode(Sha256::digest(canonical.as_bytes())),
            "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59"
        );
        let sig = signature(
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "20150830T123600Z",
            "20150830/us-east-1/iam/aws4_request",
            &canonical,
        );
        assert_eq!(sig, "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7");
    }

    #[test]
    fn the_authorization_header_is_read() {
        let h = "AWS4-HMAC-SHA256 Credential=AKID/20261206/us-east-1/ec2/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc";
        let a = parse_authorization(h).unwrap();
        assert_eq!((a.access_key_id, a.scope, a.signature), ("AKID", "20261206/us-east-1/ec2/aws4_request", "abc"));
        assert_eq!(a.signed_headers, ["host", "x-amz-date"]);
        assert!(parse_authorization("AWS AKID:sig").is_none());
    }
}
