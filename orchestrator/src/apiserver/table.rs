//! Server-side printing: objects to `meta.k8s.io/v1` Tables with the columns Kubernetes' own
//! printers (pkg/printers/internalversion) show for each kind; kinds without specific columns get
//! NAME and AGE. Columns with priority 1 appear only with `kubectl get -o wide`.

use serde_json::{json, Value};

use super::clock;
use super::query::Query;

/// (name, type, priority, description) of one column.
type Column = (&'static str, &'static str, u8, &'static str);

const NAME: Column = ("Name", "string", 0, "Name must be unique within a namespace. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names");
const AGE: Column = (
    "Age",
    "string",
    0,
    "CreationTimestamp is a timestamp representing the server time when this object was created.",
);

fn columns(kind: &str) -> Vec<Column> {
    match kind {
        "Pod" => vec![
            NAME,
            ("Ready", "string", 0, "The aggregate readiness state of this pod for accepting traffic."),
            ("Status", "string", 0, "The aggregate status of the containers in this pod."),
            ("Restarts", "string", 0, "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
            AGE,
            ("IP", "string", 1, "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated."),
            ("Node", "string", 1, "Name of the Node this pod is assigned to."),
            ("Nominated Node", "string", 1, "Name of the node nominated by the scheduler."),
            ("Readiness Gates", "string", 1, "The pod's readiness gates."),
        ],
        "Namespace" => vec![NAME, ("Status", "string", 0, "The status of the namespace"), AGE],
        "ConfigMap" => vec![NAME, ("Data", "integer", 0, "Number of keys in the ConfigMap"), AGE],
        "Secret" => vec![
            NAME,
            ("Type", "string", 0, "The type of the secret"),
            ("Data", "integer", 0, "The number of entries in the secret"),
            AGE,
        ],
        "ServiceAccount" => vec![NAME, ("Secrets", "integer", 0, "The number of secrets in the service account"), AGE],
        "Deployment" => vec![
            NAME,
            ("Ready", "string", 0, "Number of the pod with ready state"),
            ("Up-to-date", "integer", 0, "Total number of non-terminated pods targeted by this deployment that have the desired template spec."),
            ("Available", "integer", 0, "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."),
            AGE,
            ("Containers", "string", 1, "Names of each container in the template."),
            ("Images", "string", 1, "Images referenced by each container in the template."),
            ("Selector", "string", 1, "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment."),
        ],
        "Node" => vec![
            NAME,
            ("Status", "string", 0, "The status of the node"),
            ("Roles", "string", 0, "The roles of the node"),
            AGE,
            ("Version", "string", 0, "Kubelet Version reported by the node."),
            ("Internal-IP", "string", 1, "List of internal IPs for the node."),
            ("External-IP", "string", 1, "List of external IPs for the node."),
            ("OS-Image", "string", 1, "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy))."),
            ("Kernel-Version", "string", 1, "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64)."),
            ("Container-Runtime", "string", 1, "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2)."),
        ],
        "Service" => vec![
            NAME,
            ("Type", "string", 0, "The type of the service"),
            ("Cluster-IP", "string", 0, "The cluster IP of the service"),
            ("External-IP", "string", 0, "The external IPs of the service"),
            ("Port(s)", "string", 0, "The ports of the service"),
            AGE,
            ("Selector", "string", 1, "Route service traffic to pods with label keys and values matching this selector."),
        ],
        "Event" => vec![
            ("Last Seen", "string", 0, "Time when last this event occurred"),
            ("Type", "string", 0, "Type of this event (Normal, Warning), new types could be added in the future."),
            ("Reason", "string", 0, "This should be a short, machine understandable string that gives the reason for this event being generated."),
            ("Object", "string", 0, "The object that this event is about."),
            ("Message", "string", 0, "A human-readable description of the status of this operation."),
        ],
        _ => vec![NAME, AGE],
    }
}

fn s<'a>(obj: &'a Value, ptr: &str) -> &'a str {
    obj.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

fn n(obj: &Value, ptr: &str) -> i64 {
    obj.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

fn or_none(v: String) -> String {
    if v.is_empty() {
        "<none>".into()
    } else {
        v
    }
}

fn arr<'a>(obj: &'a Value, ptr: &str) -> &'a [Value] {
    obj.pointer(ptr)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn age(obj: &Value) -> Value {
    json!(clock::age(
        obj.pointer("/metadata/creationTimestamp")
            .and_then(Value::as_str)
    ))
}

/// The cells of one row, in [`columns`] order.
fn cells(kind: &str, o: &Value) -> Vec<Value> {
    let name = json!(s(o, "/metadata/name"));
    match kind {
        "Pod" => {
            let statuses = arr(o, "/status/containerStatuses");
            let total = arr(o, "/spec/containers").len();
            let ready = statuses
                .iter()
                .filter(|c| c["ready"] == json!(true))
                .count();
            let restarts: i64 = statuses
                .iter()
                .map(|c| c["restartCount"].as_i64().unwrap_or(0))
                .sum();
            let mut status = s(o, "/status/reason").to_string();
            if status.is_empty() {
                status = s(o, "/status/phase").to_string();
            }
            for c in statuses {
                if let Some(r) = c.pointer("/state/waiting/reason").and_then(Value::as_str) {
                    status = r.to_string();
                }
            }
            if o.pointer("/metadata/deletionTimestamp").is_some() {
                status = "Terminating".into();
            }
            let gates = arr(o, "/spec/readinessGates").len();
            vec![
                name,
                json!(format!("{ready}/{total}")),
                json!(status),
                json!(restarts.to_string()),
                age(o),
                json!(or_none(s(o, "/status/podIP").into())),
                json!(or_none(s(o, "/spec/nodeName").into())),
                json!(or_none(s(o, "/status/nominatedNodeName").into())),
                json!(if gates == 0 {
                    "<none>".to_string()
                } else {
                    format!("0/{gates}")
                }),
            ]
        }
        "Namespace" => vec![name, json!(s(o, "/status/phase")), age(o)],
        "ConfigMap" => {
            let count = |p: &str| {
                o.pointer(p)
                    .and_then(Value::as_object)
                    .map_or(0, |m| m.len())
            };
            vec![name, json!(count("/data") + count("/binaryData")), age(o)]
        }
        "Secret" => {
            let count = o
                .pointer("/data")
                .and_then(Value::as_object)
                .map_or(0, |m| m.len());
            let t = s(o, "/type");
            vec![
                name,
                json!(if t.is_empty() { "Opaque" } else { t }),
                json!(count),
                age(o),
            ]
        }
        "ServiceAccount" => vec![name, json!(arr(o, "/secrets").len()), age(o)],
        "Deployment" => {
            let containers = arr(o, "/spec/template/spec/containers");
            let join = |field: &str| {
                containers
                    .iter()
                    .map(|c| c[field].as_str().unwrap_or(""))
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let selector = o
                .pointer("/spec/selector/matchLabels")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    n(o, "/status/readyReplicas"),
                    n(o, "/spec/replicas")
                )),
                json!(n(o, "/status/updatedReplicas")),
                json!(n(o, "/status/availableReplicas")),
                age(o),
                json!(join("name")),
                json!(join("image")),
                json!(or_none(selector)),
            ]
        }
        "Node" => {
            let ready = arr(o, "/status/conditions")
                .iter()
                .find(|c| c["type"] == "Ready")
                .map(|c| {
                    if c["status"] == "True" {
                        "Ready"
                    } else if c["status"] == "False" {
                        "NotReady"
                    } else {
                        "Unknown"
                    }
                })
                .unwrap_or("Unknown");
            let mut status = ready.to_string();
            if o.pointer("/spec/unschedulable") == Some(&json!(true)) {
                status.push_str(",SchedulingDisabled");
            }
            let roles: Vec<String> = o
                .pointer("/metadata/labels")
                .and_then(Value::as_object)
                .map(|l| {
                    l.keys()
                        .filter_map(|k| {
                            k.strip_prefix("node-role.kubernetes.io/")
                                .map(str::to_string)
                        })
                        .filter(|r| !r.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            let addr = |t: &str| {
                arr(o, "/status/addresses")
                    .iter()
                    .filter(|a| a["type"] == t)
                    .map(|a| a["address"].as_str().unwrap_or("").to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            };
            vec![
                name,
                json!(status),
                json!(or_none(roles.join(","))),
                age(o),
                json!(s(o, "/status/nodeInfo/kubeletVersion")),
                json!(or_none(addr("InternalIP"))),
                json!(or_none(addr("ExternalIP"))),
                json!(or_none(s(o, "/status/nodeInfo/osImage").into())),
                json!(or_none(s(o, "/status/nodeInfo/kernelVersion").into())),
                json!(or_none(
                    s(o, "/status/nodeInfo/containerRuntimeVersion").into()
                )),
            ]
        }
        "Service" => {
            let t = s(o, "/spec/type");
            let ports: Vec<String> = arr(o, "/spec/ports")
                .iter()
                .map(|p| {
                    let proto = p["protocol"].as_str().unwrap_or("TCP");
                    match p["nodePort"].as_i64() {
                        Some(np) => format!("{}:{np}/{proto}", p["port"]),
                        None => format!("{}/{proto}", p["port"]),
                    }
                })
                .collect();
            let external: Vec<&str> = arr(o, "/spec/externalIPs")
                .iter()
                .filter_map(Value::as_str)
                .collect();
            let external = if !external.is_empty() {
                external.join(",")
            } else if t == "LoadBalancer" {
                "<pending>".into()
            } else {
                "<none>".into()
            };
            let selector = o
                .pointer("/spec/selector")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            vec![
                name,
                json!(if t.is_empty() { "ClusterIP" } else { t }),
                json!(or_none(s(o, "/spec/clusterIP").into())),
                json!(external),
                json!(or_none(ports.join(","))),
                age(o),
                json!(or_none(selector)),
            ]
        }
        "Event" => {
            let last = [
                "/lastTimestamp",
                "/eventTime",
                "/metadata/creationTimestamp",
            ]
            .iter()
            .find_map(|p| o.pointer(p).and_then(Value::as_str));
            let object = format!(
                "{}/{}",
                s(o, "/involvedObject/kind").to_lowercase(),
                s(o, "/involvedObject/name")
            );
            vec![
                json!(clock::age(last)),
                json!(s(o, "/type")),
                json!(s(o, "/reason")),
                json!(object),
                json!(s(o, "/message")),
            ]
        }
        _ => vec![name, age(o)],
    }
}

/// What each row carries in `object` (`includeObject`; Kubernetes' default is Metadata).
fn row_object(o: &Value, q: &Query) -> Option<Value> {
    match q.get("includeObject").unwrap_or("Metadata") {
        "None" => None,
        "Object" => Some(o.clone()),
        _ => Some(json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": o.get("metadata").cloned().unwrap_or(json!({})),
        })),
    }
}

/// A Table of `objects` of `kind`; `list_meta` becomes the Table's metadata (resourceVersion,
/// continue) so paging works through Tables too.
pub fn to_table(kind: &str, objects: &[Value], list_meta: Value, q: &Query) -> Value {
    let defs: Vec<Value> = columns(kind)
        .into_iter()
        .map(|(name, ty, priority, description)| {
            let format = if name == "Name" { "name" } else { "" };
            json!({"name": name, "type": ty, "format": format, "description": description, "priority": priority})
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let mut row = json!({ "cells": cells(kind, o) });
            if let Some(obj) = row_object(o, q) {
                row["object"] = obj;
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": defs,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_row_has_kubernetes_columns() {
        let pod = json!({
            "metadata": {"name": "web", "creationTimestamp": clock::now_rfc3339()},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "n1"},
            "status": {"phase": "Running", "containerStatuses": [{"ready": true, "restartCount": 2}, {"ready": false, "restartCount": 1}]}
        });
        let t = to_table("Pod", &[pod], json!({}), &Query::default());
        let names: Vec<&str> = t["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(&names[..5], ["Name", "Ready", "Status", "Restarts", "Age"]);
        let cells = &t["rows"][0]["cells"];
        assert_eq!(cells[0], "web");
        assert_eq!(cells[1], "1/2");
        assert_eq!(cells[2], "Running");
        assert_eq!(cells[3], "3");
        assert_eq!(cells[6], "n1");
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    }
}
