#!/usr/bin/env python3
"""Generate apiserver/src/protobuf/table.rs: the Kubernetes protobuf schema skiff decodes.

Three inputs, each authoritative for one thing, cross-checked against each other:

* the `k8s-pb` crate (prost code generated from Kubernetes' generated.proto):
  field numbers, wire types, repeated/map shape and message references;
* the `k8s-openapi` crate (generated from the OpenAPI spec): the JSON name of
  every field (its Deserialize impls hold `"clusterIP" => Field::Key_cluster_ip`);
* a kubectl binary (Go reflection data of the k8s.io/api structs, see
  gotypes.py): whether a field is a Go pointer (so a zero value on the wire
  was set on purpose), whether its json tag has `omitempty`, and whether the
  field is `json:",inline"` (Volume.volumeSource, Probe.handler, ...).

Usage (from the repository root; nothing here runs at build time):

    python3 apiserver/tools/gen_protobuf_table.py \
        --k8s-pb ~/.cargo/registry/src/*/k8s-pb-0.9.0 \
        --k8s-openapi ~/.cargo/registry/src/*/k8s-openapi-0.29.0 \
        --kubectl /usr/lib/google-cloud-sdk/bin/kubectl.1.33 \
        > apiserver/src/protobuf/table.rs
"""
import argparse, glob, os, re, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gotypes  # noqa: E402

# (apiVersion, kind, k8s-pb path). apiVersion "*" matches any group version.
ROOTS = [
    ("v1", "Namespace", "api::core::v1::Namespace"),
    ("v1", "Node", "api::core::v1::Node"),
    ("v1", "Pod", "api::core::v1::Pod"),
    ("v1", "Binding", "api::core::v1::Binding"),
    ("v1", "Service", "api::core::v1::Service"),
    ("v1", "Endpoints", "api::core::v1::Endpoints"),
    ("v1", "ConfigMap", "api::core::v1::ConfigMap"),
    ("v1", "Secret", "api::core::v1::Secret"),
    ("v1", "ServiceAccount", "api::core::v1::ServiceAccount"),
    ("v1", "Event", "api::core::v1::Event"),
    ("apps/v1", "Deployment", "api::apps::v1::Deployment"),
    ("apps/v1", "ReplicaSet", "api::apps::v1::ReplicaSet"),
    ("apps/v1", "DaemonSet", "api::apps::v1::DaemonSet"),
    ("apps/v1", "StatefulSet", "api::apps::v1::StatefulSet"),
    ("autoscaling/v1", "Scale", "api::autoscaling::v1::Scale"),
    ("autoscaling/v2", "HorizontalPodAutoscaler", "api::autoscaling::v2::HorizontalPodAutoscaler"),
    ("batch/v1", "Job", "api::batch::v1::Job"),
    ("coordination.k8s.io/v1", "Lease", "api::coordination::v1::Lease"),
    ("discovery.k8s.io/v1", "EndpointSlice", "api::discovery::v1::EndpointSlice"),
    ("scheduling.k8s.io/v1", "PriorityClass", "api::scheduling::v1::PriorityClass"),
    ("policy/v1", "Eviction", "api::policy::v1::Eviction"),
    ("policy/v1", "PodDisruptionBudget", "api::policy::v1::PodDisruptionBudget"),
    ("authentication.k8s.io/v1", "TokenRequest", "api::authentication::v1::TokenRequest"),
    ("*", "DeleteOptions", "apimachinery::pkg::apis::meta::v1::DeleteOptions"),
]

META = "apimachinery::pkg::apis::meta::v1::"
# Messages whose JSON form is not an object; the decoder knows each by name.
SPECIAL = {
    META + "Time": "Time",
    META + "MicroTime": "MicroTime",
    META + "Duration": "Duration",
    META + "FieldsV1": "FieldsV1",
    "apimachinery::pkg::api::resource::Quantity": "Quantity",
    "apimachinery::pkg::util::intstr::IntOrString": "IntOrString",
    "apimachinery::pkg::runtime::RawExtension": "RawExtension",
}
SCALAR = {"string": "Str", "int32": "I32", "int64": "I64", "bool": "Bool", "bytes": "Bytes", "double": "F64"}


def fail(msg):
    sys.exit("gen_protobuf_table: " + msg)


