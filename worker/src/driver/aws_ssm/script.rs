//! The shell scripts the `aws-ssm` driver runs on the instance (document
//! `AWS-RunShellScript`), built with every argument single-quoted, and the parsing of what
//! they print. The key is made on the instance under `umask 077` in a private staging
//! directory beside `key_path`, and no script ever prints it.

use super::super::DriverError;
use super::super::marker::{self, Marker};
use certfleet_proto::{JobId, KeyAlgorithm};
use std::fmt::Write as _;
use std::net::IpAddr;

/// Quotes `s` for a POSIX shell: `'...'`, with each `'` written as `'\''`.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Accepts only absolute paths of plain characters (no spaces, quotes, `..` or control characters).
pub fn check_path(name: &str, path: &str) -> Result<(), DriverError> {
    let plain = path.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-+@".contains(&b));
    let bad = !path.starts_with('/') || path.ends_with('/') || !plain || path.split('/').any(|c| c == "..");
    if bad || path.len() > 1024 {
        return Err(DriverError::InvalidSettings(format!(
            "{name} must be an absolute path of letters, digits and / . _ - + @ (got {path:?})"
        )));
    }
    Ok(())
}

/// A name for the certificate (CN or SAN): a DNS name (wildcards allowed) or an IP address.
fn check_name(name: &str) -> Result<(), DriverError> {
    let dns =
        !name.is_empty() && name.len() <= 253 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b".-*".contains(&b));
    if dns || name.parse::<IpAddr>().is_ok() {
        Ok(())
    } else {
        Err(DriverError::InvalidSettings(format!("{name:?} is not a DNS name or an IP address")))
    }
}

/// Where the pair lives on the instance, and where a rotation stages its files.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The full chain.
    pub cert: String,
    /// The private key.
    pub key: String,
    /// Private staging directory (mode 0700) beside the key, one per job.
    pub stage: String,
}

impl Paths {
    /// Paths for the job `tag` (its id, letters, digits and dashes).
    pub fn new(cert: &str, key: &str, tag: &str) -> Result<Self, DriverError> {
        check_path("cert_path", cert)?;
        check_path("key_path", key)?;
        if cert == key {
            return Err(DriverError::InvalidSettings("cert_path and key_path must differ".into()));
        }
        let dir = key.rsplit_once('/').map_or("", |(d, _)| d);
        let stage = format!("{dir}/.certfleet-{tag}");
        check_path("staging directory", &stage)?;
        Ok(Self { cert: cert.to_owned(), key: key.to_owned(), stage })
    }

    fn header(&self) -> String {
        format!(
            "set -eu\numask 077\nstage={}\ncert={}\nkey={}\n",
            quote(&self.stage),
            quote(&self.cert),
            quote(&self.key)
        )
    }
}

/// Makes the key and CSR in the staging directory and prints only the CSR (PEM).
pub fn generate(paths: &Paths, alg: KeyAlgorithm, cn: &str, sans: &[String]) -> Result<String, DriverError> {
    check_name(cn)?;
    let mut names = vec![cn.to_owned()];
    for san in sans {
        check_name(san)?;
        if !names.contains(san) {
            names.push(san.clone());
        }
    }
    let alt: Vec<String> = names
        .iter()
        .map(|n| if n.parse::<IpAddr>().is_ok() { format!("IP:{n}") } else { format!("DNS:{n}") })
        .collect();
    let (keyopts, digest) = match alg {
        KeyAlgorithm::EcdsaP256 => ("-algorithm EC -pkeyopt ec_paramgen_curve:P-256", "-sha256"),
        KeyAlgorithm::EcdsaP384 => ("-algorithm EC -pkeyopt ec_paramgen_curve:P-384", "-sha384"),
        KeyAlgorithm::Rsa2048 => ("-algorithm RSA -pkeyopt rsa_keygen_bits:2048", "-sha256"),
        KeyAlgorithm::Rsa3072 => ("-algorithm RSA -pkeyopt rsa_keygen_bits:3072", "-sha256"),
        KeyAlgorithm::Rsa4096 => ("-algorithm RSA -pkeyopt rsa_keygen_bits:4096", "-sha256"),
    };
    let mut s = paths.header();
    s.push_str("rm -rf -- \"$stage\"\nmkdir -m 700 -- \"$stage\"\n");
    let _ = writeln!(s, "openssl genpkey {keyopts} -out \"$stage/key.pem\" >&2");
    let _ = writeln!(
        s,
        "openssl req -new {digest} -key \"$stage/key.pem\" -subj {} -addext {} -out \"$stage/csr.pem\" >&2",
        quote(&format!("/CN={cn}")),
        quote(&format!("subjectAltName={}", alt.join(",")))
    );
    s.push_str("cat -- \"$stage/csr.pem\"\n");
    Ok(s)
}

