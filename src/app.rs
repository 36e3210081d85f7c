//! Assembly: from a [`Config`] to a running gateway (store, contracts, adapters, workers, API).

use std::sync::Arc;

use anyhow::Context;
use csi_gateway_sdk::Outbound;
use csi_gateway_webhook::{WebhookConfig, WebhookSink};

use crate::api::{self, App, AppState};
use crate::auth::Clients;
use crate::broker::relay::Relay;
use crate::broker::{Broker, Publisher};
use crate::config::{Config, DestinationConfig};
use crate::contracts::Contracts;
use crate::deliver::{self, Destination};
use crate::ingest::Pipeline;
use crate::metrics::Metrics;
use crate::routing::Router;
use crate::store::postgres::PgStore;
use crate::store::siuss::SiussStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{Outbox, Projections, Queue, Store};

/// Builds the outbound adapter of a destination.
pub fn sink(d: &DestinationConfig) -> anyhow::Result<Arc<dyn Outbound>> {
    match d.adapter.as_str() {
        "webhook" => {
            let cfg = WebhookConfig::new(&d.url, &d.secret).with_timeout_ms(d.timeout_ms);
            let sink = WebhookSink::new(cfg).with_context(|| format!("destination '{}'", d.name))?;
            Ok(Arc::new(sink))
        }
        "siuss" => anyhow::bail!(
            "destination '{}': adapter siuss is built from [inps] and the store (see app::start)",
            d.name
        ),
        other => {
            anyhow::bail!("destination '{}': unknown adapter '{other}' (available: webhook, siuss)", d.name)
        }
    }
}

/// Loads the contracts named by the config (or found by default).
pub fn contracts(config: &Config) -> anyhow::Result<Arc<Contracts>> {
    let dir = Contracts::locate(config.server.contracts_dir.as_deref());
    Ok(Arc::new(Contracts::load(&dir).with_context(|| format!("loading contracts from {}", dir.display()))?))
}

/// The storage engine as the rest of the hub sees it.
struct Backend {
    store: Arc<dyn Store>,
    queue: Arc<dyn Queue>,
    projections: Arc<dyn Projections>,
    /// Cluster mode: the outbox a broker relay publishes.
    outbox: Option<Arc<dyn Outbox>>,
    /// The SIUSS adapter's store.
    siuss: Arc<dyn SiussStore>,
}