# ---------------------------------------------------------------- k8s-pb
def parse_k8s_pb(root):
    """{ 'api::core::v1::Service': [(tag, rust_name, kind, card, target_path)] }"""
    msgs = {}
    src = os.path.join(root, "src")
    for path in glob.glob(os.path.join(src, "**", "mod.rs"), recursive=True):
        module = os.path.relpath(os.path.dirname(path), src).replace(os.sep, "::")
        text = "\n".join(l for l in open(path).read().splitlines() if not l.strip().startswith("///"))
        for m in re.finditer(r"pub struct (\w+) \{(.*?)\n\}", text, re.S):
            fields = []
            for f in re.finditer(r"#\[prost\((.*?)\)\]\s*pub (?:r#)?(\w+):\s*(.*?),\s*(?=#\[prost|$)", m.group(2), re.S):
                attrs, name, ty = f.group(1), f.group(2), re.sub(r"\s+", "", f.group(3)).replace(",>", ">")
                tag = int(re.search(r'tag = "(\d+)"', attrs).group(1))
                if attrs.startswith("btree_map"):
                    k, v = [s.strip() for s in re.search(r'btree_map = "([^"]*)"', attrs).group(1).split(",")]
                    if k != "string":
                        fail(f"{module}::{m.group(1)}.{name}: map key {k}")
                    target = resolve(module, re.search(r"BTreeMap<[^,]*,(.*)>$", ty).group(1)) if v == "message" else None
                    fields.append((tag, name, v, "map", target))
                    continue
                kind = attrs.split(",")[0].split("=")[0].strip()
                card = "repeated" if "repeated" in attrs else "one"
                target = None
                if kind == "message":
                    inner = re.sub(r"^::core::option::Option<(.*)>$", r"\1", ty)
                    inner = re.sub(r"^::prost::alloc::(?:vec::Vec|boxed::Box)<(.*)>$", r"\1", inner)
                    inner = re.sub(r"^::prost::alloc::boxed::Box<(.*)>$", r"\1", inner)
                    target = resolve(module, inner)
                elif kind not in SCALAR:
                    fail(f"{module}::{m.group(1)}.{name}: prost kind {kind}")
                fields.append((tag, name, kind, card, target))
            msgs[f"{module}::{m.group(1)}"] = fields
    return msgs


def resolve(module, ty):
    parts = module.split("::")
    segs = ty.split("::")
    while segs[0] == "super":
        parts.pop()
        segs.pop(0)
    return "::".join(parts + segs)


# ---------------------------------------------------------------- k8s-openapi
def parse_openapi(root):
    """{ 'io.k8s.api.core.v1.service': ['allocateLoadBalancerNodePorts', ...] } (lower-cased keys)"""
    out = {}
    # v1_33 matches kubectl 1.33; later versions add the fields k8s-pb knows from newer releases.
    for version in ("v1_33", "v1_34", "v1_35", "v1_36", "v1_37"):
        for path in glob.glob(os.path.join(root, "src", version, "**", "*.rs"), recursive=True):
            text = open(path).read()
            m = re.match(r"// Generated from definition (\S+)", text)
            if m:
                names = out.setdefault(m.group(1).lower(), [])
                names += [n for n in re.findall(r'"(\w+)" => Field::Key_', text) if n not in names]
    return out


# ---------------------------------------------------------------- Go structs
def parse_go(binary):
    """{ ('k8s.io/api/core/v1', 'ServiceSpec'): { tag: (json, omitempty, inline, pointer) } }"""
    out = {}
    for pkg, tname, fields in gotypes.structs(binary, ["k8s.io/api/", "k8s.io/apimachinery/"]):
        by_tag = {}
        for _, tag, ptr, _ in fields:
            pb = re.search(r'protobuf:"[a-z0-9]+,(\d+),', tag)
            js = re.search(r'json:"([^"]*)"', tag)
            if not pb or not js:
                continue
            opts = js.group(1).split(",")
            by_tag[int(pb.group(1))] = (opts[0], "omitempty" in opts[1:], "inline" in opts[1:], ptr == "ptr")
        out[(pkg, tname.split(".", 1)[1].lower())] = by_tag
    return out


def go_key(path):
    module, name = path.rsplit("::", 1)
    if module.startswith("api::"):
        return ("k8s.io/api/" + module[5:].replace("::", "/"), name.lower())
    return ("k8s.io/" + module.replace("::", "/"), name.lower())


def norm(s):
    return s.replace("_", "").lower()


