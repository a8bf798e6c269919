//! Service cluster IPs, allocated from `--service-cluster-ip-range` as Kubernetes' IPAddress
//! allocator does (MultiCIDRServiceAllocator, GA in 1.33): every allocated IP is an IPAddress
//! object at `<prefix>/ipaddresses/<ip>` naming its Service, created in the same etcd Txn as the
//! Service (guarded on the key being absent, so two Services never get one IP) and deleted in
//! the same Txn as the Service. IPv4 only.
//!
//! Dynamic allocation picks a random free address from the upper band of the range and falls
//! back to the lower band, which is kept for clients that ask for a specific IP (Kubernetes'
//! band offset: min(max(16, size/16), 256)). The network address, the broadcast address and the
//! first address (the `default/kubernetes` Service's in every cluster) are never handed out,
//! and only that Service may ask for the first address.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use serde_json::{json, Value};

use super::status::{ApiError, Cause};
use super::storage::{Guard, SideOp};

/// An IPv4 service range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceCidr {
    network: u32,
    prefix_len: u8,
}

impl ServiceCidr {
    /// Parses `a.b.c.d/n`; ranges smaller than /30 hold no usable address and are refused.
    pub fn parse(text: &str) -> Result<ServiceCidr, String> {
        let (ip, len) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?} is not a CIDR (a.b.c.d/n)"))?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| {
            if ip.contains(':') {
                format!("{text:?}: IPv6 service ranges are not supported yet")
            } else {
                format!("{text:?}: {ip:?} is not an IPv4 address")
            }
        })?;
        let prefix_len: u8 = len
            .parse()
            .ok()
            .filter(|l| *l <= 30)
            .ok_or_else(|| format!("{text:?}: the prefix length must be at most 30"))?;
        let mask = if prefix_len == 0 {
            0
        } else {
            u32::MAX << (32 - prefix_len)
        };
        Ok(ServiceCidr {
            network: u32::from(ip) & mask,
            prefix_len,
        })
    }

    fn size(&self) -> u64 {
        1u64 << (32 - self.prefix_len)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u64::from(u32::from(ip).wrapping_sub(self.network)) < self.size()
            && u32::from(ip) >= self.network
    }

    /// The first address after the network address, kept for the `kubernetes` Service.
    pub fn first(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network + 1)
    }

    /// A free address, or None when the range is full. `random` seeds the starting point.
    pub fn pick(&self, used: &HashSet<Ipv4Addr>, random: u64) -> Option<Ipv4Addr> {
        // Offsets 2 ..= size-2: skip network, the kubernetes Service's address and broadcast.
        let size = self.size();
        let (lo, hi) = (2u64, size - 2);
        if hi < lo {
            return None;
        }
        let band = (size / 16).clamp(16, 256).min(hi);
        let free = |offset: u64| {
            let ip = Ipv4Addr::from(self.network + offset as u32);
            (!used.contains(&ip)).then_some(ip)
        };
        let scan = |from: u64, to: u64| {
            if to < from {
                return None;
            }
            let span = to - from + 1;
            let start = random % span;
            (0..span).find_map(|i| free(from + (start + i) % span))
        };
        scan(band + 1, hi).or_else(|| scan(lo, band.min(hi)))
    }
}

impl std::fmt::Display for ServiceCidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.network), self.prefix_len)
    }
}

/// `<prefix>/ipaddresses/` : where IPAddress objects live.
pub fn reservations_prefix(prefix: &str) -> Vec<u8> {
    format!("{prefix}/ipaddresses/").into_bytes()
}

pub fn reservation_key(prefix: &str, ip: Ipv4Addr) -> Vec<u8> {
    format!("{prefix}/ipaddresses/{ip}").into_bytes()
}

/// The networking.k8s.io/v1 IPAddress object recording that `ip` belongs to a Service.
fn ip_address_object(ip: Ipv4Addr, namespace: &str, service: &str, uid: &str, now: &str) -> Value {
    json!({
        "kind": "IPAddress",
        "apiVersion": "networking.k8s.io/v1",
        "metadata": {
            "name": ip.to_string(),
            "uid": uid,
            "creationTimestamp": now,
            "labels": {
                "ipaddress.kubernetes.io/ip-family": "IPv4",
                "ipaddress.kubernetes.io/managed-by": "ipallocator.k8s.io",
            },
        },
        "spec": {"parentRef": {"group": "", "resource": "services", "namespace": namespace, "name": service}},
    })
}

/// Whether a Service of this shape gets a cluster IP.
fn wants_ip(svc: &Value) -> bool {
    svc.pointer("/spec/type").and_then(Value::as_str) != Some("ExternalName")
        && svc.pointer("/spec/clusterIP").and_then(Value::as_str) != Some("None")
}

fn invalid(name: &str, field: &str, message: String) -> ApiError {
    ApiError::Invalid {
        kind: "Service".into(),
        name: name.into(),
        causes: vec![Cause {
            reason: "FieldValueInvalid",
            field: field.into(),
            message,
        }],
    }
}

