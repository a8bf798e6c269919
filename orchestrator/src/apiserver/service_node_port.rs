//! Service node ports, allocated from `--service-node-port-range` (default 30000-32767) the way
//! cluster IPs are (`service_ip.rs`): every port a Service holds — each `spec.ports[].nodePort`
//! of a NodePort or LoadBalancer Service, and the `spec.healthCheckNodePort` of a LoadBalancer
//! with `externalTrafficPolicy: Local` — is a record at `<prefix>/servicenodeports/<port>`
//! naming the Service, created in the same etcd Txn as the Service (guarded on the key being
//! absent, so two Services never get one port) and deleted in the same Txn as the Service, or
//! as the update that lets the port go.
//!
//! Kubernetes' rules (the Service REST storage's allocators): a port asked for is taken if it is
//! in the range and free, else 422 (`provided port is already allocated`, `provided port is not
//! in the valid range. The range of valid ports is 30000-32767`); a port left out is picked at
//! random, from the upper band of the range first (the lower band, Kubernetes' static subrange,
//! is kept for ports asked for); ports with the same `port` number share one node port; an update
//! that leaves a node port out keeps the one its port (by name) had; a change to ClusterIP or
//! ExternalName that leaves the node ports as they were drops and releases them; a LoadBalancer
//! with `allocateLoadBalancerNodePorts: false` gets only the ports it asks for.

use std::collections::{BTreeSet, HashSet};

use serde_json::{json, Value};

use super::service_ip::{self, Plan};
use super::status::{ApiError, Cause};
use super::storage::{Guard, SideOp};

/// An inclusive range of ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodePortRange {
    first: u16,
    last: u16,
}

impl NodePortRange {
    /// Parses `a-b`, `a+n` (a to a+n) or a single port, as Kubernetes' `ParsePortRange` does.
    pub fn parse(text: &str) -> Result<NodePortRange, String> {
        let port = |s: &str| -> Result<u16, String> {
            s.trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("{text:?}: {s:?} is not a port number (1-65535)"))
        };
        let (first, last) = if let Some((a, b)) = text.split_once('-') {
            (port(a)?, port(b)?)
        } else if let Some((a, n)) = text.split_once('+') {
            let a = port(a)?;
            let n: u16 = n
                .trim()
                .parse()
                .map_err(|_| format!("{text:?}: {n:?} is not a port count"))?;
            (
                a,
                a.checked_add(n)
                    .ok_or_else(|| format!("{text:?} goes past port 65535"))?,
            )
        } else {
            let p = port(text)?;
            (p, p)
        };
        if last < first {
            return Err(format!("{text:?}: the range ends before it starts"));
        }
        Ok(NodePortRange { first, last })
    }

    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }

    fn size(&self) -> u32 {
        u32::from(self.last - self.first) + 1
    }

    /// A free port, or None when the range is full. `random` seeds the starting point.
    pub fn pick(&self, used: &HashSet<u16>, random: u64) -> Option<u16> {
        // Kubernetes' static subrange: min(max(16, size/32), 128) ports at the bottom are
        // handed out only when the rest is full.
        let size = self.size();
        let band = (size / 32).clamp(16, 128).min(size);
        let scan = |from: u32, to: u32| -> Option<u16> {
            if to < from {
                return None;
            }
            let span = u64::from(to - from + 1);
            let start = random % span;
            (0..span).find_map(|i| {
                let port = (u32::from(self.first) + from + ((start + i) % span) as u32) as u16;
                (!used.contains(&port)).then_some(port)
            })
        };
        scan(band, size - 1).or_else(|| scan(0, band.saturating_sub(1)))
    }
}

impl std::fmt::Display for NodePortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// `<prefix>/servicenodeports/`: where the port records live.
pub fn reservations_prefix(prefix: &str) -> Vec<u8> {
    format!("{prefix}/servicenodeports/").into_bytes()
}

pub fn reservation_key(prefix: &str, port: u16) -> Vec<u8> {
    format!("{prefix}/servicenodeports/{port}").into_bytes()
}

fn service_type(svc: &Value) -> &str {
    svc.pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
}

/// NodePort and LoadBalancer Services may hold node ports.
fn needs_node_ports(svc: &Value) -> bool {
    matches!(service_type(svc), "NodePort" | "LoadBalancer")
}

