//! What the relay's and the connector's metrics share: the `sallyport_`
//! prefix, `sallyport_build_info`, the OpenMetrics text exposition and its
//! content type, and the answers of `/healthz` and `/readyz`.
//!
//! Both daemons use the Prometheus project's own Rust client
//! (`prometheus-client`) rather than writing the text format by hand: it
//! escapes label values, appends `_total` to counters and the unit to
//! names, writes histograms' cumulative buckets, and ends the exposition
//! with `# EOF` as OpenMetrics 1.0 requires.
//!
//! Labels only ever carry values from a small, known set (an outcome, a
//! direction, a phase) or names an admin chose (a connector's, a relay's
//! address the connector was given): never a user name or a client's
//! address, so the number of series stays bounded whatever the network
//! sends.

use std::time::Duration;

pub use prometheus_client;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

/// The prefix of every Sallyport metric.
pub const PREFIX: &str = "sallyport";

/// The `Content-Type` of `/metrics`: OpenMetrics 1.0 text, which Prometheus
/// negotiates and parses natively.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The `Content-Type` of `/healthz` and `/readyz`.
pub const HEALTH_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

/// The most bytes of a label value that comes from outside the process
/// (a connector's announced version): longer ones are cut, so one series
/// cannot carry an arbitrary amount of text.
pub const MAX_LABEL_VALUE_LEN: usize = 64;

/// A registry whose metrics are all named `sallyport_*`.
pub fn registry() -> Registry {
    Registry::with_prefix(PREFIX)
}

/// Registers `sallyport_build_info{daemon, version} 1` (an OpenMetrics
/// `info` metric): which program (`relay`, `connector`) of which version
/// answers, so a dashboard can join on it and an upgrade shows as a change.
pub fn register_build_info(registry: &mut Registry, daemon: &'static str, version: &'static str) {
    registry.register(
        "build",
        "Which Sallyport program and version this is.",
        Info::new([("daemon", daemon), ("version", version)]),
    );
}

/// The registries' metrics as one OpenMetrics text exposition, ending in
/// `# EOF`.
pub fn encode(registries: &[&Registry]) -> String {
    let mut out = String::with_capacity(8 * 1024);
    for r in registries {
        // Writing to a String does not fail; the encoder's error type is
        // fmt::Error only because it writes to any fmt::Write.
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, r);
    }
    let _ = prometheus_client::encoding::text::encode_eof(&mut out);
    out
}

/// A duration in seconds, the unit of every `_seconds` histogram.
pub fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// `value` cut to at most [`MAX_LABEL_VALUE_LEN`] bytes, at a character
/// boundary.
pub fn bounded_label(value: &str) -> String {
    if value.len() <= MAX_LABEL_VALUE_LEN {
        return value.to_owned();
    }
    let mut end = MAX_LABEL_VALUE_LEN;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    value[..end].to_owned()
}

/// The body of `/healthz`: the process is alive and serving.
pub const HEALTHZ_BODY: &str = "ok\n";

/// The status and body of `/readyz`: 200 `ready`, or 503 with the reason.
pub fn readyz(state: Result<(), String>) -> (u16, String) {
    match state {
        Ok(()) => (200, "ready\n".to_owned()),
        Err(reason) => (503, format!("not ready: {reason}\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;

    #[test]
    fn build_info_counters_and_eof_in_openmetrics_text() {
        let mut r = registry();
        register_build_info(&mut r, "relay", "1.2.3");
        let c: Counter = Counter::default();
        r.register("things", "Things.", c.clone());
        c.inc_by(3);
        let text = encode(&[&r]);
        assert!(text.contains("# TYPE sallyport_build info\n"), "{text}");
        assert!(
            text.contains("sallyport_build_info{daemon=\"relay\",version=\"1.2.3\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("sallyport_things_total 3\n"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn outside_label_values_are_cut_at_a_character_boundary() {
        assert_eq!(bounded_label("0.1.0"), "0.1.0");
        let long = "é".repeat(40);
        let cut = bounded_label(&long);
        assert!(cut.len() <= MAX_LABEL_VALUE_LEN);
        assert_eq!(cut, "é".repeat(32));
    }
}
