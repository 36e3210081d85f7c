//! One gateway process under test: a generated configuration in a temporary directory, the release
//! binary spawned on a free loopback port, readiness awaited, resident memory read from `/proc`.
//!
//! Every scenario gets its own [`Gateway`] (fresh process, fresh data directory) so that one
//! scenario's backlog or database size does not weigh on the next.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use loadgen::fixtures::toml_string;
use sha2::{Digest, Sha256};
use tokio::process::{Child, Command};

/// The API key of the load generator's client.
pub const API_KEY: &str = "loadgen-key";

/// The API key of the cooperative's client (cooperatives scenario).
pub const COOP_API_KEY: &str = "loadgen-coop-key";

/// The destination of the end-to-end scenario.
pub const DESTINATION: &str = "loadgen-receiver";

/// Signing secret of the destination (the README's example secret).
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// How long the gateway may take to answer `/readyz` with 200.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// With `--postgres`: the server whose fresh databases the gateways run on (PostgreSQL store).
static POSTGRES: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Makes every gateway started from now on use a fresh database on this PostgreSQL server
/// (`postgres://user@host:port/db`, a role that may create databases).
pub fn use_postgres(url: String) {
    let _ = POSTGRES.set(url);
}

/// `concurrency` of the webhook destination (`--concurrency`).
static CONCURRENCY: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

/// Sets the webhook destination's `concurrency` for every gateway of the run.
pub fn use_concurrency(n: usize) {
    let _ = CONCURRENCY.set(n);
}

/// With `--rabbitmq`: the broker the gateways' queue runs on (cluster mode).
static RABBITMQ: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Runs the gateways with `queue.kind = "rabbitmq"` on this broker (needs `--postgres`); each
/// database gets an exchange and queues of its own, deleted on [`Gateway::stop`].
pub fn use_rabbitmq(url: String) {
    let _ = RABBITMQ.set(url);
}

/// The broker objects of the gateways on database `name`.
fn topology(name: &str) -> csi_gateway::broker::Topology {
    csi_gateway::broker::Topology::new(&format!("{name}.events"), vec![DESTINATION.to_string()], 20)
}

/// Deletes the queues and exchanges of a run.
async fn delete_topology(url: &str, topology: &csi_gateway::broker::Topology) -> Result<()> {
    let conn = lapin::Connection::connect(url, lapin::ConnectionProperties::default())
        .await
        .context("connecting to the --rabbitmq broker")?;
    let ch = conn.create_channel().await?;
    for q in topology.queues() {
        ch.queue_delete(q.as_str().into(), Default::default()).await?;
    }
    for x in [topology.exchange.clone(), topology.retry_exchange(), topology.parking_exchange()] {
        ch.exchange_delete(x.as_str().into(), Default::default()).await?;
    }
    Ok(())
}

/// Creates a fresh database on the `--postgres` server and returns its URL.
async fn fresh_database(admin: &str) -> Result<String> {
    let (client, conn) = tokio_postgres::connect(admin, tokio_postgres::NoTls)
        .await
        .with_context(|| "connecting to the --postgres server")?;
    tokio::spawn(conn);
    let name = format!(
        "loadgen_{}_{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos()
    );
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.context("creating the database")?;
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin);
    Ok(format!("{base}/{name}"))
}

/// A running gateway; killed on [`Gateway::stop`] or when dropped.
pub struct Gateway {
    child: Child,
    pid: u32,
    pub base: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
    /// The fresh database of a `--postgres` run, dropped on [`Gateway::stop`].
    database: Option<String>,
    /// The PostgreSQL store's URL in a `--postgres` run.
    store_url: Option<String>,
    /// Its CPU cap (`--instance-cpus`), lifted after it exits.
    _cpu_limit: Option<crate::cpu_limit::CpuLimit>,
}

impl Gateway {
    /// Starts `binary` with contracts from `contracts_dir`; with `webhook`, one webhook destination
    /// at that URL receiving every type for every tenant; with `coop_mappings`, the cooperatives
    /// adapter reading that folder and a cooperative's client ([`COOP_API_KEY`]).
    pub async fn start(
        binary: &Path,
        contracts_dir: &Path,
        webhook: Option<&str>,
        coop_mappings: Option<&Path>,
    ) -> Result<Self> {
        Self::start_on(binary, contracts_dir, webhook, coop_mappings, None).await
    }

    /// Another instance on the same PostgreSQL database as `first` (a `--postgres` run); the
    /// database is dropped by `first`.
    pub async fn start_beside(
        first: &Gateway,
        binary: &Path,
        contracts_dir: &Path,
        webhook: Option<&str>,
    ) -> Result<Self> {
        let url = first.store_url.clone().context("a second instance needs --postgres")?;
        Self::start_on(binary, contracts_dir, webhook, None, Some(url)).await
    }

