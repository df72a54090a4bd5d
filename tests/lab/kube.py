"""The Kubernetes half of the lab: a real control plane on loopback, with simulated Linux and Windows nodes.

kwokctl runs etcd, kube-apiserver, kube-controller-manager, kube-scheduler and the kwok controller as plain
processes from binaries we built (tests/lab/build.py); kwok plays the kubelets, so pods of a Deployment get
scheduled, become Running and get pod IPs from the node's podCIDR. No container ever starts: a Windows node
here only schedules, it cannot run a Windows container.

Everything lives in the state dir ($WGMSA_LAB_DIR, default ~/.cache/wincontainers-gmsa/lab): kwokctl's work
dir (processes, PIDs, PKI, logs) and the kubeconfig. Nothing touches ~/.kube or ~/.kwok.
"""

import json
import os
import subprocess
import time

from tests.lab import build, default_state_dir

CLUSTER_NAME = "wgmsa"
# Pod IPs come from this range; tests/lab/webhook.py owns the ones it serves inside a network namespace
# of its own, so the API server never dials an address outside this machine.
POD_CIDR = "10.244.0.0/16"
# While the lab runs, these ranges are blackholed on the host: a webhook call to a kwok pod IP that no lab
# network namespace owns (a pod nothing serves), or to a Service IP (kube-apiserver's default
# --service-cluster-ip-range), fails here instead of following the default route off the machine. The /32
# routes of served pods are more specific and win.
BLACKHOLED_RANGES = (POD_CIDR, "10.0.0.0/24")
KUBE_TOOLS = ("kubernetes", "etcd", "kwok")
# An inherited proxy would carry kube-apiserver's webhook calls to pod IPs off this machine.
PROXY_VARIABLES = {"http_proxy", "https_proxy", "all_proxy"}

# What an AKS on Azure Stack HCI Windows Server 2022 node reports. No taint: AKS-HCI schedules by
# nodeSelector kubernetes.io/os=windows, which is what the collection wires into pod templates.
NODES = (
    {
        "name": "lab-linux-0",
        "labels": {"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"},
        "pod_cidr": "10.244.0.0/24",
        "node_info": {
            "operatingSystem": "linux",
            "osImage": "CBL-Mariner/Linux",
            "kernelVersion": "5.15.153.1-2.cm2",
            "containerRuntimeVersion": "containerd://1.6.26",
        },
    },
    {
        "name": "lab-win-0",
        "labels": {
            "kubernetes.io/os": "windows",
            "kubernetes.io/arch": "amd64",
            "node.kubernetes.io/windows-build": "10.0.20348",
        },
        "pod_cidr": "10.244.1.0/24",
        "node_info": {
            "operatingSystem": "windows",
            "osImage": "Windows Server 2022 Datacenter",
            "kernelVersion": "10.0.20348.2582",
            "containerRuntimeVersion": "containerd://1.6.21+azure",
        },
    },
)


class LabError(Exception):
    """The cluster could not be brought up or down; the message says why."""


def kubeconfig_path(state_dir):
    return os.path.join(state_dir, "kubeconfig")


def _kwok_workdir(state_dir):
    return os.path.join(state_dir, "kwok")


def _cluster_dir(state_dir):
    return os.path.join(_kwok_workdir(state_dir), "clusters", CLUSTER_NAME)


def _binaries():
    paths = {}
    for tool in build.TOOLS:
        if tool.name in KUBE_TOOLS:
            paths.update(build.ensure_tool(tool))
    return paths