# ---------------------------------------------------------------- table
def build(pb, openapi, go):
    order, index = [], {}

    def visit(path):
        if path in SPECIAL or path in index:
            return
        if path not in pb:
            fail(f"unknown message {path}")
        index[path] = len(order)
        order.append(path)
        for _, _, _, _, target in pb[path]:
            if target:
                visit(target)

    for _, _, path in ROOTS:
        visit(path)

    def ty(kind, target):
        if target:
            return SPECIAL.get(target) or f"Msg({index[target]})"
        return SCALAR[kind]

    # Last resort for fields of inline-only structs newer than kubectl 1.33
    # (EphemeralContainerCommon.restartPolicyRules): a JSON name used by any definition.
    anywhere = {}
    for names in openapi.values():
        for j in names:
            anywhere.setdefault(norm(j), set()).add(j)

    messages, problems = [], []
    for path in order:
        module, name = path.rsplit("::", 1)
        definition = ("io.k8s." + module.replace("::", ".") + "." + name).lower()
        # Inline-only structs (VolumeSource, ProbeHandler, ...) have no OpenAPI definition,
        # and messages newer than kubectl 1.33 have no Go struct; one source is enough.
        json_names = openapi.get(definition, [])
        by_norm = {norm(j): j for j in json_names}
        gofields = go.get(go_key(path))
        if gofields is None and not json_names:
            problems.append(f"{path}: neither an OpenAPI definition nor a Go struct")
        fields = []
        for tag, rname, kind, card, target in sorted(pb[path]):
            flags = []
            if card == "repeated":
                flags.append("REPEATED")
            if card == "map":
                flags.append("MAP")
            json = by_norm.get(norm(rname))
            g = (gofields or {}).get(tag)
            if g:
                gjson, omitempty, inline, pointer = g
                if inline:
                    flags.append("INLINE")
                    json = ""
                elif gjson == "-":
                    continue
                elif json is not None and json != gjson:
                    problems.append(f"{path}.{rname}: openapi says {json}, Go says {gjson}")
                else:
                    json = gjson
                if pointer:
                    flags.append("POINTER")
                if omitempty:
                    flags.append("OMITEMPTY")
            else:
                # Newer than kubectl 1.33: presence unknown, so keep every value we see.
                flags.append("POINTER")
            if json is None and len(anywhere.get(norm(rname), ())) == 1:
                json = next(iter(anywhere[norm(rname)]))
            if json is None:
                problems.append(f"{path}.{rname}: no JSON name")
                continue
            fields.append((tag, json, ty(kind, target), "|".join(flags) or "0"))
        messages.append((path, fields))
    if problems:
        fail("schema sources disagree:\n  " + "\n  ".join(problems))
    roots = [(av, k, index[p]) for av, k, p in ROOTS]
    return messages, roots


def render(messages, roots):
    out = [
        "// @generated by apiserver/tools/gen_protobuf_table.py — do not edit by hand.",
        "//",
        "// Regenerate (from the repository root) with:",
        "//   python3 apiserver/tools/gen_protobuf_table.py \\",
        "//       --k8s-pb ~/.cargo/registry/src/*/k8s-pb-0.9.0 \\",
        "//       --k8s-openapi ~/.cargo/registry/src/*/k8s-openapi-0.29.0 \\",
        "//       --kubectl /usr/lib/google-cloud-sdk/bin/kubectl.1.33 \\",
        "//       > apiserver/src/protobuf/table.rs",
        "//",
        "// Field numbers and shapes come from k8s-pb 0.9, JSON names from k8s-openapi",
        "// 0.29 (v1_33), pointer/omitempty/inline flags from the Go structs in kubectl 1.33.",
        "",
        "use super::schema::{Field, Message, Root, Ty::*, INLINE, MAP, OMITEMPTY, POINTER, REPEATED};",
        "",
        "const fn f(tag: u32, json: &'static str, ty: super::schema::Ty, flags: u8) -> Field {",
        "    Field { tag, json, ty, flags }",
        "}",
        "",
        "pub(super) static ROOTS: &[Root] = &[",
    ]
    for av, k, i in roots:
        out.append(f'    Root {{ api_version: "{av}", kind: "{k}", message: {i} }},')
    out.append("];")
    out.append("")
    out.append("pub(super) static MESSAGES: &[Message] = &[")
    for i, (path, fields) in enumerate(messages):
        name = path.rsplit("::", 1)[1]
        out.append(f'    // {i}: {path}')
        out.append(f'    Message {{ name: "{name}", fields: &[')
        for tag, json, ty, flags in fields:
            out.append(f'        f({tag}, "{json}", {ty}, {flags}),')
        out.append("    ] },")
    out.append("];")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--k8s-pb", required=True)
    ap.add_argument("--k8s-openapi", required=True)
    ap.add_argument("--kubectl", required=True)
    a = ap.parse_args()
    messages, roots = build(parse_k8s_pb(a.k8s_pb), parse_openapi(a.k8s_openapi), parse_go(a.kubectl))
    sys.stdout.write(render(messages, roots))


if __name__ == "__main__":
    main()
