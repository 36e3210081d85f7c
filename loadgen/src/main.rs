//! `loadgen` — the load tool of csi-gateway.
//!
//! In one run it measures the raw ceiling of this machine's SQLite (the gateway's settings, no
//! HTTP) and, beside it, the gateway's own figures, each on a fresh gateway process and data
//! directory:
//!
//! | scenario | what |
//! |---|---|
//! | `sqlite` | raw inserts, WAL + `synchronous=FULL`, 100 rows per transaction → rows/s |
//! | `a` | batch accept: K clients POST batches of 100 until N events are accepted → events/s |
//! | `b` | single-event accept: 32 clients, one event per request → events/s |
//! | `c` | end to end: batches in, delivered to a loopback webhook receiver → delivered events/s |
//! | `c2` | end to end through two instances sharing one PostgreSQL database (`--postgres`) → delivered events/s |
//! | `amqp` | raw RabbitMQ ceiling (`--rabbitmq`): persistent messages, quorum queue, pipelined confirms, manual acks → messages/s |
//! | `d` | latency: open loop at a fixed rate of single events → p50/p95/p99/max |
//! | (e) | resident memory (`VmRSS`) of the gateway: idle, and peak under every scenario |
//! | `coop` | cooperatives: a 100,000-row Excel CSV uploaded in one request → rows/s, peak RSS |
//! | `export` | SIUSS web-upload file: `csi-gateway siuss export` of 1,000,000 seeded prestazioni → prestazioni/s, peak RSS |
//! | `flussi` | WaaS feed: concurrent PDND clients paging `GET /flussi?limit=100` → pages/s |
//!
//! With `--postgres` and `--rabbitmq`, the gateways run in cluster mode on RabbitMQ, and c and c2
//! are also read against the `amqp` ceiling.
//!
//! Each figure is compared with its target (PASS/MISS and the ratio), throughput also with the
//! SQLite ceiling. Usage: `cargo build --release && cargo run --release -p loadgen -- --help`.
//!
//! The load generator runs on the same machine, and so the same cores, as the gateway; with
//! `--instance-cpus`, each gateway process is capped at a share of them (`cpu_limit.rs`).

mod amqp;
mod coop;
mod cpu_limit;
mod events;
mod gateway;
mod receiver;
mod report;
mod scenarios;
mod siuss;
mod sqlite;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;

use crate::events::Template;
use crate::gateway::Gateway;
use crate::report::{Figure, Report, Target};
use crate::scenarios::{Latency, Throughput, BATCH, SINGLE};

/// Events per batch request.
const BATCH_SIZE: usize = 100;
/// Targets.
const TARGET_BATCH: f64 = 20_000.0;
const TARGET_SINGLE: f64 = 4_000.0;
const TARGET_E2E: f64 = 5_000.0;
const TARGET_P99_MS: f64 = 15.0;
const TARGET_RSS_IDLE_MB: f64 = 60.0;
const TARGET_RSS_LOAD_MB: f64 = 200.0;
const TARGET_COOP_ROWS: f64 = 50_000.0;
const TARGET_RSS_COOP_MB: f64 = 100.0;
const MB: f64 = 1024.0 * 1024.0;

