"""Tiny plain-HTTP stand-in for an API server, used to capture the protobuf
fixtures in apiserver/src/protobuf/fixtures/ (see the README there).

Serves just enough legacy discovery for `kubectl create ...`, records every
POST/PUT/DELETE body as OUT/NN_<path>.bin (+ .meta: path and Content-Type),
and answers 500 so nothing else happens.

    python3 apiserver/tools/kubectl_capture_server.py PORT OUT_DIR
"""
import json, os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

OUT = sys.argv[2]
GROUPS = {
    "apps/v1": [("deployments", "Deployment", True)],
    "batch/v1": [("jobs", "Job", True), ("cronjobs", "CronJob", True)],
    "scheduling.k8s.io/v1": [("priorityclasses", "PriorityClass", False)],
    "policy/v1": [("poddisruptionbudgets", "PodDisruptionBudget", True)],
}
CORE = [("namespaces", "Namespace", False), ("configmaps", "ConfigMap", True), ("secrets", "Secret", True),
        ("services", "Service", True), ("serviceaccounts", "ServiceAccount", True), ("pods", "Pod", True)]


def reslist(gv, res):
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": [
        {"name": n, "singularName": k.lower(), "namespaced": ns, "kind": k,
         "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]} for n, k, ns in res]}


class H(BaseHTTPRequestHandler):
    def reply(self, code, obj):
        b = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)

    def do_GET(self):
        p = self.path.split("?")[0]
        if p == "/version":
            return self.reply(200, {"major": "1", "minor": "32", "gitVersion": "v1.32.0"})
        if p == "/api":
            return self.reply(200, {"kind": "APIVersions", "versions": ["v1"]})
        if p == "/api/v1":
            return self.reply(200, reslist("v1", CORE))
        if p == "/apis":
            return self.reply(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": gv.split("/")[0], "versions": [{"groupVersion": gv, "version": "v1"}],
                 "preferredVersion": {"groupVersion": gv, "version": "v1"}} for gv in GROUPS]})
        if p.startswith("/apis/") and p[6:] in GROUPS:
            return self.reply(200, reslist(p[6:], GROUPS[p[6:]]))
        self.reply(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404, "reason": "NotFound"})

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        ct = self.headers.get("Content-Type", "")
        seq = len(os.listdir(OUT))
        name = self.path.split("?")[0].strip("/").replace("/", "_")
        with open(os.path.join(OUT, f"{seq:02d}_{name}.bin"), "wb") as f:
            f.write(body)
        with open(os.path.join(OUT, f"{seq:02d}_{name}.meta"), "w") as f:
            f.write(f"{self.path}\n{ct}\n")
        self.reply(500, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 500,
                         "message": "captured", "reason": "InternalError"})

    do_DELETE = do_POST
    do_PUT = do_POST

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.command, self.path))


HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
