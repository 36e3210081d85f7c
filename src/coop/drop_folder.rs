//! The watched drop folder, for cooperatives that can only copy files: every file that appears in
//! `dir` is uploaded with the configured client's rights and mapping, then moved to
//! `dir/processed/` with its report beside it (`<file>.report.json`), or to `dir/failed/` with the
//! reason (`<file>.error.txt`) when the file as a whole cannot be read (or is a JSON document
//! over `coop.max_upload_bytes`: JSON is read whole, CSV as a stream).
//!
//! A file is taken only once its size and modification time have stayed the same between two
//! scans, so a copy in progress is never read half-written; it is then moved to
//! `dir/processing/` before it is read, so that a file copied again under the same name is a new
//! file, and a second gateway watching the folder does not take it too. When the store or the
//! broker cannot take the rows for a while, the file goes back to `dir` and is tried again (rows
//! already taken come back as duplicates). A name already used in `processed/` or `failed/` gets
//! the time it was taken in front (`20261102-093000-ottobre.csv`): nothing earlier is replaced.
//! Names starting with `.` or ending in `.part`/`.tmp` are ignored; so are symbolic links, and
//! the folder is not processed while one of its subfolders is a symbolic link.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::api::AppState;
use crate::auth::Caller;
use crate::config::{ClientConfig, DropConfig};
use crate::coop::{Body, CoopError};
use crate::ingest::IngestError;

const SUBFOLDERS: [&str; 3] = ["processing", "processed", "failed"];

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
    for sub in SUBFOLDERS {
        std::fs::create_dir_all(cfg.dir.join(sub))?;
    }
    // Files a stopped gateway was reading: taken again (what it had stored comes back duplicate).
    if let Ok(entries) = std::fs::read_dir(cfg.dir.join("processing")) {
        for e in entries.filter_map(Result::ok) {
            let back = cfg.dir.join(e.file_name());
            if !back.exists() {
                if let Err(err) = std::fs::rename(e.path(), &back) {
                    tracing::warn!(file = %e.path().display(), error = %err, "cannot take back an interrupted drop file");
                }
            }
        }
    }
    tokio::spawn(async move {
        let interval = Duration::from_secs(cfg.interval_secs.unwrap_or(5).max(1));
        let mut seen: HashMap<PathBuf, (u64, Option<SystemTime>)> = HashMap::new();
        tracing::info!(dir = %cfg.dir.display(), "watching the coop drop folder");
        loop {
            match linked_subfolder(&cfg.dir) {
                Some(sub) => tracing::error!(
                    folder = %sub.display(),
                    "the drop folder is not processed while this subfolder is a symbolic link: make it a plain folder"
                ),
                None => {
                    for (path, size, modified) in candidates(&cfg.dir) {
                        // The same size and time across two scans: the copy is complete.
                        if seen.insert(path.clone(), (size, modified)) == Some((size, modified)) {
                            seen.remove(&path);
                            process(&app, &cfg, &caller, &path, size).await;
                        }
                    }
                }
            }
            tokio::time::sleep(interval).await;
        }
    });
    Ok(())
}

/// A subfolder that is not a plain folder, such as a symbolic link (a rename into it would land
/// wherever it points); one that went missing is made again.
fn linked_subfolder(dir: &Path) -> Option<PathBuf> {
    SUBFOLDERS.iter().map(|s| dir.join(s)).find(|p| match std::fs::symlink_metadata(p) {
        Ok(m) => !m.file_type().is_dir(),
        Err(_) => std::fs::create_dir(p).is_err(),
    })
}

fn candidates(dir: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            // `DirEntry::metadata` does not follow symbolic links: a link is not a file here.
            let meta = e.metadata().ok()?;
            let ignored = name.starts_with('.') || name.ends_with(".part") || name.ends_with(".tmp");
            (meta.is_file() && !ignored).then(|| (e.path(), meta.len(), meta.modified().ok()))
        })
        .collect()
}

