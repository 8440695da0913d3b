//! The mesh-TLS controller's decision core: a MeshPolicy, what the proxies report and the
//! status so far → the mode to push, the promotion phase, and the status to write. Pure:
//! no clients, no clock (`now` is an input).
//!
//! - Strict and Disable are pushed as written. Permissive without `promotion.auto` too.
//! - Moving between Disable and Strict must go through Permissive. A direct jump is
//!   refused (the previous mode stays, with a `TransitionRefused` condition) unless forced.
//! - Permissive with `promotion.auto` starts **Observing**. It is promoted to Strict only
//!   when both hold:
//!   - every ready endpoint in scope has a connected sidecar;
//!   - the inbound listeners accepted no plaintext connection over a whole
//!     `plaintextWindow`.
//! - After promotion (**Promoted**), the inbound error rate is watched for
//!   `rollbackWindow`. Above `rollbackErrorRate`, the namespace returns to Permissive
//!   (**RolledBack**) and stays there until the spec changes.

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use weir_crds::mesh_policy::{MeshPhase, MeshPolicySpec, MtlsMode};

/// What the controller saw of the policy's workloads.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observation {
    /// Ready endpoints in the policy's scope.
    pub ready_endpoints: u32,
    /// Of those, the ones whose pod has a connected sidecar.
    pub with_sidecar: u32,
    /// Plaintext connections the inbound listeners accepted in the last `plaintextWindow`;
    /// `None` when the proxies' statistics could not be read.
    pub plaintext_connections: Option<u64>,
    /// Inbound requests and errors (5xx, resets) since the promotion.
    pub inbound_requests: u64,
    /// Of those, the errors.
    pub inbound_errors: u64,
}

/// What the controller remembers, from the MeshPolicy status.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Previous {
    /// The mode pushed so far.
    pub effective_mode: Option<MtlsMode>,
    /// The phase.
    pub phase: Option<MeshPhase>,
    /// When the namespace was promoted.
    pub promoted_at: Option<Timestamp>,
    /// Since when the policy has been observed without a blind spot (every ready
    /// endpoint with a sidecar whose statistics could be read).
    pub observing_since: Option<Timestamp>,
    /// The spec generation the previous decision was for.
    pub generation: Option<i64>,
}

/// The decision.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    /// The mode to push.
    pub effective_mode: MtlsMode,
    /// The phase.
    pub phase: MeshPhase,
    /// When promoted (kept while Promoted).
    pub promoted_at: Option<Timestamp>,
    /// `11/12`.
    pub sidecar_coverage: String,
    /// The condition to show: (type, status, reason, message).
    pub condition: (&'static str, &'static str, &'static str, String),
    /// An event worth recording: (type, reason, message).
    pub event: Option<(&'static str, &'static str, String)>,
    /// While Observing: since when every endpoint has had a readable sidecar (the
    /// plaintext count covers a whole window once this is a window old), to pass back as
    /// `Previous::observing_since`.
    pub observing_since: Option<Timestamp>,
}

fn window(d: &weir_crds::Duration) -> SignedDuration {
    SignedDuration::try_from(d.get()).unwrap_or(SignedDuration::MAX)
}

