#!/usr/bin/env python3
"""Validates deploy/kubernetes: yamllint, a schema for every object (the
fields of the Kubernetes API these manifests use, unknown fields refused so
that a misspelt key fails), and the references between objects (selectors,
ports, volumes, config maps, the flags the coordinator is given).

  k8s_manifests_test.py MANIFEST_DIR COORDINATOR_BINARY KEYGEN_BINARY RELAY_BINARY
"""
import os
import re
import subprocess
import sys
import tempfile

import jsonschema
import yaml

# --- schemas: a subset of the Kubernetes API, closed to unknown fields. ---

def obj(properties, required=(), open_=False):
    return {"type": "object", "properties": properties, "required": list(required),
            "additionalProperties": open_}

STR = {"type": "string"}
INT = {"type": "integer"}
BOOL = {"type": "boolean"}
NAME = {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63}
LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
QUANTITY = {"type": ["string", "integer"], "pattern": r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G)?$"}
PORT_REF = {"type": ["string", "integer"]}
METADATA = obj({"name": NAME, "namespace": NAME, "labels": LABELS, "annotations": LABELS}, ["name"])
TEMPLATE_METADATA = obj({"labels": LABELS, "annotations": LABELS}, ["labels"])
PROBE = obj({
    "httpGet": obj({"path": STR, "port": PORT_REF, "scheme": {"enum": ["HTTP", "HTTPS"]}}, ["port"]),
    "tcpSocket": obj({"port": PORT_REF}, ["port"]),
    "initialDelaySeconds": INT, "periodSeconds": INT, "timeoutSeconds": INT,
    "failureThreshold": INT, "successThreshold": INT,
})
CONTAINER = obj({
    "name": NAME, "image": STR,
    "imagePullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
    "command": {"type": "array", "items": STR}, "args": {"type": "array", "items": STR},
    "ports": {"type": "array", "items": obj({
        "name": {"type": "string", "maxLength": 15}, "containerPort": INT,
        "protocol": {"enum": ["TCP", "UDP", "SCTP"]}}, ["containerPort"])},
    "env": {"type": "array", "items": obj({"name": STR, "value": STR, "valueFrom": obj({
        "fieldRef": obj({"fieldPath": STR}, ["fieldPath"])}, ["fieldRef"])}, ["name"])},
    "startupProbe": PROBE, "readinessProbe": PROBE, "livenessProbe": PROBE,
    "resources": obj({"requests": obj({"cpu": QUANTITY, "memory": QUANTITY}),
                      "limits": obj({"cpu": QUANTITY, "memory": QUANTITY})}),
    "securityContext": obj({
        "allowPrivilegeEscalation": BOOL, "readOnlyRootFilesystem": BOOL,
        "runAsNonRoot": BOOL, "runAsUser": INT,
        "capabilities": obj({"drop": {"type": "array", "items": STR},
                             "add": {"type": "array", "items": STR}})}),
    "volumeMounts": {"type": "array", "items": obj({
        "name": NAME, "mountPath": STR, "readOnly": BOOL, "subPath": STR}, ["name", "mountPath"])},
}, ["name", "image"])
VOLUME = obj({
    "name": NAME,
    "configMap": obj({"name": NAME, "defaultMode": INT}, ["name"]),
    "secret": obj({"secretName": NAME, "defaultMode": INT}, ["secretName"]),
    "emptyDir": obj({"medium": STR, "sizeLimit": QUANTITY}),
    "persistentVolumeClaim": obj({"claimName": NAME}, ["claimName"]),
}, ["name"])
POD_SPEC = obj({
    "containers": {"type": "array", "items": CONTAINER, "minItems": 1},
    "volumes": {"type": "array", "items": VOLUME},
    "terminationGracePeriodSeconds": INT,
    "serviceAccountName": NAME,
    "securityContext": obj({
        "runAsNonRoot": BOOL, "runAsUser": INT, "runAsGroup": INT, "fsGroup": INT,
        "seccompProfile": obj({"type": {"enum": ["RuntimeDefault", "Localhost", "Unconfined"]}}, ["type"])}),
}, ["containers"])
SCHEMAS = {
    ("v1", "Namespace"): obj({"apiVersion": STR, "kind": STR, "metadata": METADATA}, ["metadata"]),
    ("v1", "ConfigMap"): obj({"apiVersion": STR, "kind": STR, "metadata": METADATA,
                              "data": {"type": "object", "additionalProperties": STR}}, ["metadata", "data"]),
    ("v1", "Service"): obj({"apiVersion": STR, "kind": STR, "metadata": METADATA, "spec": obj({
        "type": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]},
        "clusterIP": STR, "selector": LABELS,
        "externalTrafficPolicy": {"enum": ["Local", "Cluster"]},
        "ports": {"type": "array", "minItems": 1, "items": obj({
            "name": STR, "port": INT, "targetPort": PORT_REF,
            "protocol": {"enum": ["TCP", "UDP", "SCTP"]}}, ["port"])},
    }, ["selector", "ports"])}, ["metadata", "spec"]),
    ("apps/v1", "StatefulSet"): obj({"apiVersion": STR, "kind": STR, "metadata": METADATA, "spec": obj({
        "serviceName": NAME, "replicas": INT,
        "podManagementPolicy": {"enum": ["OrderedReady", "Parallel"]},
        "updateStrategy": obj({"type": {"enum": ["RollingUpdate", "OnDelete"]}}),
        "selector": obj({"matchLabels": LABELS}, ["matchLabels"]),
        "template": obj({"metadata": TEMPLATE_METADATA, "spec": POD_SPEC}, ["metadata", "spec"]),
        "volumeClaimTemplates": {"type": "array", "items": obj({
            "metadata": obj({"name": NAME}, ["name"]),
            "spec": obj({"accessModes": {"type": "array", "items": {
                "enum": ["ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"]}},
                "storageClassName": STR,
                "resources": obj({"requests": obj({"storage": QUANTITY}, ["storage"])}, ["requests"])},
                ["accessModes", "resources"])}, ["metadata", "spec"])},
    }, ["serviceName", "selector", "template"])}, ["metadata", "spec"]),
    ("apps/v1", "Deployment"): obj({"apiVersion": STR, "kind": STR, "metadata": METADATA, "spec": obj({
        "replicas": INT,
        "strategy": obj({"type": {"enum": ["RollingUpdate", "Recreate"]},
                         "rollingUpdate": obj({"maxUnavailable": PORT_REF, "maxSurge": PORT_REF})}),
        "selector": obj({"matchLabels": LABELS}, ["matchLabels"]),
        "template": obj({"metadata": TEMPLATE_METADATA, "spec": POD_SPEC}, ["metadata", "spec"]),
    }, ["selector", "template"])}, ["metadata", "spec"]),
    ("kustomize.config.k8s.io/v1beta1", "Kustomization"): obj({
        "apiVersion": STR, "kind": STR, "namespace": NAME,
        "resources": {"type": "array", "items": STR}}, ["resources"]),
}