def _run(command, state_dir, binaries, stdin=None, timeout=180):
    what = " ".join([os.path.basename(command[0])] + command[1:5])
    # kwokctl looks kubectl up on PATH; KWOK_WORKDIR keeps its state out of ~/.kwok.
    env = dict(
        {name: value for name, value in os.environ.items() if name.lower() not in PROXY_VARIABLES},
        KWOK_WORKDIR=_kwok_workdir(state_dir),
        KUBECONFIG=kubeconfig_path(state_dir),
        PATH=os.path.dirname(binaries["kubectl"]) + os.pathsep + os.environ.get("PATH", ""),
    )
    try:
        result = subprocess.run(command, input=stdin, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as error:
        raise LabError("%s timed out after %s s" % (what, timeout)) from error
    if result.returncode != 0:
        raise LabError("%s failed: %s" % (what, (result.stderr or result.stdout).strip()[-3000:]))
    return result.stdout


def _kwokctl(state_dir, binaries, *args, timeout=180):
    return _run([binaries["kwokctl"], "--name", CLUSTER_NAME] + list(args), state_dir, binaries, timeout=timeout)


def kubectl(state_dir, binaries, *args, stdin=None):
    """Run the lab's kubectl against the lab cluster and return its output."""
    return _run([binaries["kubectl"]] + list(args), state_dir, binaries, stdin=stdin)


def _kwokctl_config(binaries):
    options = {
        "runtime": "binary",
        "bindAddress": "127.0.0.1",
        "securePort": True,
        "kubeAuthorization": True,  # --authorization-mode=Node,RBAC
        "kubeAdmission": True,  # without it kwokctl turns every admission plugin off, webhooks included
        "kubeApiserverBinary": binaries["kube-apiserver"],
        "kubeControllerManagerBinary": binaries["kube-controller-manager"],
        "kubeSchedulerBinary": binaries["kube-scheduler"],
        "kubectlBinary": binaries["kubectl"],
        "etcdBinary": binaries["etcd"],
        "kwokControllerBinary": binaries["kwok"],
    }
    # Admission webhooks are called at an endpoint (pod) IP, not at the Service's cluster IP that no
    # kube-proxy here would translate.
    patches = [{"name": "kube-apiserver", "extraArgs": [{"key": "enable-aggregator-routing", "value": "true"}]}]
    config = {
        "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
        "kind": "KwokctlConfiguration",
        "options": options,
        "componentsPatches": patches,
    }
    return json.dumps(config)  # JSON is YAML, and needs no YAML library here


def _node_info(node, kube_version):
    # Fields a kubelet always reports (the API schema requires them); kwok keeps what it is given.
    info = dict.fromkeys(("machineID", "systemUUID", "bootID", "kubeProxyVersion"), "")
    return dict(info, architecture="amd64", kubeletVersion=kube_version, **node["node_info"])


def _node_manifest(node, kube_version):
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node["name"],
            "labels": dict(node["labels"], **{"kubernetes.io/hostname": node["name"], "type": "kwok"}),
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {"podCIDR": node["pod_cidr"], "podCIDRs": [node["pod_cidr"]]},
        "status": {"nodeInfo": _node_info(node, kube_version), "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"}},
    }


def _is_ready(state_dir, binaries):
    try:
        return kubectl(state_dir, binaries, "get", "--raw", "/readyz", "--request-timeout=5s").strip() == "ok"
    except LabError:
        return False


def _wait_ready(state_dir, binaries, timeout=60):
    deadline = time.monotonic() + timeout
    while not _is_ready(state_dir, binaries):
        if time.monotonic() > deadline:
            raise LabError("kube-apiserver not ready after %s s; logs: %s" % (timeout, os.path.join(_cluster_dir(state_dir), "logs")))
        time.sleep(1)


def _ensure_cluster(state_dir, binaries):
    if _is_ready(state_dir, binaries):
        return
    if os.path.isdir(_cluster_dir(state_dir)):
        _kwokctl(state_dir, binaries, "start", "cluster")
    else:
        config_path = os.path.join(state_dir, "kwokctl.yaml")
        with open(config_path, "w", encoding="utf-8") as config_file:
            config_file.write(_kwokctl_config(binaries))
        _kwokctl(state_dir, binaries, "create", "cluster", "--config", config_path, "--kubeconfig", kubeconfig_path(state_dir))
    _wait_ready(state_dir, binaries)


