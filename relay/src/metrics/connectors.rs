//! Per-connector series, read from the tunnel registry at each scrape
//! rather than kept in step with it: `sallyport_connector_connections_live`
//! (connections up, by connector and transport, `quic` or `tcp`) and `sallyport_connector_info` (which
//! version each connector runs). A connector that goes offline simply
//! has no series at the next scrape.
//!
//! The `connector` label is a connector's name, which only an admin
//! creates (`sallyport-relay connector add NAME`), so there are at most as
//! many series as enrolled connectors. The `version` label is what a
//! connector's hello announced: only an enrolled connector (holding its
//! certificate) can send one, each of its connections has one, and it is
//! cut to `MAX_LABEL_VALUE_LEN` bytes.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use sallyport_common::metrics::bounded_label;

use crate::tunnel::Registry as Tunnels;

/// Encodes the per-connector series of `tunnels` at each scrape.
#[derive(Clone)]
pub struct ConnectorSeries {
    /// The live connections.
    pub tunnels: Arc<Tunnels>,
}

impl std::fmt::Debug for ConnectorSeries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConnectorSeries")
    }
}

impl Collector for ConnectorSeries {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let live = Family::<[(&'static str, String); 2], Gauge>::default();
        for (name, transports) in self.tunnels.transports() {
            for t in transports {
                live.get_or_create(&[("connector", name.clone()), ("transport", t.to_string())])
                    .inc();
            }
        }
        live.encode(encoder.encode_descriptor(
            "connector_connections_live",
            "Connector connections live now, by connector and transport (quic, tcp).",
            None,
            live.metric_type(),
        )?)?;
        let info = Family::<[(&'static str, String); 2], Gauge>::default();
        for (name, versions) in self.tunnels.versions() {
            for v in versions {
                info.get_or_create(&[("connector", name.clone()), ("version", bounded_label(&v))])
                    .set(1);
            }
        }
        info.encode(encoder.encode_descriptor(
            "connector_info",
            "1 for each software version a connector's live connections announced.",
            None,
            info.metric_type(),
        )?)?;
        Ok(())
    }
}
