//! File work on an SSH device, shared by the `linux-ssh` and `haproxy` drivers: key and CSR
//! made with `openssl` in a private temp dir (umask 077, `mktemp -d`), atomic install
//! (stage beside the target, keep `.prev`, rename) with the install marker
//! (`<first target>.certfleet-job`, see `driver::marker`) renamed into place first, the
//! marker read back on a redelivery, rollback and read-back. Only the CSR,
//! certificates and public keys are ever read back; the private key stays on the device.

use super::shell::{SubjectName, check_path, quote};
use super::{Output, SshSession};
use crate::driver::DriverError;
use crate::driver::marker::{self, Marker};
use crate::issuer::Issued;
use certfleet_proto::{JobId, KeyAlgorithm, RotationJob};

/// What a target file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// The full chain (mode 0644).
    Chain,
    /// The private key made on the device (mode 0600).
    Key,
    /// The chain followed by the key, as HAProxy wants it (mode 0600).
    ChainThenKey,
}

/// One file the rotation replaces.
#[derive(Debug, Clone)]
pub struct Target {
    /// Absolute path on the device (checked by [`check_path`]).
    pub path: String,
    /// What goes in it.
    pub content: Content,
}

impl Target {
    fn prev(&self) -> String {
        quote(&format!("{}.prev", self.path))
    }
    fn staged(&self, tag: &str) -> String {
        quote(&format!("{}.certfleet-{tag}.tmp", self.path))
    }
}

/// The device-side state of one rotation: its temp dir and targets.
#[derive(Debug)]
pub struct RemoteFiles {
    /// The private temp dir holding the new key until install (None before keygen and after
    /// cleanup).
    pub dir: Option<String>,
    /// The job this rotation belongs to (recorded in the install marker).
    pub job_id: JobId,
    /// A tag unique to the job, used in staged file names.
    pub tag: String,
    /// The files to replace.
    pub targets: Vec<Target>,
    /// Whether every target existed before install (then `.prev` copies were made).
    pub had_previous: bool,
}

fn failed(what: &str, session: &SshSession, out: &Output) -> String {
    format!("{}: {}", session.label(), out.failed(what))
}

impl RemoteFiles {
    /// Checks the target paths; nothing is touched yet.
    pub fn new(job_id: JobId, targets: Vec<Target>) -> Result<Self, DriverError> {
        for t in &targets {
            check_path("path", &t.path)?;
        }
        if targets.is_empty() {
            return Err(DriverError::InvalidSettings("no target file".into()));
        }
        Ok(Self {
            dir: None,
            job_id,
            tag: job_id.to_string().chars().filter(char::is_ascii_alphanumeric).collect(),
            targets,
            had_previous: false,
        })
    }

    /// The install marker, beside the first target.
    fn marker(&self) -> String {
        format!("{}{}", self.targets[0].path, marker::SUFFIX)
    }