    async fn start_on(
        binary: &Path,
        contracts_dir: &Path,
        webhook: Option<&str>,
        coop_mappings: Option<&Path>,
        shared_store: Option<String>,
    ) -> Result<Self> {
        let dir = tempfile::tempdir().context("creating the gateway's temporary directory")?;
        let port = free_port()?;
        let listen = SocketAddr::from(([127, 0, 0, 1], port));
        let config_path = dir.path().join("gateway.toml");
        let mut config = config(listen, &dir.path().join("data"), contracts_dir, webhook, coop_mappings);
        let (mut database, mut store_url) = (None, None);
        if let Some(admin) = POSTGRES.get() {
            let url = match shared_store {
                Some(url) => url,
                None => {
                    let url = fresh_database(admin).await?;
                    database = url.rsplit_once('/').map(|(_, name)| name.to_string());
                    url
                }
            };
            config.push_str(&format!("\n[store]\nkind = \"postgres\"\nurl = \"{url}\"\n"));
            if let Some(amqp) = RABBITMQ.get() {
                let name = url.rsplit_once('/').map(|(_, n)| n).unwrap_or("loadgen");
                config.push_str(&format!(
                    "\n[queue]\nkind = \"rabbitmq\"\nurl = \"{amqp}\"\nexchange = \"{}\"\n",
                    topology(name).exchange
                ));
            }
            store_url = Some(url);
        }
        std::fs::write(&config_path, config).with_context(|| format!("writing {}", config_path.display()))?;
        let log = dir.path().join("gateway.log");
        let log_file = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let log_err = log_file.try_clone().context("duplicating the log file handle")?;

        let mut cmd = Command::new(binary);
        cmd.arg("--config").arg(&config_path).arg("serve");
        // Only the generated file configures this gateway.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("CSI_GATEWAY_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("CSI_GATEWAY_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err)
            .kill_on_drop(true);
        let child = cmd.spawn().with_context(|| format!("starting {}", binary.display()))?;
        let pid = child.id().context("the gateway exited at once")?;
        let cpu_limit = crate::cpu_limit::CpuLimit::apply(pid)?;
        let mut gw = Self {
            child,
            pid,
            base: format!("http://{listen}"),
            log,
            _dir: dir,
            database,
            store_url,
            _cpu_limit: cpu_limit,
        };
        if let Err(e) = gw.wait_ready().await {
            // Stopping drops a fresh database too.
            let _ = gw.stop().await;
            return Err(e);
        }
        Ok(gw)
    }

    /// Polls `GET /readyz` until 200; fails with the gateway's log if it exits or never gets ready.
    async fn wait_ready(&mut self) -> Result<()> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .context("building the readiness client")?;
        let url = format!("{}/readyz", self.base);
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().context("checking the gateway process")? {
                bail!("the gateway exited during start-up ({status}); its log:\n{}", self.log_tail());
            }
            if let Ok(r) = http.get(&url).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            if start.elapsed() > READY_TIMEOUT {
                bail!("the gateway was not ready after {READY_TIMEOUT:?}; its log:\n{}", self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The process id, for `/proc/<pid>/status`.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The last lines of the gateway's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Kills the process and waits for it.
    pub async fn stop(mut self) -> Result<()> {
        self.child.kill().await.context("killing the gateway")?;
        if let (Some(admin), Some(name)) = (POSTGRES.get(), self.database.take()) {
            let (client, conn) = tokio_postgres::connect(admin, tokio_postgres::NoTls)
                .await
                .context("connecting to the --postgres server")?;
            tokio::spawn(conn);
            client
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
                .await
                .context("dropping the database")?;
            if let Some(amqp) = RABBITMQ.get() {
                delete_topology(amqp, &topology(&name)).await?;
            }
        }
        Ok(())
    }
}

/// Resident memory of process `pid` in bytes (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_bytes(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let line =
        status.lines().find(|l| l.starts_with("VmRSS:")).with_context(|| format!("no VmRSS in {path}"))?;
    let kb: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .with_context(|| format!("parsing '{line}' in {path}"))?;
    Ok(kb * 1024)
}

/// CPU time (user + system) process `pid` has used so far, in seconds.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    Ok(stat_cpu(&format!("/proc/{pid}/stat"))?.1)
}

