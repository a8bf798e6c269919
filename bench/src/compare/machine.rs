//! The machine a comparison ran on, and the disk's own limit: the latency of a 4 KiB append
//! followed by `fdatasync`, measured in the same filesystem as the data dirs. A durable
//! single-client put cannot be faster than one such sync plus a loopback round trip.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::report::{Latency, Recorder};

#[derive(Debug, Clone)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub mem_gib: f64,
    pub kernel: String,
    pub filesystem: String,
    pub etcd_version: String,
    pub cairn_version: String,
    pub fsync: FsyncProbe,
}

#[derive(Debug, Clone, Copy)]
pub struct FsyncProbe {
    pub count: u64,
    pub latency: Latency,
    /// Syncs per second one writer achieves back to back.
    pub per_sec: f64,
}

/// Appends `count` 4 KiB blocks to a file in `dir`, each followed by `fdatasync`.
pub fn probe_fdatasync(dir: &Path, count: u64) -> std::io::Result<FsyncProbe> {
    let path = dir.join("fdatasync-probe");
    let mut f = File::create(&path)?;
    let block = [0x5au8; 4096];
    let mut rec = Recorder::new();
    let start = Instant::now();
    for _ in 0..count {
        let t = Instant::now();
        f.write_all(&block)?;
        f.sync_data()?;
        rec.record(t.elapsed());
    }
    let elapsed = start.elapsed();
    drop(f);
    std::fs::remove_file(&path)?;
    Ok(FsyncProbe {
        count,
        latency: Latency::of(&rec.hist),
        per_sec: count as f64 / elapsed.max(Duration::from_nanos(1)).as_secs_f64(),
    })
}

fn first_line(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

/// The mount holding `dir`: "fstype on device (mount point)".
fn filesystem_of(dir: &Path) -> String {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && dir.starts_with(f[1]))
                .then(|| (f[1].len(), format!("{} on {} ({})", f[2], f[0], f[1])))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, d)| d)
        .unwrap_or_else(|| "unknown".into())
}

pub fn describe(data_root: &Path, etcd_bin: &Path, fsync: FsyncProbe) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or_else(|| "unknown".into(), |s| s.trim().to_string());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: f64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let rev = first_line("git", &["rev-parse", "--short", "HEAD"]);
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false);
    Machine {
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_model,
        mem_gib: mem_kib / 1024.0 / 1024.0,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| "unknown".into(), |s| s.trim().to_string()),
        filesystem: filesystem_of(data_root),
        etcd_version: first_line(&etcd_bin.to_string_lossy(), &["--version"]),
        cairn_version: format!(
            "git {rev}{}",
            if dirty { " + uncommitted changes" } else { "" }
        ),
        fsync,
    }
}
