//! Real server processes for `compare`: an etcd or cairn-store cluster of 1 or 3 members on
//! loopback, started with the same etcd flags (cairn-store takes etcd's flags), each with
//! its own temp data dir and free ports.
//!
//! Durability is each server's default, which is equivalent: etcd fdatasyncs its WAL before
//! acknowledging a proposal, cairn-store fdatasyncs its Raft log (group commit) before
//! reporting an entry durable; `--snapshot-count` is 100 000 on both.
//!
//! Also the process-level measurements: peak RSS (`VmHWM`), CPU time (`/proc/<pid>/stat`),
//! bytes on disk, and the time from spawning to the first served linearizable read.
//! Dropping a cluster kills its processes.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use cairn_proto::etcdserverpb::kv_client::KvClient;
use cairn_proto::etcdserverpb::RangeRequest;
use tonic::transport::Endpoint;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Etcd,
    Cairn,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Etcd => "etcd",
            Kind::Cairn => "cairn",
        }
    }
}

struct Member {
    name: String,
    client_url: String,
    peer_url: String,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

pub struct Cluster {
    pub kind: Kind,
    bin: PathBuf,
    members: Vec<Member>,
    initial_cluster: String,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Clock ticks per second of `/proc/<pid>/stat` times (`USER_HZ`, 100 on Linux).
const USER_HZ: u64 = 100;

impl Cluster {
    /// Spawns `size` members of `kind` with data under `root`, and waits until the cluster
    /// serves a linearizable read.
    pub async fn start(kind: Kind, bin: &Path, size: usize, root: &Path) -> anyhow::Result<Self> {
        let mut members = Vec::with_capacity(size);
        for i in 0..size {
            let name = format!("{}{i}", kind.name());
            let dir = root.join(&name);
            std::fs::create_dir_all(&dir)?;
            members.push(Member {
                client_url: format!("http://127.0.0.1:{}", free_port()?),
                peer_url: format!("http://127.0.0.1:{}", free_port()?),
                data_dir: dir.join("data"),
                log: dir.join("server.log"),
                name,
                child: None,
            });
        }
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Self {
            kind,
            bin: bin.to_path_buf(),
            members,
            initial_cluster,
        };
        cluster.spawn_all()?;
        cluster
            .wait_ready(Duration::from_secs(30))
            .await
            .with_context(|| format!("{} cluster of {size} never served a read", kind.name()))?;
        Ok(cluster)
    }

    fn spawn_all(&mut self) -> anyhow::Result<()> {
        for m in &mut self.members {
            let log = File::options().create(true).append(true).open(&m.log)?;
            let child = Command::new(&self.bin)
                .args(["--name", &m.name])
                .arg("--data-dir")
                .arg(&m.data_dir)
                .args(["--listen-client-urls", &m.client_url])
                .args(["--advertise-client-urls", &m.client_url])
                .args(["--listen-peer-urls", &m.peer_url])
                .args(["--initial-advertise-peer-urls", &m.peer_url])
                .args(["--initial-cluster", &self.initial_cluster])
                .args(["--initial-cluster-token", "bench"])
                .args(["--initial-cluster-state", "new"])
                .args(["--logger", "zap", "--log-level", "warn"])
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("spawning {}", self.bin.display()))?;
            m.child = Some(child);
        }
        Ok(())
    }

    /// Waits until member 0 answers a linearizable Range; returns how long that took.
    pub async fn wait_ready(&self, within: Duration) -> anyhow::Result<Duration> {
        let start = Instant::now();
        let url = self.members[0].client_url.clone();
        loop {
            if let Ok(ep) = Endpoint::from_shared(url.clone()) {
                let ep = ep
                    .connect_timeout(Duration::from_millis(200))
                    .timeout(Duration::from_secs(2));
                if let Ok(ch) = ep.connect().await {
                    let probe = RangeRequest {
                        key: b"cairn-bench/probe".to_vec(),
                        ..Default::default()
                    };
                    if KvClient::new(ch).range(probe).await.is_ok() {
                        return Ok(start.elapsed());
                    }
                }
            }
            anyhow::ensure!(start.elapsed() < within, "not ready within {within:?}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    fn pids(&self) -> impl Iterator<Item = u32> + '_ {
        self.members
            .iter()
            .filter_map(|m| m.child.as_ref().map(Child::id))
    }

    /// Largest peak resident set (VmHWM, KiB) among the members.
    pub fn peak_rss_kib(&self) -> u64 {
        self.pids()
            .map(|p| proc_status_kib(p, "VmHWM:"))
            .max()
            .unwrap_or(0)
    }

    /// CPU time (user + system) all members used so far.
    pub fn cpu_time(&self) -> Duration {
        Duration::from_millis(self.pids().map(proc_cpu_ticks).sum::<u64>() * 1000 / USER_HZ)
    }

    /// Bytes on disk of member 0's data dir (allocated blocks, as `du` counts).
    pub fn disk_bytes(&self) -> u64 {
        dir_bytes(&self.members[0].data_dir)
    }

    pub fn data_root(&self) -> PathBuf {
        self.members[0].data_dir.clone()
    }

    /// Stops every member (SIGTERM, then SIGKILL after 10 s).
    pub fn stop(&mut self) {
        for m in &mut self.members {
            if let Some(child) = &m.child {
                let _ = Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status();
            }
        }
        for m in &mut self.members {
            if let Some(mut child) = m.child.take() {
                let deadline = Instant::now() + Duration::from_secs(10);
                while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    /// Stops every member, starts them again on the same data, and returns the time from
    /// spawning to the first linearizable read served.
    pub async fn restart(&mut self) -> anyhow::Result<Duration> {
        self.stop();
        let spawned = Instant::now();
        self.spawn_all()?;
        self.wait_ready(Duration::from_secs(120)).await?;
        Ok(spawned.elapsed())
    }

    /// The tail of member 0's log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.members[0].log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut child) = m.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// A `Key:   123 kB` line of `/proc/<pid>/status`, in KiB (0 if unreadable).
pub fn proc_status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// utime + stime of a process, in clock ticks (fields 14 and 15 of `/proc/<pid>/stat`,
/// counted after the parenthesised command name, which may contain spaces).
pub fn proc_cpu_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return 0;
    };
    // After ')': state(3) ppid(4) ... utime is field 14, i.e. index 11 here.
    let fields: Vec<&str> = after.split_whitespace().collect();
    let get = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    get(11) + get(12)
}

/// CPU time this process (the load generator) used so far.
pub fn own_cpu_time() -> Duration {
    Duration::from_millis(proc_cpu_ticks(std::process::id()) * 1000 / USER_HZ)
}

/// Allocated bytes under `dir` (st_blocks * 512, as `du` counts; sparse preallocation
/// counts only what is really used).
pub fn dir_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(md) if md.is_dir() => dir_bytes(&e.path()),
            Ok(md) => md.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}
