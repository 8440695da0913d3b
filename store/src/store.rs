//! A store of one kind of object, and the channel that publishes the cluster state.

use std::{collections::BTreeMap, sync::Arc};

use tokio::sync::watch;

use crate::{ClusterState, Kind, Object, ObjectKey};

/// The objects of one kind, by namespace and name.
///
/// Copy-on-write: cloning shares the map, and the first change after a clone copies it, so
/// readers keep a consistent snapshot while the writer moves on.
#[derive(Debug)]
pub struct Store<K> {
    objects: Arc<BTreeMap<ObjectKey, Arc<K>>>,
}

impl<K> Clone for Store<K> {
    fn clone(&self) -> Self {
        Store {
            objects: Arc::clone(&self.objects),
        }
    }
}

impl<K> Default for Store<K> {
    fn default() -> Self {
        Store {
            objects: Arc::default(),
        }
    }
}

impl<K: PartialEq> PartialEq for Store<K> {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.objects, &other.objects) || self.objects == other.objects
    }
}

impl<K: kube::Resource> Store<K> {
    /// Adds or replaces an object.
    pub fn insert(&mut self, object: Arc<K>) {
        let key = ObjectKey::of(object.as_ref());
        Arc::make_mut(&mut self.objects).insert(key, object);
    }
}

impl<K> Store<K> {
    /// Removes an object; returns whether it was there.
    pub fn remove(&mut self, key: &ObjectKey) -> bool {
        if !self.objects.contains_key(key) {
            return false;
        }
        Arc::make_mut(&mut self.objects).remove(key).is_some()
    }

    /// The object under `key`.
    pub fn get(&self, key: &ObjectKey) -> Option<&Arc<K>> {
        self.objects.get(key)
    }

    /// The object named `name` in `namespace`.
    pub fn get_namespaced(&self, namespace: &str, name: &str) -> Option<&Arc<K>> {
        self.objects.get(&ObjectKey::namespaced(namespace, name))
    }

    /// The object named `name` in `namespace`, with the store's key for it.
    pub fn get_keyed(&self, namespace: &str, name: &str) -> Option<(&ObjectKey, &Arc<K>)> {
        self.objects
            .get_key_value(&ObjectKey::namespaced(namespace, name))
    }

    /// Every object, ordered by namespace and name.
    pub fn iter(&self) -> impl Iterator<Item = (&ObjectKey, &Arc<K>)> {
        self.objects.iter()
    }

    /// The objects in one namespace.
    pub fn in_namespace(&self, namespace: &str) -> impl Iterator<Item = &Arc<K>> {
        self.in_namespace_keyed(namespace).map(|(_, v)| v)
    }

    /// The objects in one namespace, with their keys.
    pub fn in_namespace_keyed(
        &self,
        namespace: &str,
    ) -> impl Iterator<Item = (&ObjectKey, &Arc<K>)> {
        // Keys are ordered by namespace first, so one namespace is one contiguous range.
        let start = ObjectKey::namespaced(namespace, "");
        let namespace = namespace.to_string();
        self.objects
            .range(start..)
            .take_while(move |(k, _)| k.namespace.as_deref() == Some(namespace.as_str()))
    }

    /// Removes every object in `namespace`; returns whether there was any.
    pub fn remove_namespace(&mut self, namespace: &str) -> bool {
        if self.in_namespace(namespace).next().is_none() {
            return false;
        }
        Arc::make_mut(&mut self.objects).retain(|k, _| k.namespace.as_deref() != Some(namespace));
        true
    }

    /// How many objects there are.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }
}

/// The writing end of the cluster state: sources apply changes here, and every change is
/// published to the readers as a new [`ClusterState`] snapshot.
#[derive(Debug)]
pub struct StateWriter {
    tx: watch::Sender<ClusterState>,
}

impl Default for StateWriter {
    fn default() -> Self {
        StateWriter {
            tx: watch::Sender::new(ClusterState::default()),
        }
    }
}

impl StateWriter {
    /// A reader that sees every published state (the latest one, not every step).
    pub fn subscribe(&self) -> watch::Receiver<ClusterState> {
        self.tx.subscribe()
    }

    /// The state as published now.
    pub fn current(&self) -> ClusterState {
        self.tx.borrow().clone()
    }

    /// Adds or replaces one object.
    pub fn apply(&self, object: Object) {
        self.tx.send_modify(|state| state.apply(object));
    }

    /// Changes the state in place; `change` returns whether it changed anything (readers
    /// are woken only then). For read-modify-write against the latest state, which a
    /// caller holding an older snapshot must not overwrite.
    pub fn modify(&self, change: impl FnOnce(&mut ClusterState) -> bool) -> bool {
        self.tx.send_if_modified(change)
    }

    /// Removes one object.
    pub fn delete(&self, kind: Kind, key: &ObjectKey) {
        self.tx.send_if_modified(|state| state.delete(kind, key));
    }

    /// Replaces every object of one kind (a source's initial list or relist).
    pub fn reset(&self, kind: Kind, objects: Vec<Object>) {
        self.tx.send_modify(|state| state.reset(kind, objects));
    }

    /// Replaces the objects of one kind in one namespace (the list of a reflector that
    /// watches only that namespace), leaving the kind's other namespaces as they are.
    pub fn reset_namespace(&self, kind: Kind, namespace: &str, objects: Vec<Object>) {
        self.tx
            .send_modify(|state| state.reset_namespace(kind, namespace, objects));
    }

    /// Replaces the whole state; readers are woken only if it differs. Returns whether it
    /// did.
    pub fn replace(&self, next: ClusterState) -> bool {
        self.tx.send_if_modified(|state| {
            if *state == next {
                false
            } else {
                *state = next;
                true
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Secret;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn secret(namespace: &str, name: &str) -> Object {
        Object::Secret(Arc::new(Secret {
            metadata: ObjectMeta {
                namespace: Some(namespace.into()),
                name: Some(name.into()),
                ..Default::default()
            },
            ..Default::default()
        }))
    }

    #[test]
    fn a_namespace_relist_replaces_that_namespace_only() {
        let writer = StateWriter::default();
        writer.reset(
            Kind::Secret,
            vec![secret("a", "old"), secret("b", "kept"), secret("c", "kept")],
        );
        writer.reset_namespace(Kind::Secret, "a", vec![secret("a", "new")]);
        writer.reset_namespace(Kind::Secret, "c", Vec::new());
        let names: Vec<String> = writer
            .current()
            .secrets
            .iter()
            .map(|(k, _)| format!("{}/{}", k.namespace.as_deref().unwrap(), k.name))
            .collect();
        assert_eq!(names, ["a/new", "b/kept"]);
        // A namespace with nothing in it: nothing to remove, nothing changes.
        let mut state = writer.current();
        assert!(!state.secrets.remove_namespace("z"));
        assert_eq!(state, writer.current());
    }
}
