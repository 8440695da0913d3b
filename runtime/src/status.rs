//! Status written by server-side apply: each controller owns the status of its objects
//! under its own field manager.

/// Writes `status` on the object `name` of `api` by server-side apply, as `manager`
/// (forcing: the status belongs to the controller).
pub async fn apply_status<K, S>(
    api: &kube::Api<K>,
    name: &str,
    manager: &str,
    status: &S,
) -> Result<(), String>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    S: serde::Serialize,
{
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &kube::api::PatchParams::apply(manager).force(),
        &kube::api::Patch::Apply(&patch),
    )
    .await
    .map(drop)
    .map_err(|e| e.to_string())
}