/// Whether ports left out get one picked.
fn allocates_node_ports(svc: &Value) -> bool {
    match service_type(svc) {
        "NodePort" => true,
        "LoadBalancer" => {
            svc.pointer("/spec/allocateLoadBalancerNodePorts")
                .and_then(Value::as_bool)
                != Some(false)
        }
        _ => false,
    }
}

/// A LoadBalancer that keeps traffic on the node needs a health-check port.
fn needs_health_check_port(svc: &Value) -> bool {
    service_type(svc) == "LoadBalancer"
        && svc
            .pointer("/spec/externalTrafficPolicy")
            .and_then(Value::as_str)
            == Some("Local")
}

fn port_number(v: Option<&Value>) -> Option<u16> {
    v.and_then(Value::as_u64)
        .filter(|p| *p > 0)
        .and_then(|p| u16::try_from(p).ok())
}

fn ports(svc: &Value) -> &[Value] {
    svc.pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn health_check_port(svc: &Value) -> Option<u16> {
    port_number(svc.pointer("/spec/healthCheckNodePort"))
}

/// Every node port `svc` holds (service ports and the health-check port).
pub fn held(svc: &Value) -> BTreeSet<u16> {
    ports(svc)
        .iter()
        .filter_map(|p| port_number(p.get("nodePort")))
        .chain(health_check_port(svc))
        .collect()
}

fn invalid(name: &str, field: String, reason: &'static str, message: String) -> ApiError {
    ApiError::Invalid {
        kind: "Service".into(),
        name: name.into(),
        causes: vec![Cause {
            reason,
            field,
            message,
        }],
    }
}

fn already_allocated(name: &str, field: String, port: u16, health_check: bool) -> ApiError {
    let why = "provided port is already allocated";
    let message = if health_check {
        format!("Invalid value: {port}: failed to allocate requested HealthCheck NodePort {port}: {why}")
    } else {
        format!("Invalid value: {port}: {why}")
    };
    invalid(name, field, "FieldValueInvalid", message)
}

/// The Service strategy's `patchAllocatedValues` and `dropTypeDependentFields` for node ports:
/// an update that leaves a port's node port out keeps the one that port (by name) had, unless
/// another port now uses it; a change to a type without node ports that left them (and
/// `externalTrafficPolicy`, `allocateLoadBalancerNodePorts`) as they were drops them; the same
/// for the health-check port.
fn carry_over(old: &Value, new: &mut Value) {
    if needs_node_ports(old) && needs_node_ports(new) {
        let in_new: HashSet<u16> = ports(new)
            .iter()
            .filter_map(|p| port_number(p.get("nodePort")))
            .collect();
        let by_name: Vec<(Value, u16)> = ports(old)
            .iter()
            .filter_map(|p| {
                Some((
                    p.get("name").cloned().unwrap_or(json!("")),
                    port_number(p.get("nodePort"))?,
                ))
            })
            .collect();
        if let Some(list) = new.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
            for p in list.iter_mut() {
                if port_number(p.get("nodePort")).is_some() {
                    continue;
                }
                let name = p.get("name").cloned().unwrap_or(json!(""));
                if let Some((_, np)) = by_name.iter().find(|(n, _)| *n == name) {
                    if !in_new.contains(np) {
                        p["nodePort"] = json!(np);
                    }
                }
            }
        }
    }
    if needs_node_ports(old) && !needs_node_ports(new) {
        let same = ports(old)
            .iter()
            .map(|p| port_number(p.get("nodePort")))
            .eq(ports(new).iter().map(|p| port_number(p.get("nodePort"))));
        if same {
            if let Some(list) = new.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
                for p in list.iter_mut().filter_map(Value::as_object_mut) {
                    p.remove("nodePort");
                }
            }
        }
    }
    // The other fields only externally reachable Services have, when left as they were.
    let spec_field = |svc: &Value, f: &str| svc.pointer(&format!("/spec/{f}")).cloned();
    if needs_node_ports(old)
        && !needs_node_ports(new)
        && spec_field(old, "externalTrafficPolicy") == spec_field(new, "externalTrafficPolicy")
    {
        if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
            spec.remove("externalTrafficPolicy");
        }
    }
    if service_type(old) == "LoadBalancer"
        && service_type(new) != "LoadBalancer"
        && spec_field(old, "allocateLoadBalancerNodePorts")
            == spec_field(new, "allocateLoadBalancerNodePorts")
    {
        if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
            spec.remove("allocateLoadBalancerNodePorts");
        }
    }
    let (old_hc, new_hc) = (health_check_port(old), health_check_port(new));
    if needs_health_check_port(old) && needs_health_check_port(new) && new_hc.is_none() {
        if let (Some(hc), Some(spec)) = (old_hc, new.get_mut("spec")) {
            spec["healthCheckNodePort"] = json!(hc);
        }
    }
    if needs_health_check_port(old) && !needs_health_check_port(new) && old_hc == new_hc {
        if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
            spec.remove("healthCheckNodePort");
        }
    }
}

