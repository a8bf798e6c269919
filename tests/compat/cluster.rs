//! Multi-member clusters for the side-by-side operator flows: cairn-store members run in this
//! process, etcd members as real processes; both named `m1`, `m2`, ... on free loopback ports,
//! so that etcdctl's output of the two differs only in ids, ports, versions and sizes.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cairn_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use cairn_proto::etcdserverpb::StatusRequest;
use tonic::transport::Channel;

use crate::harness::{free_port, wait_ready};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Cairn,
    Etcd,
}

enum Running {
    Cairn(cairn_store::Server),
    Etcd(Child),
}

pub struct Member {
    pub name: String,
    pub client_url: String,
    pub peer_url: String,
    running: Option<Running>,
}

impl Member {
    /// `host:port`, the form etcdctl's per-endpoint commands need (docs/compatibility.md).
    pub fn endpoint(&self) -> String {
        self.client_url.trim_start_matches("http://").to_string()
    }

    fn stop(&mut self) {
        match self.running.take() {
            Some(Running::Etcd(mut child)) => {
                let _ = child.kill();
                let _ = child.wait();
            }
            Some(Running::Cairn(server)) => {
                if let Ok(h) = tokio::runtime::Handle::try_current() {
                    h.spawn(server.shutdown());
                }
            }
            None => {}
        }
    }
}

pub struct Cluster {
    pub kind: Kind,
    pub members: Vec<Member>,
    dir: tempfile::TempDir,
}

const TOKEN: &str = "compat-cluster";

impl Cluster {
    /// `n` members `m1..mn` bootstrapped together; returns once every one serves reads.
    pub async fn start(kind: Kind, n: usize) -> Cluster {
        let mut cluster = Cluster {
            kind,
            members: Vec::new(),
            dir: tempfile::tempdir().expect("tempdir"),
        };
        for i in 1..=n {
            cluster.reserve(&format!("m{i}"));
        }
        for i in 0..n {
            cluster.launch(i, "new").await;
        }
        for m in &cluster.members {
            wait_ready(&m.client_url).await;
        }
        cluster
    }

    /// Picks ports for a member to be added later (`member add` needs its peer URL first).
    pub fn reserve(&mut self, name: &str) -> &Member {
        self.members.push(Member {
            name: name.to_string(),
            client_url: format!("http://127.0.0.1:{}", free_port()),
            peer_url: format!("http://127.0.0.1:{}", free_port()),
            running: None,
        });
        self.members.last().expect("just pushed")
    }

    /// Starts reserved member `name` with `--initial-cluster-state existing`, as an operator
    /// does after `member add`; returns once it answers Status (a learner serves no reads).
    pub async fn join(&mut self, name: &str) {
        let i = self.index(name);
        self.launch(i, "existing").await;
        wait_status(&self.members[i].client_url).await;
    }

    /// Stops member `name` (after `member remove`).
    pub fn stop(&mut self, name: &str) {
        let i = self.index(name);
        self.members[i].stop();
    }

    /// The running members' endpoints, comma-separated, for `etcdctl --endpoints`.
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .filter(|m| m.running.is_some())
            .map(Member::endpoint)
            .collect::<Vec<_>>()
            .join(",")
    }

    fn index(&self, name: &str) -> usize {
        self.members
            .iter()
            .position(|m| m.name == name)
            .unwrap_or_else(|| panic!("no member {name}"))
    }

    async fn launch(&mut self, i: usize, state: &str) {
        let initial = self
            .members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect::<Vec<_>>()
            .join(",");
        let m = &self.members[i];
        let data_dir = self.dir.path().join(&m.name);
        let data_dir = data_dir.to_str().expect("utf-8 path");
        let args = [
            "--name",
            &m.name,
            "--data-dir",
            data_dir,
            "--listen-client-urls",
            &m.client_url,
            "--advertise-client-urls",
            &m.client_url,
            "--listen-peer-urls",
            &m.peer_url,
            "--initial-advertise-peer-urls",
            &m.peer_url,
            "--initial-cluster",
            &initial,
            "--initial-cluster-token",
            TOKEN,
            "--initial-cluster-state",
            state,
            "--heartbeat-interval",
            "50",
            "--election-timeout",
            "500",
            "--log-level",
            "error",
        ];
        let running = match self.kind {
            Kind::Etcd => Running::Etcd(
                Command::new("etcd")
                    .args(args)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("spawn etcd"),
            ),
            Kind::Cairn => {
                let argv = std::iter::once("cairn-store")
                    .chain(args)
                    .map(str::to_string);
                let cfg = cairn_store::Config::parse_args(argv).expect("valid flags");
                // Members of a new cluster wait for each other's votes: start them all
                // before waiting for any (`start` returns once listening).
                Running::Cairn(cairn_store::start(cfg).await.expect("start cairn-store"))
            }
        };
        self.members[i].running = Some(running);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            m.stop();
        }
    }
}

/// Waits until `endpoint` answers Maintenance.Status.
async fn wait_status(endpoint: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(ch) = Channel::from_shared(endpoint.to_string())
            .expect("endpoint")
            .connect()
            .await
        {
            if MaintenanceClient::new(ch)
                .status(StatusRequest {})
                .await
                .is_ok()
            {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{endpoint} never answered Status"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
