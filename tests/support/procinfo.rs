//! What a running process holds, read from `/proc`: its sockets, its TCP connections to a
//! port, and its resident memory. Used to prove that reconnecting leaks nothing.

use std::collections::HashSet;

/// Inodes of the sockets among the process's open file descriptors.
pub fn socket_inodes(pid: u32) -> HashSet<u64> {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return HashSet::new() };
    entries
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|target| {
            let t = target.to_string_lossy().into_owned();
            t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

/// Number of the process's open sockets (any family).
pub fn socket_count(pid: u32) -> usize {
    socket_inodes(pid).len()
}

/// The process's TCP connections (any state but LISTEN) whose remote port is `port`.
pub fn tcp_connections_to(pid: u32, port: u16) -> usize {
    let mine = socket_inodes(pid);
    let mut n = 0;
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else { continue };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() < 10 {
                continue;
            }
            let remote_port = cols[2].rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok());
            let state = cols[3];
            let inode: u64 = cols[9].parse().unwrap_or(0);
            if remote_port == Some(port) && state != "0A" && mine.contains(&inode) {
                n += 1;
            }
        }
    }
    n
}

/// Resident set size in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}
