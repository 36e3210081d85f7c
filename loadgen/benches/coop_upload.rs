//! The cooperatives upload, in process, stage by stage (criterion):
//!
//! - `coop/read_csv`: decoding, parsing, mapping (jaq) and checking the rows of the load tool's
//!   Excel sheet: the work of the upload's reader thread;
//! - `coop/upload`: the whole upload of the same sheet into a fresh embedded store (read, checked
//!   against the beneficiaries' progetti, priced, validated against the interchange contract,
//!   committed with its audit records): what the load tool's scenario `coop` measures over HTTP,
//!   without the HTTP.
//!
//! `cargo bench -p loadgen --bench coop_upload` (figures: `BENCHMARKS.md`).

use std::collections::BTreeSet;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use csi_gateway::api::AppState;
use csi_gateway::auth::Caller;
use csi_gateway::config::{Config, Role};
use csi_gateway::coop::Body;
use csi_gateway::ingest::{EventResult, Mode};
use loadgen::fixtures::{self, toml_string, COOPERATIVA, TENANT};

/// The gateway's allocator (`src/main.rs`): allocation is a large part of this work.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Rows of the sheet of each iteration.
const ROWS: usize = 10_000;
/// The shipped mapping the sheet is written for.
const MAPPING: &str = "coop-excel-csv";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A gateway in a fresh data directory, with the beneficiaries' progetti published.
struct Gateway {
    app: AppState,
    runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl Gateway {
    fn start() -> Self {
        let root = root();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let toml = format!(
            "[server]\ndata_dir = {}\ncontracts_dir = {}\n\n[limits]\nmax_batch = 1000\n\n[coop]\nmappings_dir = {}\n",
            toml_string(&dir.path().join("data")),
            toml_string(&root.join("contracts")),
            toml_string(&root.join("mappings/coop")),
        );
        let file = dir.path().join("gateway.toml");
        std::fs::write(&file, toml).expect("writing the configuration");
        let config = Config::load(Some(&file)).expect("a valid configuration");
        let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
        let app = runtime.block_on(async {
            let app = csi_gateway::app::start(&config).await.expect("the gateway starts");
            let comune = caller(&["*"], &[Role::Publisher], None);
            for body in fixtures::progetti(&root).expect("the progetti") {
                let results =
                    app.pipeline.ingest(&comune, &body, Mode::Batch).await.expect("progetti stored");
                assert!(
                    results.iter().all(|r| matches!(r, EventResult::Accepted { .. })),
                    "every progetto accepted"
                );
            }
            app
        });
        Gateway { app, runtime, _dir: dir }
    }

    /// Uploads `sheet` as the cooperative's client; the time it took, once every row is accepted.
    fn upload(&self, sheet: &[u8]) -> Duration {
        let coop = self.app.coop.clone().expect("the cooperatives adapter");
        let client = caller(&[TENANT], &[Role::Publisher], Some(COOPERATIVA));
        let input = Box::new(Cursor::new(sheet.to_vec()));
        let started = Instant::now();
        let uploaded = self
            .runtime
            .block_on(coop.upload(&self.app.pipeline, &client, TENANT, MAPPING, Body::Csv, input))
            .expect("the upload is answered");
        let took = started.elapsed();
        assert_eq!(uploaded.summary.accepted, ROWS as u64, "every row accepted: {:?}", uploaded.summary);
        took
    }
}

fn caller(tenants: &[&str], roles: &[Role], cooperativa: Option<&str>) -> Caller {
    Caller {
        name: "bench".into(),
        tenants: tenants.iter().map(|t| t.to_string()).collect(),
        roles: roles.iter().copied().collect::<BTreeSet<_>>(),
        cooperativa: cooperativa.map(str::to_string),
    }
}

fn coop(c: &mut Criterion) {
    let sheet = fixtures::sheet(ROWS);
    let mut group = c.benchmark_group("coop");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.sampling_mode(SamplingMode::Flat).sample_size(10).measurement_time(Duration::from_secs(10));

    let gateway = Gateway::start();
    let mapping =
        gateway.app.coop.as_ref().expect("the cooperatives adapter").mapping(MAPPING).expect("the mapping");
    let checks = csi_gateway_coop::Checks::new(time::OffsetDateTime::now_utc().date());
    group.bench_function("read_csv", |b| {
        b.iter(|| {
            let rows = csi_gateway_coop::read_csv(Cursor::new(&sheet), &mapping, &checks);
            let deliveries =
                rows.filter(|r| matches!(r.outcome, csi_gateway_coop::RowOutcome::Delivery(_))).count();
            assert_eq!(deliveries, ROWS, "every row of the sheet is a delivery");
        })
    });
    drop(gateway);

    // Each iteration uploads into a fresh store (started, and its progetti published, untimed):
    // the same sheet again would be duplicates.
    group.bench_function("upload", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| Gateway::start().upload(&sheet)).sum())
    });
    group.finish();
}

criterion_group!(benches, coop);
criterion_main!(benches);