/// The IP a Service asks for, if any, checked against the range.
fn requested(cidr: &ServiceCidr, name: &str, svc: &Value) -> Result<Option<Ipv4Addr>, ApiError> {
    let ip = svc
        .pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .or_else(|| {
            svc.pointer("/spec/clusterIPs/0")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        });
    let Some(text) = ip else { return Ok(None) };
    let ip: Ipv4Addr = text.parse().map_err(|_| {
        invalid(
            name,
            "spec.clusterIPs[0]",
            format!("Invalid value: {text:?}: must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"),
        )
    })?;
    if !cidr.contains(ip) {
        return Err(invalid(
            name,
            "spec.clusterIPs",
            format!("Invalid value: []string{{\"{ip}\"}}: failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. The range of valid IPs is {cidr}"),
        ));
    }
    Ok(Some(ip))
}

/// The error for an IP someone else holds.
pub fn already_allocated(name: &str, ip: Ipv4Addr) -> ApiError {
    invalid(
        name,
        "spec.clusterIPs",
        format!("Invalid value: []string{{\"{ip}\"}}: failed to allocate IP {ip}: provided IP is already allocated"),
    )
}

fn set_ip_fields(svc: &mut Value, ip: &str) {
    if let Some(spec) = svc.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("clusterIP".into(), json!(ip));
        spec.insert("clusterIPs".into(), json!([ip]));
        spec.entry("ipFamilies").or_insert(json!(["IPv4"]));
        spec.entry("ipFamilyPolicy").or_insert(json!("SingleStack"));
    }
}

fn clear_ip_fields(svc: &mut Value) {
    if let Some(spec) = svc.get_mut("spec").and_then(Value::as_object_mut) {
        for f in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
            spec.remove(f);
        }
    }
}

/// What a write of a Service must do about its cluster IP (and node ports, merged in by
/// `service_node_port`).
#[derive(Debug, Default)]
pub struct Plan {
    pub guards: Vec<Guard>,
    pub side: Vec<SideOp>,
    /// The IP was picked here (not asked for): a lost race may retry with another.
    pub picked: Option<Ipv4Addr>,
    /// One per guard: the error to answer when that guard fails because the value was asked
    /// for and someone holds it; None when the value was picked here, so a lost race retries.
    pub conflicts: Vec<Option<ApiError>>,
}

/// Everything an allocation needs to know.
pub struct Allocator<'a> {
    pub cidr: &'a ServiceCidr,
    pub prefix: &'a str,
    /// Addresses already taken (the IPAddress keys), read before the write.
    pub used: &'a HashSet<Ipv4Addr>,
    pub random: u64,
    pub uid: &'a str,
    pub now: &'a str,
}

impl Allocator<'_> {
    fn take(&self, svc: &mut Value, ip: Ipv4Addr, picked: bool) -> Plan {
        let ns = svc
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("");
        let name = svc
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let key = reservation_key(self.prefix, ip);
        let record = ip_address_object(ip, ns, name, self.uid, self.now);
        let conflict = (!picked).then(|| already_allocated(name, ip));
        set_ip_fields(svc, &ip.to_string());
        Plan {
            guards: vec![Guard::Absent(key.clone())],
            side: vec![SideOp::Put(
                key,
                serde_json::to_vec(&record).unwrap_or_default(),
            )],
            picked: picked.then_some(ip),
            conflicts: vec![conflict],
        }
    }

    /// Fills the cluster IP fields of a new Service and plans the reservation.
    pub fn on_create(&self, name: &str, svc: &mut Value) -> Result<Plan, ApiError> {
        if !wants_ip(svc) {
            if svc.pointer("/spec/clusterIP").and_then(Value::as_str) == Some("None") {
                set_ip_fields(svc, "None");
            }
            return Ok(Plan::default());
        }
        if let Some(ip) = requested(self.cidr, name, svc)? {
            let kubernetes = svc.pointer("/metadata/namespace").and_then(Value::as_str)
                == Some("default")
                && name == "kubernetes";
            if self.used.contains(&ip) || (ip == self.cidr.first() && !kubernetes) {
                return Err(already_allocated(name, ip));
            }
            return Ok(self.take(svc, ip, false));
        }
        let ip = self.cidr.pick(self.used, self.random).ok_or_else(|| {
            ApiError::Internal("failed to allocate a serviceIP: range is full".into())
        })?;
        Ok(self.take(svc, ip, true))
    }

    /// Keeps a Service's allocation across an update: an update that leaves the IP fields out
    /// keeps the stored ones, changing the IP is refused, and a change to or from ExternalName
    /// releases or allocates.
    pub fn on_update(&self, name: &str, old: &Value, new: &mut Value) -> Result<Plan, ApiError> {
        let old_ip = old
            .pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        let new_ip = new
            .pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        if !wants_ip(new) {
            // To ExternalName: the address goes back to the range.
            let mut plan = Plan::default();
            if new.pointer("/spec/type").and_then(Value::as_str) == Some("ExternalName") {
                if new_ip == old_ip {
                    clear_ip_fields(new);
                }
                if let Some(ip) = old_ip.as_deref().and_then(|i| i.parse().ok()) {
                    plan.side
                        .push(SideOp::Delete(reservation_key(self.prefix, ip)));
                }
            }
            return Ok(plan);
        }
        match (old_ip.as_deref(), new_ip.as_deref()) {
            (Some(_), None) => {
                let spec = old.get("spec").cloned().unwrap_or(Value::Null);
                if let Some(n) = new.get_mut("spec").and_then(Value::as_object_mut) {
                    for f in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
                        if let Some(v) = spec.get(f) {
                            n.entry(f).or_insert(v.clone());
                        }
                    }
                }
                Ok(Plan::default())
            }
            (Some(o), Some(n)) if o != n => Err(invalid(
                name,
                "spec.clusterIPs[0]",
                format!("Invalid value: {n:?}: may not change once set"),
            )),
            (Some(_), Some(_)) => Ok(Plan::default()),
            // From ExternalName (no address yet): allocate as on create.
            (None, _) => self.on_create(name, new),
        }
    }
}

