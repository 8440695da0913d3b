//! Status conditions as Kubernetes API conventions want them: `lastTransitionTime` changes
//! only when a condition's status does, and `observedGeneration` says which spec they
//! describe.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// A condition as a controller computes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewCondition<'a> {
    /// The type, e.g. `Ready`.
    pub type_: &'a str,
    /// `True`, `False` or `Unknown`.
    pub status: &'a str,
    /// CamelCase reason.
    pub reason: &'a str,
    /// A sentence for people.
    pub message: &'a str,
}

/// The conditions to write: `computed`, keeping each one's `lastTransitionTime` from
/// `before` while its status is unchanged, and `now` for the others.
pub fn merge_conditions<'a>(
    computed: impl IntoIterator<Item = NewCondition<'a>>,
    before: &[Condition],
    observed_generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    computed
        .into_iter()
        .map(|c| {
            let last_transition_time = before
                .iter()
                .find(|b| b.type_ == c.type_ && b.status == c.status)
                .map_or_else(|| now.clone(), |b| b.last_transition_time.clone());
            Condition {
                type_: c.type_.to_string(),
                status: c.status.to_string(),
                reason: c.reason.to_string(),
                message: c.message.to_string(),
                observed_generation,
                last_transition_time,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(s: &str) -> Time {
        Time(s.parse().expect("time"))
    }

    #[test]
    fn transition_time_moves_only_with_status() {
        let first = merge_conditions(
            [
                NewCondition {
                    type_: "A",
                    status: "True",
                    reason: "Ok",
                    message: "fine",
                },
                NewCondition {
                    type_: "B",
                    status: "False",
                    reason: "No",
                    message: "not yet",
                },
            ],
            &[],
            Some(1),
            &time("2026-11-22T10:00:00Z"),
        );
        let later = merge_conditions(
            [
                NewCondition {
                    type_: "A",
                    status: "True",
                    reason: "Ok",
                    message: "still fine",
                },
                NewCondition {
                    type_: "B",
                    status: "True",
                    reason: "Yes",
                    message: "now",
                },
            ],
            &first,
            Some(2),
            &time("2026-11-22T10:05:00Z"),
        );
        assert_eq!(later[0].last_transition_time, time("2026-11-22T10:00:00Z"));
        assert_eq!(later[0].message, "still fine");
        assert_eq!(later[1].last_transition_time, time("2026-11-22T10:05:00Z"));
        assert_eq!(later[1].observed_generation, Some(2));
    }
}