/// Measures this machine's SQLite ceiling and csi-gateway's throughput, latency and memory.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Events of the SQLite ceiling and of scenario a; b and c send 2/5 of it (default 20,000).
    #[arg(long, default_value_t = 50_000)]
    events: usize,
    /// Concurrent clients of the batch scenarios (a and c).
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Deliveries in flight at once to the loopback receiver (the destination's `concurrency`).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Concurrent clients of the single-event scenario (b).
    #[arg(long, default_value_t = 32)]
    single_clients: usize,
    /// Requests per second of the latency scenario (d).
    #[arg(long, default_value_t = 1_000.0)]
    rate: f64,
    /// Seconds of the latency scenario (d).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Smoke run: 1/10 of every event count and 3 s of latency scenario.
    #[arg(long)]
    quick: bool,
    /// Scenarios to run, among sqlite,a,b,c,c2,d,amqp,coop,export,flussi (memory is sampled in
    /// whichever run; c2, end to end through two instances on one database, needs --postgres;
    /// amqp, the raw RabbitMQ ceiling, needs --rabbitmq).
    #[arg(long, value_delimiter = ',', default_value = "sqlite,a,b,c,d")]
    only: Vec<String>,
    /// Rows of the cooperatives scenario's CSV.
    #[arg(long, default_value_t = 100_000)]
    coop_rows: usize,
    /// Prestazioni seeded and exported by the export scenario.
    #[arg(long, default_value_t = 1_000_000)]
    export_prestazioni: usize,
    /// Flussi in the WaaS feed of the flussi scenario.
    #[arg(long, default_value_t = 20_000)]
    flussi: usize,
    /// Concurrent clients paging the feed in the flussi scenario (for --duration seconds).
    #[arg(long, default_value_t = 8)]
    flussi_clients: usize,
    /// The gateway binary (relative paths from the repository root).
    #[arg(long, default_value = "target/release/csi-gateway")]
    gateway: PathBuf,
    /// Repository root (with contracts/); default: the current directory if it has contracts/,
    /// else the workspace this tool was built from.
    #[arg(long)]
    root: Option<PathBuf>,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Run the gateways of a, b, c, d and coop on the PostgreSQL store: a fresh database on this
    /// server for each (e.g. postgres://postgres@127.0.0.1:5432/postgres). The sqlite figure stays
    /// the SQLite ceiling.
    #[arg(long)]
    postgres: Option<String>,
    /// With --postgres: run the gateways in cluster mode on this RabbitMQ broker (e.g.
    /// amqp://guest:guest@127.0.0.1:5672/%2f), and measure its raw ceiling in scenario amqp.
    #[arg(long)]
    rabbitmq: Option<String>,
    /// What the amqp scenario's messages carry beyond the body: plain, or any of headers (the
    /// gateway's seven csi-* headers), properties (message id, type, app id, timestamp),
    /// mandatory, or gateway (all three) — to measure what each costs the broker.
    #[arg(long, value_delimiter = ',', default_value = "plain")]
    amqp_shape: Vec<String>,
    /// Caps each gateway process at this many CPUs (e.g. 0.5, a container's CPU limit) in a
    /// control group of its own, so that c2 measures two instances as if each had a machine of
    /// its own beside the shared database and broker. Needs root.
    #[arg(long)]
    instance_cpus: Option<f64>,
}

/// Event counts and durations after `--quick`.
struct Plan {
    sqlite_rows: usize,
    batch_events: usize,
    single_events: usize,
    e2e_events: usize,
    latency_requests: usize,
    duration: f64,
    coop_rows: usize,
}

