//! Operator flows with the real `etcdctl` on a 3-member cluster, side by side: the same
//! commands against cairn-store and etcd 3.4, their output compared once ids, ports, versions,
//! sizes and timings are masked — `member list/add/promote/remove` of a learner,
//! `move-leader`, `alarm list`, `defrag` and `endpoint status/health/hashkv`.
//!
//! Endpoints are written `host:port`, except for the `--cluster` steps, which dial the
//! members' advertised URLs (with their scheme, sent by etcdctl 3.4 as the HTTP/2
//! `:authority`; docs/compatibility.md).

use std::time::{Duration, Instant};

use crate::cluster::{Cluster, Kind};
use crate::etcdctl::etcdctl;
use crate::harness::have;

/// Runs etcdctl off the runtime threads (in-process members keep serving meanwhile).
pub(crate) async fn ctl(endpoints: &str, args: &[&str]) -> (bool, String) {
    let endpoints = endpoints.to_string();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        etcdctl(&endpoints, &args)
    })
    .await
    .expect("etcdctl task")
}

/// What a command printed, for comparison: its output with ids and endpoints masked, or for a
/// failure the `Error:` line etcdctl ends with (the log lines before it carry timestamps).
pub(crate) fn shown((ok, text): &(bool, String)) -> String {
    if *ok {
        mask(text)
    } else {
        let error = text
            .lines()
            .rev()
            .find(|l| l.starts_with("Error:"))
            .unwrap_or(text);
        format!("FAILED {}", mask(error))
    }
}

