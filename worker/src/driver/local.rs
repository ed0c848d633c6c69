//! `local` driver: the "device" is the worker's own host. The key and CSR are made in the
//! worker process, and the key and full chain go to files named in the asset's settings,
//! written atomically (temp file + rename), the key with mode 0600, the previous pair kept
//! as `.prev`. An optional `reload_command` runs afterwards; if it fails, the previous pair
//! is restored. The install marker `<cert_path>.certfleet-job` (see `marker`) names the job
//! whose pair is installed, so a redelivered job validates that pair instead of deploying
//! another. A full disk (ENOSPC) while staging leaves the previous pair in place, and the
//! error names the path.
//!
//! The reload command sees the job id in `CERTFLEET_JOB_ID`.
//!
//! Settings: `{"cert_path": "/abs/site.crt", "key_path": "/abs/site.key",
//! "reload_command": "nginx -s reload" | ["argv", ...], "reload_timeout_secs": 30}`.

use super::marker::{self, Marker};
use super::{DeviceSession, DriverError, PlatformDriver};
use crate::issuer::Issued;
use crate::keygen;
use async_trait::async_trait;
use certfleet_proto::{Driver, JobId, RotationJob};
use rcgen::{KeyPair, PublicKeyData as _};
use serde::Deserialize;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The `local` driver.
#[derive(Debug, Default)]
pub struct LocalDriver;

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum ReloadCommand {
    Shell(String),
    Argv(Vec<String>),
}

