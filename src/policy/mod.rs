//! Policy: what a run may touch (scope, and the globs both scope and manifests use), how risky
//! a task is (risk router), and whose config may run commands (trust).

pub mod manifest;
pub mod risk;
pub mod scope;
pub mod trust;
