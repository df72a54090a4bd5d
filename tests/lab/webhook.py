"""Serve the real windows-gmsa admission webhook for an install that someone else made.

The install (the collection's gmsa_webhook module, or a test) creates the Deployment, Service, TLS Secret,
ServiceAccount, RBAC and webhook configurations; kwok makes the Deployment's pods Running with pod IPs, but
runs nothing. This module plays the kubelet and the container runtime for that one Deployment, reading and
never editing what the install owns:

- a network namespace of ours holds the pods' IPs; the host routes each IP (/32) through a veth pair, so
  kube-apiserver (--enable-aggregator-routing) dials the Service's endpoints exactly as in a cluster;
- the webhook binary runs in that namespace with the container's args and env, the TLS files projected from
  the install's Secret as the pod would see them, and a TokenRequest token for the install's ServiceAccount
  mounted at /var/run/secrets/kubernetes.io/serviceaccount;
- the API server listens on 127.0.0.1 of the host, which the namespace cannot see: a forwarder listens on
  the namespace's own 127.0.0.1 and relays to the host's. All traffic stays on loopbacks and on our veth.

    python -m tests.lab.webhook forward NETNS PORT TARGET_PORT   # the forwarder process (internal)
"""

import base64
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

from tests.lab import REPO_ROOT, build, kube

# The host end of every veth: an address of our pod range that no node's podCIDR hands out.
HOST_ADDRESS = "10.244.255.254"
# Where the webhook finds the API server from inside its namespace (the forwarder's listening port).
API_PORT_IN_NETNS = 6443
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
FORWARDER_MODULE = "tests.lab.webhook"
# What each tracked process's command line contains, checked before signalling a recorded PID.
PROCESS_MARKERS = {"webhook": "gmsa-webhook", "forwarder": FORWARDER_MODULE}
# ip netns exec and unshare exec, and so does the shell: the PID we start is the webhook's own.
MOUNT_AND_EXEC = (
    'mount -t tmpfs wgmsa-lab /var/run && mkdir -p "$2" && mount --bind "$1" "$2" && shift 2 && exec "$@"'
)


class WebhookError(Exception):
    """The webhook could not be served; the message says why."""


def _install_id(namespace, name):
    # Interface names are limited to 15 characters: a short stable digest names netns and veths.
    return hashlib.sha256(("%s/%s" % (namespace, name)).encode()).hexdigest()[:8]


def _run(*command):
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise WebhookError("%s failed: %s" % (" ".join(command), result.stderr.strip()))
    return result.stdout


def _kubectl_json(lab, *args):
    return json.loads(kube.kubectl(lab["state_dir"], lab["binaries"], *args, "-o", "json"))


def _webhook_dir(lab, install):
    return os.path.join(lab["state_dir"], "webhooks", install)


def _write(path, content, mode=0o600):
    """Write only when changed, and in place: --cert-reload watches these very files for writes."""
    if os.path.exists(path):
        with open(path, "rb") as current:
            if current.read() == content:
                return
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "wb") as new:
        new.write(content)