# Secrets the operator creates by hand (deploy/README.md says how).
EXTERNAL_SECRETS = {"fedge-coordinator-key", "fedge-relay-key"}


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def validate(manifest_dir):
    subprocess.run(["yamllint", "--strict", "-c", os.path.join(manifest_dir, ".yamllint"), manifest_dir],
                   check=True)
    with open(os.path.join(manifest_dir, "kustomization.yaml")) as f:
        kustomization = yaml.safe_load(f)
    jsonschema.validate(kustomization, SCHEMAS[(kustomization["apiVersion"], kustomization["kind"])])
    listed = set(kustomization["resources"])
    present = {n for n in os.listdir(manifest_dir) if n.endswith(".yaml") and n != "kustomization.yaml"}
    check(listed == present, f"kustomization lists {sorted(listed)}, the directory holds {sorted(present)}")

    objects = []
    for name in kustomization["resources"]:
        with open(os.path.join(manifest_dir, name)) as f:
            for doc in yaml.safe_load_all(f):
                if doc is None:
                    continue
                key = (doc.get("apiVersion"), doc.get("kind"))
                check(key in SCHEMAS, f"{name}: no schema for {key}")
                try:
                    jsonschema.validate(doc, SCHEMAS[key])
                except jsonschema.ValidationError as e:
                    raise AssertionError(f"{name}: {doc['kind']} {doc['metadata'].get('name')}: "
                                         f"{'/'.join(map(str, e.absolute_path))}: {e.message}")
                if doc["kind"] != "Namespace":
                    check(doc["metadata"].get("namespace") == kustomization["namespace"],
                          f"{name}: {doc['metadata']['name']} is not in namespace {kustomization['namespace']}")
                objects.append(doc)

    by_kind = {}
    for o in objects:
        by_kind.setdefault(o["kind"], {})[o["metadata"]["name"]] = o
    config_maps = by_kind.get("ConfigMap", {})
    services = by_kind.get("Service", {})
    sets = by_kind.get("StatefulSet", {})
    deployments = by_kind.get("Deployment", {})
    check(sets, "no StatefulSet")
    flag_files = []
    workloads = [(name, o, True) for name, o in sets.items()] + [(name, o, False) for name, o in deployments.items()]
    for set_name, s, stateful in workloads:
        spec = s["spec"]
        labels = spec["template"]["metadata"]["labels"]
        for k, v in spec["selector"]["matchLabels"].items():
            check(labels.get(k) == v, f"{set_name}: selector {k}={v} does not match the pod labels")
        claims = set()
        if stateful:
            check(spec.get("replicas", 1) == 1, f"{set_name}: the coordinator is a single writer: replicas must be 1")
            headless = services.get(spec["serviceName"])
            check(headless is not None, f"{set_name}: serviceName {spec['serviceName']} is not a Service here")
            check(headless["spec"].get("clusterIP") == "None", f"{spec['serviceName']} must be headless")
            claims = {c["metadata"]["name"] for c in spec.get("volumeClaimTemplates", [])}
            check(claims, f"{set_name}: no persistent volume for the checkpoint")
        pod = spec["template"]["spec"]
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for v in volumes.values():
            if "configMap" in v:
                check(v["configMap"]["name"] in config_maps, f"volume {v['name']}: no ConfigMap {v['configMap']['name']}")
            if "secret" in v:
                check(v["secret"]["secretName"] in EXTERNAL_SECRETS, f"volume {v['name']}: unknown Secret")
        for c in pod["containers"]:
            ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
            check({"zmq", "metrics"} <= set(ports), f"{c['name']}: needs ports named zmq and metrics")
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                check(probe in c, f"{c['name']}: no {probe}")
                port = c[probe].get("httpGet", c[probe].get("tcpSocket"))["port"]
                check(port in ports or port in ports.values(), f"{c['name']}: {probe} port {port} is not a container port")
            env = {e["name"] for e in c.get("env", [])}
            for arg in c.get("args", []):
                for var in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", arg):
                    check(var in env, f"{c['name']}: {arg} names $({var}), which is not in its env")
            mounts = {}
            for m in c.get("volumeMounts", []):
                check(m["name"] in volumes or m["name"] in claims, f"{c['name']}: mount {m['name']} has no volume")
                mounts[m["mountPath"]] = m["name"]
            # The flags the container is given, as the binary will read them.
            for arg in c.get("args", []):
                match = re.match(r"--flagfile=(.*)/([^/]+)$", arg)
                if not match:
                    continue
                volume = volumes.get(mounts.get(match.group(1), ""))
                check(volume is not None and "configMap" in volume, f"{arg}: not a mounted ConfigMap")
                data = config_maps[volume["configMap"]["name"]]["data"]
                check(match.group(2) in data, f"{arg}: the ConfigMap has no key {match.group(2)}")
                flags = data[match.group(2)]
                listen = re.search(r"^--listen=tcp://[^:]+:(\d+)$", flags, re.M)
                metrics = re.search(r"^--metrics_address=[^:]*:(\d+)$", flags, re.M)
                check(listen and int(listen.group(1)) == ports["zmq"], "--listen port is not the zmq port")
                check(metrics and int(metrics.group(1)) == ports["metrics"], "--metrics_address port is not the metrics port")
                if stateful:
                    state = re.search(r"^--state_dir=(.*)$", flags, re.M).group(1)
                    check(mounts.get(state) in claims, f"--state_dir={state} is not on the persistent volume")
                    needed = ("--key", "--allowlist")
                else:
                    # A relay: its root is the StatefulSet's stable name.
                    root = re.search(r"^--root=tcp://([^:]+):(\d+)$", flags, re.M)
                    check(root is not None, f"{set_name}: no --root=tcp://HOST:PORT")
                    host = root.group(1).split(".")
                    check(len(host) >= 3 and host[1] in services and host[2] == kustomization["namespace"],
                          f"--root={root.group(1)} is not a pod of a headless Service here")
                    needed = ("--key", "--allowlist", "--root_key")
                for flag in needed:
                    path = re.search(rf"^{flag}=(.*)$", flags, re.M).group(1)
                    check(os.path.dirname(path) in mounts, f"{flag}={path} is not mounted")
                flag_files.append(("coordinator" if stateful else "relay", flags))
        for svc_name, svc in services.items():
            if all(labels.get(k) == v for k, v in svc["spec"]["selector"].items()):
                names = {p["name"] for c in pod["containers"] for p in c.get("ports", [])}
                for p in svc["spec"]["ports"]:
                    check(p.get("targetPort") in names, f"Service {svc_name}: targetPort {p.get('targetPort')} is no container port")
    check(flag_files, "no container takes a --flagfile from a ConfigMap")
    return flag_files


