//! Test harness: the real `csi-gateway` binary on a free loopback port with its own data dir, and
//! a loopback webhook receiver that checks Standard Webhooks signatures.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{json, Value};

pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub const KEY_A: &str = "key-vendor-a";
pub const KEY_B: &str = "key-vendor-b";
pub const KEY_AUDITOR: &str = "key-auditor";
pub const PRESTAZIONE: &str = "it.lombardia.csi.prestazione.erogata.v1";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_csi-gateway")
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The `api_key_sha256` of a key.
pub fn key_sha256(key: &str) -> String {
    sha(key)
}

fn sha(key: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(key.as_bytes()))
}

/// The configuration of a test gateway delivering to `receiver`.
pub fn config(port: u16, data_dir: &Path, receiver: &str, extra_destination: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
data_dir = "{data}"
contracts_dir = "{contracts}"

[limits]
max_body_bytes = 262144
max_batch = 200
max_depth = 16

[[clients]]
name = "vendor-a"
api_key_sha256 = "{a}"
tenants = ["F205"]
roles = ["publisher", "reader", "operator"]

[[clients]]
name = "vendor-b"
api_key_sha256 = "{b}"
tenants = ["B157"]
roles = ["publisher", "reader", "operator"]

[[clients]]
name = "dpo"
api_key_sha256 = "{auditor}"
tenants = ["*"]
roles = ["auditor"]

[[destinations]]
name = "cartella-vendor-a"
adapter = "webhook"
url = "{receiver}"
secret = "{SECRET}"
backoff_min_ms = 20
backoff_max_ms = 200
timeout_ms = 2000
{extra_destination}

[[routes]]
types = ["{PRESTAZIONE}"]
tenants = ["*"]
to = ["cartella-vendor-a"]
"#,
        data = data_dir.display(),
        contracts = repo().join("contracts").display(),
        a = sha(KEY_A),
        b = sha(KEY_B),
        auditor = sha(KEY_AUDITOR),
    )
}

/// The PostgreSQL server of the tests (`CSI_GATEWAY_TEST_POSTGRES`, trust auth by default).
pub fn postgres_admin_url() -> String {
    std::env::var("CSI_GATEWAY_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// `url` with its database name replaced.
fn with_database(url: &str, db: &str) -> String {
    let start = url.find("://").map(|i| i + 3).unwrap_or(0);
    let (head, rest) = url.split_at(start);
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let query = path.find('?').map(|q| &path[q..]).unwrap_or("");
    format!("{head}{authority}/{db}{query}")
}

/// A database of its own for one test, created on the test server and dropped at the end. A test
/// that needs PostgreSQL fails (never skips) when the server cannot be reached.
pub struct PgDb {
    pub name: String,
    pub url: String,
    admin: String,
}

impl PgDb {
    pub async fn create() -> Self {
        let admin = postgres_admin_url();
        let name = format!("csi_test_{:016x}", fastrand::u64(..));
        let client = pg_connect(&admin).await;
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        let url = with_database(&admin, &name);
        Self { name, url, admin }
    }

    /// A client on this test's database.
    pub async fn client(&self) -> tokio_postgres::Client {
        pg_connect(&self.url).await
    }

    /// The `[store]` section of a gateway on this database.
    pub fn store_config(&self) -> String {
        format!("\n[store]\nkind = \"postgres\"\nurl = \"{}\"\npool_size = 8\n", self.url)
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Drop may run inside the test's runtime: a thread of its own with its own runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async {
                if let Ok((client, conn)) = tokio_postgres::connect(&admin, tokio_postgres::NoTls).await {
                    tokio::spawn(conn);
                    let _ =
                        client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
                }
            })
        })
        .join();
    }
}

/// Connects or fails the test loudly.
pub async fn pg_connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is required by this test and is not reachable at {url}: {e} \
             (start it, or set CSI_GATEWAY_TEST_POSTGRES)"
        )
    });
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// A running gateway process.
pub struct Gateway {
    pub child: Child,
    pub base: String,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub http: reqwest::Client,
}