def _projected_secret_file(lab, namespace, pod_spec, container, path):
    """The bytes kubelet would project at path in the container from one of the pod's Secret volumes."""
    volumes = {volume["name"]: volume for volume in pod_spec.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        secret = volumes.get(mount["name"], {}).get("secret")
        relative = os.path.relpath(path, mount["mountPath"])
        if not secret or relative.startswith(".."):
            continue
        key = {item["path"]: item["key"] for item in secret.get("items", [])}.get(relative, relative)
        data = _kubectl_json(lab, "get", "secret", "-n", namespace, secret["secretName"]).get("data", {})
        if key in data:
            return base64.b64decode(data[key])
    raise WebhookError("no Secret volume of the Deployment provides %s" % path)


def _ready_endpoints(lab, namespace, service, timeout=60):
    """The Service's ready endpoint IPs and their port, once kwok has made the pods Running."""
    deadline = time.monotonic() + timeout
    while True:
        slices = _kubectl_json(lab, "get", "endpointslices", "-n", namespace, "-l", "kubernetes.io/service-name=" + service)["items"]
        addresses = sorted(
            address
            for endpoint_slice in slices
            for endpoint in endpoint_slice.get("endpoints") or []
            if endpoint.get("conditions", {}).get("ready")
            for address in endpoint["addresses"]
        )
        ports = [port["port"] for endpoint_slice in slices for port in endpoint_slice.get("ports") or []]
        if addresses and ports:
            return addresses, ports[0]
        if time.monotonic() > deadline:
            raise WebhookError("Service %s/%s has no ready endpoints after %s s" % (namespace, service, timeout))
        time.sleep(1)


def _prepare_files(lab, namespace, pod_spec, directory):
    """TLS files, token, CA and namespace as the pod would see them; returns the webhook's environment."""
    container = pod_spec["containers"][0]
    env = {item["name"]: item["value"] for item in container.get("env", []) if "value" in item}
    for variable in ("TLS_CRT", "TLS_KEY"):
        if variable not in env:
            raise WebhookError("the Deployment's container sets no %s" % variable)
        local_path = os.path.join(directory, variable.lower())
        _write(local_path, _projected_secret_file(lab, namespace, pod_spec, container, env[variable]))
        env[variable] = local_path
    account_dir = os.path.join(directory, "serviceaccount")
    os.makedirs(account_dir, exist_ok=True)
    service_account = pod_spec.get("serviceAccountName", "default")
    token = kube.kubectl(lab["state_dir"], lab["binaries"], "create", "token", service_account, "-n", namespace, "--duration=24h")
    _write(os.path.join(account_dir, "token"), token.strip().encode())
    with open(lab["ca_file"], "rb") as ca_file:
        _write(os.path.join(account_dir, "ca.crt"), ca_file.read(), mode=0o644)
    _write(os.path.join(account_dir, "namespace"), namespace.encode(), mode=0o644)
    return env


def _netns_exists(netns):
    return os.path.exists(os.path.join("/run/netns", netns))


def _held_addresses(netns, device):
    links = json.loads(_run("ip", "-n", netns, "-j", "-4", "addr", "show", "dev", device))
    return {info["local"] for link in links for info in link.get("addr_info", [])}


def _ensure_network(install, addresses):
    """Our namespace holding exactly the pods' IPs, each routed from the host through our veth."""
    netns, host_veth, pod_veth = "wgmsa-" + install, "wgh" + install, "wgp" + install
    if not _netns_exists(netns):
        _run("ip", "netns", "add", netns)
        _run("ip", "link", "add", host_veth, "type", "veth", "peer", "name", pod_veth, "netns", netns)
        _run("ip", "addr", "add", HOST_ADDRESS + "/32", "dev", host_veth)
        _run("ip", "link", "set", host_veth, "up")
        _run("ip", "-n", netns, "link", "set", "lo", "up")
        _run("ip", "-n", netns, "link", "set", pod_veth, "up")
        _run("ip", "-n", netns, "route", "add", HOST_ADDRESS + "/32", "dev", pod_veth)
    held = _held_addresses(netns, pod_veth)
    for address in sorted(set(addresses) - held):
        _run("ip", "-n", netns, "addr", "add", address + "/32", "dev", pod_veth)
        _run("ip", "route", "replace", address + "/32", "dev", host_veth, "src", HOST_ADDRESS)
    for address in sorted(held - set(addresses)):
        _run("ip", "-n", netns, "addr", "del", address + "/32", "dev", pod_veth)
        _run("ip", "route", "del", address + "/32", "dev", host_veth)
    return netns


def _pids_path(directory):
    return os.path.join(directory, "pids.json")


def _running(pids, name):
    """Whether the recorded process is alive and still ours (a PID can be reused after a crash)."""
    try:
        with open("/proc/%d/cmdline" % pids.get(name, 0), "rb") as cmdline:
            return PROCESS_MARKERS[name].encode() in cmdline.read()
    except FileNotFoundError:
        return False


def _start(command, log_path, env=None):
    with open(log_path, "ab") as log:
        # A session of its own: the process outlives the labctl or pytest run that started it.
        process = subprocess.Popen(  # pylint: disable=consider-using-with
            command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    return process.pid


def _start_forwarder(lab, netns, directory):
    api_port = lab["server"].rsplit(":", 1)[1]
    command = [sys.executable, "-m", FORWARDER_MODULE, "forward", netns, str(API_PORT_IN_NETNS), api_port]
    return _start(command, os.path.join(directory, "forwarder.log"))


def _webhook_binary():
    tool = next(tool for tool in build.TOOLS if tool.name == "webhook")
    try:
        return build.ensure_tool(tool)["gmsa-webhook"]
    except build.BuildError as error:
        raise WebhookError(str(error)) from error


def _start_webhook(binary, netns, directory, container, env):
    env = dict(
        env,
        KUBERNETES_SERVICE_HOST="127.0.0.1",
        KUBERNETES_SERVICE_PORT=str(API_PORT_IN_NETNS),
        PATH=os.environ.get("PATH", ""),
    )
    command = [
        "ip", "netns", "exec", netns, "unshare", "--mount", "--propagation", "private",
        "sh", "-c", MOUNT_AND_EXEC, "sh", os.path.join(directory, "serviceaccount"), SERVICE_ACCOUNT_DIR,
        binary,
    ] + container.get("args", [])
    return _start(command, os.path.join(directory, "webhook.log"), env=env)


def _wait_healthy(netns, addresses, port, directory, timeout=30):
    """Poll /health on a pod IP from inside the namespace, as a readiness probe would."""
    deadline = time.monotonic() + timeout
    url = "https://%s:%s/health" % (addresses[0], port)
    while subprocess.run(["ip", "netns", "exec", netns, "curl", "-sfk", "-o", "/dev/null", url], check=False).returncode != 0:
        if time.monotonic() > deadline:
            raise WebhookError("webhook not healthy after %s s; see %s" % (timeout, os.path.join(directory, "webhook.log")))
        time.sleep(0.5)


def serve(lab, namespace, service, deployment=None):
    """Serve the install's webhook (idempotent: re-syncs pod IPs and TLS files); return what runs where."""
    binary = _webhook_binary()
    install = _install_id(namespace, service)
    directory = _webhook_dir(lab, install)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    pod_spec = _kubectl_json(lab, "get", "deployment", "-n", namespace, deployment or service)["spec"]["template"]["spec"]
    env = _prepare_files(lab, namespace, pod_spec, directory)
    addresses, port = _ready_endpoints(lab, namespace, service)
    netns = _ensure_network(install, addresses)
    pids = _read_pids(directory)
    if not _running(pids, "forwarder"):
        pids["forwarder"] = _start_forwarder(lab, netns, directory)
    if not _running(pids, "webhook"):
        pids["webhook"] = _start_webhook(binary, netns, directory, pod_spec["containers"][0], env)
    with open(_pids_path(directory), "w", encoding="utf-8") as pids_file:
        json.dump(pids, pids_file)
    _wait_healthy(netns, addresses, port, directory)
    return {"netns": netns, "addresses": addresses, "port": port, "pids": pids, "log": os.path.join(directory, "webhook.log")}


def _read_pids(directory):
    if not os.path.exists(_pids_path(directory)):
        return {}
    with open(_pids_path(directory), encoding="utf-8") as pids_file:
        return json.load(pids_file)


def _terminate(pid, timeout=10):
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while os.path.exists("/proc/%d" % pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if os.path.exists("/proc/%d" % pid):
        os.kill(pid, signal.SIGKILL)


def _stop_install(directory, install):
    pids = _read_pids(directory)
    for name, pid in pids.items():
        if _running(pids, name):
            _terminate(pid)
    # Deleting the namespace destroys the veth pair, its addresses and the host routes through it.
    if _netns_exists("wgmsa-" + install):
        _run("ip", "netns", "del", "wgmsa-" + install)
    shutil.rmtree(directory)


def stop(lab, namespace, service):
    """Stop serving one install and remove its namespace."""
    install = _install_id(namespace, service)
    directory = _webhook_dir(lab, install)
    if os.path.isdir(directory):
        _stop_install(directory, install)


def stop_all(state_dir):
    """Stop every webhook the lab serves (before the cluster goes down)."""
    root = os.path.join(state_dir, "webhooks")
    for install in os.listdir(root) if os.path.isdir(root) else []:
        _stop_install(os.path.join(root, install), install)


def status(state_dir):
    """The installs served now: {install id: pids}."""
    root = os.path.join(state_dir, "webhooks")
    return {install: _read_pids(os.path.join(root, install)) for install in (os.listdir(root) if os.path.isdir(root) else [])}


def _pipe(source, sink):
    try:
        while True:
            chunk = source.recv(65536)
            if not chunk:
                break
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def forward(netns, port, target_port):
    """Relay connections from 127.0.0.1:port inside netns to 127.0.0.1:target_port of the host."""
    with open(os.path.join("/run/netns", netns), "rb") as pod_ns, open("/proc/self/ns/net", "rb") as host_ns:
        # A socket stays in the namespace it was created in: listen there, then dial from the host's.
        os.setns(pod_ns.fileno(), os.CLONE_NEWNET)
        listener = socket.create_server(("127.0.0.1", port))
        os.setns(host_ns.fileno(), os.CLONE_NEWNET)
    while True:
        client, _address = listener.accept()
        upstream = socket.create_connection(("127.0.0.1", target_port))
        for source, sink in ((client, upstream), (upstream, client)):
            threading.Thread(target=_pipe, args=(source, sink), daemon=True).start()


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] != "forward":
        sys.exit(__doc__)
    forward(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