/// The install marker beside the certificate (see `driver::marker`), as a shell word.
fn marker_path() -> String {
    format!("\"$cert{}\"", marker::SUFFIX)
}

/// Prints the install marker and the certificate blocks of the installed chain (nothing
/// when either is missing). When the marker names `job_id` and recorded a previous pair,
/// it also marks the staging directory so that a rollback restores `.prev`.
pub fn resume(paths: &Paths, job_id: JobId) -> String {
    let mut s = paths.header();
    let m = marker_path();
    let _ = writeln!(
        s,
        "if [ -f {m} ] && grep -qx {id} {m} && grep -qx had_previous=true {m}; then\n  \
         mkdir -p -m 700 -- \"$stage\" && touch -- \"$stage/had-previous\"\nfi",
        id = quote(&format!("job_id={job_id}")),
    );
    s.push_str(&marker::resume_script(&m, "\"$cert\""));
    s
}

/// Installs `chain_pem` and the staged key atomically, keeping the current pair as `.prev`,
/// with the install marker naming `job_id` and the leaf moved into place first.
pub fn install(paths: &Paths, chain_pem: &str, job_id: JobId, leaf_sha256: &str) -> String {
    let mut s = paths.header();
    s.push_str(concat!(
        "test -s \"$stage/key.pem\" || { echo \"no staged key in $stage\" >&2; exit 1; }\n",
        "new=\"$cert.certfleet-new\"\n",
    ));
    let _ = writeln!(s, "printf '%s\\n' {} > \"$new\"", quote(chain_pem.trim_end()));
    s.push_str(concat!(
        "chmod 644 \"$new\"\n",
        "leaf=$(openssl x509 -in \"$new\" -noout -pubkey)\n",
        "staged=$(openssl pkey -in \"$stage/key.pem\" -pubout)\n",
        "if [ -z \"$leaf\" ] || [ \"$leaf\" != \"$staged\" ]; then\n",
        "  rm -f -- \"$new\"; echo 'the chain does not match the staged key' >&2; exit 1\n",
        "fi\n",
        "if [ -e \"$cert\" ] && [ -e \"$key\" ]; then\n",
        "  cp -p -- \"$cert\" \"$cert.certfleet-tmp\" && mv -f -- \"$cert.certfleet-tmp\" \"$cert.prev\"\n",
        "  cp -p -- \"$key\" \"$key.certfleet-tmp\" && mv -f -- \"$key.certfleet-tmp\" \"$key.prev\"\n",
        "  touch -- \"$stage/had-previous\"\n",
        "fi\n",
    ));
    let m = marker_path();
    let _ = writeln!(s, "printf '%s' {} > {m}.tmp", quote(&Marker::base_text(job_id, leaf_sha256)));
    let _ = writeln!(s, "if [ -e \"$stage/had-previous\" ]; then echo had_previous=true >> {m}.tmp; fi");
    let _ = writeln!(s, "chmod 644 {m}.tmp\nmv -f -- {m}.tmp {m}");
    s.push_str(concat!(
        "chmod 600 \"$stage/key.pem\"\n",
        "mv -f -- \"$stage/key.pem\" \"$key\"\n",
        "if ! mv -f -- \"$new\" \"$cert\"; then\n",
        "  if [ -e \"$stage/had-previous\" ]; then cp -p -- \"$key.prev\" \"$key\"; else rm -f -- \"$key\"; fi\n",
        "  echo 'could not move the new chain into place' >&2; exit 1\n",
        "fi\n",
    ));
    s
}

