//! The mesh-TLS controller's pure core: [`evaluate`] decides one MeshPolicy from what was
//! observed; [`pass`] observes every policy from the sidecars' readings and the stores,
//! and turns the decisions into statuses and events.

pub mod boundary;
pub mod evaluate;
pub mod pass;

pub use boundary::*;
pub use evaluate::*;
pub use pass::*;
