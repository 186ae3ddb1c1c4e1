//! What the data plane's observers produce for people and tools, never on the decision path:
//! metrics in the OpenMetrics text format ([`metrics`]).

pub mod metrics;
