//! The EC2 Query protocol on the wire, driven by AWS's own shape model (`ec2-shapes.json`, cut
//! from botocore's by `scripts/gen-ec2-shapes.py`): a form-encoded request becomes a JSON value
//! keyed by the API's member names (`IpPermissions[0].IpRanges[0].CidrIp`), and a JSON value so
//! keyed becomes the XML response. Actions therefore read and write the same names as boto3 and
//! `aws ec2 ... --output json` show, and no wire name is spelled by hand.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use quick_xml::events::{BytesDecl, BytesText, Event};
use quick_xml::Writer;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::ApiError;

/// The XML namespace of every response.
pub const XMLNS: &str = "http://ec2.amazonaws.com/doc/2016-11-15/";

#[derive(Debug, Deserialize)]
struct Shapes {
    operations: BTreeMap<String, Operation>,
    shapes: BTreeMap<String, Shape>,
}

#[derive(Debug, Deserialize)]
struct Operation {
    input: Option<String>,
    output: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Shape {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    members: BTreeMap<String, MemberRef>,
    member: Option<MemberRef>,
}

#[derive(Debug, Deserialize)]
struct MemberRef {
    shape: String,
    #[serde(rename = "locationName")]
    location_name: Option<String>,
    #[serde(rename = "queryName")]
    query_name: Option<String>,
}

fn shapes() -> &'static Shapes {
    static SHAPES: OnceLock<Shapes> = OnceLock::new();
    SHAPES.get_or_init(|| serde_json::from_str(include_str!("ec2-shapes.json")).expect("ec2-shapes.json parses"))
}

/// Whether the shape model knows `action` (every action the face serves is in it).
pub fn knows(action: &str) -> bool {
    shapes().operations.contains_key(action)
}

/// The request's parameters as `action`'s input shape names them, e.g. `Filter.1.Value.2`
/// becomes `Filters[0].Values[1]`. A value of the wrong type is `InvalidParameterValue`.
pub fn parse_input(action: &str, params: &BTreeMap<String, String>) -> Result<Value, ApiError> {
    let op = shapes().operations.get(action).ok_or_else(|| ApiError::invalid_action(action))?;
    match &op.input {
        Some(input) => parse_shape(input, "", params),
        None => Ok(Value::Object(Map::new())),
    }
}

/// The wire name of a request member: EC2's `queryName`, else its `locationName` capitalised.
fn query_name<'a>(name: &'a str, r: &'a MemberRef) -> std::borrow::Cow<'a, str> {
    if let Some(q) = &r.query_name {
        return q.into();
    }
    match &r.location_name {
        Some(l) => {
            let mut c = l.chars();
            c.next().map_or_else(String::new, |f| f.to_uppercase().chain(c).collect()).into()
        }
        None => name.into(),
    }
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

fn parse_shape(shape: &str, key: &str, params: &BTreeMap<String, String>) -> Result<Value, ApiError> {
    let s = &shapes().shapes[shape];
    match s.kind.as_str() {
        "structure" => {
            let mut out = Map::new();
            for (name, r) in &s.members {
                let k = join(key, &query_name(name, r));
                let dotted = format!("{k}.");
                let present = params.contains_key(&k)
                    || params.range(dotted.clone()..).next().is_some_and(|(p, _)| p.starts_with(&dotted));
                if present {
                    out.insert(name.clone(), parse_shape(&r.shape, &k, params)?);
                }
            }
            Ok(Value::Object(out))
        }
        "list" => {
            let member = s.member.as_ref().expect("a list shape has a member");
            let dotted = format!("{key}.");
            let mut indices: Vec<u32> = params
                .range(dotted.clone()..)
                .take_while(|(p, _)| p.starts_with(&dotted))
                .filter_map(|(p, _)| p[dotted.len()..].split('.').next()?.parse().ok())
                .collect();
            indices.sort_unstable();
            indices.dedup();
            let items = indices.iter().map(|i| parse_shape(&member.shape, &format!("{key}.{i}"), params));
            Ok(Value::Array(items.collect::<Result<_, _>>()?))
        }
        kind => {
            let Some(text) = params.get(key) else { return Ok(Value::Null) };
            scalar(kind, key, text)
        }
    }
}

fn scalar(kind: &str, key: &str, text: &str) -> Result<Value, ApiError> {
    let bad = || ApiError::invalid_value(format!("Value ({text}) for parameter {key} is invalid"));
    Ok(match kind {
        "integer" | "long" => Value::from(text.trim().parse::<i64>().map_err(|_| bad())?),
        "double" | "float" => Value::from(text.trim().parse::<f64>().map_err(|_| bad())?),
        "boolean" => match text.trim() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => return Err(bad()),
        },
        _ => Value::String(text.to_string()),
    })
}

/// `action`'s response document: `<ActionResponse xmlns=...><requestId>` and `body`'s members
/// under their wire names. A member the output shape does not have is a bug of the face, and
/// said so as an `InternalError` rather than left out silently.
pub fn write_output(action: &str, request_id: &str, body: &Value) -> Result<String, ApiError> {
    let op = shapes().operations.get(action).ok_or_else(|| ApiError::invalid_action(action))?;
    let mut w = Writer::new(Vec::new());
    let io = |e: std::io::Error| ApiError::internal(format!("writing XML: {e}"));
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None))).map_err(io)?;
    let root = format!("{action}Response");
    let mut result = Ok(());
    w.create_element(root.as_str())
        .with_attribute(("xmlns", XMLNS))
        .write_inner_content(|w| {
            w.create_element("requestId").write_text_content(BytesText::new(request_id))?;
            if let Some(output) = &op.output {
                result = write_members(w, output, body);
            }
            Ok(())
        })
        .map_err(io)?;
    result?;
    String::from_utf8(w.into_inner()).map_err(|e| ApiError::internal(e.to_string()))
}