/// CPU time (user + system) the threads of process `pid` named `name` (e.g. `store-writer`, the
/// embedded store's writer) have used so far, in seconds.
pub fn thread_cpu_seconds(pid: u32, name: &str) -> Result<f64> {
    let dir = format!("/proc/{pid}/task");
    let mut total = 0.0;
    for task in std::fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
        let path = task.with_context(|| format!("reading {dir}"))?.path().join("stat");
        // A thread may end between the listing and the read.
        if let Ok((comm, cpu)) = stat_cpu(&path.to_string_lossy()) {
            if comm == name {
                total += cpu;
            }
        }
    }
    Ok(total)
}

/// The command name and the CPU time (user + system, seconds) of a `/proc/.../stat` file: fields
/// 2, 14 and 15, in clock ticks of 1/100 s (`USER_HZ`, fixed at 100 on Linux).
fn stat_cpu(path: &str) -> Result<(String, f64)> {
    let stat = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let (head, rest) = stat.rsplit_once(')').with_context(|| format!("no ')' in {path}"))?;
    let comm = head.split_once('(').map(|(_, c)| c).unwrap_or_default().to_string();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| -> Result<f64> {
        let f = fields.get(i).with_context(|| format!("{path} has no field {}", i + 3))?;
        Ok(f.parse::<u64>().with_context(|| format!("parsing field {} '{f}' of {path}", i + 3))? as f64)
    };
    // After ')': state is field 3, utime field 14, stime field 15.
    Ok((comm, (tick(11)? + tick(12)?) / 100.0))
}

/// A loopback port free at this moment (bound, then released for the gateway to take).
fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("finding a free loopback port")?;
    Ok(l.local_addr().context("reading the free port")?.port())
}

/// The gateway's TOML configuration (format: README, "Configuration").
fn config(
    listen: SocketAddr,
    data_dir: &Path,
    contracts_dir: &Path,
    webhook: Option<&str>,
    coop_mappings: Option<&Path>,
) -> String {
    let key_hash = hex::encode(Sha256::digest(API_KEY.as_bytes()));
    let mut toml = format!(
        r#"[server]
listen = "{listen}"
data_dir = {data_dir}
contracts_dir = {contracts_dir}

[limits]
max_batch = 1000

[[clients]]
name = "loadgen"
api_key_sha256 = "{key_hash}"
tenants = ["*"]
roles = ["publisher", "reader", "operator", "auditor"]
"#,
        data_dir = toml_string(data_dir),
        contracts_dir = toml_string(contracts_dir),
    );
    if let Some(mappings) = coop_mappings {
        toml.push_str(&format!(
            r#"
[[clients]]
name = "loadgen-coop"
api_key_sha256 = "{coop_hash}"
tenants = ["F205"]
roles = ["publisher"]
cooperativa = "{cooperativa}"

[coop]
mappings_dir = {mappings}
"#,
            coop_hash = hex::encode(Sha256::digest(COOP_API_KEY.as_bytes())),
            cooperativa = loadgen::fixtures::COOPERATIVA,
            mappings = toml_string(mappings),
        ));
    }
    if let Some(url) = webhook {
        toml.push_str(&format!(
            r#"
[[destinations]]
name = "{DESTINATION}"
adapter = "webhook"
url = "{url}"
secret = "{SECRET}"
concurrency = {concurrency}

[[routes]]
types = ["*"]
tenants = ["*"]
to = ["{DESTINATION}"]
"#,
            concurrency = CONCURRENCY.get().copied().unwrap_or(64),
        ));
    }
    toml
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A busy thread of this process is found by its name, and only its CPU is counted.
    #[test]
    fn a_named_thread_s_cpu_is_counted_apart() {
        let pid = std::process::id();
        let (spun, done) = std::sync::mpsc::channel();
        let busy = std::thread::Builder::new()
            .name("loadgen-busy".into())
            .spawn(move || {
                let start = std::time::Instant::now();
                let mut x = 0u64;
                while start.elapsed() < std::time::Duration::from_millis(600) {
                    x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                }
                // Still alive when measured: wait to be released.
                spun.send(()).unwrap();
                std::thread::park();
                x
            })
            .unwrap();
        done.recv().unwrap();
        let named = thread_cpu_seconds(pid, "loadgen-busy").unwrap();
        let none = thread_cpu_seconds(pid, "no-such-thread").unwrap();
        let whole = cpu_seconds(pid).unwrap();
        busy.thread().unpark();
        busy.join().unwrap();
        // 600 ms of spinning, even on a machine busy with other tests, is more than 50 ms of CPU.
        assert!(named >= 0.05, "the busy thread used {named} s");
        assert_eq!(none, 0.0);
        assert!(whole >= named, "the process ({whole} s) includes its thread ({named} s)");
    }
}