impl Gateway {
    /// Starts a gateway delivering to `receiver` with extra destination settings (TOML lines).
    pub async fn start(receiver: &str, extra_destination: &str) -> Self {
        Self::start_with(receiver, extra_destination, "").await
    }

    /// Like [`Gateway::start`], with `extra_config` (whole TOML tables: more `[[clients]]`, a
    /// `[coop]` section...) appended to the configuration.
    pub async fn start_with(receiver: &str, extra_destination: &str, extra_config: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let config_path = dir.path().join("gateway.toml");
        let mut text = config(port, &dir.path().join("data"), receiver, extra_destination);
        text.push_str(extra_config);
        std::fs::write(&config_path, text).expect("write config");
        let mut gw = Self {
            child: spawn(&config_path),
            base: format!("http://127.0.0.1:{port}"),
            dir,
            config_path,
            http: reqwest::Client::new(),
        };
        gw.wait_ready().await;
        gw
    }

    /// Like [`Gateway::start`], on the PostgreSQL database `db` (cluster mode, queue in the store).
    pub async fn start_pg(receiver: &str, extra_destination: &str, db: &PgDb) -> Self {
        Self::start_with(receiver, extra_destination, &db.store_config()).await
    }

    /// Stops the process (SIGKILL) and waits for it.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Runs the binary with this gateway's configuration; exit code, stdout and stderr.
    pub fn cli(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let config = self.config_path.to_string_lossy();
        let mut all = vec!["--config", config.as_ref()];
        all.extend_from_slice(args);
        cli(&all)
    }