fn write_members(w: &mut Writer<Vec<u8>>, shape: &str, value: &Value) -> Result<(), ApiError> {
    let s = &shapes().shapes[shape];
    let Value::Object(fields) = value else {
        return Err(ApiError::internal(format!("{shape} must be an object, not {value}")));
    };
    for (name, v) in fields {
        let r = s.members.get(name).ok_or_else(|| ApiError::internal(format!("{shape} has no member {name}")))?;
        if v.is_null() {
            continue;
        }
        let element = r.location_name.as_deref().unwrap_or(name);
        write_element(w, element, &r.shape, v)?;
    }
    Ok(())
}

fn write_element(w: &mut Writer<Vec<u8>>, element: &str, shape: &str, value: &Value) -> Result<(), ApiError> {
    let s = &shapes().shapes[shape];
    let io = |e: std::io::Error| ApiError::internal(format!("writing XML: {e}"));
    let mut inner = Ok(());
    match s.kind.as_str() {
        "structure" => w.create_element(element).write_inner_content(|w| {
            inner = write_members(w, shape, value);
            Ok(())
        }),
        "list" => {
            let member = s.member.as_ref().expect("a list shape has a member");
            let item = member.location_name.as_deref().unwrap_or("member");
            let Value::Array(items) = value else {
                return Err(ApiError::internal(format!("{shape} must be an array, not {value}")));
            };
            w.create_element(element).write_inner_content(|w| {
                for v in items {
                    if inner.is_ok() {
                        inner = write_element(w, item, &member.shape, v);
                    }
                }
                Ok(())
            })
        }
        _ => {
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => n.to_string(),
                other => return Err(ApiError::internal(format!("{shape} must be a scalar, not {other}"))),
            };
            w.create_element(element).write_text_content(BytesText::new(&text))
        }
    }
    .map_err(io)?;
    inner
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn lists_and_structures_come_back_under_the_api_member_names() {
        let p = params(&[
            ("Filter.1.Name", "vpc-id"),
            ("Filter.1.Value.1", "vpc-a"),
            ("Filter.1.Value.2", "vpc-b"),
            ("Filter.2.Name", "status"),
            ("Filter.2.Value.1", "in-use"),
            ("MaxResults", "5"),
        ]);
        let v = parse_input("DescribeNetworkInterfaces", &p).unwrap();
        assert_eq!(v["Filters"][0]["Values"][1], "vpc-b");
        assert_eq!(v["Filters"][1]["Name"], "status");
        assert_eq!(v["MaxResults"], 5);
        let p = params(&[
            ("GroupId", "sg-1"),
            ("IpPermissions.1.IpProtocol", "tcp"),
            ("IpPermissions.1.FromPort", "22"),
            ("IpPermissions.1.IpRanges.1.CidrIp", "10.0.0.0/8"),
            ("IpPermissions.1.Groups.1.GroupId", "sg-2"),
        ]);
        let v = parse_input("AuthorizeSecurityGroupIngress", &p).unwrap();
        assert_eq!(v["IpPermissions"][0]["IpRanges"][0]["CidrIp"], "10.0.0.0/8");
        assert_eq!(v["IpPermissions"][0]["UserIdGroupPairs"][0]["GroupId"], "sg-2");
        assert_eq!(v["IpPermissions"][0]["FromPort"], 22);
    }

    #[test]
    fn a_value_of_the_wrong_type_is_refused() {
        let e = parse_input("DescribeVpcs", &params(&[("MaxResults", "many")])).unwrap_err();
        assert_eq!(e.code, "InvalidParameterValue");
        let e = parse_input("AssignPrivateIpAddresses", &params(&[("AllowReassignment", "yes")])).unwrap_err();
        assert_eq!(e.code, "InvalidParameterValue");
    }

    #[test]
    fn responses_use_wire_names_items_and_the_namespace() {
        let body = serde_json::json!({
            "Vpcs": [{"VpcId": "vpc-a", "CidrBlock": "10.0.0.0/16", "IsDefault": false}],
            "NextToken": null,
        });
        let xml = write_output("DescribeVpcs", "req-1", &body).unwrap();
        assert!(
            xml.contains(&format!("<DescribeVpcsResponse xmlns=\"{XMLNS}\"><requestId>req-1</requestId>")),
            "{xml}"
        );
        assert!(xml.contains("<vpcSet><item><cidrBlock>10.0.0.0/16</cidrBlock><isDefault>false</isDefault><vpcId>vpc-a</vpcId></item></vpcSet>"), "{xml}");
        assert!(!xml.contains("nextToken"), "{xml}");
    }

    #[test]
    fn a_member_the_shape_lacks_is_an_internal_error_not_silence() {
        let body = serde_json::json!({"Vpcs": [{"VpcID": "vpc-a"}]});
        let e = write_output("DescribeVpcs", "r", &body).unwrap_err();
        assert_eq!(e.code, "InternalError");
        assert!(e.message.contains("VpcID"), "{}", e.message);
    }

    #[test]
    fn text_is_escaped() {
        let body = serde_json::json!({"Vpcs": [{"VpcId": "<&>"}]});
        let xml = write_output("DescribeVpcs", "r", &body).unwrap();
        assert!(xml.contains("<vpcId>&lt;&amp;&gt;</vpcId>"), "{xml}");
    }
}