/// Masks what differs between two clusters doing the same thing: `127.0.0.1:<port>` becomes
/// `<EP>`, member and cluster ids (hex, or decimal in alarm lines) `<ID>`, and health-check
/// timings `<T>`.
pub(crate) fn mask(text: &str) -> String {
    const HOST: &str = "127.0.0.1:";
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(HOST) {
        out.push_str(&rest[..at]);
        out.push_str("<EP>");
        rest = rest[at + HOST.len()..].trim_start_matches(|c: char| c.is_ascii_digit());
    }
    out.push_str(rest);
    let mut masked = String::new();
    let mut word = String::new();
    let flush = |word: &mut String, masked: &mut String| {
        let is_id = word.len() >= 12 && word.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f'));
        masked.push_str(if is_id { "<ID>" } else { word });
        word.clear();
    };
    for c in out.chars() {
        if c.is_ascii_alphanumeric() {
            word.push(c);
        } else {
            flush(&mut word, &mut masked);
            masked.push(c);
        }
    }
    flush(&mut word, &mut masked);
    // etcdctl pads ids to 16 columns (`%16x`); ids of fewer digits leave extra spaces.
    while masked.contains("  <ID>") {
        masked = masked.replace("  <ID>", " <ID>");
    }
    masked
        .lines()
        .map(|l| match l.find("took = ") {
            Some(at) => format!("{}took = <T>", &l[..at]),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The lines of `text`, sorted: members and endpoints are listed in id or arrival order,
/// which differs between two clusters.
fn sorted(text: String) -> String {
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    lines.join("\n")
}

/// One line of `endpoint status`: endpoint, id, version, size, leader, learner, term, index,
/// applied index, errors.
struct StatusLine {
    id: String,
    leader: bool,
    learner: bool,
    errors: String,
}

fn status_lines(text: &str) -> Vec<StatusLine> {
    text.lines()
        .map(|l| {
            let cols: Vec<&str> = l.split(", ").collect();
            assert_eq!(cols.len(), 10, "endpoint status columns: {l}");
            StatusLine {
                id: cols[1].to_string(),
                leader: cols[4] == "true",
                learner: cols[5] == "true",
                errors: cols[9].trim().to_string(),
            }
        })
        .collect()
}

/// The comparable part of `endpoint status`: who leads, who learns, errors.
fn status_summary(text: &str) -> String {
    let mut lines: Vec<String> = status_lines(text)
        .iter()
        .map(|s| {
            format!(
                "leader={} learner={} errors={:?}",
                s.leader,
                s.learner,
                mask(&s.errors)
            )
        })
        .collect();
    lines.sort();
    lines.join("\n")
}

/// Retries `args` until `done` holds for its output, for at most 15 s.
async fn ctl_until(
    endpoints: &str,
    args: &[&str],
    done: impl Fn(&(bool, String)) -> bool,
) -> (bool, String) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = ctl(endpoints, args).await;
        if done(&out) || Instant::now() > deadline {
            return out;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The flow an operator runs on a healthy 3-member cluster, then through a learner's life.
/// Returns (step, what it showed) with everything cluster-specific masked; checks on the way
/// what must hold on any cluster.
async fn operator_flow(c: &mut Cluster) -> Vec<(&'static str, String)> {
    let mut shown_steps = Vec::new();
    let eps = c.endpoints();
    let mut step = |name: &'static str, text: String| shown_steps.push((name, text));

    step(
        "member list",
        sorted(shown(&ctl(&eps, &["member", "list"]).await)),
    );
    for (k, v) in [("k1", "a"), ("k2", "b"), ("k1", "c")] {
        assert!(ctl(&eps, &["put", k, v]).await.0);
    }
    // The same writes give the same HashKV on every member, and the same as etcd's.
    step(
        "endpoint hashkv",
        sorted(shown(&ctl(&eps, &["endpoint", "hashkv"]).await)),
    );
    step(
        "endpoint health",
        sorted(shown(&ctl(&eps, &["endpoint", "health"]).await)),
    );
    let (ok, status) = ctl(&eps, &["endpoint", "status"]).await;
    assert!(ok, "{status}");
    step("endpoint status", status_summary(&status));
    step("alarm list", shown(&ctl(&eps, &["alarm", "list"]).await));
    step("defrag", sorted(shown(&ctl(&eps, &["defrag"]).await)));
    let first = eps.split(',').next().expect("an endpoint").to_string();
    step(
        "defrag --cluster",
        sorted(shown(&ctl(&first, &["defrag", "--cluster"]).await)),
    );
    let (ok, status) = ctl(&first, &["endpoint", "status", "--cluster"]).await;
    assert!(ok, "{status}");
    step("endpoint status --cluster", status_summary(&status));

    // Leadership to a follower, then to a member that does not exist.
    let target = status_lines(&status)
        .into_iter()
        .find(|s| !s.leader)
        .expect("a follower")
        .id;
    step(
        "move-leader",
        shown(&ctl(&eps, &["move-leader", &target]).await),
    );
    let (_, status) = ctl(&eps, &["endpoint", "status"]).await;
    let leader = status_lines(&status).into_iter().find(|s| s.leader);
    assert_eq!(leader.map(|s| s.id), Some(target.clone()), "{status}");
    step(
        "move-leader to no member",
        shown(&ctl(&eps, &["move-leader", "1234"]).await),
    );

    // A learner joins, cannot lead, is promoted once in sync, and is removed.
    let peer = c.reserve("m4").peer_url.clone();
    // etcd refuses changes until its members have been connected for 5 s ("unhealthy
    // cluster"), which a just-started cluster may not have been yet.
    let added = ctl_until(
        &eps,
        &["member", "add", "m4", "--learner", "--peer-urls", &peer],
        |(ok, text)| *ok || !text.contains("unhealthy cluster"),
    )
    .await;
    let added = shown(&added);
    let added = added
        .lines()
        .map(|l| match l.strip_prefix("ETCD_INITIAL_CLUSTER=") {
            Some(list) => {
                let mut members: Vec<&str> = list.trim_matches('"').split(',').collect();
                members.sort_unstable();
                format!("ETCD_INITIAL_CLUSTER=(sorted) {}", members.join(","))
            }
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    step("member add --learner", added);
    let (_, list) = ctl(&eps, &["member", "list"]).await;
    step("member list with the learner", sorted(mask(&list)));
    let learner = list
        .lines()
        .find(|l| l.contains("unstarted"))
        .and_then(|l| l.split(", ").next())
        .expect("the learner is listed")
        .to_string();
    step(
        "member promote before it started",
        shown(&ctl(&eps, &["member", "promote", &learner]).await),
    );
    c.join("m4").await;
    let all = c.endpoints();
    let started = ctl_until(&eps, &["member", "list"], |(_, t)| !t.contains("unstarted")).await;
    step("member list, learner started", sorted(shown(&started)));
    let (_, status) = ctl(&all, &["endpoint", "status"]).await;
    step("endpoint status with the learner", status_summary(&status));
    step(
        "move-leader to the learner",
        shown(&ctl(&eps, &["move-leader", &learner]).await),
    );
    let promoted = ctl_until(&eps, &["member", "promote", &learner], |(ok, _)| *ok).await;
    step("member promote", shown(&promoted));
    step(
        "member list after promote",
        sorted(shown(&ctl(&eps, &["member", "list"]).await)),
    );
    step(
        "member remove",
        shown(&ctl(&eps, &["member", "remove", &learner]).await),
    );
    c.stop("m4");
    step(
        "member list after remove",
        sorted(shown(&ctl(&eps, &["member", "list"]).await)),
    );
    step(
        "member remove again",
        shown(&ctl(&eps, &["member", "remove", &learner]).await),
    );
    shown_steps
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_cluster_operations_side_by_side() {
    if !have("etcd") || !have("etcdctl") {
        return;
    }
    let (mut etcd, mut cairn) = tokio::join!(
        Cluster::start(Kind::Etcd, 3),
        Cluster::start(Kind::Cairn, 3)
    );
    let (want, got) = tokio::join!(operator_flow(&mut etcd), operator_flow(&mut cairn));
    assert_eq!(want.len(), got.len());
    for ((step, etcd_shows), (_, cairn_shows)) in want.iter().zip(&got) {
        eprintln!("--- etcdctl {step}\n{etcd_shows}");
        assert_eq!(
            cairn_shows, etcd_shows,
            "`etcdctl {step}`: cairn-store (left) vs etcd (right)"
        );
    }
    // A sanity check of the masking: the learner's lines are the ones expected.
    let find = |step: &str| &want.iter().find(|(s, _)| *s == step).expect("step").1;
    assert!(
        find("member list with the learner").contains("<ID>, unstarted, , http://<EP>, , true"),
        "{}",
        find("member list with the learner")
    );
    assert_eq!(
        find("member promote"),
        "Member <ID> promoted in cluster <ID>"
    );
    assert_eq!(
        find("move-leader to the learner"),
        "FAILED Error: etcdserver: bad leader transferee"
    );
}
