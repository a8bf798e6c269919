#!/usr/bin/env python3
"""Writes k8s-definitions.json: Kubernetes' OpenAPI (swagger 2.0) definitions for the API groups
the apiserver serves, as kube-apiserver 1.32 publishes them under /openapi/v2 `definitions`.

Source: the PyPI package `kubernetes-validate`, which ships Kubernetes' own published OpenAPI
definitions per release, turned into JSON Schema (draft 2020-12). That conversion is reversible
and this script reverses it:

* every `"type": [T, "null"]` goes back to `"type": T`;
* `$ref: #/$defs/<name>` goes back to `#/definitions/<name>`;
* the `enum` it adds to the `apiVersion` / `kind` properties of top-level kinds is dropped;
* Quantity and IntOrString, which it rewrote as `oneOf` without their descriptions, get their
  swagger form back (`type: string`, `format: int-or-string` for IntOrString) with the first
  paragraph of their Go doc comments.

Everything else (descriptions, `required`, `format`, `x-kubernetes-group-version-kind`,
`x-kubernetes-patch-merge-key`, `x-kubernetes-patch-strategy`, `x-kubernetes-list-type`,
`x-kubernetes-list-map-keys`, `x-kubernetes-map-type`, `x-kubernetes-unions`) is Kubernetes' own.

The output keeps every definition of the listed group-versions plus everything they reference
(meta/v1, intstr, resource, runtime). Serving a new group-version: add its definition prefix to
GROUP_VERSIONS, rerun, and commit the result.

    python3 orchestrator/openapi/generate-k8s-definitions.py
"""

import io
import json
import os
import subprocess
import sys
import tempfile
import zipfile

KUBERNETES_VALIDATE = "kubernetes-validate==1.32.0"
SCHEMA_DIR = "kubernetes_validate/kubernetes-json-schema/v1.32.0-local/"

# Definition-name prefixes of the group-versions served (or about to be).
GROUP_VERSIONS = [
    "io.k8s.api.core.v1.",
    "io.k8s.api.apps.v1.",
    "io.k8s.api.batch.v1.",
    "io.k8s.api.autoscaling.v1.",
    "io.k8s.api.autoscaling.v2.",
    "io.k8s.api.coordination.v1.",
    "io.k8s.api.policy.v1.",
    "io.k8s.api.rbac.v1.",
    "io.k8s.api.scheduling.v1.",
]

# Always present: what every group-version's paths and errors refer to.
EXTRA = [
    "io.k8s.apimachinery.pkg.apis.meta.v1.Status",
    "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions",
    "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent",
    "io.k8s.apimachinery.pkg.apis.meta.v1.Patch",
    "io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList",
]

QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
RESTORED = {
    QUANTITY: {
        "description": "Quantity is a fixed-point representation of a number. It provides "
        "convenient marshaling/unmarshaling in JSON and YAML, in addition to String() and "
        "AsInt64() accessors.",
        "type": "string",
    },
    INT_OR_STRING: {
        "description": "IntOrString is a type that can hold an int32 or a string.  When used in "
        "JSON or YAML marshalling and unmarshalling, it produces or consumes the inner type.  "
        "This allows you to have, for example, a JSON field that can accept a name or number.",
        "format": "int-or-string",
        "type": "string",
    },
}


def load_definitions():
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", tmp,
             KUBERNETES_VALIDATE],
            check=True,
        )
        (wheel,) = [f for f in os.listdir(tmp) if f.endswith(".whl")]
        with zipfile.ZipFile(os.path.join(tmp, wheel)) as z:
            return json.load(io.BytesIO(z.read(SCHEMA_DIR + "_definitions.json")))["$defs"]


def unconvert(schema):
    """JSON Schema back to swagger 2.0 (see the module doc)."""
    if isinstance(schema, list):
        return [unconvert(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key == "type" and isinstance(value, list):
            types = [t for t in value if t != "null"]
            value = types[0] if len(types) == 1 else types
        elif key == "$ref":
            value = value.replace("#/$defs/", "#/definitions/")
        elif key in ("properties", "enum", "x-kubernetes-group-version-kind", "required",
                     "x-kubernetes-list-map-keys"):
            value = {k: unconvert(v) for k, v in value.items()} if key == "properties" else value
        else:
            value = unconvert(value)
        out[key] = value
    return out


def refs(schema, found):
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key == "$ref":
                found.add(value.rsplit("/", 1)[1])
            elif key not in ("enum", "x-kubernetes-group-version-kind"):
                refs(value, found)
    elif isinstance(schema, list):
        for value in schema:
            refs(value, found)


def main():
    source = load_definitions()
    wanted = [n for n in source if any(n.startswith(p) for p in GROUP_VERSIONS)] + EXTRA
    out = {}
    while wanted:
        name = wanted.pop()
        if name in out:
            continue
        if name in RESTORED:
            out[name] = RESTORED[name]
            continue
        schema = unconvert(source[name])
        if "x-kubernetes-group-version-kind" in schema:
            for prop in ("apiVersion", "kind"):
                schema.get("properties", {}).get(prop, {}).pop("enum", None)
        out[name] = schema
        found = set()
        refs(schema, found)
        wanted.extend(sorted(found))
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "k8s-definitions.json")
    with open(path, "w") as f:
        json.dump(out, f, sort_keys=True, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {len(out)} definitions to {path}")


if __name__ == "__main__":
    main()
