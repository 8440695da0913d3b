//! The sources that feed the stores: a directory of manifests (local mode) or a Kubernetes
//! cluster (kube-runtime reflectors). Both write through a `StateWriter`.

pub mod files;
pub mod kube;
