//! A direct-streamlocal channel to a unix socket on the device (HAProxy's admin socket),
//! and what a refused channel means. OpenSSH answers "connect failed" both when its
//! config forbids the channel (`AllowTcpForwarding no`, `AllowStreamLocalForwarding no`)
//! and when nothing listens on the socket; a look at the socket on the device tells the
//! permanent refusal (dead at once, with the fix) from a passing fault (retried).

use super::shell::quote;
use super::{DriverError, SshSession};
use russh::{ChannelMsg, ChannelOpenFailure};

/// The fix, given with every refusal.
const HINT: &str = "use api_address (HAProxy's admin socket on loopback TCP) instead of socket_path, or allow \
                    streamlocal forwarding in sshd_config (AllowTcpForwarding local or yes, and \
                    AllowStreamLocalForwarding yes)";

/// What the device's shell says about the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SocketState {
    /// No socket at the path.
    Missing,
    /// The SSH user may not write to it.
    NotWritable,
    /// A socket file nothing listens on (the service stopped).
    Stale,
    /// A socket a process listens on, writable by the SSH user.
    Usable,
}

/// Classifies a refused channel open. `state` is what the device said about the socket
/// (`None`: it could not be asked).
pub(crate) fn refusal(label: &str, path: &str, reason: ChannelOpenFailure, state: Option<SocketState>) -> DriverError {
    match (reason, state) {
        (ChannelOpenFailure::AdministrativelyProhibited, _) => DriverError::InvalidSettings(format!(
            "{label}: sshd refused the channel to the unix socket {path} (administratively prohibited); {HINT}"
        )),
        (_, Some(SocketState::Usable)) => DriverError::InvalidSettings(format!(
            "{label}: sshd refused the channel to the unix socket {path}, although the socket is there and listening: \
             the server does not allow streamlocal forwarding; {HINT}"
        )),
        (_, Some(SocketState::NotWritable)) => DriverError::InvalidSettings(format!(
            "{label}: the unix socket {path} is not writable by the SSH user; log in as a user who may write to it, \
             or use api_address"
        )),
        (_, Some(SocketState::Stale)) => DriverError::Unreachable(format!(
            "{label}: nothing listens on the unix socket {path} (is HAProxy running?)"
        )),
        (_, Some(SocketState::Missing)) => {
            DriverError::Unreachable(format!("{label}: there is no unix socket at {path} (is HAProxy running?)"))
        }
        (_, None) => DriverError::Unreachable(format!(
            "{label}: the server could not open a channel to the unix socket {path} (is the socket there, and \
             does sshd allow streamlocal forwarding?)"
        )),
    }
}

/// A shell line printing one of `missing`, `denied`, `stale`, `usable` for `path`. A
/// listener shows in /proc/net/unix under the name it bound, which may be the path plus a
/// suffix (HAProxy binds `<path>.<pid>.tmp`, then renames it).
fn probe_line(path: &str) -> String {
    format!(
        "p={}; if [ ! -S \"$p\" ]; then echo missing; elif [ ! -w \"$p\" ]; then echo denied; \
         elif [ -r /proc/net/unix ] && ! awk -v p=\"$p\" '$8 == p || index($8, p \".\") == 1 {{ f = 1 }} \
         END {{ exit !f }}' /proc/net/unix; then echo stale; else echo usable; fi",
        quote(path)
    )
}

fn parse_probe(stdout: &[u8]) -> Option<SocketState> {
    match String::from_utf8_lossy(stdout).trim() {
        "missing" => Some(SocketState::Missing),
        "denied" => Some(SocketState::NotWritable),
        "stale" => Some(SocketState::Stale),
        "usable" => Some(SocketState::Usable),
        _ => None,
    }
}

impl SshSession {
    /// Sends `request` to the unix socket `path` on the device (a direct-streamlocal
    /// channel) and returns everything the socket answers until it closes.
    pub async fn unix_socket_request(&self, path: &str, request: &[u8]) -> Result<Vec<u8>, DriverError> {
        let budget = self.command_timeout;
        let timeout = || DriverError::Timeout { op: "runtime API request over ssh", after: budget };
        let mut ch = match tokio::time::timeout(budget, self.handle.channel_open_direct_streamlocal(path)).await {
            Err(_) => return Err(timeout()),
            Ok(Ok(ch)) => ch,
            Ok(Err(russh::Error::ChannelOpenFailure(reason))) => {
                let state = match self.exec(&probe_line(path), None).await {
                    Ok(out) if out.success() => parse_probe(&out.stdout),
                    _ => None,
                };
                return Err(refusal(&self.label, path, reason, state));
            }
            Ok(Err(e)) => return Err(DriverError::Unreachable(format!("{}: unix socket {path}: {e}", self.label))),
        };
        let run = async {
            ch.data(request).await?;
            ch.eof().await?;
            let mut answer = Vec::new();
            while let Some(msg) = ch.wait().await {
                if let ChannelMsg::Data { data } = msg {
                    answer.extend_from_slice(&data);
                }
            }
            Ok::<_, russh::Error>(answer)
        };
        match tokio::time::timeout(budget, run).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => Err(DriverError::Unreachable(format!("{}: unix socket {path}: {e}", self.label))),
            Err(_) => Err(timeout()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_permanent_only_when_the_socket_is_usable_or_the_server_says_prohibited() {
        let permanent = |e: &DriverError| matches!(e, DriverError::InvalidSettings(m) if m.contains("api_address"));
        let connect = || ChannelOpenFailure::ConnectFailed;
        assert!(permanent(&refusal("d", "/s", ChannelOpenFailure::AdministrativelyProhibited, None)));
        assert!(permanent(&refusal("d", "/s", connect(), Some(SocketState::Usable))));
        assert!(permanent(&refusal("d", "/s", connect(), Some(SocketState::NotWritable))));
        for passing in [Some(SocketState::Missing), Some(SocketState::Stale), None] {
            assert!(matches!(refusal("d", "/s", connect(), passing), DriverError::Unreachable(_)), "{passing:?}");
        }
        let text = refusal("root@h:22", "/run/h.sock", connect(), Some(SocketState::Usable)).to_string();
        assert!(text.contains("AllowStreamLocalForwarding") && !text.contains("ConnectFailed"), "{text}");
    }

    #[test]
    fn the_probe_finds_listeners_bound_under_a_temporary_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.sock");
        let path = path.to_str().unwrap();
        let run = || {
            let out = std::process::Command::new("/bin/sh").arg("-c").arg(probe_line(path)).output().unwrap();
            parse_probe(&out.stdout)
        };
        assert_eq!(run(), Some(SocketState::Missing));
        // Bound under a temporary name and renamed, as HAProxy does.
        let tmp = format!("{path}.1234.tmp");
        let listener = std::os::unix::net::UnixListener::bind(&tmp).unwrap();
        std::fs::rename(&tmp, path).unwrap();
        assert_eq!(run(), Some(SocketState::Usable));
        drop(listener);
        assert_eq!(run(), Some(SocketState::Stale), "the file stays, nothing listens");
    }
}
