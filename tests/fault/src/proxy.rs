//! The harness-owned network between members: one TCP proxy in front of each member's peer
//! listener, and a table of directed link rules shared by all proxies.
//!
//! Every member advertises its proxy's address as its peer URL, so all Raft traffic to member
//! `b` enters through `b`'s proxy. The proxy learns which member opened a connection by finding
//! the connecting socket's owner (`/proc/net/tcp` inode → `/proc/<pid>/fd`), so it can apply
//! the rule of the directed link `a → b` to the bytes `a` sends and `b → a` to the replies.
//!
//! Invariants:
//! - bytes are never dropped or reordered inside a connection that goes on (that would corrupt
//!   HTTP/2 rather than model a network): a cut link *stalls* — the proxy holds the bytes, TCP
//!   back-pressure does the rest — exactly as a partition looks to a TCP endpoint, and a healed
//!   link delivers what was held, late, unless an endpoint gave up on the connection meanwhile;
//! - a *lossy* link loses bytes the only way TCP can show it: the chunk is discarded and the
//!   connection carrying it is closed, both directions, whatever travels the other way — so
//!   a member whose replies are lost sees its requests arrive yet never hears back, and every
//!   new connection dies at its first byte across the lossy direction;
//! - a delay postpones each chunk by the link's delay, preserving order;
//! - a connection whose source cannot be identified is stalled only when its destination is
//!   cut off from every other member.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What happens to bytes travelling one direction between two members.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rule {
    pub cut: bool,
    /// Bytes are discarded and their connection reset (takes precedence over `cut`).
    pub lose: bool,
    pub delay: Duration,
}

#[derive(Debug)]
struct State {
    members: usize,
    rules: HashMap<(usize, usize), Rule>,
    pids: Vec<Option<u32>>,
}

/// The link table. Cheap to share; every change wakes stalled connections to re-check.
#[derive(Debug)]
pub struct Network {
    state: Mutex<State>,
    changed: watch::Sender<u64>,
}

impl Network {
    pub fn new(members: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                members,
                rules: HashMap::new(),
                pids: vec![None; members],
            }),
            changed: watch::Sender::new(0),
        })
    }

    fn update(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.state.lock().expect("network lock"));
        self.changed.send_modify(|v| *v += 1);
    }

    /// Records the process id of `member`, for telling which member opened a connection.
    pub fn set_pid(&self, member: usize, pid: Option<u32>) {
        self.update(|s| s.pids[member] = pid);
    }

    /// Cuts (`true`) or restores (`false`) the directed link `from → to`.
    pub fn set_cut(&self, from: usize, to: usize, cut: bool) {
        self.update(|s| s.rules.entry((from, to)).or_default().cut = cut);
    }

    /// Makes the directed link `from → to` lose (`true`) or deliver (`false`) its bytes.
    pub fn set_lost(&self, from: usize, to: usize, lose: bool) {
        self.update(|s| s.rules.entry((from, to)).or_default().lose = lose);
    }

    /// Cuts `member` off from every other member, both directions.
    pub fn isolate(&self, member: usize) {
        self.update(|s| {
            for other in (0..s.members).filter(|o| *o != member) {
                s.rules.entry((member, other)).or_default().cut = true;
                s.rules.entry((other, member)).or_default().cut = true;
            }
        });
    }

    /// Delays every link by `delay`.
    pub fn delay_all(&self, delay: Duration) {
        self.update(|s| {
            for a in 0..s.members {
                for b in (0..s.members).filter(|b| *b != a) {
                    s.rules.entry((a, b)).or_default().delay = delay;
                }
            }
        });
    }

    /// Every link back to normal.
    pub fn heal(&self) {
        self.update(|s| s.rules.clear());
    }

    fn rule(&self, from: Option<usize>, to: usize) -> Rule {
        let s = self.state.lock().expect("network lock");
        match from {
            Some(f) => s.rules.get(&(f, to)).copied().unwrap_or_default(),
            None => {
                let cut_off = (0..s.members)
                    .filter(|o| *o != to)
                    .all(|o| s.rules.get(&(o, to)).is_some_and(|r| r.cut));
                Rule {
                    cut: cut_off,
                    ..Rule::default()
                }
            }
        }
    }

    fn pids(&self) -> Vec<Option<u32>> {
        self.state.lock().expect("network lock").pids.clone()
    }

    /// Accepts peer connections for `member` on `listener` and forwards them to `upstream`
    /// (the member's real peer listener) under the link rules. Runs until aborted.
    pub fn serve(
        self: &Arc<Self>,
        listener: TcpListener,
        member: usize,
        upstream: SocketAddr,
    ) -> JoinHandle<()> {
        let net = Arc::clone(self);
        tokio::spawn(async move {
            let local_port = listener.local_addr().expect("proxy addr").port();
            loop {
                let Ok((inbound, peer)) = listener.accept().await else {
                    continue;
                };
                let net = Arc::clone(&net);
                tokio::spawn(async move {
                    let from = source_member(&net.pids(), peer, local_port);
                    let Ok(outbound) = TcpStream::connect(upstream).await else {
                        return; // member down: the caller sees the connection close
                    };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let (in_r, in_w) = inbound.into_split();
                    let (out_r, out_w) = outbound.into_split();
                    let there = pump(in_r, out_w, Arc::clone(&net), from, Some(member));
                    let back = pump(out_r, in_w, Arc::clone(&net), Some(member), from);
                    // Either direction ending (EOF, reset) ends the connection.
                    tokio::select! {
                        () = there => {}
                        () = back => {}
                    }
                });
            }
        })
    }
}

