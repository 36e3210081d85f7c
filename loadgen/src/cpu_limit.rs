//! `--instance-cpus`: every gateway process of a run in a control group of its own whose CPU
//! time is capped (the CFS bandwidth quota, as a container's CPU limit), so that two instances
//! are measured as two machines' worth of gateway beside one shared PostgreSQL and RabbitMQ,
//! rather than as two processes taking turns on the same cores. Needs root and the `cpu`
//! controller (cgroup v2 `cpu.max`, or v1 `cpu.cfs_quota_us`).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};

/// CFS period: 100 ms, the kernel's default.
const PERIOD_US: u64 = 100_000;

/// CPUs each gateway may use, set once by `--instance-cpus`.
static CPUS: OnceLock<f64> = OnceLock::new();

/// Caps every gateway started from now on at `cpus` CPUs (e.g. 0.5 for half a core); checks
/// now that this machine lets the tool do it.
pub fn use_cpu_limit(cpus: f64) -> Result<()> {
    if !(cpus.is_finite() && cpus >= 0.01) {
        bail!("--instance-cpus must be a number of CPUs of at least 0.01 (e.g. 0.5), not {cpus}");
    }
    let (root, _) = controller()?;
    let probe = root.join(format!("csi-loadgen-{}-probe", std::process::id()));
    std::fs::create_dir(&probe).with_context(|| {
        format!("--instance-cpus: cannot create a control group under {} (run as root)", root.display())
    })?;
    let _ = std::fs::remove_dir(&probe);
    let _ = CPUS.set(cpus);
    Ok(())
}

/// The CPUs each gateway is capped at, if any.
pub fn limit() -> Option<f64> {
    CPUS.get().copied()
}

/// Where the `cpu` controller is mounted, and whether it is cgroup v2.
fn controller() -> Result<(PathBuf, bool)> {
    let v2 = Path::new("/sys/fs/cgroup");
    let controllers = std::fs::read_to_string(v2.join("cgroup.controllers")).unwrap_or_default();
    if controllers.split_whitespace().any(|c| c == "cpu") {
        return Ok((v2.to_path_buf(), true));
    }
    let v1 = v2.join("cpu");
    if v1.join("cpu.cfs_quota_us").is_file() {
        return Ok((v1, false));
    }
    bail!("--instance-cpus: no cpu controller on this machine (neither cgroup v2 cpu.max nor v1 cpu.cfs_quota_us)")
}

/// One gateway's control group, removed when dropped (once its process has exited).
pub struct CpuLimit {
    dir: PathBuf,
}

impl CpuLimit {
    /// Moves process `pid` (all its threads, and those it starts later) into a new group capped
    /// at the `--instance-cpus` limit; `None` without one.
    pub fn apply(pid: u32) -> Result<Option<Self>> {
        let Some(cpus) = limit() else { return Ok(None) };
        let (root, v2) = controller()?;
        let dir = root.join(format!("csi-loadgen-{}-{pid}", std::process::id()));
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let group = Self { dir };
        let quota = (cpus * PERIOD_US as f64).round() as u64;
        let (file, value) = if v2 {
            ("cpu.max", format!("{quota} {PERIOD_US}"))
        } else {
            std::fs::write(group.dir.join("cpu.cfs_period_us"), PERIOD_US.to_string())
                .with_context(|| format!("setting the period of {}", group.dir.display()))?;
            ("cpu.cfs_quota_us", quota.to_string())
        };
        std::fs::write(group.dir.join(file), value)
            .with_context(|| format!("setting {file} of {}", group.dir.display()))?;
        std::fs::write(group.dir.join("cgroup.procs"), pid.to_string())
            .with_context(|| format!("moving process {pid} into {}", group.dir.display()))?;
        Ok(Some(group))
    }
}

impl Drop for CpuLimit {
    fn drop(&mut self) {
        // A group can be removed once empty; the process may take a moment to be reaped.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}
