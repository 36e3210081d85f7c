//! The INPS SIUSS scenarios, each on a fresh gateway configured with `[inps]` (ente F205, the
//! PDND test key's JWKS of `tests/fixtures/waas/`):
//!
//! - `export`: N prestazioni (4 per beneficiary, interleaved, so the table is not in beneficiary
//!   order) and their personas are seeded through the gateway's batch API (not timed); then the
//!   real `csi-gateway siuss export` runs on the data directory beside the running gateway, timed
//!   from spawn to exit, its resident memory polled from `/proc/<pid>/status` (`VmHWM`, the
//!   kernel's own high-water mark, read until the process exits) → prestazioni/s and peak RSS.
//! - `flussi`: N prestazioni go through a `siuss` destination into the WaaS feed (not timed);
//!   then K clients, each with a PDND voucher minted with the test key, page
//!   `GET /flussi?since=<ts>&limit=100` from the start to the end of the feed and over again for
//!   D seconds → full pages per second.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use loadgen::fixtures::toml_string;
use reqwest::header::CONTENT_TYPE;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::process::{Child, Command};
use tokio::task::JoinSet;

use crate::gateway::{rss_bytes, API_KEY};
use crate::report::{Figure, Report, Target};
use crate::scenarios::{RssSampler, BATCH};

const TENANT: &str = "F205";
const PERSONA: &str = "contracts/examples/it.lombardia.csi.persona.registrata.v1.json";
const PRESTAZIONE: &str = "contracts/examples/it.lombardia.csi.prestazione.erogata.v1.json";
const ISSUER: &str = "https://auth.uat.interop.pagopa.it";
const AUDIENCE: &str = "https://loadgen.test/waas/v1";
const PURPOSE: &str = "loadgen-purpose";
const KID: &str = "pdnd-test-1";
/// Events per seeding request.
const SEED_BATCH: usize = 1000;
/// Prestazioni per beneficiary.
const PER_BENEFICIARY: usize = 4;

/// A gateway with `[inps]`; killed when dropped.
struct SiussGateway {
    child: Child,
    base: String,
    config: PathBuf,
    log: PathBuf,
    dir: tempfile::TempDir,
}

