#!/usr/bin/env python3
"""Writes the Kubernetes message schemas under k8s.io/ from the Go types compiled into kubectl.

The apiserver turns Kubernetes protobuf request bodies into the JSON a JSON client would have
sent. For that it needs two things per field: the wire schema (name, number, type) and how the Go
field is declared (pointer, `omitempty`, `inline`), because the JSON Kubernetes produces depends on
the Go declaration, which the wire format does not carry.

A Go binary keeps a runtime type descriptor for every type reachable through reflection, and
kubectl registers every built-in API type, so its descriptors hold, for each struct, every field
with its Go type and its struct tag (`json:"..." protobuf:"varint,1,opt,name=replicas"`). That is
the same information go-to-protobuf reads to write k8s.io/api's generated.proto: message names are
the Go type names, field names and numbers come from the protobuf tag, field types from the Go
types. This script reads those descriptors and writes one generated.proto per package, with the
Go facts as (cairn.k8s.go_*) field options (see cairn/k8s/go.proto).

Usage: generate-k8s.py [path/to/kubectl]   (default: the kubectl on PATH)

Assumptions, checked where cheap: a non-PIE little-endian ELF64 Go binary built by Go 1.21-1.23
(the internal/abi layout of Type, StructType, PtrType, SliceType, MapType and Name); type names
are offsets from the start of .rodata, where the linker places the type data.
"""

import os
import re
import shutil
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# Go packages whose types are written out, with the proto package and file they become. Adding a
# served API group means adding its package here and rerunning the script.
PACKAGES = {
    "k8s.io/api/core/v1": "k8s.io/api/core/v1/generated.proto",
    "k8s.io/api/apps/v1": "k8s.io/api/apps/v1/generated.proto",
    "k8s.io/api/batch/v1": "k8s.io/api/batch/v1/generated.proto",
    "k8s.io/api/autoscaling/v1": "k8s.io/api/autoscaling/v1/generated.proto",
    "k8s.io/api/autoscaling/v2": "k8s.io/api/autoscaling/v2/generated.proto",
    "k8s.io/api/coordination/v1": "k8s.io/api/coordination/v1/generated.proto",
    "k8s.io/api/policy/v1": "k8s.io/api/policy/v1/generated.proto",
    "k8s.io/api/rbac/v1": "k8s.io/api/rbac/v1/generated.proto",
    "k8s.io/api/scheduling/v1": "k8s.io/api/scheduling/v1/generated.proto",
    "k8s.io/api/authentication/v1": "k8s.io/api/authentication/v1/generated.proto",
    "k8s.io/api/authorization/v1": "k8s.io/api/authorization/v1/generated.proto",
    "k8s.io/apimachinery/pkg/apis/meta/v1": "k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto",
    "k8s.io/apimachinery/pkg/runtime": "k8s.io/apimachinery/pkg/runtime/generated.proto",
    "k8s.io/apimachinery/pkg/util/intstr": "k8s.io/apimachinery/pkg/util/intstr/generated.proto",
}
RESOURCE_PKG = "k8s.io/apimachinery/pkg/api/resource"
PACKAGES_WITH_RESOURCE = dict(PACKAGES)
PACKAGES_WITH_RESOURCE[RESOURCE_PKG] = "k8s.io/apimachinery/pkg/api/resource/generated.proto"

# Types whose Go declaration has no protobuf-tagged fields (custom marshalling); their wire
# layout is fixed by apimachinery and written here as upstream declares it.
HAND_DECLARED = {
    ("k8s.io/apimachinery/pkg/apis/meta/v1", "Time"): [("int64", "seconds", 1), ("int32", "nanos", 2)],
    ("k8s.io/apimachinery/pkg/apis/meta/v1", "MicroTime"): [("int64", "seconds", 1), ("int32", "nanos", 2)],
    (RESOURCE_PKG, "Quantity"): [("string", "string", 1)],
    # Named []string types used as map values: go-to-protobuf wraps them in a message.
    ("k8s.io/api/authentication/v1", "ExtraValue"): [("repeated string", "items", 1)],
    ("k8s.io/api/authorization/v1", "ExtraValue"): [("repeated string", "items", 1)],
}

KIND_NAMES = {1: "bool", 2: "int", 5: "int32", 6: "int64", 8: "uint8", 17: "array", 21: "map",
              22: "ptr", 23: "slice", 24: "string", 25: "struct"}
# Offset of the UncommonType after each kind's type-specific descriptor.
UNCOMMON_OFFSET = {25: 80, 22: 56, 23: 56, 21: 88, 17: 72}


