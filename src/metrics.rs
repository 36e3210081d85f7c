//! Prometheus metrics, exposed at `GET /metrics`.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DestinationLabel {
    pub destination: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EsitoLabel {
    /// `OK`, `DATI_NON_TROVATI`, `RICHIESTA_INVALIDA`, `ERRORE_GENERICO`.
    pub esito: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperazioneLabel {
    /// `I` or `C`.
    pub operazione: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabel {
    pub rule: String,
}

/// Every metric the gateway exports.
pub struct Metrics {
    registry: Registry,
    pub accepted: Counter,
    pub rejected: Counter,
    pub duplicates: Counter,
    pub delivered: Family<DestinationLabel, Counter>,
    pub retried: Family<DestinationLabel, Counter>,
    pub dead_lettered: Family<DestinationLabel, Counter>,
    pub queue_depth: Family<DestinationLabel, Gauge>,
    pub accept_latency: Histogram,
    pub delivery_latency: Family<DestinationLabel, Histogram>,
    /// SIUSS flussi put in the WaaS feed, by `TipoOperazione`.
    pub siuss_flussi: Family<OperazioneLabel, Counter>,
    /// Outcomes INPS posted to `/esiti`, by `codice_esito` (repeated posts included).
    pub siuss_esiti: Family<EsitoLabel, Counter>,
    /// Prestazioni refused before publication, by the SIUSS rule they break.
    pub siuss_refused: Family<RuleLabel, Counter>,
    /// `GET /flussi` pages served.
    pub siuss_polls: Counter,
    /// ISEE consultations, by outcome (`OK`, `DATI_NON_TROVATI`, `refused`, `unavailable`, ...).
    pub isee_consultations: Family<EsitoLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("csi_gateway");
        let m = Self {
            accepted: Counter::default(),
            rejected: Counter::default(),
            duplicates: Counter::default(),
            delivered: Family::default(),
            retried: Family::default(),
            dead_lettered: Family::default(),
            queue_depth: Family::default(),
            accept_latency: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            delivery_latency: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 16))
            }),
            siuss_flussi: Family::default(),
            siuss_esiti: Family::default(),
            siuss_refused: Family::default(),
            siuss_polls: Counter::default(),
            isee_consultations: Family::default(),
            registry: Registry::default(),
        };
        registry.register("events_accepted", "Events made durable", m.accepted.clone());
        registry.register("events_rejected", "Events refused by validation or limits", m.rejected.clone());
        registry.register("events_duplicate", "Events recognised by idempotency key", m.duplicates.clone());
        registry.register("deliveries", "Deliveries confirmed by the receiver", m.delivered.clone());
        registry.register(
            "retries",
            "Attempts that failed transiently and were rescheduled",
            m.retried.clone(),
        );
        registry.register("dead_letters", "Deliveries moved to the dead letters", m.dead_lettered.clone());
        registry.register("queue_depth", "Deliveries waiting or in flight", m.queue_depth.clone());
        registry.register(
            "accept_latency_seconds",
            "Time from request to durable acceptance",
            m.accept_latency.clone(),
        );
        registry.register(
            "delivery_latency_seconds",
            "Time from acceptance to confirmed delivery",
            m.delivery_latency.clone(),
        );
        registry.register("siuss_flussi", "SIUSS flussi offered to INPS over WaaS", m.siuss_flussi.clone());
        registry.register("siuss_esiti", "Outcomes INPS reported on SIUSS flussi", m.siuss_esiti.clone());
        registry.register(
            "siuss_refused",
            "Prestazioni kept from INPS because they break a SIUSS rule",
            m.siuss_refused.clone(),
        );
        registry.register("siuss_polls", "WaaS GET /flussi pages served", m.siuss_polls.clone());
        registry.register(
            "isee_consultations",
            "ISEE attestations asked to INPS, by outcome",
            m.isee_consultations.clone(),
        );
        Self { registry, ..m }
    }
}

impl Metrics {
    /// Counts one ISEE consultation by its outcome.
    pub fn isee_consultation(&self, esito: &str) {
        self.isee_consultations.get_or_create(&EsitoLabel { esito: esito.into() }).inc();
    }

    pub fn label(destination: &str) -> DestinationLabel {
        DestinationLabel { destination: destination.to_string() }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