def _ensure_nodes(state_dir, binaries):
    kube_version = build.pinned_version(next(tool for tool in build.TOOLS if tool.name == "kubernetes"))
    manifest = {"apiVersion": "v1", "kind": "List", "items": [_node_manifest(node, kube_version) for node in NODES]}
    kubectl(state_dir, binaries, "apply", "--server-side", "--field-manager=wgmsa-lab", "-f", "-", stdin=json.dumps(manifest))
    kubectl(state_dir, binaries, "wait", "--for=condition=Ready", "node", "--all", "--timeout=60s")


def _facts(state_dir, binaries):
    config = json.loads(kubectl(state_dir, binaries, "config", "view", "--raw", "--minify", "-o", "json"))
    cluster = config["clusters"][0]["cluster"]
    return {
        "state_dir": state_dir,
        "kubeconfig": kubeconfig_path(state_dir),
        "server": cluster["server"],
        "ca_file": os.path.join(_cluster_dir(state_dir), "pki", "ca.crt"),
        "binaries": binaries,
        "pod_cidr": POD_CIDR,
        "nodes": {node["labels"]["kubernetes.io/os"]: node["name"] for node in NODES},
    }


def up(state_dir=None):
    """Start the cluster, or reuse the running one; return how to reach it."""
    state_dir = state_dir or default_state_dir()
    os.makedirs(state_dir, exist_ok=True)
    try:
        binaries = _binaries()
    except build.BuildError as error:
        raise LabError(str(error)) from error
    _set_blackholes("replace")
    _ensure_cluster(state_dir, binaries)
    _ensure_nodes(state_dir, binaries)
    return _facts(state_dir, binaries)


def _set_blackholes(action):
    for cidr in BLACKHOLED_RANGES:
        result = subprocess.run(["ip", "route", action, "blackhole", cidr], capture_output=True, text=True, check=False)
        if result.returncode != 0 and action == "replace":
            raise LabError("cannot blackhole %s on this host (needs root and iproute2): %s" % (cidr, result.stderr.strip()))


def _tracked_pids(state_dir):
    pids_dir = os.path.join(_cluster_dir(state_dir), "pids")
    if not os.path.isdir(pids_dir):
        return []
    pids = []
    for name in os.listdir(pids_dir):
        with open(os.path.join(pids_dir, name), encoding="utf-8") as pid_file:
            pids.append(int(pid_file.read().strip()))
    return pids


def _alive(pid):
    """Whether pid still runs; a zombie has stopped, only its parent has yet to reap it."""
    try:
        with open("/proc/%d/stat" % pid, encoding="utf-8") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _wait_stopped(pids, timeout=10):
    deadline = time.monotonic() + timeout
    while any(_alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            raise LabError("processes still running after kwokctl delete cluster: %s" % [pid for pid in pids if _alive(pid)])
        time.sleep(0.2)


def down(state_dir=None):
    """Stop every process of the cluster and delete its state; the kubeconfig goes with it."""
    state_dir = state_dir or default_state_dir()
    if not os.path.isdir(_cluster_dir(state_dir)):
        return
    pids = _tracked_pids(state_dir)
    _kwokctl(state_dir, _binaries(), "delete", "cluster", "--kubeconfig", kubeconfig_path(state_dir))
    _wait_stopped(pids)
    _set_blackholes("del")
    if os.path.exists(kubeconfig_path(state_dir)):
        os.remove(kubeconfig_path(state_dir))


def status(state_dir=None):
    """Whether the cluster is up, and where."""
    state_dir = state_dir or default_state_dir()
    if not os.path.isdir(_cluster_dir(state_dir)):
        return {"running": False, "state_dir": state_dir}
    binaries = _binaries()
    running = _is_ready(state_dir, binaries)
    facts = _facts(state_dir, binaries) if running else {"state_dir": state_dir}
    return dict(facts, running=running, processes=len([pid for pid in _tracked_pids(state_dir) if _alive(pid)]))
