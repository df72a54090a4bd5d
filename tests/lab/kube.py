"""The Kubernetes half of the lab: a real control plane in a network namespace, with simulated Linux and Windows nodes.

kwokctl runs etcd, kube-apiserver, kube-controller-manager, kube-scheduler and the kwok controller as plain
processes from binaries we built (tests/lab/build.py); kwok plays the kubelets, so pods of a Deployment get
scheduled, become Running and get pod IPs from the node's podCIDR. No container ever starts: a Windows node
here only schedules, it cannot run a Windows container.

The control plane runs inside a network namespace the lab creates (``wgmsa-<cluster>``, tests/lab/netns.py)
that has a loopback and no default route: whatever the pod or Service ranges are, kube-apiserver can dial
nothing outside this machine (a webhook call to an address no lab namespace owns fails as unreachable), and
the host's own routes are never touched. A forwarder of ours relays the host's 127.0.0.1:<port> to the API
server on the namespace's 127.0.0.1:<port>, so the kubeconfig works unchanged from the host.

Everything else lives in the state dir ($WGMSA_LAB_DIR, default ~/.cache/wincontainers-gmsa/lab): kwokctl's
work dir (processes, PIDs, PKI, logs), the forwarder's PID and log, and the kubeconfig. Nothing touches
~/.kube or ~/.kwok.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time

from tests.lab import build, default_state_dir, netns, stages

# One cluster per state dir; the name also names its network namespaces, so a second cluster with another
# name and state dir can run beside it.
DEFAULT_CLUSTER = "lab"
# Pod IPs come from this range; tests/lab/webhook.py gives the ones it serves to network namespaces of its own,
# reachable from the control plane's namespace only.
POD_CIDR = "10.244.0.0/16"
# kube-apiserver publishes an address of its node as the `kubernetes` Service's endpoint, and with no default
# route it cannot pick one itself (k8s.io/apimachinery pkg/util/net/interface.go, ResolveBindAddress for a
# loopback --bind-address: "no default routes found"). This one, outside the pod and Service ranges, is held by
# the namespace's loopback, so even it leads nowhere outside the namespace.
CONTROL_PLANE_ADDRESS = "10.240.0.1"
KUBE_TOOLS = ("kubernetes", "etcd", "kwok")
# An inherited proxy would send kube-apiserver's webhook calls to the proxy instead of the pod IPs.
PROXY_VARIABLES = {"http_proxy", "https_proxy", "all_proxy"}
# What each process kwokctl records under pids/<component>.pid runs (checked before signalling a recorded PID).
COMPONENT_BINARIES = {
    "etcd": "etcd",
    "kube-apiserver": "kube-apiserver",
    "kube-controller-manager": "kube-controller-manager",
    "kube-scheduler": "kube-scheduler",
    "kwok-controller": "kwok",
}

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


def _cluster_dir(state_dir, cluster):
    return os.path.join(_kwok_workdir(state_dir), "clusters", cluster)


def _forwarder_files(state_dir, cluster):
    """The API server forwarder's PID file and log."""
    base = os.path.join(state_dir, "%s-apiserver-forwarder" % netns.cluster_netns(cluster))
    return base + ".pid", base + ".log"


def _kube_tool(older_minor):
    """The Kubernetes release a cluster runs: the current one, or the older minor (its kubectl stays current)."""
    return build.KUBERNETES_OLDER if older_minor else next(tool for tool in build.TOOLS if tool.name == "kubernetes")


def _binaries(older_minor=False):
    paths = {}
    try:
        for tool in build.TOOLS:
            if tool.name in KUBE_TOOLS:
                paths.update(build.ensure_tool(tool))
        if older_minor:
            paths.update(build.ensure_tool(build.KUBERNETES_OLDER))
    except build.BuildError as error:
        raise LabError(str(error)) from error
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


