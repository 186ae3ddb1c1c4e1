//! The Amazon DNS server's settings: each VPC's `enable_dns_support` and `enable_dns_hostnames`
//! (AWS's VPC attributes), and the `name` an `[internet]` host answers to.

use super::{path, Checker, Kind};
use crate::topology::raw::RawFile;

/// AWS refuses DNS hostnames without DNS support ("You can only enable DNS hostnames if you've
/// enabled DNS support"); the problem is named at `enable_dns_hostnames`.
pub(super) fn vpc_attributes(c: &mut Checker<'_>, raw: &RawFile) {
    for v in &raw.vpc {
        let support = v.enable_dns_support.as_ref().is_none_or(|b| *b.get_ref());
        let Some(hostnames) = v.enable_dns_hostnames.as_ref().filter(|b| *b.get_ref()) else { continue };
        if !support {
            c.err(
                hostnames.span(),
                path(Kind::Vpc, v.id.get_ref(), "enable_dns_hostnames"),
                "DNS hostnames need DNS support: set enable_dns_support = true too, as AWS requires".into(),
            );
        }
    }
}

/// Each internet host's `name`: a DNS name, without the final dot.
pub(super) fn host_names(c: &mut Checker<'_>, raw: &RawFile) {
    let hosts = raw.internet.as_ref().map_or(&[][..], |i| &i.hosts[..]);
    for h in hosts {
        let Some(name) = &h.name else { continue };
        if !super::dhcp::is_domain_name(name.get_ref()) {
            let msg =
                format!("`{}` is not a DNS name (letters, digits and hyphens in dot-separated labels)", name.get_ref());
            c.err(name.span(), path(Kind::InternetHost, h.id.get_ref(), "name"), msg);
        }
    }
}