impl ReloadCommand {
    /// The command as the operator wrote it, for messages.
    fn shown(&self) -> String {
        match self {
            Self::Shell(line) => line.clone(),
            Self::Argv(argv) => argv.join(" "),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    cert_path: PathBuf,
    key_path: PathBuf,
    #[serde(default)]
    reload_command: Option<ReloadCommand>,
    #[serde(default)]
    reload_timeout_secs: Option<u64>,
}

impl Settings {
    fn parse(value: &serde_json::Value) -> Result<Self, DriverError> {
        let s: Settings = serde_json::from_value(value.clone())
            .map_err(|e| DriverError::InvalidSettings(format!("local driver: {e}")))?;
        for (name, path) in [("cert_path", &s.cert_path), ("key_path", &s.key_path)] {
            if !path.is_absolute() {
                return Err(DriverError::InvalidSettings(format!("{name} {} is not an absolute path", path.display())));
            }
        }
        if s.cert_path == s.key_path {
            return Err(DriverError::InvalidSettings("cert_path and key_path must differ".into()));
        }
        if let Some(ReloadCommand::Argv(argv)) = &s.reload_command
            && argv.is_empty()
        {
            return Err(DriverError::InvalidSettings("reload_command is an empty list".into()));
        }
        Ok(s)
    }
}

/// Where the files of one side of the pair live.
struct Target {
    path: PathBuf,
    mode: u32,
}

impl Target {
    fn prev(&self) -> PathBuf {
        with_suffix(&self.path, ".prev")
    }
    fn staged(&self, tag: &str) -> PathBuf {
        with_suffix(&self.path, &format!(".certfleet-{tag}.tmp"))
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// `ENOSPC` on Linux.
const ENOSPC: i32 = 28;

fn io_error(op: &str, path: &Path, e: std::io::Error) -> DriverError {
    if e.raw_os_error() == Some(ENOSPC) || e.kind() == ErrorKind::StorageFull {
        return DriverError::Device(format!("{op} {}: no space left on the device (ENOSPC)", path.display()));
    }
    let what = format!("{op} {}: {e}", path.display());
    match e.kind() {
        ErrorKind::NotFound
        | ErrorKind::PermissionDenied
        | ErrorKind::NotADirectory
        | ErrorKind::IsADirectory
        | ErrorKind::ReadOnlyFilesystem => DriverError::InvalidSettings(what),
        _ => DriverError::Device(what),
    }
}

/// Writes `bytes` to a new file with `mode`, flushed to disk.
async fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), DriverError> {
    crate::fsutil::write_durably(path, bytes, mode, false).await.map_err(|e| io_error(e.op, path, e.source))
}

/// Copies `from` over `to` atomically (copy to a temp file, then rename).
async fn copy_atomic(from: &Path, to: &Path, mode: u32, tag: &str) -> Result<(), DriverError> {
    let bytes = tokio::fs::read(from).await.map_err(|e| io_error("read", from, e))?;
    let tmp = with_suffix(to, &format!(".certfleet-{tag}.copy"));
    let copied = match write_new(&tmp, &bytes, mode).await {
        Ok(()) => tokio::fs::rename(&tmp, to).await.map_err(|e| io_error("rename", to, e)),
        Err(e) => Err(e),
    };
    if copied.is_err() {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    copied
}

/// Reads a file that may be missing (`None`).
async fn read_optional(path: &Path) -> Result<Option<String>, DriverError> {
    match tokio::fs::read_to_string(path).await {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error("read", path, e)),
    }
}

struct LocalSession {
    settings: Settings,
    job_id: JobId,
    tag: String,
    cert: Target,
    key: Target,
    new_key: Option<KeyPair>,
    had_previous: bool,
}

impl LocalSession {
    fn marker(&self) -> PathBuf {
        with_suffix(&self.cert.path, marker::SUFFIX)
    }
}

#[async_trait]
impl PlatformDriver for LocalDriver {
    fn kind(&self) -> Driver {
        Driver::Local
    }

    async fn open(&self, job: &RotationJob) -> Result<Box<dyn DeviceSession>, DriverError> {
        let settings = Settings::parse(&job.settings)?;
        for path in [&settings.cert_path, &settings.key_path] {
            let dir = path.parent().unwrap_or(Path::new("/"));
            match tokio::fs::metadata(dir).await {
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Err(DriverError::InvalidSettings(format!("{} is not a directory", dir.display()))),
                Err(e) => return Err(io_error("directory", dir, e)),
            }
        }
        Ok(Box::new(LocalSession {
            cert: Target { path: settings.cert_path.clone(), mode: 0o644 },
            key: Target { path: settings.key_path.clone(), mode: 0o600 },
            settings,
            job_id: job.job_id,
            tag: job.job_id.to_string(),
            new_key: None,
            had_previous: false,
        }))
    }
}

impl LocalSession {
    async fn run_reload(&self) -> Result<(), DriverError> {
        let Some(cmd) = &self.settings.reload_command else { return Ok(()) };
        let mut command = match cmd {
            ReloadCommand::Shell(line) => {
                let mut c = tokio::process::Command::new("/bin/sh");
                c.arg("-c").arg(line);
                c
            }
            ReloadCommand::Argv(argv) => {
                let mut c = tokio::process::Command::new(&argv[0]);
                c.args(&argv[1..]);
                c
            }
        };
        // The job id, so that a reload hook can log which job deployed what (the chaos
        // benchmark counts deploys per job with it).
        command.env("CERTFLEET_JOB_ID", &self.tag);
        command.stdin(std::process::Stdio::null()).kill_on_drop(true);
        let timeout = Duration::from_secs(self.settings.reload_timeout_secs.unwrap_or(60));
        let output = match tokio::time::timeout(timeout, command.output()).await {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => {
                return Err(DriverError::Activation(format!(
                    "reload command \"{}\" could not start: {e}",
                    cmd.shown()
                )));
            }
            Err(_) => {
                return Err(DriverError::Activation(format!(
                    "reload command \"{}\" timed out after {timeout:?}",
                    cmd.shown()
                )));
            }
        };
        if output.status.success() {
            return Ok(());
        }
        let text = if output.stderr.is_empty() { &output.stdout } else { &output.stderr };
        let text = String::from_utf8_lossy(text);
        let tail: String = text.trim().chars().rev().take(200).collect::<Vec<_>>().into_iter().rev().collect();
        use std::os::unix::process::ExitStatusExt as _;
        let how = super::ended(output.status.code().map(i64::from), output.status.signal());
        Err(DriverError::Activation(super::command_failed(&format!("reload command \"{}\"", cmd.shown()), &how, &tail)))
    }

    async fn remove_staged(&self) {
        for t in [&self.cert, &self.key] {
            let _ = tokio::fs::remove_file(t.staged(&self.tag)).await;
        }
        let _ = tokio::fs::remove_file(with_suffix(&self.marker(), &format!(".{}.tmp", self.tag))).await;
    }
}

#[async_trait]
impl DeviceSession for LocalSession {
    async fn resume(&mut self, job: &RotationJob) -> Result<Option<Issued>, DriverError> {
        let Some(text) = read_optional(&self.marker()).await? else { return Ok(None) };
        let Some(chain) = read_optional(&self.cert.path).await? else { return Ok(None) };
        let resumed = marker::resume(job.job_id, Some(&text), &chain)?;
        Ok(resumed.map(|r| {
            self.had_previous = r.had_previous;
            r.issued
        }))
    }

    async fn generate_csr(&mut self, job: &RotationJob) -> Result<Vec<u8>, DriverError> {
        let (alg, cn, sans) = (job.key_algorithm, job.common_name.clone(), job.subject_alternative_names.clone());
        let made = tokio::task::spawn_blocking(move || keygen::generate(alg, &cn, &sans))
            .await
            .map_err(|e| DriverError::Device(format!("key generation task failed: {e}")))?
            .map_err(|e| DriverError::Device(e.to_string()))?;
        self.new_key = Some(made.key);
        Ok(made.csr_der)
    }

    async fn install(&mut self, issued: &Issued) -> Result<(), DriverError> {
        let key = self.new_key.as_ref().ok_or_else(|| DriverError::Device("install before generate_csr".into()))?;
        let key_pem = key.serialize_pem();
        // Stage both new files first: a failure here leaves the device untouched.
        write_new(&self.key.staged(&self.tag), key_pem.as_bytes(), self.key.mode).await?;
        write_new(&self.cert.staged(&self.tag), issued.chain_pem.as_bytes(), self.cert.mode).await?;
        // Keep the current pair as .prev (only when both exist: a half pair is no backup).
        let cert_exists = tokio::fs::try_exists(&self.cert.path).await.unwrap_or(false);
        let key_exists = tokio::fs::try_exists(&self.key.path).await.unwrap_or(false);
        self.had_previous = cert_exists && key_exists;
        let record = Marker {
            job_id: self.job_id,
            leaf_sha256: issued.info.sha256_fingerprint.clone(),
            had_previous: self.had_previous,
        };
        let staged_marker = with_suffix(&self.marker(), &format!(".{}.tmp", self.tag));
        write_new(&staged_marker, record.text().as_bytes(), 0o644).await?;
        if self.had_previous {
            for t in [&self.cert, &self.key] {
                copy_atomic(&t.path, &t.prev(), t.mode, &self.tag).await?;
            }
        }
        // The marker goes first: a crash before the pair follows leaves a marker whose leaf
        // is not installed, which a redelivery reads as "not installed".
        let moves = [
            (staged_marker, self.marker()),
            (self.key.staged(&self.tag), self.key.path.clone()),
            (self.cert.staged(&self.tag), self.cert.path.clone()),
        ];
        for (staged, path) in moves {
            if let Err(e) = tokio::fs::rename(&staged, &path).await {
                let err = io_error("rename", &path, e);
                let _ = self.rollback().await;
                return Err(err);
            }
        }
        Ok(())
    }

    async fn activate(&mut self) -> Result<(), DriverError> {
        self.run_reload().await
    }

    async fn validate(&mut self, issued: &Issued) -> Result<(), DriverError> {
        let chain =
            tokio::fs::read_to_string(&self.cert.path).await.map_err(|e| io_error("read", &self.cert.path, e))?;
        let ders = crate::certinfo::pem_chain_to_der(&chain).map_err(|e| DriverError::Activation(e.to_string()))?;
        if ders[0] != issued.leaf_der {
            return Err(DriverError::Activation(format!(
                "{} does not hold the new certificate",
                self.cert.path.display()
            )));
        }
        let key_pem =
            tokio::fs::read_to_string(&self.key.path).await.map_err(|e| io_error("read", &self.key.path, e))?;
        let key = KeyPair::from_pem(&key_pem).map_err(|_| {
            DriverError::Activation(format!("{} does not hold a readable key", self.key.path.display()))
        })?;
        let cert_key =
            crate::certinfo::public_key_bits(&ders[0]).map_err(|e| DriverError::Activation(e.to_string()))?;
        if key.der_bytes() != cert_key.as_slice() {
            return Err(DriverError::Activation("the installed key does not match the installed certificate".into()));
        }
        Ok(())
    }

    async fn rollback(&mut self) -> Result<(), DriverError> {
        if self.had_previous {
            for t in [&self.key, &self.cert] {
                copy_atomic(&t.prev(), &t.path, t.mode, &self.tag).await?;
            }
        } else {
            for t in [&self.cert, &self.key] {
                match tokio::fs::remove_file(&t.path).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(io_error("remove", &t.path, e)),
                }
            }
        }
        self.run_reload().await
    }

    async fn close(self: Box<Self>) {
        self.remove_staged().await;
    }
}
