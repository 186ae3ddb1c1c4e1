//! Per-instance-type network limits: how many ENIs an instance may have and how many private IPv4
//! addresses (primary plus secondaries) each ENI may carry. Values are AWS's published ones
//! ("Maximum IP addresses per network interface" in the EC2 user guide); an instance without a type
//! is not limited, an unknown type is an error so a typo does not silently lift the limits.

/// `(instance type, maximum ENIs, IPv4 addresses per ENI)`.
pub const INSTANCE_TYPES: &[(&str, u32, u32)] = &[
    // T2 (previous generation, burstable)
    ("t2.nano", 2, 2),
    ("t2.micro", 2, 2),
    ("t2.small", 3, 4),
    ("t2.medium", 3, 6),
    ("t2.large", 3, 12),
    ("t2.xlarge", 3, 15),
    ("t2.2xlarge", 3, 15),
    // M3
    ("m3.medium", 2, 6),
    ("m3.large", 3, 10),
    ("m3.xlarge", 4, 15),
    ("m3.2xlarge", 4, 15),
    // M4
    ("m4.large", 2, 10),
    ("m4.xlarge", 4, 15),
    ("m4.2xlarge", 4, 15),
    ("m4.4xlarge", 8, 30),
    ("m4.10xlarge", 8, 30),
    ("m4.16xlarge", 8, 30),
    // C3
    ("c3.large", 3, 10),
    ("c3.xlarge", 4, 15),
    ("c3.2xlarge", 4, 15),
    ("c3.4xlarge", 8, 30),
    ("c3.8xlarge", 8, 30),
    // C4
    ("c4.large", 3, 10),
    ("c4.xlarge", 4, 15),
    ("c4.2xlarge", 4, 15),
    ("c4.4xlarge", 8, 30),
    ("c4.8xlarge", 8, 30),
    // R4
    ("r4.large", 3, 10),
    ("r4.xlarge", 4, 15),
    ("r4.2xlarge", 4, 15),
    ("r4.4xlarge", 8, 30),
    ("r4.8xlarge", 8, 30),
    ("r4.16xlarge", 15, 50),
    // T3 and T3a (current generation, burstable)
    ("t3.nano", 2, 2),
    ("t3.micro", 2, 2),
    ("t3.small", 3, 4),
    ("t3.medium", 3, 6),
    ("t3.large", 3, 12),
    ("t3.xlarge", 4, 15),
    ("t3.2xlarge", 4, 15),
    ("t3a.nano", 2, 2),
    ("t3a.micro", 2, 2),
    ("t3a.small", 3, 4),
    ("t3a.medium", 3, 6),
    ("t3a.large", 3, 12),
    ("t3a.xlarge", 4, 15),
    ("t3a.2xlarge", 4, 15),
    // M5
    ("m5.large", 3, 10),
    ("m5.xlarge", 4, 15),
    ("m5.2xlarge", 4, 15),
    ("m5.4xlarge", 8, 30),
    ("m5.8xlarge", 8, 30),
    ("m5.12xlarge", 8, 30),
    ("m5.16xlarge", 15, 50),
    ("m5.24xlarge", 15, 50),
    // C5
    ("c5.large", 3, 10),
    ("c5.xlarge", 4, 15),
    ("c5.2xlarge", 4, 15),
    ("c5.4xlarge", 8, 30),
    ("c5.9xlarge", 8, 30),
    ("c5.12xlarge", 8, 30),
    ("c5.18xlarge", 15, 50),
    ("c5.24xlarge", 15, 50),
    // R5
    ("r5.large", 3, 10),
    ("r5.xlarge", 4, 15),
    ("r5.2xlarge", 4, 15),
    ("r5.4xlarge", 8, 30),
    ("r5.8xlarge", 8, 30),
    ("r5.12xlarge", 8, 30),
    ("r5.16xlarge", 15, 50),
    ("r5.24xlarge", 15, 50),
];

/// The network limits of one instance type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InstanceLimits {
    /// Maximum attached ENIs.
    pub max_enis: u32,
    /// Maximum private IPv4 addresses per ENI, primary included.
    pub ipv4_per_eni: u32,
}

/// The limits of `instance_type`, or `None` when vpclab does not know the type.
pub fn limits(instance_type: &str) -> Option<InstanceLimits> {
    INSTANCE_TYPES
        .iter()
        .find(|(name, _, _)| *name == instance_type)
        .map(|&(_, max_enis, ipv4_per_eni)| InstanceLimits { max_enis, ipv4_per_eni })
}

/// The families in the table (`t2`, `m5`, ...), for the message about an unknown type.
pub(crate) fn families() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for (name, _, _) in INSTANCE_TYPES {
        let family = name.split('.').next().unwrap_or(name);
        if !out.contains(&family) {
            out.push(family);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_values() {
        assert_eq!(limits("t2.micro"), Some(InstanceLimits { max_enis: 2, ipv4_per_eni: 2 }));
        assert_eq!(limits("t2.medium"), Some(InstanceLimits { max_enis: 3, ipv4_per_eni: 6 }));
        assert_eq!(limits("m5.xlarge"), Some(InstanceLimits { max_enis: 4, ipv4_per_eni: 15 }));
        assert_eq!(limits("c5.18xlarge"), Some(InstanceLimits { max_enis: 15, ipv4_per_eni: 50 }));
        assert_eq!(limits("t9.huge"), None);
        assert!(families().starts_with(&["t2", "m3", "m4"]));
    }

    #[test]
    fn no_type_listed_twice() {
        for (i, (a, _, _)) in INSTANCE_TYPES.iter().enumerate() {
            assert!(INSTANCE_TYPES[i + 1..].iter().all(|(b, _, _)| a != b), "{a} listed twice");
        }
    }
}
