//! `csi-gateway` command line.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use csi_gateway::config::{Config, StoreKind};
use csi_gateway::ingest::{self, IngestError, Mode};
use csi_gateway::{app, auth, store};

#[derive(Parser)]
#[command(
    name = "csi-gateway",
    version,
    about = "Interoperability gateway for the Lombardy Cartella Sociale Informatizzata"
)]
struct Cli {
    /// Configuration file (TOML). Every value can be overridden by CSI_GATEWAY_* variables.
    #[arg(long, global = true, env = "CSI_GATEWAY_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

/// Where a running gateway answers, for commands that talk to it.
#[derive(clap::Args)]
struct Remote {
    /// Base URL of the running gateway.
    #[arg(long, env = "CSI_GATEWAY_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// API key of a client configured in [[clients]].
    #[arg(long, env = "CSI_GATEWAY_API_KEY", hide_env_values = true)]
    api_key: String,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (the default when no command is given).
    Serve,
    /// Load and check the configuration, the contracts and every destination, then exit.
    CheckConfig,
    /// Validate a CloudEvent (object) or a batch (array) file, printing the errors the API would give.
    Validate { file: PathBuf },
    /// Send a CloudEvent or batch file to a running gateway.
    Send {
        file: PathBuf,
        #[command(flatten)]
        remote: Remote,
    },
    /// List dead letters of a running gateway.
    DeadLetters {
        #[arg(long)]
        destination: Option<String>,
        #[arg(long)]
        tenant: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Replay dead letters on a running gateway: one by --id, or all matching the filters.
    Replay {
        #[arg(long)]
        id: Option<i64>,
        #[arg(long)]
        destination: Option<String>,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long = "type")]
        event_type: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Audit log commands.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// List the interchange contracts.
    Contracts,
    /// Print the SHA-256 of an API key, as written in `api_key_sha256`.
    HashKey { key: String },
    /// Show what a cooperative's file becomes with a mapping (one JSON line per row), sending nothing.
    Map {
        /// Mapping name (`mappings/coop/<name>.toml`).
        #[arg(long)]
        mapping: String,
        file: PathBuf,
    },
    /// Cooperatives' commands.
    Coop {
        #[command(subcommand)]
        command: CoopCommand,
    },
    /// Apply the PostgreSQL schema migrations (store.url, or --to); with --from, move an embedded
    /// installation into an empty PostgreSQL database with its history and audit chain.
    Migrate {
        /// The embedded store to copy: sqlite://<data_dir or gateway.db file>.
        #[arg(long, value_name = "sqlite://PATH")]
        from: Option<String>,
        /// The PostgreSQL database (default: store.url of the configuration).
        #[arg(long, value_name = "postgres://URL", hide_env_values = true)]
        to: Option<String>,
    },
    /// INPS SIUSS commands.
    Siuss {
        #[command(subcommand)]
        command: SiussCommand,
    },
    /// RabbitMQ commands (cluster mode).
    Rabbitmq {
        #[command(subcommand)]
        command: RabbitmqCommand,
    },
}

#[derive(Subcommand)]
enum RabbitmqCommand {
    /// Print the exchanges, queues and bindings the gateway declares for the configured
    /// destinations and queue.exchange, as a RabbitMQ definitions file (for `rabbitmqctl
    /// import_definitions` by operators who provision the broker themselves).
    Definitions,
}

#[derive(Subcommand)]
enum SiussCommand {
    /// Write one PS_PSA_SINA file with many beneficiaries for INPS's web upload, from the stored
    /// prestazioni of an ente (reads the configured data_dir; the gateway may be running).
    Export {
        /// Belfiore code of the ente, as in [[inps.enti]].
        #[arg(long)]
        ente: String,
        /// First day, YYYY-MM-DD (inclusive): of dataErogazione (carattere 2) or dataInizio (carattere 1).
        #[arg(long)]
        from: String,
        /// Last day, YYYY-MM-DD (inclusive).
        #[arg(long)]
        to: String,
        /// The XML file to write (written as <out>.partial, renamed when complete).
        #[arg(long)]
        out: PathBuf,
        /// Also print the summary as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum CoopCommand {
    /// Upload a file of delivered hours to a running gateway, with a progress bar; prints the report.
    Upload {
        file: PathBuf,
        #[arg(long)]
        mapping: String,
        /// Tenant (Belfiore code); defaults to the client's only tenant.
        #[arg(long)]
        tenant: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Verify the hash chain of the configured store (data_dir, or PostgreSQL) without writing.
    Verify,
}

/// jemalloc instead of the system allocator: a bulk upload allocates and frees millions of small
/// JSON values and strings, many of them on another thread than the one that made them, where
/// glibc's allocator spent about a fifth of the gateway's CPU (measured in `BENCHMARKS.md`).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CSI_GATEWAY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tower_http=warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = || Config::load(cli.config.as_deref()).context("configuration");
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let config = config()?;
            runtime()?.block_on(app::serve(config))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig => {
            let config = config()?;
            let contracts = app::contracts(&config)?;
            for d in config.destinations.iter().filter(|d| d.adapter != "siuss") {
                app::sink(d)?;
            }
            let inps = config.inps.as_ref().map(csi_gateway::siuss::check_config).transpose()?;
            println!(
                "configuration ok: listen {}, data_dir {}, {} clients, {} destinations, {} routes, {} event types",
                config.server.listen,
                config.server.data_dir.display(),
                config.clients.len(),
                config.destinations.len(),
                config.routes.len(),
                contracts.types().count()
            );
            if let Some(line) = inps {
                println!("{line}");
            }
            if let (StoreKind::Postgres, Some(url)) = (config.store.kind, config.store.url.as_deref()) {
                let target = store::postgres::parse_url(url).map(|c| store::postgres::describe(&c))?;
                println!("store: PostgreSQL at {target}, pool of {} (not contacted)", config.store.pool_size);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate { file } => validate(&config()?, &file),
        Command::Contracts => {
            let contracts = app::contracts(&config()?)?;
            for c in contracts.list() {
                match &c.event_type {
                    Some(t) => println!("{t}\t{}\t{}", c.path, c.title),
                    None => println!("-\t{}\t{}", c.path, c.title),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::HashKey { key } => {
            println!("{}", auth::hash_key(&key));
            Ok(ExitCode::SUCCESS)
        }
        Command::Map { mapping, file } => map(&config()?, &mapping, &file),
        Command::Coop { command: CoopCommand::Upload { file, mapping, tenant, remote } } => {
            upload(&remote, &file, &mapping, tenant.as_deref())
        }
        Command::Siuss { command: SiussCommand::Export { ente, from, to, out, json } } => {
            siuss_export(&config()?, &ente, &from, &to, &out, json)
        }
        Command::Audit { command: AuditCommand::Verify } => {
            let config = config()?;
            let v = match (config.store.kind, config.store.url.as_deref()) {
                (StoreKind::Postgres, Some(url)) => {
                    runtime()?.block_on(store::postgres::verify_offline(url))?
                }
                _ => store::sqlite::verify_offline(&config.server.data_dir)?,
            };
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(if v.ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Command::Migrate { from, to } => migrate(&config()?, from.as_deref(), to.as_deref()),
        Command::Rabbitmq { command: RabbitmqCommand::Definitions } => {
            let config = config()?;
            let destinations = config.destinations.iter().map(|d| d.name.clone()).collect();
            let topology = csi_gateway::broker::Topology::new(
                &config.queue.exchange,
                destinations,
                config.queue.delivery_limit,
            );
            println!("{}", serde_json::to_string_pretty(&topology.definitions())?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Send { file, remote } => {
            let body = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let batch = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
            let ctype =
                if batch { "application/cloudevents-batch+json" } else { "application/cloudevents+json" };
            call(&remote, reqwest::Method::POST, "/v1/events", Some((ctype, body)))
        }
        Command::DeadLetters { destination, tenant, remote } => {
            let mut q = Vec::new();
            if let Some(d) = destination {
                q.push(format!("destination={d}"));
            }
            if let Some(t) = tenant {
                q.push(format!("tenant={t}"));
            }
            call(&remote, reqwest::Method::GET, &format!("/v1/dead-letters?{}", q.join("&")), None)
        }
        Command::Replay { id: Some(id), remote, .. } => {
            call(&remote, reqwest::Method::POST, &format!("/v1/dead-letters/{id}/replay"), None)
        }
        Command::Replay { id: None, destination, tenant, event_type, remote } => {
            let filter =
                serde_json::json!({ "destination": destination, "tenant": tenant, "type": event_type });
            let body = serde_json::to_vec(&filter)?;
            call(&remote, reqwest::Method::POST, "/v1/dead-letters/replay", Some(("application/json", body)))
        }
    }
}

/// `csi-gateway migrate`: the schema migrations, or the move of an embedded store (`--from`).
fn migrate(config: &Config, from: Option<&str>, to: Option<&str>) -> anyhow::Result<ExitCode> {
    let to = match (to, config.store.url.as_deref()) {
        (Some(to), _) => to,
        (None, Some(url)) if config.store.kind == StoreKind::Postgres => url,
        _ => anyhow::bail!("--to postgres://... is required (or store.kind = \"postgres\" with store.url)"),
    };
    if !(to.starts_with("postgres://") || to.starts_with("postgresql://")) {
        anyhow::bail!("--to: expected a postgres:// URL");
    }
    let target = store::postgres::parse_url(to).map(|c| store::postgres::describe(&c))?;
    runtime()?.block_on(async {
        match from {
            None => {
                let applied = store::postgres::migrate(to).await?;
                let latest = store::postgres::MIGRATIONS.last().map(|m| m.0).unwrap_or(0);
                if applied.is_empty() {
                    println!("{target}: schema up to date (version {latest})");
                } else {
                    let list: Vec<String> = applied.iter().map(i64::to_string).collect();
                    println!("{target}: applied migrations {}; schema at version {latest}", list.join(", "));
                }
            }
            Some(from) => {
                let report = store::postgres::import_sqlite(from, to)
                    .await
                    .with_context(|| format!("migrating {from} to {target}"))?;
                println!("copied {from} into {target}:");
                for (table, n) in &report.tables {
                    println!("  {table:<18} {n}");
                }
                println!("audit chain verified ({} records)", report.audit_records);
            }
        }
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Checks a file exactly as `POST /v1/events` would, without storing anything.
fn validate(config: &Config, file: &std::path::Path) -> anyhow::Result<ExitCode> {
    let body = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let contracts = app::contracts(config)?;
    let mode = if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        Mode::Batch
    } else {
        Mode::Single
    };
    let report = match ingest::check(&contracts, &config.limits, &body, mode) {
        Err(IngestError::Malformed(errors)) => serde_json::json!({ "valid": false, "errors": errors }),
        Err(e) => {
            serde_json::json!({ "valid": false, "errors": [{ "pointer": "", "rule": "limits", "message": e.to_string() }] })
        }
        Ok(results) => {
            let mut errors = Vec::new();
            for (i, r) in results.iter().enumerate() {
                if let Err(invalid) = r {
                    for e in &invalid.errors {
                        let mut v = serde_json::to_value(e)?;
                        if mode == Mode::Batch {
                            v["index"] = i.into();
                        }
                        errors.push(v);
                    }
                }
            }
            serde_json::json!({ "valid": errors.is_empty(), "events": results.len(), "errors": errors })
        }
    };
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(if report["valid"] == true { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// `csi-gateway map`: the mapping applied to a local file, streamed, nothing sent.
fn map(config: &Config, name: &str, file: &std::path::Path) -> anyhow::Result<ExitCode> {
    use csi_gateway_coop::{Checks, RowOutcome};
    use std::io::Write;
    let dir = csi_gateway::coop::Coop::locate(config.coop.mappings_dir.as_deref());
    let mapping =
        csi_gateway_coop::Mapping::load_named(&dir, name).with_context(|| format!("mapping '{name}'"))?;
    let checks = Checks::new(time::OffsetDateTime::now_utc().date());
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    let (mut good, mut bad, mut skipped) = (0u64, 0u64, 0u64);
    let mut emit = |r: csi_gateway_coop::RowResult| -> anyhow::Result<()> {
        let line = match r.outcome {
            RowOutcome::Delivery(d) => {
                good += 1;
                serde_json::json!({ "row": r.row, "status": "ok", "idempotency_key": d.idempotency_key(), "delivery": d })
            }
            RowOutcome::Rejected(errors) => {
                bad += 1;
                let errors: Vec<_> = errors
                    .iter()
                    .map(|e| serde_json::json!({ "column": e.column, "rule": e.rule, "message": e.message }))
                    .collect();
                serde_json::json!({ "row": r.row, "status": "rejected", "errors": errors })
            }
            RowOutcome::Skipped { reason } => {
                skipped += 1;
                serde_json::json!({ "row": r.row, "status": "skipped", "reason": reason })
            }
        };
        writeln!(out, "{line}")?;
        Ok(())
    };
    let lower = file.to_string_lossy().to_ascii_lowercase();
    if lower.ends_with(".json") {
        let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        for r in csi_gateway_coop::read_json(&bytes, &mapping, &checks)? {
            emit(r)?;
        }
    } else {
        let f = std::fs::File::open(file).with_context(|| format!("reading {}", file.display()))?;
        for r in csi_gateway_coop::read_csv(std::io::BufReader::new(f), &mapping, &checks) {
            emit(r)?;
        }
    }
    out.flush()?;
    eprintln!("{good} rows mapped, {bad} rejected, {skipped} skipped (progetto checks happen on upload)");
    Ok(if bad == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// `csi-gateway coop upload`: streams the file with a progress bar, prints the report.
fn upload(
    remote: &Remote,
    file: &std::path::Path,
    mapping: &str,
    tenant: Option<&str>,
) -> anyhow::Result<ExitCode> {
    use futures_util::StreamExt;
    runtime()?.block_on(async {
        let f = tokio::fs::File::open(file).await.with_context(|| format!("reading {}", file.display()))?;
        let len = f.metadata().await?.len();
        let bar = indicatif::ProgressBar::new(len).with_style(
            indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let progress = bar.clone();
        let stream = tokio_util::io::ReaderStream::new(f).inspect(move |chunk| {
            if let Ok(c) = chunk {
                progress.inc(c.len() as u64);
            }
        });
        let ctype = if file.to_string_lossy().to_ascii_lowercase().ends_with(".json") {
            "application/json"
        } else {
            "text/csv"
        };
        let mut url =
            format!("{}/v1/adapters/coop/erogazioni?mapping={mapping}", remote.url.trim_end_matches('/'));
        if let Some(t) = tenant {
            url.push_str(&format!("&tenant={t}"));
        }
        let resp = reqwest::Client::new()
            .post(&url)
            .bearer_auth(&remote.api_key)
            .header("content-type", ctype)
            .header("content-length", len)
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await
            .with_context(|| format!("cannot reach the gateway at {url}"))?;
        bar.finish_and_clear();
        let status = resp.status();
        let v: serde_json::Value = resp.json().await.unwrap_or_default();
        println!("{}", serde_json::to_string_pretty(&v)?);
        if !status.is_success() {
            eprintln!("gateway answered {status}");
            return Ok(ExitCode::from(1));
        }
        let s = &v["summary"];
        eprintln!(
            "{} rows: {} accepted, {} corrected, {} duplicates, {} flagged, {} rejected, {} skipped",
            s["rows"],
            s["accepted"],
            s["corrected"],
            s["duplicates"],
            s["flagged"],
            s["rejected"],
            s["skipped"]
        );
        Ok(if s["rejected"] == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
    })
}

/// `YYYY-MM-DD`.
fn parse_day(flag: &str, s: &str) -> anyhow::Result<time::Date> {
    let bad = || anyhow::anyhow!("--{flag} {s:?}: expected a date YYYY-MM-DD");
    let mut parts = s.splitn(3, '-');
    let mut next = |len: usize| -> anyhow::Result<u16> {
        let p = parts
            .next()
            .filter(|p| p.len() == len && p.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(bad)?;
        p.parse().map_err(|_| bad())
    };
    let (y, m, d) = (next(4)?, next(2)?, next(2)?);
    let month = time::Month::try_from(u8::try_from(m).map_err(|_| bad())?).map_err(|_| bad())?;
    time::Date::from_calendar_date(i32::from(y), month, u8::try_from(d).map_err(|_| bad())?)
        .map_err(|_| bad())
}

/// `csi-gateway siuss export`: the web-upload file of an ente, streamed, with a progress bar and a
/// summary of what was left out. Exit 0: written, nothing to correct; 1: written, some prestazioni
/// left out that need a correction; 2 (an error): nothing written.
fn siuss_export(
    config: &Config,
    belfiore: &str,
    from: &str,
    to: &str,
    out: &std::path::Path,
    json: bool,
) -> anyhow::Result<ExitCode> {
    use csi_gateway::siuss::day::{rome_date, yyyymmdd};
    use csi_gateway::siuss::export::{export, Export};
    use csi_gateway::siuss::outbound::{tables, Enti};
    use csi_gateway::store::siuss::SiussStore;
    use std::io::{IsTerminal, Write};

    let (from, to) = (parse_day("from", from)?, parse_day("to", to)?);
    if from > to {
        anyhow::bail!("--from is after --to");
    }
    let inps =
        config.inps.as_ref().context("no [inps] in the configuration: the export needs [[inps.enti]]")?;
    let enti = Enti::new(inps).context("[inps]")?;
    let ente = enti
        .by_belfiore(belfiore)
        .with_context(|| format!("ente {belfiore} is not in [[inps.enti]]"))?
        .clone();
    let tables = tables(inps)?;
    let rt = runtime()?;
    // The same per-ente daily progressive as the WaaS flussi: no id_flusso is ever repeated.
    let day = rome_date(store::now_ms());
    let (store, n): (std::sync::Arc<dyn SiussStore>, u32) = match config.store.kind {
        StoreKind::Sqlite => {
            let data_dir = &config.server.data_dir;
            let store = store::sqlite::SqliteStore::open_reader(data_dir).context("opening the store")?;
            let n = store::sqlite::SqliteStore::take_progressivo_offline(data_dir, belfiore, &yyyymmdd(day))
                .context("taking the id_flusso's progressive")?;
            (store, n)
        }
        StoreKind::Postgres => rt.block_on(async {
            let url =
                config.store.url.as_deref().context("store.url is required with kind = \"postgres\"")?;
            let store = store::postgres::PgStore::connect(url, 2).await.context("[store]")?;
            let n = store
                .take_progressivo(belfiore, &yyyymmdd(day))
                .await
                .context("taking the id_flusso's progressive")?;
            anyhow::Ok((store as std::sync::Arc<dyn SiussStore>, n))
        })?,
    };
    let id_flusso = csi_gateway_inps::id_flusso(belfiore, csi_gateway_inps::Tipo::Ps, day, n)?;

    let mut partial = out.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let file = std::fs::File::create(&partial).with_context(|| format!("creating {}", partial.display()))?;
    let spec = Export { ente, tables, from, to, id_flusso };
    let result = rt.block_on(async {
        let total = store.export_count(spec.ente.tenant.clone()).await.context("reading the store")?;
        let bar = if std::io::stderr().is_terminal() {
            indicatif::ProgressBar::new(total).with_style(
                indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} prestazioni {per_sec} {eta}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            )
        } else {
            indicatif::ProgressBar::hidden()
        };
        let progress = bar.clone();
        let out = std::io::BufWriter::with_capacity(1 << 20, file);
        let r = export(store.clone(), &spec, out, move |n| progress.set_position(n)).await;
        bar.finish_and_clear();
        r
    });
    let summary = match result {
        Ok((summary, w)) => {
            let f = w.into_inner().map_err(|e| e.into_error()).context("writing the file")?;
            f.sync_all().with_context(|| format!("writing {}", partial.display()))?;
            std::fs::rename(&partial, out).with_context(|| format!("renaming to {}", out.display()))?;
            summary
        }
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    eprintln!("{}", summary.text());
    eprintln!("written: {}", out.display());
    if json {
        let mut stdout = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut stdout, &summary)?;
        writeln!(stdout)?;
    }
    Ok(if summary.to_correct() == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Calls a running gateway and prints its JSON answer; exit 1 on an HTTP error.
fn call(
    remote: &Remote,
    method: reqwest::Method,
    path: &str,
    body: Option<(&str, Vec<u8>)>,
) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let client = reqwest::Client::new();
        let url = format!("{}{path}", remote.url.trim_end_matches('/'));
        let mut req = client.request(method, &url).bearer_auth(&remote.api_key);
        if let Some((ctype, body)) = body {
            req = req.header("content-type", ctype).body(body);
        }
        let resp = req.send().await.with_context(|| format!("cannot reach the gateway at {url}"))?;
        let status = resp.status();
        let text = resp.text().await?;
        match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(v) => println!("{}", serde_json::to_string_pretty(&v)?),
            Err(_) => println!("{text}"),
        }
        if !status.is_success() {
            eprintln!("gateway answered {status}");
            return Ok(ExitCode::from(1));
        }
        Ok(ExitCode::SUCCESS)
    })
}
