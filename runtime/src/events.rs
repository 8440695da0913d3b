//! Kubernetes Events (`events.k8s.io/v1`) a controller records about its objects.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

/// A recorder of `reporter`'s events (its `reportingController`), from this replica
/// (`instance`, the pod name).
pub fn recorder(client: kube::Client, reporter: &str, instance: String) -> Recorder {
    Recorder::new(
        client,
        Reporter {
            controller: reporter.into(),
            instance: Some(instance),
        },
    )
}

/// Publishes an event about `reference` through `recorder`: `warning` for a Warning,
/// else Normal; `reason` is the machine-readable CamelCase word, `note` the sentence for
/// people, `action` what the controller was doing.
pub async fn publish_event(
    recorder: &Recorder,
    reference: &ObjectReference,
    warning: bool,
    reason: &str,
    note: &str,
    action: &str,
) -> Result<(), String> {
    recorder
        .publish(
            &Event {
                type_: if warning {
                    EventType::Warning
                } else {
                    EventType::Normal
                },
                reason: reason.into(),
                note: Some(note.into()),
                action: action.into(),
                secondary: None,
            },
            reference,
        )
        .await
        .map_err(|e| e.to_string())
}