/// Whether an upload failed for a while only (the store or the broker), not because of the file.
fn transient(e: &CoopError) -> bool {
    matches!(e, CoopError::Store(_) | CoopError::Ingest(IngestError::Store(_) | IngestError::Unconfirmed(_)))
}

/// `folder/name`, or `folder/<time>-name` when `name` (or its note) is taken there already.
fn free_name(folder: &Path, name: &str, note: &str) -> PathBuf {
    let plain = folder.join(name);
    if !plain.exists() && !folder.join(format!("{name}{note}")).exists() {
        return plain;
    }
    let stamp = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!("[year][month][day]-[hour][minute][second]"))
        .unwrap_or_default();
    let mut n = 0;
    loop {
        let candidate = if n == 0 { format!("{stamp}-{name}") } else { format!("{stamp}-{n}-{name}") };
        if !folder.join(&candidate).exists() && !folder.join(format!("{candidate}{note}")).exists() {
            return folder.join(candidate);
        }
        n += 1;
    }
}

async fn process(app: &AppState, cfg: &DropConfig, caller: &Caller, path: &Path, size: u64) {
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    // Taken out of the folder before it is read: a new copy under the same name is a new file.
    let taken = free_name(&cfg.dir.join("processing"), &name, "");
    if let Err(e) = std::fs::rename(path, &taken) {
        // Another gateway took it first, or it went away.
        tracing::info!(file = %name, error = %e, "drop file not taken");
        return;
    }
    let kind = if name.to_ascii_lowercase().ends_with(".json") { Body::Json } else { Body::Csv };
    // A JSON document is read whole (a CSV file is streamed, whatever its size): the same limit
    // as an upload over HTTP keeps a large one from taking the gateway's memory.
    let max = app.coop_max_upload as u64;
    let opened = if matches!(kind, Body::Json) && size > max {
        Err(format!(
            "{name} is {size} bytes, over coop.max_upload_bytes = {max}: a JSON file is read whole; split it (by month, say), or copy the CSV export, which is read as a stream"
        ))
    } else {
        std::fs::File::open(&taken).map_err(|e| format!("cannot read {name}: {e}"))
    };
    let outcome = match (opened, app.coop.as_ref()) {
        (Ok(file), Some(coop)) => {
            let reader = Box::new(std::io::BufReader::new(file));
            match coop.upload(&app.pipeline, caller, &cfg.tenant, &cfg.mapping, kind, reader).await {
                Ok(up) => Ok((coop, up)),
                Err(e) if transient(&e) => {
                    tracing::warn!(file = %name, error = %e, "drop file not taken now: tried again at a later scan");
                    let back = cfg.dir.join(&name);
                    if back.exists() || std::fs::rename(&taken, &back).is_err() {
                        tracing::error!(file = %name, kept = %taken.display(), "cannot put the drop file back: it stays in processing/ until the gateway restarts");
                    }
                    return;
                }
                Err(e) => Err(e.to_string()),
            }
        }
        (Err(why), _) => Err(why),
        (_, None) => Err("the cooperatives adapter is not configured".into()),
    };
    let (dest, written) = match outcome {
        Ok((coop, up)) => {
            tracing::info!(file = %name, accepted = up.summary.accepted, rejected = up.summary.rejected, "drop file processed");
            let dest = free_name(&cfg.dir.join("processed"), &name, ".report.json");
            let note = with_suffix(&dest, ".report.json");
            let report = crate::coop::report_stream(coop.store.clone(), up.id, up.report);
            (dest, write_report(&note, report).await)
        }
        Err(why) => {
            tracing::warn!(file = %name, %why, "drop file failed");
            let dest = free_name(&cfg.dir.join("failed"), &name, ".error.txt");
            let written = tokio::fs::write(with_suffix(&dest, ".error.txt"), why).await;
            (dest, written)
        }
    };
    // Should this fail the file stays in processing/: it is not read again by the next scan.
    if let Err(e) = written.and_then(|()| std::fs::rename(&taken, &dest)) {
        tracing::error!(file = %name, kept = %taken.display(), error = %e, "cannot move the processed drop file");
    }
}

/// `path` with `suffix` added to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
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