/// Opens the store, starts the delivery workers and returns the API state.
pub async fn start(config: &Config) -> anyhow::Result<AppState> {
    use crate::config::{QueueKind, StoreKind};
    let contracts = contracts(config)?;
    let metrics = Arc::new(Metrics::default());
    let Backend { store, queue, projections, outbox, siuss: siuss_store } = match config.store.kind {
        StoreKind::Sqlite => {
            let store = SqliteStore::open(&config.server.data_dir)
                .with_context(|| format!("opening the store in {}", config.server.data_dir.display()))?;
            Backend {
                store: store.clone(),
                queue: store.clone(),
                projections: store.clone(),
                outbox: None,
                siuss: store,
            }
        }
        StoreKind::Postgres => {
            let url =
                config.store.url.as_deref().context("store.url is required with kind = \"postgres\"")?;
            let store = PgStore::connect(url, config.store.pool_size).await.context("[store]")?;
            tracing::info!(store = %store.target(), "cluster mode: PostgreSQL store and queue");
            Backend {
                store: store.clone(),
                queue: store.clone(),
                projections: store.clone(),
                outbox: Some(store.clone()),
                siuss: store,
            }
        }
    };
    let (siuss, waas) = match &config.inps {
        Some(inps) => {
            let siuss =
                crate::siuss::Siuss::new(inps, siuss_store.clone(), metrics.clone()).context("[inps]")?;
            let waas =
                crate::siuss::Waas::new(inps, siuss_store.clone(), metrics.clone()).context("[inps.auth]")?;
            if !config.destinations.iter().any(|d| d.adapter == "siuss") {
                tracing::warn!("[inps] is configured but no destination has adapter = \"siuss\": no flusso will be built");
            }
            (Some(Arc::new(siuss)), Some(Arc::new(waas)))
        }
        None => (None, None),
    };
    let destinations = config
        .destinations
        .iter()
        .map(|d| {
            let sink: Arc<dyn Outbound> = match (d.adapter.as_str(), &siuss) {
                ("siuss", Some(s)) => s.clone(),
                _ => sink(d)?,
            };
            Ok(Destination { config: d.clone(), sink })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (health, relay, broker) = match (config.queue.kind, outbox) {
        (QueueKind::Rabbitmq, Some(outbox)) => {
            let names = destinations.iter().map(|d| d.config.name.clone()).collect();
            let broker = Broker::new(&config.queue, names)?;
            // Unreachable at start is not fatal: the consumers and the relay connect when it is
            // back, and /readyz says so meanwhile.
            if let Err(e) = broker.ready().await {
                tracing::warn!(error = %e, "RabbitMQ not reachable yet: accepting answers 503 until it is");
            }
            tracing::info!(broker = %broker.target(), exchange = %config.queue.exchange, "cluster mode: RabbitMQ queue");
            let relay = Relay::spawn(
                outbox,
                Publisher::new(broker.clone()),
                config.queue.exchange.clone(),
                std::time::Duration::from_millis(config.queue.confirm_timeout_ms),
            );
            let health = crate::broker::consume::spawn_consumers(
                broker.clone(),
                queue.clone(),
                destinations,
                metrics.clone(),
                config.queue.prefetch,
            );
            (health, Some(relay), Some(broker))
        }
        (QueueKind::Rabbitmq, None) => {
            anyhow::bail!("queue.kind = \"rabbitmq\" needs store.kind = \"postgres\"")
        }
        (QueueKind::Store, _) => {
            (deliver::spawn_workers(queue.clone(), destinations, metrics.clone()), None, None)
        }
    };
    let coop = match crate::coop::Coop::new(config.coop.clone(), projections) {
        Ok(c) => Some(Arc::new(c)),
        Err(e) => {
            tracing::warn!(error = %e, "cooperatives adapter disabled");
            None
        }
    };
    let isee = match &config.isee {
        Some(c) => Some(Arc::new(crate::isee::Isee::new(c.clone()).context("[isee]")?)),
        None => None,
    };
    let clients = Clients::new(&config.clients);
    if clients.is_empty() {
        tracing::warn!("no [[clients]] configured: every API call that needs a key will answer 401");
    }
    Ok(Arc::new(App {
        pipeline: Pipeline {
            contracts: contracts.clone(),
            store: store.clone(),
            router: Router::new(config.routes.clone()),
            limits: config.limits.clone(),
            metrics: metrics.clone(),
            relay,
        },
        broker,
        clients,
        store,
        queue,
        contracts,
        metrics,
        health,
        coop,
        coop_max_upload: config.coop.max_upload_bytes.unwrap_or(64 * 1024 * 1024),
        waas,
        isee,
    }))
}

/// Runs the gateway until SIGINT or SIGTERM.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let state = start(&config).await?;
    if let Some(waas) = state.waas.clone() {
        // The JWKS URL, when configured, is fetched at start (and later on an unknown kid).
        tokio::spawn(async move { waas.fetch_keys().await });
    }
    if let Some(drop) = config.coop.drop.clone() {
        crate::coop::drop_folder::spawn(state.clone(), drop, &config.clients)?;
    }
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    tracing::info!(listen = %config.server.listen, store = ?config.store.kind, data_dir = %config.server.data_dir.display(), "csi-gateway listening");
    // The peer address reaches the handlers (WaaS trusted-gateway mode checks it).
    let service = api::router(state, config.limits.max_body_bytes)
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, service).with_graceful_shutdown(shutdown()).await?;
    Ok(())
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down: accepted events stay in the store and resume at the next start");
}