/// The reservation a deleted Service releases, in the same Txn.
pub fn on_delete(prefix: &str, svc: &Value) -> Vec<SideOp> {
    svc.pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
        .map(|ip| vec![SideOp::Delete(reservation_key(prefix, ip))])
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_contain() {
        let c = ServiceCidr::parse("10.0.0.7/24").unwrap();
        assert_eq!(c.to_string(), "10.0.0.0/24");
        assert!(c.contains("10.0.0.255".parse().unwrap()));
        assert!(!c.contains("10.0.1.0".parse().unwrap()));
        assert!(!c.contains("9.255.255.255".parse().unwrap()));
        assert_eq!(c.first(), "10.0.0.1".parse::<Ipv4Addr>().unwrap());
        assert!(ServiceCidr::parse("10.0.0.0").is_err());
        assert!(ServiceCidr::parse("fd00::/108")
            .unwrap_err()
            .contains("IPv6"));
        assert!(ServiceCidr::parse("10.0.0.0/31").is_err());
    }

    #[test]
    fn picks_from_the_upper_band_then_the_lower_and_never_reserved_addresses() {
        let c = ServiceCidr::parse("10.0.0.0/24").unwrap();
        let mut used = HashSet::new();
        for r in 0..400 {
            let ip = c.pick(&used, r).unwrap();
            let last = ip.octets()[3];
            assert!((17..=254).contains(&last) || used.len() >= 238, "{ip}");
            assert!((2..=254).contains(&last), "{ip}");
            used.insert(ip);
            if used.len() == 253 {
                break;
            }
        }
        assert_eq!(used.len(), 253);
        assert_eq!(c.pick(&used, 7), None);
    }

    #[test]
    fn create_update_and_delete_plans() {
        let c = ServiceCidr::parse("10.0.0.0/24").unwrap();
        let used: HashSet<Ipv4Addr> = ["10.0.0.20".parse().unwrap()].into();
        let a = Allocator {
            cidr: &c,
            prefix: "/registry",
            used: &used,
            random: 3,
            uid: "u",
            now: "t",
        };
        let mut svc =
            json!({"metadata": {"name": "web", "namespace": "d"}, "spec": {"type": "ClusterIP"}});
        let plan = a.on_create("web", &mut svc).unwrap();
        let ip = plan.picked.unwrap();
        assert_eq!(svc["spec"]["clusterIPs"], json!([ip.to_string()]));
        assert_eq!(svc["spec"]["ipFamilies"], json!(["IPv4"]));
        assert!(
            matches!(&plan.guards[..], [Guard::Absent(k)] if *k == reservation_key("/registry", ip))
        );

        let mut taken = json!({"spec": {"clusterIP": "10.0.0.20"}});
        assert_eq!(a.on_create("x", &mut taken).unwrap_err().code(), 422);
        let mut outside = json!({"spec": {"clusterIP": "192.168.0.1"}});
        let err = a.on_create("x", &mut outside).unwrap_err().to_string();
        assert!(
            err.contains("is not in the valid range. The range of valid IPs is 10.0.0.0/24"),
            "{err}"
        );

        let mut headless = json!({"spec": {"clusterIP": "None"}});
        assert!(a.on_create("h", &mut headless).unwrap().guards.is_empty());
        assert_eq!(headless["spec"]["clusterIPs"], json!(["None"]));

        // An update without the IP keeps it; changing it is refused; ExternalName releases it.
        let mut replaced = json!({"spec": {"type": "ClusterIP"}});
        a.on_update("web", &svc, &mut replaced).unwrap();
        assert_eq!(replaced["spec"]["clusterIP"], svc["spec"]["clusterIP"]);
        let mut moved = json!({"spec": {"type": "ClusterIP", "clusterIP": "10.0.0.99"}});
        assert_eq!(
            a.on_update("web", &svc, &mut moved).unwrap_err().code(),
            422
        );
        let mut external = svc.clone();
        external["spec"]["type"] = json!("ExternalName");
        let plan = a.on_update("web", &svc, &mut external).unwrap();
        assert!(external["spec"].get("clusterIP").is_none());
        assert_eq!(plan.side.len(), 1);
        assert_eq!(on_delete("/registry", &svc).len(), 1);
    }
}
