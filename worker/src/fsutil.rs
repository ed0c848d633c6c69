//! Durable file writes shared by drivers and issuers.

use std::path::Path;
use tokio::io::AsyncWriteExt;

/// A failed step of [`write_durably`]: which one, and the I/O error.
pub struct WriteError {
    /// `create`, `write` or `sync`.
    pub op: &'static str,
    /// The error.
    pub source: std::io::Error,
}

/// Writes `bytes` to `path` with permission `mode` and flushes it to disk. With `exclusive`
/// the file must not exist yet; otherwise an existing file is truncated.
pub async fn write_durably(path: &Path, bytes: &[u8], mode: u32, exclusive: bool) -> Result<(), WriteError> {
    let step = |op| move |source| WriteError { op, source };
    let mut opts = tokio::fs::OpenOptions::new();
    opts.write(true).mode(mode);
    if exclusive {
        opts.create_new(true);
    } else {
        opts.create(true).truncate(true);
    }
    let mut f = opts.open(path).await.map_err(step("create"))?;
    f.write_all(bytes).await.map_err(step("write"))?;
    // tokio hands the write to a blocking thread; its error (ENOSPC on a full disk) shows
    // only at the next flush. `sync_all` waits for that write but drops its error, which
    // left an empty file "written" on a full disk (found by the full-tmpfs test).
    f.flush().await.map_err(step("write"))?;
    f.sync_all().await.map_err(step("sync"))
}
