//! The watched drop folder, for cooperatives that can only copy files: every file that appears in
//! `dir` is uploaded with the configured client's rights and mapping, then moved to
//! `dir/processed/` with its report beside it (`<file>.report.json`), or to `dir/failed/` with the
//! reason (`<file>.error.txt`) when the file as a whole cannot be read (or is a JSON document
//! over `coop.max_upload_bytes`: JSON is read whole, CSV as a stream).
//!
//! A file is taken only once its size has stayed the same between two scans, so a copy in
//! progress is never read half-written. Names starting with `.` or ending in `.part`/`.tmp` are
//! ignored.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::api::AppState;
use crate::auth::Caller;
use crate::config::{ClientConfig, DropConfig};
use crate::coop::Body;

/// Starts the watcher.
pub fn spawn(app: AppState, cfg: DropConfig, clients: &[ClientConfig]) -> anyhow::Result<()> {
    let client = clients
        .iter()
        .find(|c| c.name == cfg.client)
        .ok_or_else(|| anyhow::anyhow!("coop.drop.client: no client named {}", cfg.client))?;
    let caller = Caller {
        name: client.name.clone(),
        tenants: client.tenants.clone(),
        roles: client.roles.clone(),
        cooperativa: client.cooperativa.clone(),
    };
    for sub in ["processed", "failed"] {
        std::fs::create_dir_all(cfg.dir.join(sub))?;
    }
    tokio::spawn(async move {
        let interval = Duration::from_secs(cfg.interval_secs.unwrap_or(5).max(1));
        let mut sizes: HashMap<PathBuf, u64> = HashMap::new();
        tracing::info!(dir = %cfg.dir.display(), "watching the coop drop folder");
        loop {
            for (path, size) in candidates(&cfg.dir) {
                // Stable size across two scans: the copy is complete.
                if sizes.insert(path.clone(), size) == Some(size) {
                    sizes.remove(&path);
                    process(&app, &cfg, &caller, &path, size).await;
                }
            }
            tokio::time::sleep(interval).await;
        }
    });
    Ok(())
}

fn candidates(dir: &Path) -> Vec<(PathBuf, u64)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let meta = e.metadata().ok()?;
            let ignored = name.starts_with('.') || name.ends_with(".part") || name.ends_with(".tmp");
            (meta.is_file() && !ignored).then(|| (e.path(), meta.len()))
        })
        .collect()
}

async fn process(app: &AppState, cfg: &DropConfig, caller: &Caller, path: &Path, size: u64) {
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let kind = if name.to_ascii_lowercase().ends_with(".json") { Body::Json } else { Body::Csv };
    // A JSON document is read whole (a CSV file is streamed, whatever its size): the same limit
    // as an upload over HTTP keeps a large one from taking the gateway's memory.
    let max = app.coop_max_upload as u64;
    let opened = if matches!(kind, Body::Json) && size > max {
        Err(format!(
            "{name} is {size} bytes, over coop.max_upload_bytes = {max}: a JSON file is read whole; split it (by month, say), or copy the CSV export, which is read as a stream"
        ))
    } else {
        std::fs::File::open(path).map_err(|e| format!("cannot read {name}: {e}"))
    };
    let outcome = match (opened, app.coop.as_ref()) {
        (Ok(file), Some(coop)) => coop
            .upload(
                &app.pipeline,
                caller,
                &cfg.tenant,
                &cfg.mapping,
                kind,
                Box::new(std::io::BufReader::new(file)),
            )
            .await
            .map(|up| (coop, up))
            .map_err(|e| e.to_string()),
        (Err(why), _) => Err(why),
        (_, None) => Err("the cooperatives adapter is not configured".into()),
    };
    let (folder, written) = match outcome {
        Ok((coop, up)) => {
            tracing::info!(file = %name, accepted = up.summary.accepted, rejected = up.summary.rejected, "drop file processed");
            let note = cfg.dir.join("processed").join(format!("{name}.report.json"));
            let report = crate::coop::report_stream(coop.store.clone(), up.id, up.report);
            ("processed", write_report(&note, report).await)
        }
        Err(why) => {
            tracing::warn!(file = %name, %why, "drop file failed");
            ("failed", tokio::fs::write(cfg.dir.join("failed").join(format!("{name}.error.txt")), why).await)
        }
    };
    if let Err(e) = written.and_then(|()| std::fs::rename(path, cfg.dir.join(folder).join(&name))) {
        tracing::error!(file = %name, error = %e, "cannot move the processed drop file");
    }
}

/// Writes a report to `path` as its pieces come from the store.
async fn write_report(
    path: &Path,
    report: impl futures_util::Stream<Item = Result<bytes::Bytes, crate::store::StoreError>>,
) -> std::io::Result<()> {
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    let mut file = tokio::io::BufWriter::new(tokio::fs::File::create(path).await?);
    let mut report = std::pin::pin!(report);
    while let Some(piece) = report.next().await {
        file.write_all(&piece.map_err(|e| std::io::Error::other(e.to_string()))?).await?;
    }
    file.flush().await
}
