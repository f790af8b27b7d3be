#!/usr/bin/env python3
"""The official Python `kubernetes` client against a skiff cluster.

Run with KUBECONFIG pointing at the cluster. Creates a namespace, a
ConfigMap and a Deployment, lists with a label selector, patches (strategic
and merge), watches ADDED/MODIFIED/DELETED with kubernetes.watch.Watch, and
deletes. Prints one `SUMMARY ...` line and exits 0 on success; any failed
check raises and exits non-zero.
"""

import sys
import threading

try:
    from kubernetes import client, config, watch
    from kubernetes.client.rest import ApiException
except ImportError as e:  # pragma: no cover - the Rust test reports this
    print(f"the Python kubernetes client is not installed ({e}): pip install kubernetes",
          file=sys.stderr)
    sys.exit(3)

NS = "py-e2e"
LABEL = "suite=python"


def check(cond, message):
    if not cond:
        raise AssertionError(message)


def main():
    config.load_kube_config()
    core = client.CoreV1Api()
    apps = client.AppsV1Api()

    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NS)))

    # Watch from the list's resourceVersion, so no change can be missed.
    rv = core.list_namespaced_config_map(NS, label_selector=LABEL).metadata.resource_version
    check(rv, "a list has no metadata.resourceVersion")
    events = []
    errors = []

    def watch_config_maps():
        w = watch.Watch()
        try:
            for ev in w.stream(core.list_namespaced_config_map, NS,
                               label_selector=LABEL, resource_version=rv,
                               timeout_seconds=20):
                obj = ev["object"]
                events.append((ev["type"], obj.metadata.name,
                               (obj.data or {}).get("color")))
                if ev["type"] == "DELETED":
                    w.stop()
        except Exception as e:  # noqa: BLE001 - reported by the main thread
            errors.append(repr(e))

    watcher = threading.Thread(target=watch_config_maps, daemon=True)
    watcher.start()

    # Create.
    cm = client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="py-cm", labels={"suite": "python"}),
        data={"color": "red"})
    core.create_namespaced_config_map(NS, cm)
    core.create_namespaced_config_map(NS, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="py-unlabelled"), data={"x": "y"}))
    dep = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="py-deploy", labels={"suite": "python"}),
        spec=client.V1DeploymentSpec(
            replicas=1,
            selector=client.V1LabelSelector(match_labels={"app": "py"}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": "py"}),
                spec=client.V1PodSpec(containers=[
                    client.V1Container(name="main", image="nginx:1.27")]))))
    apps.create_namespaced_deployment(NS, dep)

    # Conflicting create is a 409.
    try:
        core.create_namespaced_config_map(NS, cm)
        raise AssertionError("creating py-cm twice succeeded")
    except ApiException as e:
        check(e.status == 409, f"a duplicate create answered {e.status}")

    # List with a label selector.
    names = sorted(i.metadata.name for i in
                   core.list_namespaced_config_map(NS, label_selector=LABEL).items)
    check(names == ["py-cm"], f"labelled config maps: {names}")
    deploys = [d.metadata.name for d in
               apps.list_namespaced_deployment(NS, label_selector=LABEL).items]
    check(deploys == ["py-deploy"], f"labelled deployments: {deploys}")

    # Merge patch.
    patched = core.patch_namespaced_config_map(
        "py-cm", NS, {"data": {"color": "blue"}},
        _content_type="application/merge-patch+json")
    check(patched.data == {"color": "blue"}, f"after the merge patch: {patched.data}")

    # Strategic merge patch: a container merged in by name.
    patched = apps.patch_namespaced_deployment(
        "py-deploy", NS,
        {"spec": {"template": {"spec": {"containers": [
            {"name": "sidecar", "image": "busybox:1.36"}]}}}},
        _content_type="application/strategic-merge-patch+json")
    containers = sorted((c.name, c.image) for c in patched.spec.template.spec.containers)
    check(containers == [("main", "nginx:1.27"), ("sidecar", "busybox:1.36")],
          f"after the strategic patch: {containers}")
    check(patched.metadata.generation == 2,
          f"generation after a spec patch: {patched.metadata.generation}")

    # Read back.
    got = core.read_namespaced_config_map("py-cm", NS)
    check(got.data["color"] == "blue", f"read back: {got.data}")

    # Delete, and 404 afterwards.
    core.delete_namespaced_config_map("py-cm", NS)
    try:
        core.read_namespaced_config_map("py-cm", NS)
        raise AssertionError("py-cm is still there after delete")
    except ApiException as e:
        check(e.status == 404, f"a read after delete answered {e.status}")

    watcher.join(timeout=30)
    check(not watcher.is_alive(), f"the watch never saw DELETED: {events}")
    check(not errors, f"the watch failed: {errors}")
    want = [("ADDED", "py-cm", "red"), ("MODIFIED", "py-cm", "blue"),
            ("DELETED", "py-cm", "blue")]
    check(events == want, f"watch events {events}, want {want}")

    apps.delete_namespaced_deployment("py-deploy", NS)
    core.delete_namespace(NS)

    print("SUMMARY created=3 listed=py-cm,py-deploy patched=merge,strategic "
          "events=" + ",".join(t for t, _, _ in events) + " deleted=ok")


if __name__ == "__main__":
    main()