/// Runs the reload command.
pub fn activate(reload: &str) -> String {
    format!("set -eu\nsh -c {}\n", quote(reload))
}

/// Checks that the installed key matches the installed leaf, and prints the leaf's SHA-256
/// fingerprint.
pub fn validate(paths: &Paths) -> String {
    let mut s = paths.header();
    s.push_str(concat!(
        "leaf=$(openssl x509 -in \"$cert\" -noout -pubkey)\n",
        "installed=$(openssl pkey -in \"$key\" -pubout)\n",
        "if [ -z \"$leaf\" ] || [ \"$leaf\" != \"$installed\" ]; then\n",
        "  echo \"$key does not match the certificate in $cert\" >&2; exit 1\n",
        "fi\n",
        "openssl x509 -in \"$cert\" -noout -fingerprint -sha256\n",
    ));
    s
}

/// Restores the `.prev` pair (or removes a first install) and runs the reload command.
pub fn rollback(paths: &Paths, reload: &str) -> String {
    let mut s = paths.header();
    s.push_str(concat!(
        "if [ -e \"$stage/had-previous\" ]; then\n",
        "  cp -p -- \"$key.prev\" \"$key.certfleet-tmp\" && mv -f -- \"$key.certfleet-tmp\" \"$key\"\n",
        "  cp -p -- \"$cert.prev\" \"$cert.certfleet-tmp\" && mv -f -- \"$cert.certfleet-tmp\" \"$cert\"\n",
        "else\n",
        "  rm -f -- \"$cert\" \"$key\"\n",
        "fi\n",
    ));
    let _ = writeln!(s, "sh -c {}", quote(reload));
    s
}

/// Removes the staging directory (and a leftover staged chain).
pub fn cleanup(paths: &Paths) -> String {
    format!("{}rm -rf -- \"$stage\" \"$cert.certfleet-new\" \"$cert{}.tmp\"\n", paths.header(), marker::SUFFIX)
}

/// The one CSR in a script's output, as DER. The output is never echoed in errors.
pub fn parse_csr(stdout: &str) -> Result<Vec<u8>, DriverError> {
    crate::certinfo::csr_pem_to_der(stdout)
        .map_err(|e| DriverError::Device(format!("the generate command's output: {e}")))
}

/// The lowercase hex SHA-256 fingerprint in `openssl x509 -fingerprint -sha256` output.
pub fn parse_fingerprint(stdout: &str) -> Option<String> {
    let line = stdout.lines().find(|l| l.to_ascii_lowercase().starts_with("sha256 fingerprint="))?;
    let hex: String = line.split_once('=')?.1.trim().chars().filter(|c| *c != ':').collect();
    (hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit())).then(|| hex.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_and_path_checks() {
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert!(check_path("p", "/etc/ssl/site.crt").is_ok());
        for bad in ["etc/x", "/a b", "/a/../b", "/a;rm", "/a'b", "/a\nb", "/a/"] {
            assert!(matches!(check_path("p", bad), Err(DriverError::InvalidSettings(_))), "{bad:?}");
        }
        assert!(check_name("*.example.test").is_ok() && check_name("10.0.0.1").is_ok());
        assert!(check_name("a b").is_err() && check_name("$(x)").is_err());
    }

    #[test]
    fn csr_and_fingerprint_parsing() {
        let made = crate::keygen::generate(KeyAlgorithm::EcdsaP256, "a.test", &[]).unwrap();
        let pem = pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", made.csr_der.clone()));
        assert_eq!(parse_csr(&format!("noise\n{pem}")).unwrap(), made.csr_der);
        assert!(parse_csr("").is_err());
        assert!(parse_csr(&format!("{pem}{pem}")).is_err());
        let key = pem::encode(&pem::Pem::new("PRIVATE KEY", vec![1, 2, 3]));
        assert!(parse_csr(&format!("{key}{pem}")).is_err());
        let fp = format!("sha256 Fingerprint={}", ["AB"; 32].join(":"));
        assert_eq!(parse_fingerprint(&fp).unwrap(), "ab".repeat(32));
        assert_eq!(parse_fingerprint("nothing"), None);
    }
}