    pub async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = self.http.get(format!("{}/readyz", self.base)).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("gateway exited early with {status}");
            }
            assert!(Instant::now() < deadline, "gateway not ready within 20 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `kill -9`, then start again on the same data dir and port.
    pub async fn kill9_and_restart(&mut self) {
        self.child.kill().expect("kill -9");
        let _ = self.child.wait();
        self.child = spawn(&self.config_path);
        self.wait_ready().await;
    }

    pub async fn post(
        &self,
        key: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> (StatusCode, Value) {
        let r = self
            .http
            .post(format!("{}/v1/events", self.base))
            .bearer_auth(key)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("POST /v1/events");
        let status = StatusCode::from_u16(r.status().as_u16()).expect("status");
        let ctype = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if status.is_client_error() {
            assert_eq!(ctype, "application/problem+json", "errors are problem+json: {v}");
        }
        (status, v)
    }

    pub async fn send(&self, key: &str, event: &Value) -> (StatusCode, Value) {
        self.post(key, "application/cloudevents+json", serde_json::to_vec(event).expect("json")).await
    }

    pub async fn get(&self, key: &str, path: &str) -> (StatusCode, Value) {
        let r = self.http.get(format!("{}{path}", self.base)).bearer_auth(key).send().await.expect("GET");
        answer(r).await
    }

    pub async fn post_json(&self, key: &str, path: &str, body: Value) -> (StatusCode, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .expect("POST");
        answer(r).await
    }

    /// POSTs a raw body of any media type to `path`; the answer's status and JSON body.
    pub async fn post_body(
        &self,
        key: &str,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> (StatusCode, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(key)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("POST");
        answer(r).await
    }

    /// GETs `path` as text (CSV exports); the answer's status, content type and body.
    pub async fn get_text(&self, key: &str, path: &str) -> (StatusCode, String, String) {
        let r = self.http.get(format!("{}{path}", self.base)).bearer_auth(key).send().await.expect("GET");
        let status = StatusCode::from_u16(r.status().as_u16()).expect("status");
        let ctype = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        (status, ctype, r.text().await.unwrap_or_default())
    }

    /// Waits until the event reaches `status` (e.g. `delivered`), returning its view.
    pub async fn wait_status(&self, id: &str, status: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let (_, v) = self.get(KEY_A, &format!("/v1/events/{id}")).await;
            if v["status"] == status {
                return v;
            }
            assert!(Instant::now() < deadline, "event {id} not {status} in time: {v}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Deliveries this instance made to `cartella-vendor-a` (its `/metrics`).
    pub async fn delivered_count(&self) -> f64 {
        self.metric("csi_gateway_deliveries_total{destination=\"cartella-vendor-a\"}").await
    }

    /// The value of one series of this instance's `/metrics` (name and labels as printed); 0 when
    /// it is not there yet.
    pub async fn metric(&self, series: &str) -> f64 {
        let metrics =
            self.http.get(format!("{}/metrics", self.base)).send().await.unwrap().text().await.unwrap();
        metrics
            .lines()
            .find(|l| l.rsplit_once(' ').is_some_and(|(name, _)| name == series))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0.0)
    }

    /// What a well-behaved client does: POST a batch, and on 503 wait and send the same batch
    /// again (same idempotency keys) until it is accepted. The ids, and the 503s seen (each
    /// checked to carry `Retry-After`).
    pub async fn send_until_accepted(&self, batch: &[Value], within: Duration) -> (Vec<String>, usize) {
        let body = serde_json::to_vec(batch).expect("json");
        let deadline = Instant::now() + within;
        let mut refusals = 0;
        loop {
            let sent = self
                .http
                .post(format!("{}/v1/events", self.base))
                .bearer_auth(KEY_A)
                .header("content-type", "application/cloudevents-batch+json")
                .body(body.clone())
                .send()
                .await;
            if let Ok(r) = sent {
                match r.status().as_u16() {
                    202 => {
                        let v: Value = r.json().await.expect("json");
                        let ids = v["ids"].as_array().expect("ids").iter();
                        return (ids.map(|i| i.as_str().expect("id").to_string()).collect(), refusals);
                    }
                    503 => {
                        let after = r.headers().get("retry-after").is_some();
                        let v: Value = r.json().await.unwrap_or(Value::Null);
                        assert!(after, "a 503 says when to retry: {v}");
                        refusals += 1;
                    }
                    other => panic!("unexpected answer {other}: {:?}", r.text().await),
                }
            }
            assert!(Instant::now() < deadline, "batch not accepted within {within:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn spawn(config: &Path) -> Child {
    Command::new(bin())
        .args(["--config", &config.display().to_string(), "serve"])
        .env("CSI_GATEWAY_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start csi-gateway")
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How the loopback receiver answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Ok,
    /// Every other call answers 503.
    FlakyHalf,
    /// Every call answers 400.
    Reject,
    /// Every call answers 503 (a receiver down for a while).
    Unavailable,
    /// Answers after a pause (milliseconds).
    Slow(u64),
}

/// A loopback webhook receiver that verifies signatures and records what it received.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    inner: Arc<ReceiverState>,
}

pub struct ReceiverState {
    mode: Mutex<Mode>,
    calls: AtomicU32,
    pub bad_signatures: AtomicUsize,
    /// webhook-id → number of 2xx deliveries of it.
    pub delivered: Mutex<HashMap<String, usize>>,
    pub bodies: Mutex<Vec<Value>>,
    /// Signed requests being answered now, and the most there ever were at once.
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// Counts a request in flight until dropped.
struct InFlight<'a>(&'a ReceiverState);

impl<'a> InFlight<'a> {
    fn enter(s: &'a ReceiverState) -> Self {
        let now = s.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        s.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(s)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Receiver {
    pub async fn start(mode: Mode) -> Self {
        let inner = Arc::new(ReceiverState {
            mode: Mutex::new(mode),
            calls: AtomicU32::new(0),
            bad_signatures: AtomicUsize::new(0),
            delivered: Mutex::new(HashMap::new()),
            bodies: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        });
        let app =
            axum::Router::new().route("/events", axum::routing::post(receive)).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind receiver");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url: format!("http://{addr}/events"), inner }
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.inner.mode.lock().expect("lock") = mode;
    }

    pub fn delivered(&self) -> HashMap<String, usize> {
        self.inner.delivered.lock().expect("lock").clone()
    }

    pub fn bodies(&self) -> Vec<Value> {
        self.inner.bodies.lock().expect("lock").clone()
    }

    pub fn bad_signatures(&self) -> usize {
        self.inner.bad_signatures.load(Ordering::SeqCst)
    }

    pub fn calls(&self) -> u32 {
        self.inner.calls.load(Ordering::SeqCst)
    }

    /// The most signed requests it was answering at once.
    pub fn max_in_flight(&self) -> usize {
        self.inner.max_in_flight.load(Ordering::SeqCst)
    }

    /// Waits until `n` distinct events were delivered; fails when none more arrives for `within`
    /// (a stalled delivery, whatever the speed of the machine).
    pub async fn wait_distinct(&self, n: usize, within: Duration) {
        let mut seen = self.delivered().len();
        let mut deadline = Instant::now() + within;
        while seen < n {
            assert!(
                Instant::now() < deadline,
                "only {seen} of {n} events delivered: none more for {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now = self.delivered().len();
            if now > seen {
                (seen, deadline) = (now, Instant::now() + within);
            }
        }
    }
}

async fn receive(State(s): State<Arc<ReceiverState>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let n = s.calls.fetch_add(1, Ordering::SeqCst);
    let mode = *s.mode.lock().expect("lock");
    let h = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let key = csi_gateway_webhook::decode_secret(SECRET).expect("secret");
    let ts: i64 = h("webhook-timestamp").parse().unwrap_or(0);
    if csi_gateway_webhook::verify(&key, &h("webhook-id"), ts, &body, &h("webhook-signature")).is_err() {
        s.bad_signatures.fetch_add(1, Ordering::SeqCst);
        return StatusCode::UNAUTHORIZED;
    }
    let _in_flight = InFlight::enter(&s);
    match mode {
        Mode::Reject => return StatusCode::BAD_REQUEST,
        Mode::Unavailable => return StatusCode::SERVICE_UNAVAILABLE,
        Mode::FlakyHalf if n % 2 == 0 => return StatusCode::SERVICE_UNAVAILABLE,
        Mode::Slow(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
        _ => {}
    }
    *s.delivered.lock().expect("lock").entry(h("webhook-id")).or_default() += 1;
    if let Ok(v) = serde_json::from_slice(&body) {
        s.bodies.lock().expect("lock").push(v);
    }
    StatusCode::NO_CONTENT
}

/// The example CloudEvent of a type, from `contracts/examples/`.
pub fn example(event_type: &str) -> Value {
    let path = repo().join("contracts/examples").join(format!("{event_type}.json"));
    serde_json::from_slice(&std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .expect("example is JSON")
}

/// A valid prestazione event with its own id and idempotency key.
pub fn prestazione(n: usize, tenant: &str) -> Value {
    let mut ev = example(PRESTAZIONE);
    ev["id"] = json!(format!("test-{n}"));
    ev["idempotencykey"] = json!(format!("prestazione-{tenant}-{n}-{}", std::process::id()));
    ev["tenant"] = json!(tenant);
    ev
}

/// Runs the binary with these arguments; exit code, stdout and stderr.
pub fn cli(args: &[&str]) -> (Option<i32>, String, String) {
    let out =
        Command::new(bin()).args(args).env("CSI_GATEWAY_LOG", "warn").output().expect("run csi-gateway");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A routed prestazione ready for a store (`ev-<n>`, tenant F205, destination `d`), for tests
/// that drive a store through the library.
pub fn new_event(n: usize, key: Option<&str>) -> csi_gateway::store::NewEvent {
    csi_gateway::store::NewEvent {
        id: format!("ev-{n}"),
        source: "/test".into(),
        event_type: PRESTAZIONE.into(),
        tenant: "F205".into(),
        subject: None,
        idempotency_key: key.map(str::to_string),
        correlation_id: None,
        body: format!(r#"{{"id":"ev-{n}"}}"#).into_bytes(),
        digest: csi_gateway::audit::digest(b"x"),
        destinations: vec!["d".into()],
        actor: "tester".into(),
        projections: Vec::new(),
    }
}

/// The RabbitMQ server of the tests (`CSI_GATEWAY_TEST_AMQP`, guest/guest on loopback by default).
pub fn amqp_url() -> String {
    std::env::var("CSI_GATEWAY_TEST_AMQP")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_string())
}

/// `host:port` of a URL's authority.
pub fn host_port(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    authority.rsplit_once('@').map(|(_, h)| h).unwrap_or(authority).to_string()
}

/// `url` with its host and port replaced by a loopback port (to go through a [`Proxy`]).
pub fn via_port(url: &str, port: u16) -> String {
    url.replacen(&host_port(url), &format!("127.0.0.1:{port}"), 1)
}

/// The broker objects of one test: a topology of its own (its own exchange name), deleted at the end.
pub struct Rabbit {
    pub exchange: String,
    /// The destinations whose queues the test's gateways declare (deleted at the end too).
    pub destinations: Vec<String>,
}

impl Rabbit {
    /// Checks the broker is there (fails the test loudly otherwise) and names a fresh topology.
    pub async fn create() -> Self {
        drop(Self::connect().await);
        Rabbit {
            exchange: format!("t{:012x}.events", fastrand::u64(..) >> 16),
            destinations: vec!["cartella-vendor-a".into()],
        }
    }

    pub async fn connect() -> lapin::Connection {
        let url = amqp_url();
        lapin::Connection::connect(&url, lapin::ConnectionProperties::default()).await.unwrap_or_else(|e| {
            panic!(
                "RabbitMQ is required by this test and is not reachable at {}: {e} \
                 (start it, or set CSI_GATEWAY_TEST_AMQP)",
                host_port(&url)
            )
        })
    }

    pub fn topology(&self) -> csi_gateway::broker::Topology {
        csi_gateway::broker::Topology::new(&self.exchange, self.destinations.clone(), 20)
    }

    /// The `[queue]` section of a gateway on this topology, reaching the broker at `url`.
    pub fn queue_config(&self, url: &str) -> String {
        format!(
            "\n[queue]\nkind = \"rabbitmq\"\nurl = \"{url}\"\nexchange = \"{}\"\nconfirm_timeout_ms = 1500\n",
            self.exchange
        )
    }
}

impl Drop for Rabbit {
    fn drop(&mut self) {
        let topology = self.topology();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async {
                let Ok(conn) =
                    lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default()).await
                else {
                    return;
                };
                let Ok(ch) = conn.create_channel().await else { return };
                for q in topology.queues() {
                    let _ = ch.queue_delete(q.as_str().into(), Default::default()).await;
                }
                for x in [topology.exchange.clone(), topology.retry_exchange(), topology.parking_exchange()] {
                    let _ = ch.exchange_delete(x.as_str().into(), Default::default()).await;
                }
            })
        })
        .join();
    }
}

/// A loopback TCP proxy to a server, that can cut every connection and refuse new ones for a
/// while: what a client sees when the server restarts or the network fails.
#[derive(Clone)]
pub struct Proxy {
    pub port: u16,
    up: Arc<std::sync::atomic::AtomicBool>,
    cuts: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Proxy {
    pub async fn start(upstream: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (cuts, _) = tokio::sync::watch::channel(0u64);
        let (accept_up, accept_cuts, upstream) = (up.clone(), cuts.subscribe(), upstream.to_string());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !accept_up.load(Ordering::SeqCst) {
                    continue; // dropped: connection refused, as by a stopped server
                }
                let mut cut = accept_cuts.clone();
                cut.mark_unchanged();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Proxy { port, up, cuts: Arc::new(cuts) }
    }

    /// Closes every connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cuts.send_modify(|n| *n += 1);
    }

    /// Cuts now and accepts connections again after `down`.
    pub fn cut_for(&self, down: Duration) {
        self.cut();
        let proxy = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(down).await;
            proxy.restore();
        });
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// An answer's status and JSON body; an error must be problem details.
pub async fn answer(r: reqwest::Response) -> (StatusCode, Value) {
    let status = StatusCode::from_u16(r.status().as_u16()).expect("status");
    let ctype = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    if status.is_client_error() || status.is_server_error() {
        assert_eq!(ctype, "application/problem+json", "errors are problem+json ({status}): {v}");
    }
    (status, v)
}