/// Decides the mode of one MeshPolicy at `now`. `force` allows a direct Disable ↔ Strict
/// move.
pub fn evaluate(
    spec: &MeshPolicySpec,
    generation: Option<i64>,
    force: bool,
    previous: &Previous,
    seen: &Observation,
    now: Timestamp,
) -> Evaluation {
    let coverage = format!("{}/{}", seen.with_sidecar, seen.ready_endpoints);
    let wanted = spec.mtls.mode;
    let spec_changed = previous.generation.is_some() && previous.generation != generation;
    let steady = |mode: MtlsMode, reason: &'static str, message: String| Evaluation {
        effective_mode: mode,
        phase: MeshPhase::Steady,
        promoted_at: None,
        sidecar_coverage: coverage.clone(),
        condition: ("Ready", "True", reason, message),
        event: None,
        observing_since: None,
    };

    // Disable ↔ Strict goes through Permissive.
    if let Some(before) = previous.effective_mode
        && matches!(
            (before, wanted),
            (MtlsMode::Disable, MtlsMode::Strict) | (MtlsMode::Strict, MtlsMode::Disable)
        )
        && !force
    {
        return Evaluation {
            effective_mode: before,
            phase: MeshPhase::Steady,
            promoted_at: previous.promoted_at,
            sidecar_coverage: coverage.clone(),
            condition: (
                "Ready",
                "False",
                "TransitionRefused",
                format!(
                    "{before:?} to {wanted:?} must go through Permissive (set Permissive first, or force the change); {before:?} stays in force"
                ),
            ),
            event: Some((
                "Warning",
                "TransitionRefused",
                format!("{before:?} to {wanted:?} refused: go through Permissive"),
            )),
            observing_since: None,
        };
    }
    let auto = spec.mtls.promotion.as_ref().filter(|p| p.auto);
    let (MtlsMode::Permissive, Some(promotion)) = (wanted, auto) else {
        return steady(wanted, "ModeApplied", format!("{wanted:?} in force"));
    };

    // Promoted: watch the error rate for the rollback window.
    if previous.phase == Some(MeshPhase::Promoted)
        && !spec_changed
        && let Some(at) = previous.promoted_at
    {
        let rate = if seen.inbound_requests > 0 {
            seen.inbound_errors as f64 / seen.inbound_requests as f64
        } else {
            0.0
        };
        let watching = now < at + window(&promotion.rollback_window);
        if watching && rate > promotion.rollback_error_rate {
            let message = format!(
                "inbound error rate {:.1}% exceeded {:.1}% within the rollback window after promotion; back to Permissive",
                rate * 100.0,
                promotion.rollback_error_rate * 100.0
            );
            return Evaluation {
                effective_mode: MtlsMode::Permissive,
                phase: MeshPhase::RolledBack,
                promoted_at: None,
                sidecar_coverage: coverage,
                condition: ("Ready", "True", "RolledBack", message.clone()),
                event: Some(("Warning", "RolledBack", message)),
                observing_since: None,
            };
        }
        return Evaluation {
            effective_mode: MtlsMode::Strict,
            phase: MeshPhase::Promoted,
            promoted_at: Some(at),
            sidecar_coverage: coverage,
            condition: (
                "Ready",
                "True",
                "Promoted",
                if watching {
                    format!(
                        "Strict since {at}; watching the inbound error rate ({:.1}%) until {}",
                        rate * 100.0,
                        at + window(&promotion.rollback_window)
                    )
                } else {
                    format!("Strict since {at}")
                },
            ),
            event: None,
            observing_since: None,
        };
    }
    if previous.phase == Some(MeshPhase::RolledBack) && !spec_changed {
        return Evaluation {
            effective_mode: MtlsMode::Permissive,
            phase: MeshPhase::RolledBack,
            promoted_at: None,
            sidecar_coverage: coverage,
            condition: (
                "Ready",
                "True",
                "RolledBack",
                "rolled back to Permissive after errors; change the spec to observe again".into(),
            ),
            event: None,
            observing_since: None,
        };
    }

    // Observing: promote once coverage is full and a whole window was quiet.
    let since = previous
        .observing_since
        .filter(|_| previous.phase == Some(MeshPhase::Observing) && !spec_changed)
        .unwrap_or(now);
    let plaintext_window = window(&promotion.plaintext_window);
    let mut waiting = Vec::new();
    if seen.ready_endpoints == 0 {
        waiting.push("no ready endpoints yet".to_string());
    } else if seen.with_sidecar < seen.ready_endpoints {
        waiting.push(format!(
            "{} of {} ready endpoints have no connected sidecar",
            seen.ready_endpoints - seen.with_sidecar,
            seen.ready_endpoints
        ));
    }
    match seen.plaintext_connections {
        None => waiting.push("the proxies' plaintext statistics cannot be read".into()),
        Some(0) => {}
        Some(n) => waiting.push(format!(
            "{n} plaintext connection(s) accepted in the last {}",
            promotion.plaintext_window
        )),
    }
    // The plaintext count covers the window only if the whole window was observed: a
    // blind spot (statistics unreadable, endpoints without a sidecar) restarts it. A
    // plaintext connection does not: it holds the promotion until it leaves the window.
    let blind = seen.plaintext_connections.is_none()
        || seen.ready_endpoints == 0
        || seen.with_sidecar < seen.ready_endpoints;
    let since = if blind { now } else { since };
    if waiting.is_empty() && now < since + plaintext_window {
        waiting.push(format!(
            "quiet since {since}; promotion at {}",
            since + plaintext_window
        ));
    }
    if waiting.is_empty() {
        let message = format!(
            "promoted to Strict: {coverage} endpoints with sidecars, no plaintext for {}",
            promotion.plaintext_window
        );
        return Evaluation {
            effective_mode: MtlsMode::Strict,
            phase: MeshPhase::Promoted,
            promoted_at: Some(now),
            sidecar_coverage: coverage,
            condition: ("Ready", "True", "Promoted", message.clone()),
            event: Some(("Normal", "Promoted", message)),
            observing_since: None,
        };
    }
    Evaluation {
        effective_mode: MtlsMode::Permissive,
        phase: MeshPhase::Observing,
        promoted_at: None,
        sidecar_coverage: coverage,
        condition: ("Ready", "True", "Observing", waiting.join("; ")),
        event: None,
        observing_since: Some(since),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> MeshPolicySpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    const AUTO: &str = "mtls: {mode: Permissive, promotion: {auto: true, plaintextWindow: 10m, rollbackWindow: 5m, rollbackErrorRate: 0.05}}";

    fn full(plaintext: u64) -> Observation {
        Observation {
            ready_endpoints: 12,
            with_sidecar: 12,
            plaintext_connections: Some(plaintext),
            ..Observation::default()
        }
    }

    #[test]
    fn disable_to_strict_is_refused_unless_forced() {
        let previous = Previous {
            effective_mode: Some(MtlsMode::Disable),
            ..Previous::default()
        };
        let strict = spec("mtls: {mode: Strict}");
        let e = evaluate(
            &strict,
            Some(2),
            false,
            &previous,
            &full(0),
            t("2026-11-22T10:00:00Z"),
        );
        assert_eq!(e.effective_mode, MtlsMode::Disable);
        assert_eq!(e.condition.2, "TransitionRefused");
        let e = evaluate(
            &strict,
            Some(2),
            true,
            &previous,
            &full(0),
            t("2026-11-22T10:00:00Z"),
        );
        assert_eq!(e.effective_mode, MtlsMode::Strict);
        let via = Previous {
            effective_mode: Some(MtlsMode::Permissive),
            ..Previous::default()
        };
        assert_eq!(
            evaluate(
                &strict,
                Some(2),
                false,
                &via,
                &full(0),
                t("2026-11-22T10:00:00Z")
            )
            .effective_mode,
            MtlsMode::Strict
        );
    }

    #[test]
    fn a_plaintext_caller_keeps_the_namespace_permissive_and_says_why() {
        let s = spec(AUTO);
        let now = t("2026-11-22T10:00:00Z");
        let e = evaluate(&s, Some(1), false, &Previous::default(), &full(3), now);
        assert_eq!(e.effective_mode, MtlsMode::Permissive);
        assert_eq!(e.phase, MeshPhase::Observing);
        assert!(
            e.condition.3.contains("3 plaintext connection(s)"),
            "{}",
            e.condition.3
        );
        let partial = Observation {
            with_sidecar: 11,
            ..full(0)
        };
        let e = evaluate(&s, Some(1), false, &Previous::default(), &partial, now);
        assert_eq!(e.sidecar_coverage, "11/12");
        assert!(
            e.condition
                .3
                .contains("1 of 12 ready endpoints have no connected sidecar")
        );
    }

    #[test]
    fn promotion_after_a_quiet_window_then_rollback_on_errors() {
        let s = spec(AUTO);
        let start = t("2026-11-22T10:00:00Z");
        let observing = Previous {
            effective_mode: Some(MtlsMode::Permissive),
            phase: Some(MeshPhase::Observing),
            observing_since: Some(start),
            generation: Some(1),
            ..Previous::default()
        };
        // Quiet, but not for a whole window yet.
        let e = evaluate(
            &s,
            Some(1),
            false,
            &observing,
            &full(0),
            t("2026-11-22T10:09:59Z"),
        );
        assert_eq!(e.phase, MeshPhase::Observing);
        assert!(
            e.condition.3.contains("promotion at 2026-11-22T10:10:00Z"),
            "{}",
            e.condition.3
        );
        let at = t("2026-11-22T10:10:00Z");
        let e = evaluate(&s, Some(1), false, &observing, &full(0), at);
        assert_eq!(
            (e.effective_mode, e.phase),
            (MtlsMode::Strict, MeshPhase::Promoted)
        );
        assert_eq!(e.event.as_ref().unwrap().1, "Promoted");
        let promoted = Previous {
            effective_mode: Some(MtlsMode::Strict),
            phase: Some(MeshPhase::Promoted),
            promoted_at: Some(at),
            generation: Some(1),
            ..Previous::default()
        };
        // 2% errors: stays. 10%: back to Permissive.
        let errors = |n| Observation {
            inbound_requests: 100,
            inbound_errors: n,
            ..full(0)
        };
        let e = evaluate(
            &s,
            Some(1),
            false,
            &promoted,
            &errors(2),
            t("2026-11-22T10:12:00Z"),
        );
        assert_eq!(e.effective_mode, MtlsMode::Strict);
        let e = evaluate(
            &s,
            Some(1),
            false,
            &promoted,
            &errors(10),
            t("2026-11-22T10:12:00Z"),
        );
        assert_eq!(
            (e.effective_mode, e.phase),
            (MtlsMode::Permissive, MeshPhase::RolledBack)
        );
        // After the rollback window, errors no longer roll back.
        let e = evaluate(
            &s,
            Some(1),
            false,
            &promoted,
            &errors(10),
            t("2026-11-22T10:16:00Z"),
        );
        assert_eq!(e.effective_mode, MtlsMode::Strict);
        // Rolled back stays until the spec changes.
        let rolled = Previous {
            effective_mode: Some(MtlsMode::Permissive),
            phase: Some(MeshPhase::RolledBack),
            generation: Some(1),
            ..Previous::default()
        };
        assert_eq!(
            evaluate(
                &s,
                Some(1),
                false,
                &rolled,
                &full(0),
                t("2026-11-22T11:00:00Z")
            )
            .phase,
            MeshPhase::RolledBack
        );
        assert_eq!(
            evaluate(
                &s,
                Some(2),
                false,
                &rolled,
                &full(0),
                t("2026-11-22T11:00:00Z")
            )
            .phase,
            MeshPhase::Observing
        );
    }

    #[test]
    fn plaintext_in_the_window_holds_the_promotion_and_a_blind_spot_restarts_the_window() {
        let s = spec(AUTO);
        let observing = Previous {
            effective_mode: Some(MtlsMode::Permissive),
            phase: Some(MeshPhase::Observing),
            observing_since: Some(t("2026-11-22T10:00:00Z")),
            generation: Some(1),
            ..Previous::default()
        };
        let e = evaluate(
            &s,
            Some(1),
            false,
            &observing,
            &full(1),
            t("2026-11-22T10:20:00Z"),
        );
        assert_eq!(e.phase, MeshPhase::Observing);
        // Observed all along: once the connection has left the window, Strict.
        let e = evaluate(
            &s,
            Some(1),
            false,
            &observing,
            &full(0),
            t("2026-11-22T10:21:00Z"),
        );
        assert_eq!(e.phase, MeshPhase::Promoted);
        // Statistics unreadable: the window starts again from there.
        let e = evaluate(
            &s,
            Some(1),
            false,
            &observing,
            &Observation {
                plaintext_connections: None,
                ..full(0)
            },
            t("2026-11-22T10:20:00Z"),
        );
        assert!(e.condition.3.contains("cannot be read"));
        assert_eq!(e.observing_since, Some(t("2026-11-22T10:20:00Z")));
        let resumed = Previous {
            observing_since: e.observing_since,
            ..observing
        };
        let e = evaluate(
            &s,
            Some(1),
            false,
            &resumed,
            &full(0),
            t("2026-11-22T10:25:00Z"),
        );
        assert_eq!(e.phase, MeshPhase::Observing);
        assert!(e.condition.3.contains("promotion at 2026-11-22T10:30:00Z"));
    }
}