/// Copies `from_sock` → `to_sock`, applying the rule of link `src → dst` to every chunk.
/// A reply direction towards an unidentified source (`dst == None`) follows the forward rule.
async fn pump(
    mut from_sock: OwnedReadHalf,
    mut to_sock: OwnedWriteHalf,
    net: Arc<Network>,
    src: Option<usize>,
    dst: Option<usize>,
) {
    let mut changes = net.changed.subscribe();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from_sock.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        loop {
            // Mark the current table as seen *before* reading it, so no change is missed.
            changes.borrow_and_update();
            let rule = match (src, dst) {
                (_, Some(d)) => net.rule(src, d),
                (Some(s), None) => net.rule(None, s),
                (None, None) => Rule::default(),
            };
            if rule.lose {
                return; // the chunk is lost; returning closes the connection both ways
            }
            if !rule.cut {
                if !rule.delay.is_zero() {
                    tokio::time::sleep(rule.delay).await;
                }
                break;
            }
            if changes.changed().await.is_err() {
                return;
            }
        }
        if to_sock.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Which member (by index in `pids`) owns the socket connected from `peer` to our `local_port`.
/// Linux only: finds the socket's inode in `/proc/net/tcp`, then the process holding it.
fn source_member(pids: &[Option<u32>], peer: SocketAddr, local_port: u16) -> Option<usize> {
    let SocketAddr::V4(peer) = peer else {
        return None;
    };
    let want_local = format!(
        "{:08X}:{:04X}",
        u32::from_le_bytes(peer.ip().octets()),
        peer.port()
    );
    let want_remote_port = format!(":{local_port:04X}");
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let inode = table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.len() > 9 && f[1] == want_local && f[2].ends_with(&want_remote_port))
            .then(|| f[9].to_string())
    })?;
    let link = format!("socket:[{inode}]");
    pids.iter().enumerate().find_map(|(i, pid)| {
        let pid = (*pid)?;
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
        fds.flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t.as_os_str() == link.as_str()))
            .then_some(i)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The proxy tells connections apart by the process that opened them, stalls a cut link
    /// without losing bytes, and delivers the held bytes once healed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cut_link_stalls_and_a_healed_link_delivers_in_order() {
        // "Member 1" is an echo server; "member 0" is this very process.
        let echo = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let echo_addr = echo.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.into_split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        let net = Network::new(2);
        net.set_pid(0, Some(std::process::id()));
        let front = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let front_addr = front.local_addr().expect("addr");
        let _proxy = net.serve(front, 1, echo_addr);

        let mut c = TcpStream::connect(front_addr).await.expect("connect");
        let mut got = [0u8; 3];
        c.write_all(b"one").await.expect("write");
        c.read_exact(&mut got).await.expect("echo");
        assert_eq!(&got, b"one");

        net.set_cut(0, 1, true);
        c.write_all(b"two").await.expect("write");
        let stalled =
            tokio::time::timeout(Duration::from_millis(300), c.read_exact(&mut got)).await;
        assert!(stalled.is_err(), "bytes crossed a cut link");

        net.heal();
        tokio::time::timeout(Duration::from_secs(10), c.read_exact(&mut got))
            .await
            .expect("delivered after heal")
            .expect("read");
        assert_eq!(&got, b"two");
    }

    /// A lossy link discards what crosses it and resets the connection, even one opened from
    /// the other side; a new connection works again once healed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lossy_link_resets_the_connection_carrying_its_bytes() {
        let echo = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let echo_addr = echo.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.into_split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        let net = Network::new(2);
        net.set_pid(0, Some(std::process::id()));
        let front = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let front_addr = front.local_addr().expect("addr");
        let _proxy = net.serve(front, 1, echo_addr);

        // Member 1's replies to member 0 are lost: the request arrives, the echo does not,
        // and the connection is closed.
        net.set_lost(1, 0, true);
        let mut c = TcpStream::connect(front_addr).await.expect("connect");
        c.write_all(b"one").await.expect("write");
        let mut got = [0u8; 3];
        let read = tokio::time::timeout(Duration::from_secs(10), c.read(&mut got))
            .await
            .expect("the connection is closed, not stalled");
        assert!(
            matches!(read, Ok(0) | Err(_)),
            "a lost reply arrived: {read:?}"
        );

        net.heal();
        let mut c = TcpStream::connect(front_addr).await.expect("connect");
        c.write_all(b"two").await.expect("write");
        tokio::time::timeout(Duration::from_secs(10), c.read_exact(&mut got))
            .await
            .expect("delivered after heal")
            .expect("read");
        assert_eq!(&got, b"two");
    }

    #[test]
    fn an_unknown_source_is_stalled_only_when_the_destination_is_isolated() {
        let net = Network::new(3);
        net.set_cut(0, 1, true);
        assert!(!net.rule(None, 1).cut);
        net.isolate(1);
        assert!(net.rule(None, 1).cut);
        assert!(!net.rule(None, 2).cut);
        assert!(net.rule(Some(2), 1).cut);
        assert!(!net.rule(Some(2), 0).cut);
    }
}