impl SiussGateway {
    async fn start(binary: &Path, root: &Path, waas_route: bool) -> Result<Self> {
        let dir = tempfile::tempdir().context("creating the gateway's temporary directory")?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("finding a free loopback port")?
            .port();
        let listen = SocketAddr::from(([127, 0, 0, 1], port));
        let data = dir.path().join("data");
        let config = dir.path().join("gateway.toml");
        std::fs::write(&config, config_toml(listen, &data, root, waas_route))
            .with_context(|| format!("writing {}", config.display()))?;
        let log = dir.path().join("gateway.log");
        let out = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone().context("duplicating the log file handle")?;
        let mut cmd = Command::new(binary);
        cmd.arg("--config").arg(&config).arg("serve");
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("CSI_GATEWAY_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("CSI_GATEWAY_LOG", "warn").stdin(Stdio::null()).stdout(out).stderr(err).kill_on_drop(true);
        let child = cmd.spawn().with_context(|| format!("starting {}", binary.display()))?;
        let mut gw = Self { child, base: format!("http://{listen}"), config, log, dir };
        let http = reqwest::Client::new();
        let start = Instant::now();
        loop {
            if let Some(status) = gw.child.try_wait()? {
                bail!("the gateway exited during start-up ({status}): {}", gw.log_tail());
            }
            if let Ok(r) = http.get(format!("{}/readyz", gw.base)).send().await {
                if r.status().is_success() {
                    return Ok(gw);
                }
            }
            if start.elapsed() > Duration::from_secs(60) {
                bail!("the gateway was not ready in 60 s: {}", gw.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

fn config_toml(listen: SocketAddr, data: &Path, root: &Path, waas_route: bool) -> String {
    let mut t = format!(
        r#"[server]
listen = "{listen}"
data_dir = {data}
contracts_dir = {contracts}

[limits]
max_batch = {SEED_BATCH}
max_body_bytes = 8388608

[[clients]]
name = "loadgen"
api_key_sha256 = "{key}"
tenants = ["*"]
roles = ["publisher", "reader", "operator", "auditor"]

[inps]
codici_prestazione = {table}

[[inps.enti]]
belfiore = "F205"
denominazione = "Comune di Milano"
tenant = "{TENANT}"
cf_operatore = "RSSMRA80A01F205X"
presenza_prova_mezzi = "1"

[inps.auth]
mode = "pdnd"
issuer = "{ISSUER}"
audience = "{AUDIENCE}"
purpose_ids = ["{PURPOSE}"]
jwks_path = {jwks}
"#,
        data = toml_string(data),
        contracts = toml_string(&root.join("contracts")),
        key = hex::encode(Sha256::digest(API_KEY.as_bytes())),
        table = toml_string(&root.join("mappings/inps/codici-prestazione.csv")),
        jwks = toml_string(&root.join("tests/fixtures/waas/jwks.json")),
    );
    if waas_route {
        t.push_str(
            r#"
[[destinations]]
name = "inps-siuss"
adapter = "siuss"
concurrency = 32

[[routes]]
types = ["it.lombardia.csi.prestazione.erogata.v1"]
tenants = ["F205"]
to = ["inps-siuss"]
"#,
        );
    }
    t
}

/// A valid codice fiscale, distinct for each `n` below 26⁶.
fn codice_fiscale(n: usize) -> String {
    const ODD: [u32; 26] =
        [1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24, 23];
    let mut cf: Vec<u8> = (0..6).map(|i| b'A' + (n / 26usize.pow(i) % 26) as u8).collect();
    cf.extend_from_slice(b"50A01F205");
    let value = |c: u8| if c.is_ascii_digit() { usize::from(c - b'0') } else { usize::from(c - b'A') };
    let sum: u32 =
        cf.iter().enumerate().map(|(i, &c)| if i % 2 == 0 { ODD[value(c)] } else { value(c) as u32 }).sum();
    cf.push(b'A' + (sum % 26) as u8);
    String::from_utf8(cf).unwrap_or_default()
}

/// The seeded events: `beneficiaries` personas, then `prestazioni` (beneficiary `n % beneficiaries`).
struct Seed {
    persona: Value,
    prestazione: Value,
    beneficiaries: usize,
    prestazioni: usize,
    run: String,
}

impl Seed {
    fn new(root: &Path, prestazioni: usize) -> Result<Self> {
        let load = |p: &str| -> Result<Value> {
            let path = root.join(p);
            serde_json::from_slice(
                &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
            )
            .with_context(|| format!("parsing {}", path.display()))
        };
        Ok(Self {
            persona: load(PERSONA)?,
            prestazione: load(PRESTAZIONE)?,
            beneficiaries: prestazioni.div_ceil(PER_BENEFICIARY).max(1),
            prestazioni,
            run: format!("{}", std::process::id()),
        })
    }

    fn events(&self) -> usize {
        self.beneficiaries + self.prestazioni
    }

    fn event(&self, i: usize) -> Value {
        let mut ev;
        if i < self.beneficiaries {
            let p = format!("ben-{i}");
            ev = self.persona.clone();
            ev["data"]["pseudonimo"] = json!(p);
            ev["data"]["codiceFiscale"] = json!(codice_fiscale(i));
            ev["subject"] = json!(p);
        } else {
            let n = i - self.beneficiaries;
            let p = format!("ben-{}", n % self.beneficiaries);
            ev = self.prestazione.clone();
            ev["data"]["idPrestazione"] = json!(format!("EROG-{n}"));
            ev["data"]["beneficiario"] = json!({ "pseudonimo": p });
            ev["subject"] = json!(p);
        }
        ev["tenant"] = json!(TENANT);
        ev["id"] = json!(format!("seed-{i}"));
        ev["idempotencykey"] = json!(format!("loadgen-siuss-{}-{i}", self.run));
        ev
    }

    /// Batch `b`; personas and prestazioni never share a batch, so every persona is stored first.
    fn batch(&self, b: usize) -> Option<Vec<u8>> {
        let persona_batches = self.beneficiaries.div_ceil(SEED_BATCH);
        let range = if b < persona_batches {
            b * SEED_BATCH..((b + 1) * SEED_BATCH).min(self.beneficiaries)
        } else {
            let start = self.beneficiaries + (b - persona_batches) * SEED_BATCH;
            start..(start + SEED_BATCH).min(self.events())
        };
        if range.is_empty() {
            return None;
        }
        Some(Value::Array(range.map(|i| self.event(i)).collect()).to_string().into_bytes())
    }

    fn persona_batches(&self) -> usize {
        self.beneficiaries.div_ceil(SEED_BATCH)
    }
}

/// Posts batches `from..` until [`Seed::batch`] runs out, `clients` at a time.
async fn post_batches(
    http: &reqwest::Client,
    base: &str,
    seed: &Arc<Seed>,
    batches: std::ops::Range<usize>,
    clients: usize,
) -> Result<()> {
    let next = Arc::new(AtomicUsize::new(batches.start));
    let mut workers = JoinSet::new();
    for _ in 0..clients.max(1) {
        let (http, url, seed, next, end) =
            (http.clone(), format!("{base}/v1/events"), seed.clone(), next.clone(), batches.end);
        workers.spawn(async move {
            loop {
                let b = next.fetch_add(1, Ordering::Relaxed);
                if b >= end {
                    return Ok::<_, anyhow::Error>(());
                }
                let Some(body) = seed.batch(b) else { return Ok(()) };
                let resp = http
                    .post(&url)
                    .bearer_auth(API_KEY)
                    .header(CONTENT_TYPE, BATCH)
                    .body(body)
                    .send()
                    .await
                    .with_context(|| format!("POST {url}"))?;
                let status = resp.status();
                let text = resp.text().await?;
                if status != StatusCode::ACCEPTED || text.contains("\"rejected\"") {
                    bail!("seeding batch {b}: {status}: {}", &text[..text.len().min(2000)]);
                }
                if b % 100 == 0 {
                    eprintln!("loadgen: siuss: seeded batch {b}");
                }
            }
        });
    }
    while let Some(r) = workers.join_next().await {
        r.context("seeding task")??;
    }
    Ok(())
}

async fn seed_all(http: &reqwest::Client, base: &str, seed: &Arc<Seed>) -> Result<Duration> {
    let started = Instant::now();
    let persona_batches = seed.persona_batches();
    let total = persona_batches + seed.prestazioni.div_ceil(SEED_BATCH);
    post_batches(http, base, seed, 0..persona_batches, 4).await?;
    post_batches(http, base, seed, persona_batches..total, 4).await?;
    Ok(started.elapsed())
}

/// One export run.
pub struct ExportRun {
    pub prestazioni: u64,
    pub beneficiari: u64,
    pub elapsed: Duration,
    pub peak_rss: u64,
    pub file_bytes: u64,
    pub seeded_in: Duration,
}

/// Reads `VmHWM` (peak resident set) of a live process, in bytes.
fn vm_hwm(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .ok()
        .map(|kb| kb * 1024)
}

/// Seeds `prestazioni`, then times `csi-gateway siuss export` of all of them.
pub async fn export(binary: &Path, root: &Path, prestazioni: usize) -> Result<ExportRun> {
    let gw = SiussGateway::start(binary, root, false).await?;
    let http = crate::scenarios::client()?;
    let seed = Arc::new(Seed::new(root, prestazioni)?);
    eprintln!(
        "loadgen: export: seeding {} personas and {} prestazioni (not timed)...",
        seed.beneficiaries, seed.prestazioni
    );
    let seeded_in = seed_all(&http, &gw.base, &seed).await.map_err(|e| e.context(gw.log_tail()))?;
    eprintln!("loadgen: export: seeded in {:.1?}; exporting...", seeded_in);
    // Let the gateway's writer settle (WAL checkpoint) before the clock starts.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let out = gw.dir.path().join("export.xml");
    let started = Instant::now();
    let mut child = Command::new(binary)
        .arg("--config")
        .arg(&gw.config)
        .args(["siuss", "export", "--ente", "F205", "--from", "2025-01-01", "--to", "2025-12-31", "--json"])
        .arg("--out")
        .arg(&out)
        .env("CSI_GATEWAY_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting csi-gateway siuss export")?;
    let pid = child.id().context("the export exited at once")?;
    let mut stdout = child.stdout.take().context("export stdout")?;
    let mut stderr = child.stderr.take().context("export stderr")?;
    let reader = tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let (mut o, mut e) = (Vec::new(), Vec::new());
        let _ = tokio::join!(stdout.read_to_end(&mut o), stderr.read_to_end(&mut e));
        (o, e)
    });
    let mut peak = 0;
    let status = loop {
        if let Some(hwm) = vm_hwm(pid) {
            peak = peak.max(hwm);
        } else if let Ok(rss) = rss_bytes(pid) {
            peak = peak.max(rss);
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let elapsed = started.elapsed();
    let (stdout, stderr) = reader.await.context("reading the export's output")?;
    if !status.success() {
        bail!("siuss export exited with {status}: {}", String::from_utf8_lossy(&stderr));
    }
    let summary: Value = serde_json::from_slice(&stdout).context("the export's JSON summary")?;
    let written = summary["prestazioni"].as_u64().unwrap_or(0);
    if written != prestazioni as u64 {
        bail!("the export wrote {written} prestazioni, {prestazioni} were seeded: {summary}");
    }
    let file_bytes = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    drop(gw);
    Ok(ExportRun {
        prestazioni: written,
        beneficiari: summary["beneficiari"].as_u64().unwrap_or(0),
        elapsed,
        peak_rss: peak,
        file_bytes,
        seeded_in,
    })
}

/// A PDND voucher for the gateway's `[inps.auth]`, signed with the test key.
fn voucher(root: &Path) -> Result<String> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() as i64;
    let claims = json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "inps", "client_id": "inps", "purposeId": PURPOSE,
        "jti": format!("loadgen-{now}"), "iat": now, "nbf": now - 5, "exp": now + 3600,
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(KID.into());
    header.typ = Some("at+jwt".into());
    let path = root.join("tests/fixtures/waas/pdnd-test-key.pem");
    let pem = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&pem).context("the test key")?;
    jsonwebtoken::encode(&header, &claims, &key).context("signing the voucher")
}

/// Milliseconds of `YYYY-MM-DDTHH:MM:SS.mmmZ` (the gateway's `ts_flusso`).
fn ts_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 24 || b[23] != b'Z' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (hh, mm, ss, ms) = (n(11..13)?, n(14..16)?, n(17..19)?, n(20..23)?);
    // Days from civil (Howard Hinnant).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + hh) * 60 + mm) * 60_000 + ss * 1000 + ms)
}

/// The `ts_flusso` of the last entry of a `GET /flussi` answer, without parsing the whole page.
fn last_ts(page: &str) -> Option<i64> {
    let key = "\"ts_flusso\":\"";
    let at = page.rfind(key)? + key.len();
    ts_ms(page.get(at..at + 24)?)
}

/// Flussi offered so far (`csi_gateway_siuss_flussi_total`).
async fn offered(http: &reqwest::Client, base: &str) -> Result<u64> {
    let text = http.get(format!("{base}/metrics")).send().await?.text().await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("csi_gateway_siuss_flussi_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64)
}

/// One feed run.
pub struct FlussiRun {
    pub flussi: u64,
    pub pages: u64,
    pub entries: u64,
    pub elapsed: Duration,
    pub clients: usize,
    pub peak_rss: u64,
    pub seeded_in: Duration,
}

impl FlussiRun {
    pub fn pages_per_sec(&self) -> f64 {
        self.pages as f64 / self.elapsed.as_secs_f64()
    }
}

/// Seeds `flussi` prestazioni through the `siuss` destination, then `clients` page the feed with
/// `limit=100` for `duration`.
pub async fn flussi(
    binary: &Path,
    root: &Path,
    flussi: usize,
    clients: usize,
    duration: f64,
) -> Result<FlussiRun> {
    let gw = SiussGateway::start(binary, root, true).await?;
    let http = crate::scenarios::client()?;
    let seed = Arc::new(Seed::new(root, flussi)?);
    eprintln!("loadgen: flussi: seeding {flussi} prestazioni into the WaaS feed (not timed)...");
    let started = Instant::now();
    seed_all(&http, &gw.base, &seed).await.map_err(|e| e.context(gw.log_tail()))?;
    let mut last = (0, Instant::now());
    loop {
        let n = offered(&http, &gw.base).await?;
        if n >= flussi as u64 {
            break;
        }
        if n != last.0 {
            last = (n, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(60) {
            bail!("the feed stalled at {n} of {flussi} flussi: {}", gw.log_tail());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let seeded_in = started.elapsed();
    eprintln!(
        "loadgen: flussi: {flussi} flussi in the feed after {seeded_in:.1?}; {clients} clients paging..."
    );
    let token = Arc::new(voucher(root)?);
    let sampler = RssSampler::start(gw.pid());
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(duration);
    let started = Instant::now();
    let mut workers = JoinSet::new();
    for _ in 0..clients.max(1) {
        let (http, base, token) = (http.clone(), gw.base.clone(), token.clone());
        workers.spawn(async move {
            let (mut pages, mut entries) = (0u64, 0u64);
            let mut since = 0i64;
            while tokio::time::Instant::now() < deadline {
                let url = format!("{base}/flussi?since={since}&limit=100");
                let resp = http.get(&url).bearer_auth(token.as_str()).send().await.context("GET /flussi")?;
                let status = resp.status();
                let text = resp.text().await?;
                if status != StatusCode::OK {
                    bail!("GET {url} answered {status}: {text}");
                }
                let n = text.matches("\"id_flusso\"").count() as u64;
                pages += u64::from(n > 0);
                entries += n;
                // The next page starts after this one's last entry; at the end of the feed, over again.
                since = match last_ts(&text) {
                    Some(ts) if n == 100 => ts,
                    _ => 0,
                };
            }
            Ok::<_, anyhow::Error>((pages, entries))
        });
    }
    let (mut pages, mut entries) = (0, 0);
    while let Some(r) = workers.join_next().await {
        let (p, e) = r.context("client task")??;
        pages += p;
        entries += e;
    }
    let elapsed = started.elapsed();
    let peak_rss = sampler.finish().await;
    Ok(FlussiRun { flussi: flussi as u64, pages, entries, elapsed, clients, peak_rss, seeded_in })
}

/// Target of the export: prestazioni per second.
pub const TARGET_EXPORT: f64 = 50_000.0;
/// Target of the export: peak resident memory, MB.
pub const TARGET_EXPORT_RSS_MB: f64 = 100.0;
/// Target of the feed: pages of 100 per second.
pub const TARGET_PAGES: f64 = 500.0;
const MB: f64 = 1024.0 * 1024.0;

/// Runs the `export` scenario and adds its figures (or its failure) to the report.
pub async fn run_export(binary: &Path, root: &Path, prestazioni: usize, report: &mut Report) {
    eprintln!("loadgen: export: {prestazioni} prestazioni...");
    match export(binary, root, prestazioni).await {
        Ok(run) => {
            let v = run.prestazioni as f64 / run.elapsed.as_secs_f64();
            eprintln!("loadgen: export: {} prestazioni in {:.2?}", run.prestazioni, run.elapsed);
            report.figures.push(Figure {
                scenario: "export",
                name: format!("siuss export ({} prestazioni, one file)", run.prestazioni),
                value: v,
                unit: "prestazioni/s",
                target: Some(Target::AtLeast(TARGET_EXPORT)),
                vs_sqlite: None,
            });
            report.figures.push(Figure {
                scenario: "export",
                name: "RSS peak (VmHWM) of siuss export".into(),
                value: run.peak_rss as f64 / MB,
                unit: "MB",
                target: Some(Target::AtMost(TARGET_EXPORT_RSS_MB)),
                vs_sqlite: None,
            });
            report.notes.push(format!(
                "export: {} prestazioni of {} beneficiari in {:.2} s, file {:.1} MB; seeding (not timed) took {:.0} s",
                run.prestazioni,
                run.beneficiari,
                run.elapsed.as_secs_f64(),
                run.file_bytes as f64 / MB,
                run.seeded_in.as_secs_f64()
            ));
        }
        Err(e) => {
            eprintln!("loadgen: export failed: {e:#}");
            report.failures.push(("export".into(), format!("{e:#}")));
        }
    }
}

/// Runs the `flussi` scenario and adds its figures (or its failure) to the report.
pub async fn run_flussi(
    binary: &Path,
    root: &Path,
    flussi_n: usize,
    clients: usize,
    duration: f64,
    report: &mut Report,
) {
    eprintln!("loadgen: flussi: {flussi_n} flussi, {clients} clients, {duration} s...");
    match flussi(binary, root, flussi_n, clients, duration).await {
        Ok(run) => {
            let v = run.pages_per_sec();
            eprintln!("loadgen: flussi: {} pages in {:.2?}", run.pages, run.elapsed);
            report.figures.push(Figure {
                scenario: "flussi",
                name: format!("GET /flussi?limit=100 ({} clients)", run.clients),
                value: v,
                unit: "pages/s",
                target: Some(Target::AtLeast(TARGET_PAGES)),
                vs_sqlite: None,
            });
            report.figures.push(Figure {
                scenario: "flussi",
                name: "RSS peak of the gateway during flussi".into(),
                value: run.peak_rss as f64 / MB,
                unit: "MB",
                target: None,
                vs_sqlite: None,
            });
            report.notes.push(format!(
                "flussi: {} pages ({} entries) in {:.2} s over a feed of {} flussi; the feed was filled (not timed) in {:.0} s",
                run.pages,
                run.entries,
                run.elapsed.as_secs_f64(),
                run.flussi,
                run.seeded_in.as_secs_f64()
            ));
        }
        Err(e) => {
            eprintln!("loadgen: flussi failed: {e:#}");
            report.failures.push(("flussi".into(), format!("{e:#}")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ts_flusso_is_read_to_the_millisecond() {
        assert_eq!(ts_ms("2023-11-27T11:04:56.852Z"), Some(1_701_083_096_852));
        assert_eq!(ts_ms("1970-01-01T00:00:00.000Z"), Some(0));
        assert_eq!(last_ts(r#"{"elenco_flussi":[{"ts_flusso":"1970-01-01T00:00:01.000Z"}]}"#), Some(1000));
    }

    #[test]
    fn codici_fiscali_are_distinct() {
        assert_ne!(codice_fiscale(0), codice_fiscale(1));
        assert_eq!(codice_fiscale(7).len(), 16);
    }
}