class Binary:
    def __init__(self, path):
        with open(path, "rb") as f:
            self.data = f.read()
        if self.data[:4] != b"\x7fELF" or self.data[4] != 2 or self.data[5] != 1:
            sys.exit(f"{path}: not a little-endian ELF64 file")
        shoff, = struct.unpack_from("<Q", self.data, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", self.data, 0x3A)
        raw = [struct.unpack_from("<IIQQQQ", self.data, shoff + i * shentsize) for i in range(shnum)]
        names_off = raw[shstrndx][4]
        self.sections = {}
        for name, kind, _flags, addr, offset, size in raw:
            start = names_off + name
            label = self.data[start:self.data.index(b"\0", start)].decode()
            if kind != 8:  # SHT_NOBITS has no file contents
                self.sections[label] = (addr, offset, size)
        if ".rodata" not in self.sections:
            sys.exit(f"{path}: no .rodata section")
        self.ro_addr, self.ro_off, self.ro_size = self.sections[".rodata"]

    def offset(self, addr):
        for start, off, size in self.sections.values():
            if start and start <= addr < start + size:
                return off + addr - start
        raise ValueError(f"address {addr:#x} is not in the file")

    def in_rodata(self, addr):
        return self.ro_addr <= addr < self.ro_addr + self.ro_size

    def u8(self, addr):
        return self.data[self.offset(addr)]

    def i32(self, addr):
        return struct.unpack_from("<i", self.data, self.offset(addr))[0]

    def u64(self, addr):
        return struct.unpack_from("<Q", self.data, self.offset(addr))[0]

    def uvarint(self, off):
        value, shift = 0, 0
        while True:
            b = self.data[off]
            off += 1
            value |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                return value, off

    def name(self, addr):
        """An abi.Name: flags byte, varint length, bytes, then (if flagged) varint length + tag."""
        off = self.offset(addr)
        flags = self.data[off]
        n, off = self.uvarint(off + 1)
        text = self.data[off:off + n].decode("utf-8")
        tag = ""
        if flags & 2:
            t, off2 = self.uvarint(off + n)
            tag = self.data[off2:off2 + t].decode("utf-8")
        return flags, text, tag

    def type_name(self, typ):
        tflag = self.u8(typ + 20)
        kind = self.u8(typ + 23) & 0x1F
        text = self.name(self.ro_addr + self.i32(typ + 40))[1]
        if tflag & 2:  # TFlagExtraStar
            text = text[1:]
        pkg = ""
        if tflag & 1:  # TFlagUncommon
            pkg = self.name(self.ro_addr + self.i32(typ + UNCOMMON_OFFSET.get(kind, 48)))[1]
        return text, pkg, kind

    def describe(self, typ):
        text, pkg, kind = self.type_name(typ)
        d = {"kind": KIND_NAMES.get(kind, f"kind{kind}"), "name": text, "pkg": pkg}
        if kind in (17, 22, 23):
            d["elem"] = self.describe(self.u64(typ + 48))
        if kind == 21:
            d["key"] = self.describe(self.u64(typ + 48))
            d["elem"] = self.describe(self.u64(typ + 56))
        return d

    def structs(self):
        """Every struct type descriptor in .rodata with at least one protobuf-tagged field."""
        data, end = self.data, self.ro_off + self.ro_size
        for off in range(self.ro_off, end - 80, 8):
            if data[off + 23] & 0x1F != 25:
                continue
            fptr, flen, fcap = struct.unpack_from("<QQQ", data, off + 56)
            if not (flen == fcap and 0 < flen < 512 and self.in_rodata(fptr)):
                continue
            foff = self.offset(fptr)
            fields = []
            for i in range(flen):
                nptr, tptr, _ = struct.unpack_from("<QQQ", data, foff + 24 * i)
                if not (self.in_rodata(nptr) and self.in_rodata(tptr)):
                    break
                fields.append((nptr, tptr))
            else:
                try:
                    named = [(self.name(n), t) for n, t in fields]
                except (ValueError, UnicodeDecodeError, IndexError):
                    continue
                if not any('protobuf:"' in tag for (_, _, tag), _ in named):
                    continue
                addr = self.ro_addr + (off - self.ro_off)
                text, pkg, _ = self.type_name(addr)
                yield text.split(".", 1)[-1], pkg, [
                    {"go": go, "tag": tag, "flags": flags, "type": self.describe(t)}
                    for (flags, go, tag), t in named
                ]


def proto_package(go_pkg):
    return go_pkg.replace("/", ".")


def lower_camel(go_name):
    return go_name[:1].lower() + go_name[1:]


def message_ref(t, current_pkg, imports):
    """The proto name of the message a Go struct type becomes, recording its file as an import."""
    pkg = t["pkg"]
    name = t["name"].split(".", 1)[-1]
    if pkg not in PACKAGES_WITH_RESOURCE:
        raise SystemExit(f"{t['name']} from {pkg} is not in PACKAGES")
    if pkg == current_pkg:
        return name
    imports.add(PACKAGES_WITH_RESOURCE[pkg])
    return "." + proto_package(pkg) + "." + name


def scalar(t):
    k = t["kind"]
    if k in ("string", "bool", "int32", "int64"):
        return k
    if k == "int":
        return "int64"
    if k == "slice" and t["elem"]["kind"] == "uint8":
        return "bytes"
    return None


def field_line(go_pkg, field, imports):
    tags = dict(re.findall(r'(\w+):"([^"]*)"', field["tag"]))
    pb = tags.get("protobuf")
    if pb is None or pb == "-":
        return None, None
    parts = pb.split(",")
    number = int(parts[1])
    opts = dict(p.split("=", 1) for p in parts[2:] if "=" in p)
    name = opts.get("name") or lower_camel(field["go"])
    js = tags.get("json")
    json_parts = js.split(",") if js is not None else []
    options = []
    t = field["type"]
    if t["kind"] == "ptr":
        options.append("(cairn.k8s.go_pointer) = true")
        t = t["elem"]
    # A few tags spell the name in the Go field's case (authentication/v1's `name=uID`); the
    # field's JSON key, which is what bodies are read into, is the json name ("uid").
    if js is not None and json_parts[0].lower() == name.lower():
        name = json_parts[0]
    if js is not None and json_parts[0] not in ("", "-") and json_parts[0] != name:
        raise SystemExit(f"{field['go']}: json name {json_parts[0]} differs from proto name {name}")
    if js is not None and js != "-" and "omitempty" not in json_parts[1:] and json_parts[0] != "":
        options.append("(cairn.k8s.go_omitempty) = false")
    if js is not None and json_parts[0] == "" and "inline" in json_parts[1:]:
        options.append("(cairn.k8s.go_inline) = true")
    label = "optional"
    if scalar(t):
        ty = scalar(t)
    elif t["kind"] == "struct":
        ty = message_ref(t, go_pkg, imports)
    elif t["kind"] == "slice":
        label = "repeated"
        e = t["elem"]
        ty = scalar(e) if scalar(e) else message_ref(e, go_pkg, imports) if e["kind"] == "struct" else None
        if ty is None:
            raise SystemExit(f"{field['go']}: unsupported slice element {e}")
    elif t["kind"] == "map":
        k, v = t["key"], t["elem"]
        if k["kind"] != "string":
            raise SystemExit(f"{field['go']}: map key {k}")
        vt = scalar(v) if scalar(v) else message_ref(v, go_pkg, imports) if v["kind"] == "struct" else None
        if vt is None and (v.get("pkg"), v.get("name", "").split(".", 1)[-1]) in HAND_DECLARED:
            vt = message_ref(v, go_pkg, imports)
        if vt is None:
            raise SystemExit(f"{field['go']}: unsupported map value {v}")
        label, ty = "", f"map<string, {vt}>"
    else:
        raise SystemExit(f"{field['go']}: unsupported Go type {t}")
    suffix = f" [{', '.join(options)}]" if options else ""
    return number, f"  {label + ' ' if label else ''}{ty} {name} = {number}{suffix};"


HEADER = """/*
Copyright The Kubernetes Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

// The wire schema of {go_pkg} as k8s.io's generated.proto declares it (message
// names, field names, numbers and types), without its documentation comments, plus
// (cairn.k8s.go_*) options saying how each Go field is declared.
// Generated by orchestrator/proto/generate-k8s.py from the Go types compiled into
// {version}; do not edit, rerun the script.
"""


def main():
    kubectl = sys.argv[1] if len(sys.argv) > 1 else shutil.which("kubectl")
    if not kubectl:
        sys.exit("kubectl not found; pass its path")
    kubectl = os.path.realpath(kubectl)
    version = subprocess.run([kubectl, "version", "--client"], capture_output=True, text=True).stdout
    version = re.search(r"Client Version: (\S+)", version)
    version = f"kubectl {version.group(1)}" if version else "kubectl"
    binary = Binary(kubectl)
    by_pkg = {pkg: {} for pkg in PACKAGES_WITH_RESOURCE}
    for name, pkg, fields in binary.structs():
        if pkg in PACKAGES:
            by_pkg[pkg][name] = fields
    for (pkg, name) in HAND_DECLARED:
        by_pkg[pkg][name] = None
    for pkg, path in PACKAGES_WITH_RESOURCE.items():
        if not by_pkg[pkg]:
            sys.exit(f"no types of {pkg} found in {kubectl}")
        imports = set()
        messages = []
        for name in sorted(by_pkg[pkg]):
            fields = by_pkg[pkg][name]
            if fields is None:
                lines = [(n, f"  {ty if ty.startswith('repeated ') else 'optional ' + ty} {fname} = {n};")
                         for ty, fname, n in HAND_DECLARED[(pkg, name)]]
            else:
                lines = [field_line(pkg, f, imports) for f in fields]
                lines = [l for l in lines if l[0] is not None]
            numbers = [n for n, _ in lines]
            if len(numbers) != len(set(numbers)):
                sys.exit(f"{pkg}.{name}: duplicate field numbers {numbers}")
            body = "\n".join(text for _, text in sorted(lines))
            messages.append(f"message {name} {{\n{body}\n}}\n")
        imports.discard(path)
        uses_options = any("(cairn.k8s." in m for m in messages)
        if uses_options:
            imports.add("cairn/k8s/go.proto")
        out = [HEADER.format(go_pkg=pkg, version=version), 'syntax = "proto2";\n',
               f"package {proto_package(pkg)};\n"]
        out += [f'import "{i}";' for i in sorted(imports)]
        if imports:
            out.append("")
        out.append(f'option go_package = "{pkg}";\n')
        out += messages
        target = os.path.join(HERE, path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "w") as f:
            f.write("\n".join(out))
        print(f"{path}: {len(messages)} messages")


if __name__ == "__main__":
    main()