/// Unset node ports are written as absent (Go's `omitempty` on a zero int32).
fn drop_zero_ports(svc: &mut Value) {
    if let Some(list) = svc.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
        for p in list.iter_mut().filter_map(Value::as_object_mut) {
            if p.get("nodePort")
                .is_some_and(|v| port_number(Some(v)).is_none())
            {
                p.remove("nodePort");
            }
        }
    }
    if let Some(spec) = svc.get_mut("spec").and_then(Value::as_object_mut) {
        if spec
            .get("healthCheckNodePort")
            .is_some_and(|v| port_number(Some(v)).is_none())
        {
            spec.remove("healthCheckNodePort");
        }
    }
}

/// Everything a node-port allocation needs to know.
pub struct Allocator<'a> {
    pub range: &'a NodePortRange,
    pub prefix: &'a str,
    /// Ports already taken (the record keys), read before the write.
    pub used: &'a HashSet<u16>,
    pub random: u64,
}

impl Allocator<'_> {
    /// Fills the node ports of a Service being created (`old` None) or updated, and plans the
    /// records taken and released.
    pub fn plan(&self, name: &str, old: Option<&Value>, svc: &mut Value) -> Result<Plan, ApiError> {
        drop_zero_ports(svc);
        if let Some(old) = old {
            carry_over(old, svc);
        }
        let owner = json!({
            "namespace": svc.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or(""),
            "name": name,
        });
        let ty = service_type(svc).to_string();
        if !needs_node_ports(svc) {
            if let Some(i) = ports(svc)
                .iter()
                .position(|p| port_number(p.get("nodePort")).is_some())
            {
                return Err(invalid(
                    name,
                    format!("spec.ports[{i}].nodePort"),
                    "FieldValueForbidden",
                    format!("Forbidden: may not be used when `type` is '{ty}'"),
                ));
            }
        }
        if let Some(hc) = health_check_port(svc).filter(|_| !needs_health_check_port(svc)) {
            return Err(invalid(
                name,
                "spec.healthCheckNodePort".into(),
                "FieldValueInvalid",
                format!("Invalid value: {hc}: may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'"),
            ));
        }
        let kept: BTreeSet<u16> = old.map(held).unwrap_or_default();
        let mut plan = Plan::default();
        // Ports taken by this write, and what each service port number got.
        let mut taken: HashSet<u16> = HashSet::new();
        let mut by_port_number: Vec<(Value, u16)> = Vec::new();
        let mut unavailable: HashSet<u16> = self.used.clone();
        unavailable.extend(kept.iter().copied());
        let count = ports(svc).len();
        for i in 0..count {
            let p = &ports(svc)[i];
            let field = format!("spec.ports[{i}].nodePort");
            let number = p.get("port").cloned().unwrap_or(Value::Null);
            let port = match port_number(p.get("nodePort")) {
                Some(np) => {
                    if !kept.contains(&np) && !taken.contains(&np) {
                        self.take(&owner, name, &field, np, false, &mut plan)?;
                    }
                    np
                }
                None if !allocates_node_ports(svc) => continue,
                None => match by_port_number.iter().find(|(n, _)| *n == number) {
                    // The same port number over another protocol shares the node port.
                    Some((_, np)) => *np,
                    None => {
                        let np = self.pick(&unavailable, &taken, i as u64).ok_or_else(|| {
                            ApiError::Internal(
                                "failed to allocate a nodePort: range is full".into(),
                            )
                        })?;
                        self.record(&owner, np, None, &mut plan);
                        np
                    }
                },
            };
            taken.insert(port);
            by_port_number.push((number, port));
            svc["spec"]["ports"][i]["nodePort"] = json!(port);
        }
        if needs_health_check_port(svc) {
            let field = "spec.healthCheckNodePort".to_string();
            match health_check_port(svc) {
                Some(hc) if kept.contains(&hc) || taken.contains(&hc) => {}
                Some(hc) => self.take(&owner, name, &field, hc, true, &mut plan)?,
                None => {
                    let hc = self
                        .pick(&unavailable, &taken, count as u64)
                        .ok_or_else(|| {
                            ApiError::Internal(
                                "failed to allocate a HealthCheck NodePort 0: range is full".into(),
                            )
                        })?;
                    self.record(&owner, hc, None, &mut plan);
                    svc["spec"]["healthCheckNodePort"] = json!(hc);
                }
            }
        }
        let now = held(svc);
        for gone in kept.difference(&now) {
            plan.side
                .push(SideOp::Delete(reservation_key(self.prefix, *gone)));
        }
        Ok(plan)
    }

    fn pick(&self, unavailable: &HashSet<u16>, taken: &HashSet<u16>, salt: u64) -> Option<u16> {
        if taken.is_empty() {
            return self.range.pick(unavailable, self.random.wrapping_add(salt));
        }
        let mut all = unavailable.clone();
        all.extend(taken.iter().copied());
        self.range.pick(&all, self.random.wrapping_add(salt))
    }

    /// A port asked for: checked against the range and the ports in use, then recorded.
    #[allow(clippy::too_many_arguments)]
    fn take(
        &self,
        owner: &Value,
        name: &str,
        field: &str,
        port: u16,
        health_check: bool,
        plan: &mut Plan,
    ) -> Result<(), ApiError> {
        if !self.range.contains(port) {
            let why = format!(
                "provided port is not in the valid range. The range of valid ports is {}",
                self.range
            );
            let message = if health_check {
                format!("Invalid value: {port}: failed to allocate requested HealthCheck NodePort {port}: {why}")
            } else {
                format!("Invalid value: {port}: {why}")
            };
            return Err(invalid(name, field.into(), "FieldValueInvalid", message));
        }
        let conflict = already_allocated(name, field.into(), port, health_check);
        if self.used.contains(&port) {
            return Err(conflict);
        }
        self.record(owner, port, Some(conflict), plan);
        Ok(())
    }

    /// Plans the record of `port` for `owner` (`conflict`: the error if it turns out taken,
    /// None when it was picked here and a lost race should pick again).
    fn record(&self, owner: &Value, port: u16, conflict: Option<ApiError>, plan: &mut Plan) {
        let key = reservation_key(self.prefix, port);
        let value = json!({"port": port, "service": owner});
        plan.guards.push(Guard::Absent(key.clone()));
        plan.conflicts.push(conflict);
        plan.side.push(SideOp::Put(
            key,
            serde_json::to_vec(&value).unwrap_or_default(),
        ));
    }
}

