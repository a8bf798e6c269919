//! Server-side printing: objects to `meta.k8s.io/v1` Tables with the columns Kubernetes' own
//! printers (pkg/printers/internalversion) show for each kind; kinds Kubernetes has no printer
//! for get its default table, NAME and CREATED AT. Columns with priority 1 appear only with
//! `kubectl get -o wide`.

use serde_json::{json, Value};

use super::clock;
use super::query::Query;

/// (name, type, priority, description) of one column.
type Column = (&'static str, &'static str, u8, &'static str);

const NAME: Column = ("Name", "string", 0, "Name must be unique within a namespace. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names");
const CREATED_AT: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
const AGE: Column = ("Age", "string", 0, CREATED_AT);
const CONTAINERS: Column = (
    "Containers",
    "string",
    1,
    "Names of each container in the template.",
);
const IMAGES: Column = (
    "Images",
    "string",
    1,
    "Images referenced by each container in the template.",
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
        "Endpoints" => vec![NAME, ("Endpoints", "string", 0, "The set of all endpoints is the union of all subsets. Addresses are placed into subsets according to the IPs they share. A single address with multiple ports, some of which are ready and some of which are not (because they come from different containers) will result in the address being displayed in different subsets for the different ports. No address will appear in both Addresses and NotReadyAddresses in the same subset. Sets of addresses and ports that comprise a service."), AGE],
        "PersistentVolume" => vec![
            NAME,
            ("Capacity", "string", 0, "capacity is the description of the persistent volume's resources and capacity. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#capacity"),
            ("Access Modes", "string", 0, "accessModes contains all ways the volume can be mounted. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#access-modes"),
            ("Reclaim Policy", "string", 0, "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim. Valid options are Retain (default for manually created PersistentVolumes), Delete (default for dynamically provisioned PersistentVolumes), and Recycle (deprecated). Recycle must be supported by the volume plugin underlying this PersistentVolume. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#reclaiming"),
            ("Status", "string", 0, "phase indicates if a volume is available, bound to a claim, or released by a claim. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#phase"),
            ("Claim", "string", 0, "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim. Expected to be non-nil when bound. claim.VolumeName is the authoritative bind between PV and PVC. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#binding"),
            ("StorageClass", "string", 0, "StorageClass of the pv"),
            ("VolumeAttributesClass", "string", 0, "VolumeAttributesClass of the pv"),
            ("Reason", "string", 0, "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI."),
            AGE,
            ("VolumeMode", "string", 1, "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state. Value of Filesystem is implied when not included in spec."),
        ],
        "PersistentVolumeClaim" => vec![
            NAME,
            ("Status", "string", 0, "phase represents the current phase of PersistentVolumeClaim."),
            ("Volume", "string", 0, "volumeName is the binding reference to the PersistentVolume backing this claim."),
            ("Capacity", "string", 0, "capacity represents the actual resources of the underlying volume."),
            ("Access Modes", "string", 0, "accessModes contains the actual access modes the volume backing the PVC has. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#access-modes-1"),
            ("StorageClass", "string", 0, "StorageClass of the pvc"),
            ("VolumeAttributesClass", "string", 0, "VolumeAttributesClass of the pvc"),
            AGE,
            ("VolumeMode", "string", 1, "volumeMode defines what type of volume is required by the claim. Value of Filesystem is implied when not included in claim spec."),
        ],
        "ReplicationController" | "ReplicaSet" => vec![
            NAME,
            ("Desired", "integer", 0, "Replicas is the number of desired replicas."),
            ("Current", "integer", 0, "Replicas is the most recently observed number of replicas."),
            ("Ready", "integer", 0, "The number of ready replicas for this replica set."),
            AGE,
            CONTAINERS,
            IMAGES,
            ("Selector", "string", 1, "Selector is a label query over pods that should match the replica count."),
        ],
        "ResourceQuota" => vec![
            NAME,
            AGE,
            ("Request", "string", 0, "Request represents a minimum amount of cpu/memory that a container may consume."),
            ("Limit", "string", 0, "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node."),
        ],
        "DaemonSet" => vec![
            NAME,
            ("Desired", "integer", 0, "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod)."),
            ("Current", "integer", 0, "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod."),
            ("Ready", "integer", 0, "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running with a Ready Condition."),
            ("Up-to-date", "integer", 0, "The total number of nodes that are running updated daemon pod"),
            ("Available", "integer", 0, "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)"),
            ("Node Selector", "string", 0, "NodeSelector is a selector which must be true for the pod to fit on a node. Selector which must match a node's labels for the pod to be scheduled on that node."),
            AGE,
            CONTAINERS,
            IMAGES,
            ("Selector", "string", 1, "A label query over pods that are managed by the daemon set. Must match in order to be controlled."),
        ],
        "StatefulSet" => vec![
            NAME,
            ("Ready", "string", 0, "Number of the pod with ready state"),
            AGE,
            CONTAINERS,
            IMAGES,
        ],
        "ControllerRevision" => vec![
            NAME,
            ("Controller", "string", 0, "Controller of the object"),
            ("Revision", "integer", 0, "Revision indicates the revision of the state represented by Data."),
            AGE,
        ],
        "Job" => vec![
            NAME,
            ("Status", "string", 0, "Status of the job."),
            ("Completions", "string", 0, "The number of pods which reached phase Succeeded."),
            ("Duration", "string", 0, "Time required to complete the job."),
            AGE,
            CONTAINERS,
            IMAGES,
            ("Selector", "string", 1, "A label query over pods that should match the pod count."),
        ],
        "CronJob" => vec![
            NAME,
            ("Schedule", "string", 0, "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron."),
            ("Timezone", "string", 0, "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones."),
            ("Suspend", "boolean", 0, "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions.  Defaults to false."),
            ("Active", "integer", 0, "A list of pointers to currently running jobs."),
            ("Last Schedule", "string", 0, "Information when was the last time the job was successfully scheduled."),
            AGE,
            CONTAINERS,
            IMAGES,
            ("Selector", "string", 1, "A label query over pods that should match the pod count."),
        ],
        "HorizontalPodAutoscaler" => vec![
            NAME,
            ("Reference", "string", 0, "scaleTargetRef points to the target resource to scale, and is used to the pods for which metrics should be collected, as well as to actually change the replica count."),
            ("Targets", "string", 0, "metrics contains the specifications for which to use to calculate the desired replica count (the maximum replica count across all metrics will be used)."),
            ("MinPods", "string", 0, "minReplicas is the lower limit for the number of replicas to which the autoscaler can scale down."),
            ("MaxPods", "integer", 0, "maxReplicas is the upper limit for the number of replicas to which the autoscaler can scale up."),
            ("Replicas", "integer", 0, "currentReplicas is current number of replicas of pods managed by this autoscaler, as last seen by the autoscaler."),
            AGE,
        ],
        "Lease" => vec![NAME, ("Holder", "string", 0, "holderIdentity contains the identity of the holder of a current lease."), AGE],
        "PodDisruptionBudget" => vec![
            NAME,
            ("Min Available", "string", 0, "The minimum number of pods that must be available."),
            ("Max Unavailable", "string", 0, "The maximum number of pods that may be unavailable."),
            ("Allowed Disruptions", "integer", 0, "Calculated number of pods that may be disrupted at this time."),
            AGE,
        ],
        "RoleBinding" | "ClusterRoleBinding" => {
            let (users, groups, sas) = if kind == "RoleBinding" {
                ("Users in the roleBinding", "Groups in the roleBinding", "ServiceAccounts in the roleBinding")
            } else {
                ("Users in the clusterRoleBinding", "Groups in the clusterRoleBinding", "ServiceAccounts in the clusterRoleBinding")
            };
            vec![
                NAME,
                ("Role", "string", 0, "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace. If the RoleRef cannot be resolved, the Authorizer must return an error."),
                AGE,
                ("Users", "string", 1, users),
                ("Groups", "string", 1, groups),
                ("ServiceAccounts", "string", 1, sas),
            ]
        }
        "PriorityClass" => vec![
            NAME,
            ("Value", "integer", 0, "value represents the integer value of this priority class. This is the actual priority that pods receive when they have the name of this class in their pod spec."),
            ("Global-Default", "boolean", 0, "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class. Only one PriorityClass can be marked as `globalDefault`. However, if more than one PriorityClasses exists with their `globalDefault` field set to true, the smallest value of such global default PriorityClasses will be used as the default priority."),
            AGE,
            ("PreemptionPolicy", "string", 0, "preemptionPolicy is the Policy for preempting pods with lower priority. One of Never, PreemptLowerPriority. Defaults to PreemptLowerPriority if unset."),
        ],
        // Kinds without a printer of their own (LimitRange, Role, ClusterRole) get the default
        // table: the name and the creation time as a timestamp.
        _ => vec![NAME, ("Created At", "date", 0, CREATED_AT)],
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
                    match p["nodePort"].as_i64().filter(|np| *np != 0) {
                        Some(np) => format!("{}:{np}/{proto}", p["port"]),
                        None => format!("{}/{proto}", p["port"]),
                    }
                })
                .collect();
            let mut external: Vec<String> = Vec::new();
            if t == "LoadBalancer" {
                for ing in arr(o, "/status/loadBalancer/ingress") {
                    let addr = ing["ip"]
                        .as_str()
                        .filter(|s| !s.is_empty())
                        .or(ing["hostname"].as_str())
                        .unwrap_or("");
                    if !addr.is_empty() && !external.iter().any(|e| e == addr) {
                        external.push(addr.to_string());
                    }
                }
            }
            external.extend(
                arr(o, "/spec/externalIPs")
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string),
            );
            let external = match t {
                "ExternalName" => s(o, "/spec/externalName").to_string(),
                _ if !external.is_empty() => external.join(","),
                "LoadBalancer" => "<pending>".into(),
                _ => "<none>".into(),
            };
            let cluster_ip = o
                .pointer("/spec/clusterIPs/0")
                .and_then(Value::as_str)
                .unwrap_or("<none>");
            vec![
                name,
                json!(t),
                json!(cluster_ip),
                json!(external),
                json!(or_none(ports.join(","))),
                age(o),
                json!(format_labels(o.pointer("/spec/selector"))),
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
        "Endpoints" => vec![name, json!(format_endpoints(o)), age(o)],
        "PersistentVolume" => {
            let claim = match o.pointer("/spec/claimRef") {
                Some(r) if r.is_object() => format!(
                    "{}/{}",
                    r["namespace"].as_str().unwrap_or(""),
                    r["name"].as_str().unwrap_or("")
                ),
                _ => String::new(),
            };
            vec![
                name,
                json!(quantity(o, "/spec/capacity/storage")),
                json!(access_modes(arr(o, "/spec/accessModes"))),
                json!(s(o, "/spec/persistentVolumeReclaimPolicy")),
                json!(terminating_or(o, s(o, "/status/phase"))),
                json!(claim),
                json!(storage_class(o)),
                json!(unset_or(o, "/spec/volumeAttributesClassName")),
                json!(s(o, "/status/reason")),
                age(o),
                json!(unset_or(o, "/spec/volumeMode")),
            ]
        }
        "PersistentVolumeClaim" => {
            let bound = !s(o, "/spec/volumeName").is_empty();
            let (capacity, modes) = if bound {
                (
                    quantity(o, "/status/capacity/storage"),
                    access_modes(arr(o, "/status/accessModes")),
                )
            } else {
                (String::new(), String::new())
            };
            vec![
                name,
                json!(terminating_or(o, s(o, "/status/phase"))),
                json!(s(o, "/spec/volumeName")),
                json!(capacity),
                json!(modes),
                json!(storage_class(o)),
                json!(unset_or(o, "/spec/volumeAttributesClassName")),
                age(o),
                json!(unset_or(o, "/spec/volumeMode")),
            ]
        }
        "ReplicationController" | "ReplicaSet" => {
            let (names, images) = containers(o, "/spec/template/spec/containers");
            let selector = if kind == "ReplicaSet" {
                format_label_selector(o.pointer("/spec/selector"))
            } else {
                format_labels(o.pointer("/spec/selector"))
            };
            vec![
                name,
                json!(n(o, "/spec/replicas")),
                json!(n(o, "/status/replicas")),
                json!(n(o, "/status/readyReplicas")),
                age(o),
                json!(names),
                json!(images),
                json!(selector),
            ]
        }
        "ResourceQuota" => {
            let (request, limit) = quota_columns(o);
            vec![name, age(o), json!(request), json!(limit)]
        }
        "DaemonSet" => {
            let (names, images) = containers(o, "/spec/template/spec/containers");
            vec![
                name,
                json!(n(o, "/status/desiredNumberScheduled")),
                json!(n(o, "/status/currentNumberScheduled")),
                json!(n(o, "/status/numberReady")),
                json!(n(o, "/status/updatedNumberScheduled")),
                json!(n(o, "/status/numberAvailable")),
                json!(format_labels(o.pointer("/spec/template/spec/nodeSelector"))),
                age(o),
                json!(names),
                json!(images),
                json!(format_label_selector(o.pointer("/spec/selector"))),
            ]
        }
        "StatefulSet" => {
            let (names, images) = containers(o, "/spec/template/spec/containers");
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    n(o, "/status/readyReplicas"),
                    n(o, "/spec/replicas")
                )),
                age(o),
                json!(names),
                json!(images),
            ]
        }
        "ControllerRevision" => {
            let controller = arr(o, "/metadata/ownerReferences")
                .iter()
                .find(|r| r["controller"] == json!(true))
                .map(|r| {
                    let api_version = r["apiVersion"].as_str().unwrap_or("");
                    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
                    let kind = r["kind"].as_str().unwrap_or("");
                    let group_kind = if group.is_empty() {
                        kind.to_string()
                    } else {
                        format!("{kind}.{group}")
                    };
                    format!(
                        "{}/{}",
                        group_kind.to_lowercase(),
                        r["name"].as_str().unwrap_or("")
                    )
                })
                .unwrap_or_else(|| "<none>".into());
            vec![name, json!(controller), json!(n(o, "/revision")), age(o)]
        }
        "Job" => {
            let (names, images) = containers(o, "/spec/template/spec/containers");
            let succeeded = n(o, "/status/succeeded");
            let completions = match o.pointer("/spec/completions").and_then(Value::as_i64) {
                Some(c) => format!("{succeeded}/{c}"),
                None => match n(o, "/spec/parallelism") {
                    p if p > 1 => format!("{succeeded}/1 of {p}"),
                    _ => format!("{succeeded}/1"),
                },
            };
            let start = o.pointer("/status/startTime").and_then(Value::as_str);
            let end = o.pointer("/status/completionTime").and_then(Value::as_str);
            let duration = match (start.and_then(clock::parse_rfc3339), end) {
                (None, _) => String::new(),
                (Some(st), None) => clock::human_duration(clock::now_secs() - st),
                (Some(st), Some(e)) => {
                    clock::human_duration(clock::parse_rfc3339(e).unwrap_or(st) - st)
                }
            };
            vec![
                name,
                json!(job_status(o)),
                json!(completions),
                json!(duration),
                age(o),
                json!(names),
                json!(images),
                json!(format_label_selector(o.pointer("/spec/selector"))),
            ]
        }
        "CronJob" => {
            let (names, images) = containers(o, "/spec/jobTemplate/spec/template/spec/containers");
            let last = match o
                .pointer("/status/lastScheduleTime")
                .and_then(Value::as_str)
            {
                Some(t) => clock::age(Some(t)),
                None => "<none>".into(),
            };
            let suspend = match o.pointer("/spec/suspend").and_then(Value::as_bool) {
                Some(true) => "True",
                Some(false) => "False",
                None => "<unset>",
            };
            let tz = o
                .pointer("/spec/timeZone")
                .and_then(Value::as_str)
                .unwrap_or("<none>");
            vec![
                name,
                json!(s(o, "/spec/schedule")),
                json!(tz),
                json!(suspend),
                json!(arr(o, "/status/active").len()),
                json!(last),
                age(o),
                json!(names),
                json!(images),
                json!(format_label_selector(
                    o.pointer("/spec/jobTemplate/spec/selector")
                )),
            ]
        }
        "HorizontalPodAutoscaler" => {
            let reference = format!(
                "{}/{}",
                s(o, "/spec/scaleTargetRef/kind"),
                s(o, "/spec/scaleTargetRef/name")
            );
            let min = match o.pointer("/spec/minReplicas").and_then(Value::as_i64) {
                Some(m) => m.to_string(),
                None => "<unset>".into(),
            };
            vec![
                name,
                json!(reference),
                json!(hpa_targets(o)),
                json!(min),
                json!(n(o, "/spec/maxReplicas")),
                json!(n(o, "/status/currentReplicas")),
                age(o),
            ]
        }
        "Lease" => vec![name, json!(s(o, "/spec/holderIdentity")), age(o)],
        "PodDisruptionBudget" => {
            let int_or_string = |p: &str| match o.pointer(p) {
                Some(Value::String(v)) => v.clone(),
                Some(Value::Number(v)) => v.to_string(),
                _ => "N/A".into(),
            };
            vec![
                name,
                json!(int_or_string("/spec/minAvailable")),
                json!(int_or_string("/spec/maxUnavailable")),
                json!(n(o, "/status/disruptionsAllowed")),
                age(o),
            ]
        }
        "RoleBinding" | "ClusterRoleBinding" => {
            let role = format!("{}/{}", s(o, "/roleRef/kind"), s(o, "/roleRef/name"));
            let subjects = |want: &str| {
                arr(o, "/subjects")
                    .iter()
                    .filter(|x| x["kind"] == want)
                    .map(|x| {
                        let n = x["name"].as_str().unwrap_or("");
                        if want == "ServiceAccount" {
                            format!("{}/{n}", x["namespace"].as_str().unwrap_or(""))
                        } else {
                            n.to_string()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            vec![
                name,
                json!(role),
                age(o),
                json!(subjects("User")),
                json!(subjects("Group")),
                json!(subjects("ServiceAccount")),
            ]
        }
        "PriorityClass" => vec![
            name,
            json!(n(o, "/value")),
            json!(o
                .get("globalDefault")
                .and_then(Value::as_bool)
                .unwrap_or(false)),
            age(o),
            json!(s(o, "/preemptionPolicy")),
        ],
        _ => vec![name, json!(s(o, "/metadata/creationTimestamp"))],
    }
}

/// Names and images of a pod template's containers, comma-joined (`layoutContainerCells`).
fn containers(o: &Value, ptr: &str) -> (String, String) {
    let cs = arr(o, ptr);
    let join = |field: &str| {
        cs.iter()
            .map(|c| c[field].as_str().unwrap_or(""))
            .collect::<Vec<_>>()
            .join(",")
    };
    (join("name"), join("image"))
}

/// `labels.FormatLabels`: `k=v` pairs sorted by key, or `<none>`.
fn format_labels(labels: Option<&Value>) -> String {
    let pairs: Vec<String> = labels
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    or_none(pairs.join(","))
}

/// `metav1.FormatLabelSelector`: a LabelSelector's requirements in selector syntax, sorted by
/// key, or `<none>` when it selects nothing or everything.
pub fn format_label_selector(selector: Option<&Value>) -> String {
    let Some(sel) = selector.filter(|s| s.is_object()) else {
        return "<none>".into();
    };
    let mut reqs: Vec<(String, String)> = Vec::new();
    if let Some(m) = sel.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in m {
            reqs.push((k.clone(), format!("{k}={}", v.as_str().unwrap_or(""))));
        }
    }
    for e in arr(sel, "/matchExpressions") {
        let key = e["key"].as_str().unwrap_or("").to_string();
        let mut values: Vec<&str> = e["values"]
            .as_array()
            .map(|v| v.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        values.sort_unstable();
        let text = match e["operator"].as_str().unwrap_or("") {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.clone(),
            "DoesNotExist" => format!("!{key}"),
            _ => return "<error>".into(),
        };
        reqs.push((key, text));
    }
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    or_none(
        reqs.into_iter()
            .map(|(_, t)| t)
            .collect::<Vec<_>>()
            .join(","),
    )
}

/// A Quantity field as `Quantity.String()` prints it; a missing one is "0".
fn quantity(o: &Value, ptr: &str) -> String {
    match o.pointer(ptr) {
        Some(Value::String(q)) => q.clone(),
        Some(Value::Number(q)) => q.to_string(),
        _ => "0".into(),
    }
}

/// `GetAccessModesAsString`: RWO, ROX, RWX, RWOP in that order, each once.
fn access_modes(modes: &[Value]) -> String {
    let has = |m: &str| modes.iter().any(|v| v == m);
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(m, _)| has(m))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

/// The storage class of a PV or PVC: the beta annotation wins over `spec.storageClassName`.
fn storage_class(o: &Value) -> String {
    o.pointer("/metadata/annotations/volume.beta.kubernetes.io~1storage-class")
        .and_then(Value::as_str)
        .unwrap_or_else(|| s(o, "/spec/storageClassName"))
        .to_string()
}

fn unset_or(o: &Value, ptr: &str) -> String {
    o.pointer(ptr)
        .and_then(Value::as_str)
        .unwrap_or("<unset>")
        .to_string()
}

fn terminating_or(o: &Value, phase: &str) -> String {
    if o.pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
    {
        "Terminating".into()
    } else {
        phase.into()
    }
}

/// Pods-style endpoint list: `ip:port` (or bare ips for port-less subsets), at most three,
/// then "+ N more...".
fn format_endpoints(o: &Value) -> String {
    let subsets = arr(o, "/subsets");
    if subsets.is_empty() {
        return "<none>".into();
    }
    const MAX: usize = 3;
    let (mut list, mut count, mut more) = (Vec::new(), 0usize, false);
    for ss in subsets {
        let addrs = arr(ss, "/addresses");
        let ports = arr(ss, "/ports");
        let ip = |a: &Value| a["ip"].as_str().unwrap_or("").to_string();
        if ports.is_empty() {
            count += addrs.len();
            for a in addrs {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(ip(a));
            }
            continue;
        }
        for p in ports {
            count += addrs.len();
            for a in addrs {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                let host = ip(a);
                let port = p["port"].as_i64().unwrap_or(0);
                list.push(if host.contains(':') {
                    format!("[{host}]:{port}")
                } else {
                    format!("{host}:{port}")
                });
            }
        }
    }
    let joined = list.join(",");
    if more {
        format!("{joined} + {} more...", count - MAX)
    } else {
        joined
    }
}

/// A Job's STATUS column, conditions checked in Kubernetes' order.
fn job_status(o: &Value) -> &'static str {
    let has = |t: &str| {
        arr(o, "/status/conditions")
            .iter()
            .find(|c| c["type"] == t)
            .is_some_and(|c| c["status"] == "True")
    };
    if has("Complete") {
        "Complete"
    } else if has("Failed") {
        "Failed"
    } else if o
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
    {
        "Terminating"
    } else if has("Suspended") {
        "Suspended"
    } else if has("FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    }
}

/// A ResourceQuota's REQUEST and LIMIT columns from `status.hard` / `status.used` (filled in by
/// the quota controller): `name: used/hard` pairs sorted by name, `limits.*` in the second.
fn quota_columns(o: &Value) -> (String, String) {
    let (mut request, mut limit) = (Vec::new(), Vec::new());
    if let Some(hard) = o.pointer("/status/hard").and_then(Value::as_object) {
        for (res, h) in hard {
            let used = o
                .pointer("/status/used")
                .and_then(|u| u.get(res))
                .map(|u| u.as_str().map_or_else(|| u.to_string(), str::to_string))
                .unwrap_or_else(|| "0".into());
            let h = h.as_str().map_or_else(|| h.to_string(), str::to_string);
            let cell = format!("{res}: {used}/{h}");
            if res.split('.').next() == Some("limits") && res.contains('.') {
                limit.push(cell);
            } else {
                request.push(cell);
            }
        }
    }
    (request.join(", "), limit.join(", "))
}

/// An HPA's TARGETS column (`formatHPAMetrics`): at most two metrics, then "+ N more...".
fn hpa_targets(o: &Value) -> String {
    let specs = arr(o, "/spec/metrics");
    if specs.is_empty() {
        return "<none>".into();
    }
    let statuses = arr(o, "/status/currentMetrics");
    let qty = |v: Option<&Value>| match v {
        Some(Value::String(q)) => q.clone(),
        Some(Value::Number(q)) => q.to_string(),
        _ => "0".into(),
    };
    let list: Vec<String> = specs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let status = statuses.get(i);
            let ty = spec["type"].as_str().unwrap_or("");
            let source = match ty {
                "External" => "external",
                "Pods" => "pods",
                "Object" => "object",
                "Resource" => "resource",
                "ContainerResource" => "containerResource",
                _ => return "<unknown type>".to_string(),
            };
            let target = &spec[source]["target"];
            let current = status
                .map(|s| &s[source]["current"])
                .filter(|c| c.is_object());
            let resource_name = spec[source]["name"].as_str().unwrap_or("");
            match ty {
                "Pods" => format!(
                    "{}/{}",
                    current.map_or("<unknown>".into(), |c| qty(c.get("averageValue"))),
                    qty(target.get("averageValue"))
                ),
                "External" | "Object" if target.get("averageValue").is_some() => format!(
                    "{}/{} (avg)",
                    current
                        .and_then(|c| c.get("averageValue"))
                        .map_or("<unknown>".into(), |v| qty(Some(v))),
                    qty(target.get("averageValue"))
                ),
                "External" | "Object" => format!(
                    "{}/{}",
                    current.map_or("<unknown>".into(), |c| qty(c.get("value"))),
                    qty(target.get("value"))
                ),
                _ if target.get("averageValue").is_some() => format!(
                    "{resource_name}: {}/{}",
                    current.map_or("<unknown>".into(), |c| qty(c.get("averageValue"))),
                    qty(target.get("averageValue"))
                ),
                _ => {
                    let cur = current
                        .and_then(|c| c.get("averageUtilization"))
                        .and_then(Value::as_i64)
                        .map_or("<unknown>".into(), |u| format!("{u}%"));
                    let tgt = target
                        .get("averageUtilization")
                        .and_then(Value::as_i64)
                        .map_or("<auto>".into(), |u| format!("{u}%"));
                    format!("{resource_name}: {cur}/{tgt}")
                }
            }
        })
        .collect();
    const MAX: usize = 2;
    if list.len() > MAX {
        format!("{} + {} more...", list[..MAX].join(", "), list.len() - MAX)
    } else {
        list.join(", ")
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
