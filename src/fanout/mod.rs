//! Fan-out: runs that start other runs, each on a thread of its own. A best-of-N run's
//! candidates, and a bundle's workstreams as a DAG (with integration of what they ship).

pub mod bundle;
pub mod threads;