def _kwokctl(state_dir, cluster, binaries, *args, timeout=180):
    # Inside the namespace: every process kwokctl starts inherits it.
    command = netns.command_in(netns.cluster_netns(cluster), [binaries["kwokctl"], "--name", cluster] + list(args))
    return _run(command, state_dir, binaries, timeout=timeout)


def kubectl(state_dir, binaries, *args, stdin=None):
    """Run the lab's kubectl against the lab cluster and return its output."""
    return _run([binaries["kubectl"]] + list(args), state_dir, binaries, stdin=stdin)


def _unused_host_port():
    # The kernel picks from its ephemeral range (32768 and up), above every port kwokctl picks for the cluster's
    # other servers inside the namespace (counting down from 32767: kwok pkg/utils/net/unused_port.go). The same
    # number is used inside the namespace and on the host, so the kubeconfig's URL works from both.
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return probe.getsockname()[1]


def _kwokctl_config(binaries, api_port):
    options = {
        "runtime": "binary",
        "bindAddress": "127.0.0.1",
        "kubeApiserverPort": api_port,
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
    apiserver_args = {"enable-aggregator-routing": "true", "advertise-address": CONTROL_PLANE_ADDRESS}
    patches = [{"name": "kube-apiserver", "extraArgs": [{"key": key, "value": value} for key, value in apiserver_args.items()]}]
    config = {
        "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
        "kind": "KwokctlConfiguration",
        "options": options,
        "componentsPatches": patches,
    }
    # kwok's default stages, except that webhook pods turn Ready only once the lab kubelet sees them serve.
    documents = [config] + stages.lab_stages()
    return "\n---\n".join(json.dumps(document) for document in documents)  # JSON is YAML, and needs no YAML library here


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


def _wait_ready(state_dir, cluster, binaries, timeout=60):
    deadline = time.monotonic() + timeout
    while not _is_ready(state_dir, binaries):
        if time.monotonic() > deadline:
            raise LabError("kube-apiserver not ready after %s s; logs: %s" % (timeout, os.path.join(_cluster_dir(state_dir, cluster), "logs")))
        time.sleep(1)


def _server(state_dir, binaries):
    """The API server's URL in the kubeconfig, https://127.0.0.1:PORT (read from the file, no request)."""
    config = json.loads(kubectl(state_dir, binaries, "config", "view", "--raw", "--minify", "-o", "json"))
    return config["clusters"][0]["cluster"]["server"]


def _ensure_namespace(cluster):
    try:
        netns.create(netns.cluster_netns(cluster), loopback_addresses=(CONTROL_PLANE_ADDRESS,))
    except netns.NetnsError as error:
        raise LabError(str(error)) from error


def _ensure_forwarder(state_dir, cluster, api_port):
    pid_path, log_path = _forwarder_files(state_dir, cluster)
    pid = _read_pid(pid_path)
    if pid and netns.is_running(pid, netns.FORWARDER_MODULE):
        return
    try:
        socket.create_server(("127.0.0.1", api_port)).close()
    except OSError as error:
        raise LabError("127.0.0.1:%d is in use on this host, so the API server cannot be forwarded there: %s" % (api_port, error)) from error
    forwarder = netns.start_forwarder(netns.HOST, api_port, netns.cluster_netns(cluster), api_port, log_path)
    with open(pid_path, "w", encoding="utf-8") as pid_file:
        pid_file.write(str(forwarder.pid))
    try:
        netns.wait_listening(api_port, forwarder, log_path)
    except netns.NetnsError as error:
        raise LabError(str(error)) from error


def _created_with_another_configuration(state_dir, binaries):
    """Whether the cluster was created from another kwokctl configuration than this checkout's (stages, flags)."""
    try:
        with open(os.path.join(state_dir, "kwokctl.yaml"), encoding="utf-8") as config_file:
            saved = config_file.read()
        port = json.loads(saved.split("\n---\n", 1)[0])["options"]["kubeApiserverPort"]
    except (FileNotFoundError, ValueError, KeyError):
        return False
    return saved != _kwokctl_config(binaries, port)


def _ensure_cluster(state_dir, cluster, binaries):
    # kwokctl takes its configuration (kwok Stages included) only at creation: a cluster made by an older checkout
    # would keep behaving the old way, so it is made anew.
    if os.path.isdir(_cluster_dir(state_dir, cluster)) and _created_with_another_configuration(state_dir, binaries):
        print("cluster %s was created with another lab configuration: creating it anew" % cluster, file=sys.stderr)
        down(state_dir, cluster)
    _ensure_namespace(cluster)
    if not os.path.isdir(_cluster_dir(state_dir, cluster)):
        config_path = os.path.join(state_dir, "kwokctl.yaml")
        with open(config_path, "w", encoding="utf-8") as config_file:
            config_file.write(_kwokctl_config(binaries, _unused_host_port()))
        _kwokctl(state_dir, cluster, binaries, "create", "cluster", "--config", config_path, "--kubeconfig", kubeconfig_path(state_dir))
    elif not os.path.exists(kubeconfig_path(state_dir)):
        raise LabError("cluster %s in %s was left half-created (no kubeconfig): run `make lab-down` first" % (cluster, state_dir))
    _ensure_forwarder(state_dir, cluster, int(_server(state_dir, binaries).rsplit(":", 1)[1]))
    # As a kubelet restarts a control plane's static pods: whatever exited or was killed starts again. That
    # includes kube-controller-manager and kube-scheduler, which exit when they cannot renew their leader lease
    # (about 10 s without an API server) while /readyz of a restarted API server says ok.
    if _forget_stopped_components(state_dir, cluster) or not _is_ready(state_dir, binaries):
        # Starts only the components that do not run (kwok pkg/kwokctl/runtime/binary/cluster_operation.go).
        _kwokctl(state_dir, cluster, binaries, "start", "cluster")
        _wait_ready(state_dir, cluster, binaries)


def _ensure_nodes(state_dir, binaries, older_minor):
    kube_version = build.pinned_version(_kube_tool(older_minor))
    manifest = {"apiVersion": "v1", "kind": "List", "items": [_node_manifest(node, kube_version) for node in NODES]}
    kubectl(state_dir, binaries, "apply", "--server-side", "--field-manager=wgmsa-lab", "-f", "-", stdin=json.dumps(manifest))
    kubectl(state_dir, binaries, "wait", "--for=condition=Ready", "node", "--all", "--timeout=60s")


def _facts(state_dir, cluster, binaries):
    return {
        "state_dir": state_dir,
        "cluster": cluster,
        "netns": netns.cluster_netns(cluster),
        "kubeconfig": kubeconfig_path(state_dir),
        "server": _server(state_dir, binaries),
        "ca_file": os.path.join(_cluster_dir(state_dir, cluster), "pki", "ca.crt"),
        "binaries": binaries,
        "pod_cidr": POD_CIDR,
        "nodes": {node["labels"]["kubernetes.io/os"]: node["name"] for node in NODES},
    }


def up(state_dir=None, cluster=DEFAULT_CLUSTER, older_minor=False):
    """Start the cluster, or reuse the running one; return how to reach it.

    older_minor runs build.KUBERNETES_OLDER's control plane instead of the current one (at creation: a running
    cluster keeps what it was created with).
    """
    state_dir = state_dir or default_state_dir()
    os.makedirs(state_dir, exist_ok=True)
    binaries = _binaries(older_minor)
    _ensure_cluster(state_dir, cluster, binaries)
    _ensure_nodes(state_dir, binaries, older_minor)
    return _facts(state_dir, cluster, binaries)


def _read_pid(path):
    try:
        with open(path, encoding="utf-8") as pid_file:
            return int(pid_file.read().strip())
    except (FileNotFoundError, ValueError):
        return None


def _pid_path(state_dir, cluster, component):
    # Where kwokctl records the PID of a component it started (kwok pkg/kwokctl/runtime/exec.go, ForkExec).
    return os.path.join(_cluster_dir(state_dir, cluster), "pids", component + ".pid")


def _tracked_components(state_dir, cluster):
    """{pid: binary name} of the processes kwokctl recorded for the cluster."""
    tracked = {}
    for component, binary in COMPONENT_BINARIES.items():
        pid = _read_pid(_pid_path(state_dir, cluster, component))
        if pid:
            tracked[pid] = binary
    return tracked


def _forget_stopped_components(state_dir, cluster):
    """Remove the PID file of each component that does not run what kwokctl recorded; return those components.

    kwokctl starts a component only if no PID file names a process that answers signal 0 (kwok
    pkg/kwokctl/runtime/exec.go ForkExec; pkg/utils/exec/cmd_other.go isRunning). A killed process answers it
    until its parent reaps it, and a kwokctl-started process's parent is PID 1 (its reaper here took 1-2 s);
    a reused PID answers it for good. Either way kwokctl would report the component "already started" and wait
    2 minutes for an API server that is not there. Without the file, it starts the component.
    """
    stopped = []
    for component, binary in COMPONENT_BINARIES.items():
        path = _pid_path(state_dir, cluster, component)
        pid = _read_pid(path)
        if pid and netns.is_running(pid, binary):  # a zombie does not count as running
            continue
        stopped.append(component)
        if os.path.exists(path):
            os.remove(path)
    return stopped


def component_pid(state_dir, cluster, component):
    """The PID of one running control-plane process (a key of COMPONENT_BINARIES), for tests that signal it."""
    binary = COMPONENT_BINARIES[component]
    running = [pid for pid, name in _tracked_components(state_dir, cluster).items() if name == binary and netns.is_running(pid, binary)]
    if not running:
        raise LabError("%s of cluster %s is not running" % (component, cluster))
    return running[0]


def down(state_dir=None, cluster=DEFAULT_CLUSTER):
    """Remove everything the cluster made, even after a failed or half-done up (idempotent).

    Its processes (by recorded PID, each checked to still run what was recorded), its forwarder, every network
    namespace named for the cluster (and whatever still runs in them), its state and kubeconfig.
    """
    state_dir = state_dir or default_state_dir()
    cluster_dir = _cluster_dir(state_dir, cluster)
    pid_path, log_path = _forwarder_files(state_dir, cluster)
    processes = _tracked_components(state_dir, cluster)
    forwarder = _read_pid(pid_path)
    if forwarder:
        processes[forwarder] = netns.FORWARDER_MODULE
    try:
        # SIGKILL, as `kwokctl delete cluster` does (kwok pkg/utils/exec/cmd.go, KillProcess): the cluster's state is
        # deleted next, and kube-apiserver's graceful shutdown would only make down wait.
        netns.stop(processes, timeout=0)
        for name in reversed(netns.of_cluster(netns.cluster_netns(cluster))):
            netns.remove(name)
    except netns.NetnsError as error:
        raise LabError(str(error)) from error
    # Its processes are gone: what kwokctl would delete is only files now, and a half-created cluster may
    # lack the configuration `kwokctl delete cluster` needs.
    for path in (cluster_dir, os.path.join(state_dir, "kwokctl.yaml"), kubeconfig_path(state_dir), pid_path, log_path):
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)
    for directory in (os.path.dirname(cluster_dir), _kwok_workdir(state_dir)):
        if os.path.isdir(directory) and not os.listdir(directory):
            os.rmdir(directory)


def status(state_dir=None, cluster=DEFAULT_CLUSTER):
    """Whether the cluster is up, and where."""
    state_dir = state_dir or default_state_dir()
    if not os.path.isdir(_cluster_dir(state_dir, cluster)):
        return {"running": False, "state_dir": state_dir}
    binaries = _binaries()
    running = _is_ready(state_dir, binaries)
    facts = _facts(state_dir, cluster, binaries) if running else {"state_dir": state_dir}
    tracked = _tracked_components(state_dir, cluster)
    return dict(facts, running=running, processes=len([pid for pid, binary in tracked.items() if netns.is_running(pid, binary)]))