impl Plan {
    fn new(args: &Args) -> Self {
        let div = if args.quick { 10 } else { 1 };
        let n = (args.events / div).max(BATCH_SIZE);
        let duration = if args.quick { 3.0 } else { args.duration };
        Self {
            sqlite_rows: n,
            batch_events: n,
            single_events: (n * 2 / 5).max(1),
            e2e_events: (n * 2 / 5).max(1),
            latency_requests: ((args.rate * duration).round() as usize).max(1),
            duration,
            coop_rows: (args.coop_rows / div).max(1),
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("loadgen: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs the selected scenarios; `Ok(false)` when one of them failed to complete.
async fn run(args: Args) -> Result<bool> {
    for s in &args.only {
        if !["sqlite", "a", "b", "c", "c2", "d", "amqp", "coop", "export", "flussi"].contains(&s.as_str()) {
            bail!("unknown scenario '{s}' in --only (use sqlite,a,b,c,c2,d,amqp,coop,export,flussi)");
        }
    }
    gateway::use_concurrency(args.concurrency);
    if let Some(cpus) = args.instance_cpus {
        cpu_limit::use_cpu_limit(cpus)?;
    }
    if let Some(url) = args.rabbitmq.clone() {
        if args.postgres.is_none() {
            bail!("--rabbitmq needs --postgres: instances sharing a broker share a PostgreSQL store");
        }
        gateway::use_rabbitmq(url);
    }
    if let Some(url) = args.postgres.clone() {
        gateway::use_postgres(url);
    }
    let wants = |s: &str| args.only.iter().any(|o| o == s);
    let root = repo_root(args.root.as_deref())?;
    let binary = if args.gateway.is_absolute() { args.gateway.clone() } else { root.join(&args.gateway) };
    let gateway_needed = ["a", "b", "c", "c2", "d", "coop", "export", "flussi"].iter().any(|s| wants(s));
    if gateway_needed && !binary.is_file() {
        bail!(
            "no gateway binary at {}: run `cargo build --release` first (or pass --gateway PATH)",
            binary.display()
        );
    }
    let plan = Plan::new(&args);
    let contracts = root.join("contracts");
    let mut report = Report { context: machine(), ..Report::default() };
    report.context.push(("gateway".into(), binary.display().to_string()));
    if let Some(cpus) = cpu_limit::limit() {
        report
            .context
            .push(("gateway CPU".into(), format!("each instance capped at {cpus} CPUs (control group)")));
    }
    report.context.push((
        "plan".into(),
        format!(
            "sqlite {} rows; a {} events x {} clients; b {} events x {} clients; c {} events x {} \
             clients; d {} req/s for {} s; coop {} rows",
            plan.sqlite_rows,
            plan.batch_events,
            args.clients,
            plan.single_events,
            args.single_clients,
            plan.e2e_events,
            args.clients,
            args.rate,
            plan.duration,
            plan.coop_rows
        ),
    ));
    eprintln!("loadgen: repository {}", root.display());

    // Raw SQLite ceiling.
    let mut ceiling = None;
    if wants("sqlite") {
        eprintln!("loadgen: sqlite: inserting {} rows...", plan.sqlite_rows);
        let body = events::row_body(&root);
        let rows = plan.sqlite_rows;
        match tokio::task::spawn_blocking(move || sqlite::measure(rows, &body)).await {
            Ok(Ok(c)) => {
                let v = c.rows_per_sec();
                ceiling = Some(v);
                report.figures.push(Figure {
                    scenario: "sqlite",
                    name: format!("raw insert ({} rows/tx)", sqlite::TX_ROWS),
                    value: v,
                    unit: "rows/s",
                    target: None,
                    vs_sqlite: None,
                });
                eprintln!("loadgen: sqlite: {} rows in {:.2?}", c.rows, c.elapsed);
            }
            Ok(Err(e)) => report.failures.push(("sqlite".into(), format!("{e:#}"))),
            Err(e) => report.failures.push(("sqlite".into(), format!("task failed: {e}"))),
        }
    }
    let vs = |v: f64| ceiling.map(|c| v / c);

    // Raw RabbitMQ ceiling.
    let mut amqp_ceiling = None;
    let amqp_shape = amqp::Shape::parse(&args.amqp_shape)?;
    if wants("amqp") {
        let Some(url) = args.rabbitmq.as_deref() else { bail!("scenario amqp needs --rabbitmq") };
        let n = plan.e2e_events;
        eprintln!("loadgen: amqp: {n} persistent messages through a quorum queue...");
        match amqp::measure(url, n, &events::row_body(&root), amqp_shape).await {
            Ok(c) => {
                let v = c.per_sec();
                amqp_ceiling = Some(v);
                report.figures.push(Figure {
                    scenario: "amqp",
                    name: format!(
                        "raw RabbitMQ: quorum queue, confirms window {}, prefetch {}, manual acks{}",
                        amqp::WINDOW,
                        amqp::PREFETCH,
                        amqp_shape.label()
                    ),
                    value: v,
                    unit: "msg/s",
                    target: None,
                    vs_sqlite: None,
                });
                eprintln!("loadgen: amqp: {} messages in {:.2?}", c.messages, c.elapsed);
            }
            Err(e) => report.failures.push(("amqp".into(), format!("{e:#}"))),
        }
    }

    let template = if gateway_needed { Some(Template::load(&root)?) } else { None };
    let http = scenarios::client()?;
    let mut idle_rss: Vec<u64> = Vec::new();
    let mut load_rss: Vec<(&'static str, u64)> = Vec::new();

    if let Some(template) = &template {
        // a. Batch accept.
        if wants("a") {
            let http = http.clone();
            eprintln!("loadgen: a: batch accept, {} events...", plan.batch_events);
            let bodies = template.batches("a", plan.batch_events, BATCH_SIZE);
            let outcome =
                with_gateway(&binary, &contracts, None, None, &mut idle_rss, |base, pid| async move {
                    scenarios::accept(&http, &base, pid, bodies, BATCH, args.clients, plan.batch_events).await
                })
                .await;
            record_throughput(&mut report, &mut load_rss, "a", "batch accept", outcome, TARGET_BATCH, vs);
        }
        // b. Single-event accept.
        if wants("b") {
            let http = http.clone();
            eprintln!("loadgen: b: single-event accept, {} events...", plan.single_events);
            let bodies = template.singles("b", plan.single_events);
            let outcome =
                with_gateway(&binary, &contracts, None, None, &mut idle_rss, |base, pid| async move {
                    scenarios::accept(
                        &http,
                        &base,
                        pid,
                        bodies,
                        SINGLE,
                        args.single_clients,
                        plan.single_events,
                    )
                    .await
                })
                .await;
            record_throughput(
                &mut report,
                &mut load_rss,
                "b",
                "single-event accept",
                outcome,
                TARGET_SINGLE,
                vs,
            );
        }
        // c. End to end.
        if wants("c") {
            let http = http.clone();
            eprintln!("loadgen: c: end to end, {} events...", plan.e2e_events);
            let outcome = async {
                let (receiver, addr) = receiver::Receiver::start().await?;
                let url = format!("http://{addr}/events");
                let bodies = template.batches("c", plan.e2e_events, BATCH_SIZE);
                with_gateway(&binary, &contracts, Some(&url), None, &mut idle_rss, |base, pid| async move {
                    scenarios::end_to_end(
                        &http,
                        &[base],
                        pid,
                        &receiver,
                        bodies,
                        args.clients,
                        plan.e2e_events,
                    )
                    .await
                })
                .await
            }
            .await;
            note_end_to_end(&mut report, "c", &outcome);
            note_vs_broker(&mut report, "c (one instance)", &outcome, amqp_ceiling);
            record_throughput(
                &mut report,
                &mut load_rss,
                "c",
                "end-to-end delivered",
                outcome,
                TARGET_E2E,
                vs,
            );
        }
        // c2. End to end through two instances sharing one PostgreSQL database.
        if wants("c2") {
            let http = http.clone();
            eprintln!("loadgen: c2: end to end through two instances, {} events...", plan.e2e_events);
            let outcome = async {
                if args.postgres.is_none() {
                    bail!("scenario c2 needs --postgres (two instances share one database)");
                }
                let (receiver, addr) = receiver::Receiver::start().await?;
                let url = format!("http://{addr}/events");
                let bodies = template.batches("c2", plan.e2e_events, BATCH_SIZE);
                let first = Gateway::start(&binary, &contracts, Some(&url), None).await?;
                let second = Gateway::start_beside(&first, &binary, &contracts, Some(&url)).await?;
                let bases = [first.base.clone(), second.base.clone()];
                let t = scenarios::end_to_end(
                    &http,
                    &bases,
                    first.pid(),
                    &receiver,
                    bodies,
                    args.clients,
                    plan.e2e_events,
                )
                .await;
                second.stop().await?;
                first.stop().await?;
                t
            }
            .await;
            note_end_to_end(&mut report, "c2 (two instances)", &outcome);
            note_vs_broker(&mut report, "c2 (two instances)", &outcome, amqp_ceiling);
            record_throughput(
                &mut report,
                &mut load_rss,
                "c2",
                "end-to-end delivered, 2 instances",
                outcome,
                TARGET_E2E,
                vs,
            );
        }
        // d. Latency at a fixed rate.
        if wants("d") {
            let http = http.clone();
            eprintln!("loadgen: d: {} req/s for {} s...", args.rate, plan.duration);
            let bodies = template.singles("d", plan.latency_requests);
            let outcome =
                with_gateway(&binary, &contracts, None, None, &mut idle_rss, |base, pid| async move {
                    scenarios::latency(&http, &base, pid, bodies, args.rate).await
                })
                .await;
            record_latency(&mut report, &mut load_rss, outcome, args.rate);
        }
        // Cooperatives: one big Excel CSV through the adapter.
        if wants("coop") {
            let http = http.clone();
            let rows = plan.coop_rows;
            eprintln!("loadgen: coop: building a {rows}-row CSV...");
            let progetti = loadgen::fixtures::progetti(&root)?;
            let sheet = loadgen::fixtures::sheet(rows);
            let mappings = root.join("mappings/coop");
            eprintln!("loadgen: coop: uploading {:.1} MB...", sheet.len() as f64 / MB);
            let outcome = with_gateway(
                &binary,
                &contracts,
                None,
                Some(&mappings),
                &mut idle_rss,
                |base, pid| async move {
                    coop::upload(&http, &base, pid, gateway::COOP_API_KEY, progetti, sheet, rows).await
                },
            )
            .await;
            match outcome {
                Ok(run) => {
                    eprintln!("loadgen: coop: {} rows in {:.2?}", run.rows, run.elapsed);
                    let v = run.per_sec();
                    report.figures.push(Figure {
                        scenario: "coop",
                        name: format!("upload mapped+checked+accepted ({} rows)", run.rows),
                        value: v,
                        unit: "rows/s",
                        target: Some(Target::AtLeast(TARGET_COOP_ROWS)),
                        vs_sqlite: vs(v),
                    });
                    report.figures.push(Figure {
                        scenario: "coop",
                        name: "RSS peak during coop".into(),
                        value: run.peak_rss as f64 / MB,
                        unit: "MB",
                        target: Some(Target::AtMost(TARGET_RSS_COOP_MB)),
                        vs_sqlite: None,
                    });
                    report.notes.push(format!(
                        "coop: {} rows ({:.1} MB of CSV) uploaded in one request, all accepted in {:.2} s; \
                         gateway CPU during the upload {:.2} s (user + system, {:.0} µs a row), \
                         of which the store's writer thread {:.2} s",
                        run.rows,
                        run.bytes as f64 / MB,
                        run.elapsed.as_secs_f64(),
                        run.cpu,
                        run.cpu * 1e6 / run.rows.max(1) as f64,
                        run.writer_cpu
                    ));
                }
                Err(e) => {
                    eprintln!("loadgen: coop failed: {e:#}");
                    report.failures.push(("coop".into(), format!("{e:#}")));
                }
            }
        }
    }

    // INPS SIUSS: the web-upload export and the WaaS feed.
    if wants("export") {
        let n = if args.quick { args.export_prestazioni / 10 } else { args.export_prestazioni }.max(1);
        siuss::run_export(&binary, &root, n, &mut report).await;
    }
    if wants("flussi") {
        let n = if args.quick { args.flussi / 10 } else { args.flussi }.max(100);
        siuss::run_flussi(&binary, &root, n, args.flussi_clients, plan.duration, &mut report).await;
    }

    // e. Resident memory.
    if let Some(&idle) = idle_rss.iter().max() {
        report.figures.push(Figure {
            scenario: "e",
            name: format!("RSS idle (max of {} fresh gateways)", idle_rss.len()),
            value: idle as f64 / MB,
            unit: "MB",
            target: Some(Target::AtMost(TARGET_RSS_IDLE_MB)),
            vs_sqlite: None,
        });
    }
    for (scenario, peak) in &load_rss {
        report.figures.push(Figure {
            scenario: "e",
            name: format!("RSS peak during {scenario}"),
            value: *peak as f64 / MB,
            unit: "MB",
            target: Some(Target::AtMost(TARGET_RSS_LOAD_MB)),
            vs_sqlite: None,
        });
    }
    report.context.push(("load at end".into(), loadavg()));

    println!("{}", report.table());
    if let Some(path) = &args.json {
        report.write_json(path)?;
        eprintln!("loadgen: report written to {}", path.display());
    }
    Ok(report.failures.is_empty())
}

/// Starts a fresh gateway, records its idle RSS, runs `scenario` against its base URL and pid,
/// stops it. A failed scenario's error carries the tail of the gateway's log.
async fn with_gateway<T, F, Fut>(
    binary: &Path,
    contracts: &Path,
    webhook: Option<&str>,
    coop_mappings: Option<&Path>,
    idle_rss: &mut Vec<u64>,
    scenario: F,
) -> Result<T>
where
    F: FnOnce(String, u32) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let gw = Gateway::start(binary, contracts, webhook, coop_mappings).await?;
    // Let start-up allocations settle before reading the idle figure.
    tokio::time::sleep(Duration::from_millis(500)).await;
    if let Ok(rss) = gateway::rss_bytes(gw.pid()) {
        idle_rss.push(rss);
    }
    let outcome = scenario(gw.base.clone(), gw.pid()).await;
    let outcome = outcome.map_err(|e| e.context(format!("gateway log tail:\n{}", gw.log_tail())));
    gw.stop().await?;
    outcome
}

/// Notes when an end-to-end run had everything accepted and everything delivered.
fn note_end_to_end(report: &mut Report, scenario: &str, outcome: &Result<Throughput>) {
    if let Ok(Throughput { events, elapsed, accepted_after: Some(accepted), .. }) = outcome {
        report.notes.push(format!(
            "{scenario}: all {events} events accepted after {:.2} s, all delivered after {:.2} s",
            accepted.as_secs_f64(),
            elapsed.as_secs_f64()
        ));
    }
}

/// In cluster mode on RabbitMQ, reads an end-to-end figure against the raw broker ceiling
/// (target: at least 60 % with one instance).
fn note_vs_broker(report: &mut Report, scenario: &str, outcome: &Result<Throughput>, ceiling: Option<f64>) {
    if let (Ok(t), Some(c)) = (outcome, ceiling) {
        let v = t.per_sec();
        report.notes.push(format!(
            "{scenario}: {v:.0} ev/s end to end = {:.0} % of the raw RabbitMQ ceiling ({c:.0} msg/s; target ≥ 60 %)",
            100.0 * v / c
        ));
    }
}

/// Adds a throughput figure (or the failure) and the scenario's peak RSS.
fn record_throughput(
    report: &mut Report,
    load_rss: &mut Vec<(&'static str, u64)>,
    scenario: &'static str,
    name: &str,
    outcome: Result<Throughput>,
    target: f64,
    vs_sqlite: impl Fn(f64) -> Option<f64>,
) {
    match outcome {
        Ok(t) => {
            let v = t.per_sec();
            eprintln!("loadgen: {scenario}: {} events in {:.2?}", t.events, t.elapsed);
            report.figures.push(Figure {
                scenario,
                name: name.to_string(),
                value: v,
                unit: "ev/s",
                target: Some(Target::AtLeast(target)),
                vs_sqlite: vs_sqlite(v),
            });
            load_rss.push((scenario, t.peak_rss));
        }
        Err(e) => {
            eprintln!("loadgen: {scenario} failed: {e:#}");
            report.failures.push((scenario.to_string(), format!("{e:#}")));
        }
    }
}

/// Adds the latency figures (or the failure) and the scenario's peak RSS.
fn record_latency(
    report: &mut Report,
    load_rss: &mut Vec<(&'static str, u64)>,
    outcome: Result<Latency>,
    rate: f64,
) {
    let l = match outcome {
        Ok(l) => l,
        Err(e) => {
            eprintln!("loadgen: d failed: {e:#}");
            report.failures.push(("d".into(), format!("{e:#}")));
            return;
        }
    };
    let ms = |us: u32| f64::from(us) / 1000.0;
    let at = format!("at {rate:.0} req/s");
    for (name, us, target) in [
        ("p50", l.p50_us, None),
        ("p95", l.p95_us, None),
        ("p99", l.p99_us, Some(Target::AtMost(TARGET_P99_MS))),
        ("max", l.max_us, None),
    ] {
        report.figures.push(Figure {
            scenario: "d",
            name: format!("latency {name} {at}"),
            value: ms(us),
            unit: "ms",
            target,
            vs_sqlite: None,
        });
    }
    report.notes.push(format!(
        "d: {} requests offered at {:.0} req/s, {} answered 202, {} errors",
        l.sent, l.offered_rate, l.ok, l.errors
    ));
    if let Some(e) = &l.first_error {
        report.notes.push(format!("d: first error: {e}"));
        report.failures.push(("d".into(), format!("{} of {} requests failed; first: {e}", l.errors, l.sent)));
    }
    load_rss.push(("d", l.peak_rss));
}

/// The repository root: `--root`, else the current directory if it holds `contracts/`, else the
/// workspace this crate was built from.
fn repo_root(given: Option<&Path>) -> Result<PathBuf> {
    if let Some(root) = given {
        return Ok(root.to_path_buf());
    }
    let cwd = std::env::current_dir().context("reading the current directory")?;
    if cwd.join("contracts").is_dir() {
        return Ok(cwd);
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    built.canonicalize().with_context(|| format!("resolving {}", built.display()))
}

/// Cores, CPU model, memory and load of this machine.
fn machine() -> Vec<(String, String)> {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown".to_string(), |(_, m)| m.trim().to_string());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or("unknown".to_string(), |kb| format!("{:.1} GiB", kb / 1024.0 / 1024.0));
    vec![
        ("cores".into(), cores.to_string()),
        ("cpu".into(), cpu),
        ("memory".into(), mem),
        ("load at start".into(), loadavg()),
    ]
}

/// `/proc/loadavg`'s 1, 5 and 15 minute averages (other processes sharing the cores).
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}