def check_flags(role, flags, coordinator, keygen, relay):
    """The binary itself validates the flag file, with the key, allowlist
    and state paths pointed at a scratch directory."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([keygen, f"--out={tmp}/coordinator"], check=True, capture_output=True)
        with open(f"{tmp}/allowlist", "w") as f:
            f.write("# none enrolled yet\n")
        with open(f"{tmp}/{role}.flags", "w") as f:
            f.write(flags)
        if role == "coordinator":
            command = [coordinator, f"--flagfile={tmp}/coordinator.flags", f"--key={tmp}/coordinator",
                       f"--allowlist={tmp}/allowlist", f"--state_dir={tmp}/state", "--check_config"]
        else:
            command = [relay, f"--flagfile={tmp}/relay.flags", "--id=relays.pod-0", f"--key={tmp}/coordinator",
                       f"--root_key={tmp}/coordinator.pub", f"--allowlist={tmp}/allowlist", "--check_config"]
        result = subprocess.run(command, capture_output=True, text=True)
        check(result.returncode == 0 and "configuration OK" in result.stdout,
              f"the {role} refuses the ConfigMap's flags: {result.stderr.strip()}")
        print(result.stdout.strip())


def main():
    manifest_dir, coordinator, keygen, relay = sys.argv[1:5]
    flag_files = validate(manifest_dir)
    check({role for role, _ in flag_files} == {"coordinator", "relay"}, "flags for the coordinator and the relays")
    for role, flags in flag_files:
        check_flags(role, flags, coordinator, keygen, relay)
    # The validator must catch a misspelt field and a broken reference.
    with tempfile.TemporaryDirectory() as tmp:
        for name in os.listdir(manifest_dir):
            with open(os.path.join(manifest_dir, name)) as f:
                text = f.read()
            with open(os.path.join(tmp, name), "w") as f:
                f.write(text.replace("readinessProbe:", "readinesProbe:"))
        try:
            validate(tmp)
            raise SystemExit("FAIL: a misspelt readinessProbe went unnoticed")
        except (AssertionError, subprocess.CalledProcessError):
            pass
        with open(os.path.join(tmp, "coordinator-statefulset.yaml")) as f:
            text = f.read().replace("readinesProbe:", "readinessProbe:")
        with open(os.path.join(tmp, "coordinator-statefulset.yaml"), "w") as f:
            f.write(text.replace("port: metrics", "port: metric"))
        try:
            validate(tmp)
            raise SystemExit("FAIL: a probe on an unknown port went unnoticed")
        except AssertionError:
            pass
    print(f"PASS: {manifest_dir} validates; {len(flag_files)} flag file(s) accepted by their binaries")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"FAIL: {e}")
        sys.exit(1)