    /// The pair an earlier delivery of `job` installed, if the marker names it and the
    /// first target still holds its leaf (only certificate blocks are read back).
    pub async fn resume(&mut self, session: &SshSession, job: &RotationJob) -> Result<Option<Issued>, DriverError> {
        let script = marker::resume_script(&quote(&self.marker()), &quote(&self.targets[0].path));
        let out = session.exec(&script, None).await?;
        if !out.success() {
            return Err(DriverError::Device(failed("reading the install marker", session, &out)));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let (found, chain) = marker::split_answer(&text);
        Ok(marker::resume(job.job_id, found, chain)?.map(|r| {
            self.had_previous = r.had_previous;
            r.issued
        }))
    }

    /// Pre-flight on the device: `openssl` exists and each target's directory is writable.
    pub async fn preflight(&self, session: &SshSession) -> Result<(), DriverError> {
        let mut script =
            String::from("command -v openssl >/dev/null || { echo 'openssl not found on the device' >&2; exit 3; }");
        for t in &self.targets {
            let dir = t.path.rsplit_once('/').map_or("/", |(d, _)| if d.is_empty() { "/" } else { d });
            script.push_str(&format!(
                "\n[ -d {d} ] && [ -w {d} ] || {{ echo {msg} >&2; exit 3; }}",
                d = quote(dir),
                msg = quote(&format!("directory {dir} does not exist or is not writable"))
            ));
        }
        let out = session.exec(&script, None).await?;
        if out.success() { Ok(()) } else { Err(DriverError::InvalidSettings(failed("pre-flight", session, &out))) }
    }

    /// Makes a fresh key of the job's algorithm and a CSR for its names with `openssl` on
    /// the device; returns the CSR as DER. The key stays in the private temp dir.
    pub async fn generate_csr(&mut self, session: &SshSession, job: &RotationJob) -> Result<Vec<u8>, DriverError> {
        let cn = SubjectName::parse(&job.common_name)?;
        let mut sans = vec![cn.clone()];
        for name in &job.subject_alternative_names {
            let n = SubjectName::parse(name)?;
            if !sans.contains(&n) {
                sans.push(n);
            }
        }
        let out = session.exec("umask 077 && mktemp -d", None).await?;
        let dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if !out.success() || check_path("temp dir", &dir).is_err() {
            return Err(DriverError::Device(failed("mktemp -d", session, &out)));
        }
        self.dir = Some(dir.clone());
        let (genkey, digest) = match job.key_algorithm {
            KeyAlgorithm::EcdsaP256 => ("-algorithm EC -pkeyopt ec_paramgen_curve:P-256", "-sha256"),
            KeyAlgorithm::EcdsaP384 => ("-algorithm EC -pkeyopt ec_paramgen_curve:P-384", "-sha384"),
            KeyAlgorithm::Rsa2048 => ("-algorithm RSA -pkeyopt rsa_keygen_bits:2048", "-sha256"),
            KeyAlgorithm::Rsa3072 => ("-algorithm RSA -pkeyopt rsa_keygen_bits:3072", "-sha256"),
            KeyAlgorithm::Rsa4096 => ("-algorithm RSA -pkeyopt rsa_keygen_bits:4096", "-sha256"),
        };
        let subject = match &cn {
            SubjectName::Dns(d) => format!("/CN={d}"),
            SubjectName::Ip(ip) => format!("/CN={ip}"),
        };
        let san = format!("subjectAltName={}", sans.iter().map(SubjectName::san_entry).collect::<Vec<_>>().join(","));
        let key = quote(&format!("{dir}/key.pem"));
        let csr = quote(&format!("{dir}/csr.pem"));
        let script = format!(
            "umask 077 && openssl genpkey {genkey} -out {key} >/dev/null && \
             openssl req -new -key {key} {digest} -subj {subj} -addext {san} -out {csr} && cat {csr}",
            subj = quote(&subject),
            san = quote(&san),
        );
        let out = session.exec(&script, None).await?;
        if !out.success() {
            return Err(DriverError::Device(failed("openssl key and CSR generation", session, &out)));
        }
        let parsed = pem::parse(&out.stdout)
            .map_err(|e| DriverError::Device(format!("{}: the device's CSR is not PEM: {e}", session.label())))?;
        if parsed.tag() != "CERTIFICATE REQUEST" {
            return Err(DriverError::Device(format!("{}: expected a CSR, got {}", session.label(), parsed.tag())));
        }
        Ok(parsed.into_contents())
    }

    /// Stages every target beside its path, copies the current files to `.prev` (when all
    /// exist), then renames the staged files into place. `chain_pem` is sent on stdin; the
    /// key is copied on the device. The marker naming the job is renamed into place before
    /// the targets. A failure leaves the previous files in place.
    pub async fn install(&mut self, session: &SshSession, issued: &Issued) -> Result<(), DriverError> {
        let chain_pem = &issued.chain_pem;
        let dir = self.dir.clone().ok_or_else(|| DriverError::Device("install before generate_csr".into()))?;
        let chain = quote(&format!("{dir}/chain.pem"));
        let key = quote(&format!("{dir}/key.pem"));
        let mut s = format!("set -e\numask 077\ncat > {chain}\n");
        for t in &self.targets {
            let (src, mode) = match t.content {
                Content::Chain => (chain.clone(), "644"),
                Content::Key => (key.clone(), "600"),
                Content::ChainThenKey => (format!("{chain} {key}"), "600"),
            };
            s.push_str(&format!("cat {src} > {st}\nchmod {mode} {st}\n", st = t.staged(&self.tag)));
        }
        let staged_marker = quote(&format!("{}.{}.tmp", self.marker(), self.tag));
        let text = Marker::base_text(self.job_id, &issued.info.sha256_fingerprint);
        s.push_str(&format!("printf '%s' {} > {staged_marker}\nchmod 644 {staged_marker}\n", quote(&text)));
        let all_exist: Vec<String> = self.targets.iter().map(|t| format!("[ -e {} ]", quote(&t.path))).collect();
        s.push_str(&format!("if {}; then\n", all_exist.join(" && ")));
        s.push_str(&format!("  echo had_previous=true >> {staged_marker}\n"));
        for t in &self.targets {
            let tmp = quote(&format!("{}.certfleet-{}.prev", t.path, self.tag));
            s.push_str(&format!("  cp -p {p} {tmp}\n  mv -f {tmp} {prev}\n", p = quote(&t.path), prev = t.prev()));
        }
        s.push_str("  echo had-previous\nfi\n");
        let mut moves = vec![format!("mv -f {staged_marker} {}", quote(&self.marker()))];
        moves.extend(self.targets.iter().map(|t| format!("mv -f {} {}", t.staged(&self.tag), quote(&t.path))));
        s.push_str(&moves.join("\n"));
        s.push('\n');
        let out = session.exec(&s, Some(chain_pem.as_bytes())).await;
        self.remove_dir(session).await;
        let out = out?;
        self.had_previous = String::from_utf8_lossy(&out.stdout).contains("had-previous");
        if out.success() {
            return Ok(());
        }
        let err = DriverError::Device(failed("install", session, &out));
        // Some renames may have happened: put the previous files back.
        let _ = self.restore(session).await;
        Err(err)
    }

    /// Puts the previous files back (or removes the new ones on a first install).
    pub async fn restore(&self, session: &SshSession) -> Result<(), DriverError> {
        let mut s = String::from("set -e\n");
        for t in &self.targets {
            if self.had_previous {
                let tmp = quote(&format!("{}.certfleet-{}.rb", t.path, self.tag));
                s.push_str(&format!("cp -p {prev} {tmp}\nmv -f {tmp} {p}\n", prev = t.prev(), p = quote(&t.path)));
            } else {
                s.push_str(&format!("rm -f {}\n", quote(&t.path)));
            }
        }
        let out = session.exec(&s, None).await?;
        if out.success() {
            Ok(())
        } else {
            Err(DriverError::Device(failed("restoring the previous files", session, &out)))
        }
    }

    /// The first certificate in `path` (DER) and the public key of the private key in
    /// `key_path` (SubjectPublicKeyInfo DER), read from the device.
    pub async fn read_back(
        &self,
        session: &SshSession,
        path: &str,
        key_path: &str,
    ) -> Result<(Vec<u8>, Vec<u8>), DriverError> {
        let script = format!(
            "openssl x509 -in {p} -outform PEM && openssl pkey -in {k} -pubout",
            p = quote(path),
            k = quote(key_path)
        );
        let out = session.exec(&script, None).await?;
        if !out.success() {
            return Err(DriverError::Activation(failed("reading back the installed files", session, &out)));
        }
        let blocks = pem::parse_many(&out.stdout)
            .map_err(|e| DriverError::Activation(format!("{}: unreadable read-back: {e}", session.label())))?;
        let cert = blocks.iter().find(|b| b.tag() == "CERTIFICATE");
        let public = blocks.iter().find(|b| b.tag() == "PUBLIC KEY");
        match (cert, public) {
            (Some(c), Some(p)) => Ok((c.contents().to_vec(), p.contents().to_vec())),
            _ => Err(DriverError::Activation(format!("{}: {path} holds no certificate or key", session.label()))),
        }
    }

    /// Removes the temp dir (with the key copy in it) and any staged files.
    pub async fn cleanup(&mut self, session: &SshSession) {
        self.remove_dir(session).await;
        let mut staged: Vec<String> = self.targets.iter().map(|t| t.staged(&self.tag)).collect();
        staged.push(quote(&format!("{}.{}.tmp", self.marker(), self.tag)));
        let _ = session.exec(&format!("rm -f {}", staged.join(" ")), None).await;
    }

    async fn remove_dir(&mut self, session: &SshSession) {
        if let Some(dir) = self.dir.take() {
            let _ = session.exec(&format!("rm -rf {}", quote(&dir)), None).await;
        }
    }
}