/// The records a deleted Service releases, in the same Txn.
pub fn on_delete(prefix: &str, svc: &Value) -> Vec<SideOp> {
    held(svc)
        .into_iter()
        .map(|p| SideOp::Delete(reservation_key(prefix, p)))
        .collect()
}

/// Merges a node-port plan into the cluster-IP plan of the same write.
pub fn merge(into: &mut service_ip::Plan, other: Plan) {
    into.guards.extend(other.guards);
    into.conflicts.extend(other.conflicts);
    into.side.extend(other.side);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range() -> NodePortRange {
        NodePortRange::parse("30000-32767").unwrap()
    }

    #[test]
    fn ranges_parse_like_kubernetes() {
        assert_eq!(range().to_string(), "30000-32767");
        assert_eq!(
            NodePortRange::parse("30000+100").unwrap().to_string(),
            "30000-30100"
        );
        assert_eq!(
            NodePortRange::parse("8080").unwrap().to_string(),
            "8080-8080"
        );
        assert!(NodePortRange::parse("32767-30000").is_err());
        assert!(NodePortRange::parse("0-10").is_err());
        assert!(NodePortRange::parse("a-b").is_err());
    }

    #[test]
    fn picks_from_the_upper_band_until_it_is_full() {
        let r = NodePortRange::parse("30000-30099").unwrap();
        let mut used = HashSet::new();
        for i in 0..100 {
            let p = r.pick(&used, i * 7919).unwrap();
            assert!(r.contains(p));
            if used.len() < 84 {
                assert!(p >= 30016, "{p} picked from the static band too early");
            }
            used.insert(p);
        }
        assert_eq!(r.pick(&used, 1), None);
    }

    fn alloc<'a>(r: &'a NodePortRange, used: &'a HashSet<u16>) -> Allocator<'a> {
        Allocator {
            range: r,
            prefix: "/registry",
            used,
            random: 42,
        }
    }

    #[test]
    fn create_asks_or_picks_and_refuses_what_it_cannot_have() {
        let r = range();
        let used: HashSet<u16> = [30080].into();
        let a = alloc(&r, &used);
        let mut svc = json!({"spec": {"type": "NodePort", "ports": [
            {"name": "http", "port": 80, "protocol": "TCP"},
            {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053},
            {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}});
        let plan = a.plan("web", None, &mut svc).unwrap();
        let picked = svc["spec"]["ports"][0]["nodePort"].as_u64().unwrap() as u16;
        assert!(r.contains(picked) && picked != 30080);
        assert_eq!(
            svc["spec"]["ports"][2]["nodePort"], 30053,
            "shared by port 53"
        );
        assert_eq!(plan.guards.len(), 2);
        assert!(
            plan.conflicts[0].is_none(),
            "the picked port may be picked again"
        );

        let mut taken =
            json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}});
        assert_eq!(
            a.plan("x", None, &mut taken).unwrap_err().to_string(),
            "Service \"x\" is invalid: spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"
        );
        let mut outside =
            json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 80}]}});
        assert_eq!(
            a.plan("x", None, &mut outside).unwrap_err().to_string(),
            "Service \"x\" is invalid: spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767"
        );
        let mut cluster_ip =
            json!({"spec": {"type": "ClusterIP", "ports": [{"port": 80, "nodePort": 30001}]}});
        assert_eq!(
            a.plan("x", None, &mut cluster_ip).unwrap_err().to_string(),
            "Service \"x\" is invalid: spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"
        );
        let mut lb = json!({"spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local",
            "ports": [{"port": 443}]}});
        let plan = a.plan("lb", None, &mut lb).unwrap();
        assert!(lb["spec"]["healthCheckNodePort"].as_u64().is_some());
        assert_eq!(plan.guards.len(), 2);
        let mut quiet = json!({"spec": {"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false,
            "ports": [{"port": 443, "nodePort": 0}]}});
        assert!(a.plan("q", None, &mut quiet).unwrap().guards.is_empty());
        assert!(quiet["spec"]["ports"][0].get("nodePort").is_none());
    }

    #[test]
    fn updates_keep_release_and_move_ports() {
        let r = range();
        let used: HashSet<u16> = [30080, 30443, 31000].into();
        let a = alloc(&r, &used);
        let old = json!({"spec": {"type": "NodePort", "ports": [
            {"name": "http", "port": 80, "nodePort": 30080},
            {"name": "https", "port": 443, "nodePort": 30443}]}});
        // Left out: kept by name; nothing new is taken.
        let mut same = json!({"spec": {"type": "NodePort", "ports": [
            {"name": "https", "port": 443}, {"name": "http", "port": 80}]}});
        let plan = a.plan("web", Some(&old), &mut same).unwrap();
        assert_eq!(same["spec"]["ports"][0]["nodePort"], 30443);
        assert_eq!(same["spec"]["ports"][1]["nodePort"], 30080);
        assert!(plan.guards.is_empty() && plan.side.is_empty());
        // One port dropped: its record goes.
        let mut fewer =
            json!({"spec": {"type": "NodePort", "ports": [{"name": "http", "port": 80}]}});
        let plan = a.plan("web", Some(&old), &mut fewer).unwrap();
        assert!(
            matches!(&plan.side[..], [SideOp::Delete(k)] if *k == reservation_key("/registry", 30443))
        );
        // Moved to a port someone else holds: refused.
        let mut moved = json!({"spec": {"type": "NodePort", "ports": [{"name": "http", "port": 80, "nodePort": 31000}]}});
        assert_eq!(
            a.plan("web", Some(&old), &mut moved).unwrap_err().code(),
            422
        );
        // Back to ClusterIP with the ports as they were: dropped and released.
        let mut back = old.clone();
        back["spec"]["type"] = json!("ClusterIP");
        let plan = a.plan("web", Some(&old), &mut back).unwrap();
        assert!(back["spec"]["ports"][0].get("nodePort").is_none());
        assert_eq!(plan.side.len(), 2);
        assert_eq!(on_delete("/registry", &old).len(), 2);
    }
}
