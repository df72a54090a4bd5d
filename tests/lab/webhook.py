"""The lab kubelet: runs the real windows-gmsa webhook for every webhook pod kwok schedules, as a node would.

kwok gives pods an IP and a phase but runs nothing. This daemon, started by `labctl up` and stopped by
`labctl down`, watches the cluster's pods and, for every Running pod whose container image is named
k8s-gmsa-webhook (tests/lab/stages.py), plays kubelet and container runtime, reading and never editing what the
install (the collection, upstream's deploy script or chart, a test) owns:

- the pod's IP belongs to a network namespace of its own (``<cluster netns>.<pod uid>``, tests/lab/netns.py),
  joined by a veth to the namespace kube-apiserver runs in (the host's while the control plane runs there), with
  a /32 route to the pod there, so kube-apiserver (--enable-aggregator-routing) calls the Service's endpoints
  exactly as in a cluster;
- the webhook binary (tests/lab/build.py) runs in that namespace with the container's args and env, the pod's
  Secret and projected volumes written as the kubelet's atomic writer writes them and re-synced every few
  seconds, and a TokenRequest token bound to the pod at /var/run/secrets/kubernetes.io/serviceaccount; a
  forwarder on the namespace's 127.0.0.1 relays to the API server (KUBERNETES_SERVICE_HOST/PORT say so);
- the pod's readiness probe is run; once it passes the daemon sets the SERVING annotation and a kwok Stage makes
  the pod Ready, so the Service routes admission to it only then, as a rolling update needs. A webhook that
  exits is restarted and is not Ready until it answers again;
- a pod that goes away (deleted, or scaled down in a rolling update) loses its process and its namespace.

Only the image tag built here (v0.13.0) runs; a pod of another tag stays not Ready, as a node that cannot pull
it would leave it. Paths a container's env names inside a Secret volume's mountPath are rewritten to where the
volume is written on this host (mount points other than the service account's are not created on the host).

    python -m tests.lab.webhook run STATE_DIR     # the daemon (labctl up starts it with the cluster's facts)
"""

import base64
import datetime
import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import urllib3
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from tests.lab import REPO_ROOT, build, kube, netns, stages

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
# Where the webhook finds the API server from inside its pod's namespace (a forwarder's listening port).
API_PORT_IN_POD = 6443
# The API server's end of every pod's veth: in the pod range, but an address no node's podCIDR hands out.
API_SIDE_ADDRESS = "10.244.255.254"
DAEMON_MARKER = "tests.lab.webhook"
WEBHOOK_MARKER = "gmsa-webhook"
# How often Secrets are re-read into running pods (the kubelet does it on its sync loop) and probes run.
SYNC_SECONDS = 2
# A bound token's lifetime when the projection names none; renewed at 80 % of it, as the kubelet does.
DEFAULT_TOKEN_SECONDS = 3600
# The kubelet's default for Secret and projected volumes (defaultMode 0644).
DEFAULT_FILE_MODE = 0o644
DATA_DIR = "..data"

LOG = logging.getLogger("lab-kubelet")


class WebhookError(Exception):
    """The webhook could not be served; the message says why."""


def kubelet_dir(state_dir):
    return os.path.join(state_dir, "kubelet")


def _pods_dir(state_dir):
    return os.path.join(kubelet_dir(state_dir), "pods")


def _daemon_pid_path(state_dir):
    return os.path.join(kubelet_dir(state_dir), "daemon.pid")


# --- the kubelet's atomic writer -------------------------------------------------------------------------


def atomic_write(target_dir, payload):
    """Project payload ({relative path: (bytes, mode)}) into target_dir as the kubelet's atomic writer does.

    k8s.io/kubernetes pkg/volume/util/atomic_writer.go (v1.36.3), AtomicWriter.Write: the files go to a new
    directory named ..YYYY_MM_DD_HH_MM_SS.<random> (newTimestampDir), a ..data_tmp symlink to it is renamed over
    ..data (the atomic step), each user-visible name is a symlink to ..data/<name> (createUserVisibleFiles),
    names no longer in the payload are removed and the previous directory is deleted. Nothing is written when
    the payload is what ..data already holds (shouldWritePayload). Returns whether it wrote.
    """
    os.makedirs(target_dir, exist_ok=True)
    data_path = os.path.join(target_dir, DATA_DIR)
    old = os.readlink(data_path) if os.path.islink(data_path) else None
    old_names = set()
    if old:
        old_dir = os.path.join(target_dir, old)
        old_names = {os.path.relpath(os.path.join(root, name), old_dir) for root, _dirs, names in os.walk(old_dir) for name in names}
        if old_names == set(payload) and all(_holds(os.path.join(old_dir, path), content) for path, (content, _mode) in payload.items()):
            return False
    new_dir = tempfile.mkdtemp(prefix=datetime.datetime.now(datetime.timezone.utc).strftime("..%Y_%m_%d_%H_%M_%S."), dir=target_dir)
    os.chmod(new_dir, 0o755)
    for path, (content, mode) in payload.items():
        full = os.path.join(new_dir, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(os.open(full, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "wb") as projected:
            projected.write(content)
        os.chmod(full, mode)
    temporary_link = os.path.join(target_dir, "..data_tmp")
    os.symlink(os.path.basename(new_dir), temporary_link)
    os.rename(temporary_link, data_path)
    for top in {path.split("/", 1)[0] for path in payload}:
        if not os.path.lexists(os.path.join(target_dir, top)):
            os.symlink(os.path.join(DATA_DIR, top), os.path.join(target_dir, top))
    for top in {path.split("/", 1)[0] for path in old_names} - {path.split("/", 1)[0] for path in payload}:
        os.remove(os.path.join(target_dir, top))
    if old:
        shutil.rmtree(os.path.join(target_dir, old))
    return True


def _holds(path, content):
    # Contents only, as shouldWriteFile compares them.
    try:
        with open(path, "rb") as current:
            return current.read() == content
    except FileNotFoundError:
        return False


# --- the pod's network ----------------------------------------------------------------------------------


class PodNetwork:
    """A network namespace owning pod IPs, reached from the API server's namespace (None: the host's) by a veth.

    Deleting the pod's namespace destroys the veth, its peer on the API server's side and the routes through it.
    """

    def __init__(self, name, addresses, api_netns, short_id):
        self.name, self.addresses, self.api_netns = name, list(addresses), api_netns
        self.api_veth, self.pod_veth = "wgh" + short_id, "wgp" + short_id

    def _api_side(self, *args):
        # `ip -n NETNS` for the API server's namespace, plain `ip` for the host's.
        return _ip(*(("-n", self.api_netns) if self.api_netns else ()), *args)

    def create(self):
        """All or nothing: a namespace left half made would never get its routes, as the next sync sees it exists."""
        netns.create(self.name)
        try:
            self._api_side("link", "add", self.api_veth, "type", "veth", "peer", "name", self.pod_veth, "netns", self.name)
            self._api_side("addr", "add", API_SIDE_ADDRESS + "/32", "dev", self.api_veth)
            self._api_side("link", "set", self.api_veth, "up")
            _ip("-n", self.name, "link", "set", self.pod_veth, "up")
            _ip("-n", self.name, "route", "add", API_SIDE_ADDRESS + "/32", "dev", self.pod_veth)
            for address in self.addresses:
                _ip("-n", self.name, "addr", "add", address + "/32", "dev", self.pod_veth)
                # replace, not add: kwok hands a pod IP out again once the pod that had it is deleted (sigs.k8s.io/kwok
                # pkg/kwok/controllers/pod_controller.go, recyclingPodIP on informer.Deleted), and the route of that
                # pod's namespace can outlive it by a moment (a namespace goes with its last process). Left there, it
                # would send the API server's calls for this pod into the old namespace: connection refused.
                stale = self._api_side("route", "show", address + "/32").strip()
                if stale:
                    LOG.info("namespace %s: %s was still routed (%s) from a pod that is gone; routed here now", self.name, address, stale)
                self._api_side("route", "replace", address + "/32", "dev", self.api_veth, "src", API_SIDE_ADDRESS)
        except WebhookError:
            self.remove()
            raise
        return self

    def remove(self):
        netns.remove(self.name)

    def __enter__(self):
        return self.create()

    def __exit__(self, *exc_info):
        self.remove()


def _ip(*args):
    try:
        return netns.ip(*args)
    except netns.NetnsError as error:
        raise WebhookError(str(error)) from error


# --- one served pod --------------------------------------------------------------------------------------


def _short_id(uid):
    # Interface names are limited to 15 characters: a digest of the pod's UID names its veths and namespace.
    return hashlib.sha256(uid.encode()).hexdigest()[:8]


def webhook_tag():
    """The image tag of the webhook binary built here (v0.13.0)."""
    return next(tool for tool in build.TOOLS if tool.name == "webhook").checkout.tag


def runnable_image(image):
    return stages.is_webhook_image(image) and image.rsplit("/", 1)[-1].split("@", 1)[0].partition(":")[2] == webhook_tag()


class ServedPod:
    """The webhook process of one pod, its namespace, forwarder and volumes."""

    def __init__(self, kubelet, pod):
        self.kubelet, self.pod = kubelet, pod
        meta = pod["metadata"]
        self.namespace, self.name, self.uid = meta["namespace"], meta["name"], meta["uid"]
        self.short_id = _short_id(self.uid)
        self.directory = os.path.join(_pods_dir(kubelet.state_dir), self.uid)
        self.network = PodNetwork(
            netns.cluster_netns(kubelet.facts["cluster"]) + "." + self.short_id,
            [entry["ip"] for entry in pod["status"].get("podIPs") or [{"ip": pod["status"]["podIP"]}]],
            kubelet.facts.get("netns"),
            self.short_id,
        )
        self.container = pod["spec"]["containers"][0]
        # Our children: polled, so that one that exits is reaped and seen as stopped.
        self.processes = {}
        self.serving = False
        self.token_renew_at = {}

    def __str__(self):
        return "%s/%s" % (self.namespace, self.name)

    # volumes

    def _volume_dir(self, volume_name):
        return os.path.join(self.directory, "volumes", volume_name)

    def _secret_payload(self, name, source):
        try:
            data = self.kubelet.core.read_namespaced_secret(name, self.namespace).data or {}
        except ApiException as error:
            if error.status == 404 and source.get("optional"):
                return {}
            raise WebhookError("pod %s: Secret %s: %s" % (self, name, error.reason)) from error
        return self._items(source, {key: base64.b64decode(value) for key, value in data.items()})

    def _config_map_payload(self, source):
        try:
            data = self.kubelet.core.read_namespaced_config_map(source["name"], self.namespace).data or {}
        except ApiException as error:
            if error.status == 404 and source.get("optional"):
                return {}
            raise WebhookError("pod %s: ConfigMap %s: %s" % (self, source["name"], error.reason)) from error
        return self._items(source, {key: value.encode() for key, value in data.items()})

    @staticmethod
    def _items(source, data):
        """The files of a Secret or ConfigMap source: every key, or the items it selects (mode None: the default)."""
        items = source.get("items")
        if not items:
            return {key: (value, None) for key, value in data.items()}
        return {item["path"]: (data[item["key"]], item.get("mode")) for item in items if item["key"] in data}

    def _downward_payload(self, source):
        fields = {"metadata.namespace": self.namespace, "metadata.name": self.name, "metadata.uid": self.uid}
        payload = {}
        for item in source.get("items", []):
            path = item.get("fieldRef", {}).get("fieldPath")
            if path not in fields:
                raise WebhookError("pod %s: downwardAPI item %s is not supported by the lab kubelet" % (self, item))
            payload[item["path"]] = (fields[path].encode(), item.get("mode"))
        return payload

    def _token_payload(self, source):
        """A TokenRequest token bound to the pod, as the kubelet's projected serviceAccountToken source."""
        seconds = source.get("expirationSeconds") or DEFAULT_TOKEN_SECONDS
        request = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(
                audiences=[source["audience"]] if source.get("audience") else [],
                expiration_seconds=seconds,
                bound_object_ref=client.V1BoundObjectReference(api_version="v1", kind="Pod", name=self.name, uid=self.uid),
            )
        )
        account = self.pod["spec"].get("serviceAccountName") or "default"
        token = self.kubelet.core.create_namespaced_service_account_token(account, self.namespace, request).status.token
        self.token_renew_at[source.get("path", "token")] = time.monotonic() + seconds * 0.8
        return {source.get("path", "token"): (token.encode(), None)}

    def _volume_payload(self, volume):
        if "secret" in volume:
            payload = self._secret_payload(volume["secret"]["secretName"], volume["secret"])
            default_mode = volume["secret"].get("defaultMode", DEFAULT_FILE_MODE)
        elif "projected" in volume:
            payload = {}
            for source in volume["projected"].get("sources", []):
                if "serviceAccountToken" in source:
                    payload.update(self._current_token(source["serviceAccountToken"]))
                elif "configMap" in source:
                    payload.update(self._config_map_payload(source["configMap"]))
                elif "secret" in source:
                    payload.update(self._secret_payload(source["secret"]["name"], source["secret"]))
                elif "downwardAPI" in source:
                    payload.update(self._downward_payload(source["downwardAPI"]))
                else:
                    raise WebhookError("pod %s: projected source %s is not supported by the lab kubelet" % (self, sorted(source)))
            default_mode = volume["projected"].get("defaultMode", DEFAULT_FILE_MODE)
        else:
            raise WebhookError("pod %s: volume %s is neither a Secret nor a projected volume" % (self, volume["name"]))
        return {path: (content, mode if mode is not None else default_mode) for path, (content, mode) in payload.items()}

    def _current_token(self, source):
        """The token last written, until 80 % of its lifetime has passed."""
        path = source.get("path", "token")
        current = os.path.join(self.directory, "tokens", path)
        if os.path.exists(current) and time.monotonic() < self.token_renew_at.get(path, 0):
            with open(current, "rb") as token_file:
                return {path: (token_file.read(), None)}
        payload = self._token_payload(source)
        os.makedirs(os.path.dirname(current), mode=0o700, exist_ok=True)
        with open(os.open(current, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as token_file:
            token_file.write(payload[path][0])
        return payload

    def _mounted_volumes(self):
        volumes = {volume["name"]: volume for volume in self.pod["spec"].get("volumes", [])}
        return [(mount, volumes[mount["name"]]) for mount in self.container.get("volumeMounts", [])]

    def sync_volumes(self):
        """Write every mounted volume (atomic writer); returns the names of those that changed."""
        changed = []
        for _mount, volume in self._mounted_volumes():
            if atomic_write(self._volume_dir(volume["name"]), self._volume_payload(volume)):
                changed.append(volume["name"])
        return changed

    # process

    def _environment(self):
        env = {"PATH": os.environ.get("PATH", ""), "KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(API_PORT_IN_POD)}
        mounts = [(mount["mountPath"].rstrip("/") + "/", self._volume_dir(volume["name"])) for mount, volume in self._mounted_volumes()]
        for item in self.container.get("env", []):
            if "value" not in item:
                raise WebhookError("pod %s: env %s uses valueFrom, which the lab kubelet does not support" % (self, item["name"]))
            value = item["value"]
            for mount_path, local in mounts:
                if value.startswith(mount_path) and mount_path != SERVICE_ACCOUNT_DIR + "/":
                    value = os.path.join(local, value[len(mount_path):])
            env[item["name"]] = value
        return env

    def _service_account_volume(self):
        for mount, volume in self._mounted_volumes():
            if mount["mountPath"].rstrip("/") == SERVICE_ACCOUNT_DIR:
                return self._volume_dir(volume["name"])
        raise WebhookError("pod %s mounts no service account token at %s (automountServiceAccountToken off?)" % (self, SERVICE_ACCOUNT_DIR))

    def _start(self):
        """Whatever of namespace, forwarder and webhook process is missing (the webhook last: it needs the others)."""
        if not netns.exists(self.network.name):
            self.network.create()
        if not self.running("forwarder"):
            api_port = int(self.kubelet.facts["server"].rsplit(":", 1)[1])
            self.processes["forwarder"] = netns.start_forwarder(
                self.network.name, API_PORT_IN_POD, self.kubelet.facts.get("netns") or netns.HOST, api_port,
                os.path.join(self.directory, "forwarder.log"),
            )
        if "webhook" in self.processes:
            LOG.warning("pod %s: the webhook exited; restarting it (see %s)", self, os.path.join(self.directory, "webhook.log"))
        self._start_webhook()
        self._record()

    def _start_webhook(self):
        # A mount namespace of its own: a tmpfs over /var/run and the token volume bound where client-go's
        # in-cluster config reads it; the host's mounts are untouched. ip netns exec, unshare and sh exec: the
        # PID recorded is the webhook's own.
        script = 'mount -t tmpfs wgmsa-lab /var/run && mkdir -p "$2" && mount --bind "$1" "$2" && shift 2 && exec "$@"'
        command = netns.command_in(self.network.name, [
            "unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
            self._service_account_volume(), SERVICE_ACCOUNT_DIR, self.kubelet.binary,
        ]) + list(self.container.get("args", []))
        with open(os.path.join(self.directory, "webhook.log"), "ab") as log:
            process = subprocess.Popen(  # pylint: disable=consider-using-with
                command, cwd="/", stdout=log, stderr=subprocess.STDOUT, env=self._environment(), start_new_session=True
            )
        self.processes["webhook"] = process
        LOG.info("pod %s: started the webhook (pid %d) at %s", self, process.pid, ", ".join(self.network.addresses))

    def _record(self):
        pids = {name: process.pid for name, process in self.processes.items()}
        record = {"pod": str(self), "uid": self.uid, "netns": self.network.name, "addresses": self.network.addresses, "pids": pids,
                  "serving": self.serving, "directory": self.directory, "log": os.path.join(self.directory, "webhook.log")}
        with open(os.path.join(self.directory, "pod.json"), "w", encoding="utf-8") as record_file:
            json.dump(record, record_file)

    def running(self, name="webhook"):
        return name in self.processes and self.processes[name].poll() is None

    def probe(self):
        """The container's readiness probe (httpGet), from inside the pod's namespace."""
        probe = (self.container.get("readinessProbe") or {}).get("httpGet") or {"path": "/health", "port": 443, "scheme": "HTTPS"}
        url = "%s://%s:%s%s" % (probe.get("scheme", "HTTP").lower(), self.network.addresses[0], self._port(probe["port"]), probe.get("path", "/"))
        command = netns.command_in(self.network.name, ["curl", "-sfk", "--noproxy", "*", "--max-time", "2", "-o", "/dev/null", url])
        return subprocess.run(command, capture_output=True, check=False).returncode == 0

    def _port(self, port):
        if isinstance(port, int):
            return port
        return next(entry["containerPort"] for entry in self.container.get("ports", []) if entry.get("name") == port)

    def set_serving(self, serving):
        if serving == self.serving:
            return
        annotations = {stages.SERVING_ANNOTATION: "true" if serving else None}
        try:
            self.kubelet.core.patch_namespaced_pod(self.name, self.namespace, {"metadata": {"annotations": annotations}})
        except ApiException as error:
            if error.status != 404:
                raise
        self.serving = serving
        self._record()
        LOG.info("pod %s: %s", self, "serving, marked for Ready" if serving else "not serving, marked not Ready")

    def sync(self):
        """One kubelet sync: volumes written or re-read, the webhook started (again) if it does not run, readiness probed."""
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        changed = self.sync_volumes()
        if changed and self.processes:
            LOG.info("pod %s: volumes %s updated", self, ", ".join(changed))
        if not self.running():
            self.set_serving(False)
            self._start()
        self.set_serving(self.probe())

    def stop(self):
        netns.stop(_processes({name: process.pid for name, process in self.processes.items()}))
        for process in self.processes.values():
            process.poll()
        self.network.remove()
        shutil.rmtree(self.directory, ignore_errors=True)
        LOG.info("pod %s: stopped, its namespace removed", self)


# --- the daemon ------------------------------------------------------------------------------------------


def _processes(pids):
    """{pid: marker} of a pod's recorded processes, for netns.stop."""
    markers = {"webhook": WEBHOOK_MARKER, "forwarder": netns.FORWARDER_MODULE}
    return {pid: markers[name] for name, pid in pids.items()}


def pre_stop_sleep(pod):
    """Seconds the kubelet lets a stopping pod's container run on: its preStop sleep action, within the grace period."""
    container = pod["spec"]["containers"][0]
    seconds = (((container.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {}).get("seconds", 0)
    return min(seconds, pod["spec"].get("terminationGracePeriodSeconds", 30))


def wanted(pod):
    """Whether a pod (a dict as the API serves it) should have a webhook process here."""
    meta, spec, pod_status = pod["metadata"], pod["spec"], pod.get("status") or {}
    containers = spec.get("containers", [])
    return (
        not meta.get("deletionTimestamp")
        and pod_status.get("phase") == "Running"
        and bool(pod_status.get("podIP"))
        and len(containers) == 1
        and runnable_image(containers[0]["image"])
    )


class LabKubelet:
    """Watches pods and keeps a ServedPod for each that wanted() selects."""

    def __init__(self, facts, binary):
        self.facts, self.binary, self.state_dir = facts, binary, facts["state_dir"]
        self.api = config.new_client_from_config(facts["kubeconfig"])
        self.core = client.CoreV1Api(self.api)
        self.served = {}
        # Pods told to stop whose preStop sleep runs: {uid: (when to stop, ServedPod)}.
        self.draining = {}
        self.stopping = False

    def _reconcile(self, pod):
        uid = pod["metadata"]["uid"]
        served = self.served.get(uid)
        if wanted(pod):
            if served is None:
                # Started by the next sync, within a second (pods that do not serve yet are synced at every turn).
                self.served[uid] = ServedPod(self, pod)
        elif served is not None:
            self._forget(uid, deleting=bool(pod["metadata"].get("deletionTimestamp")))
        elif stages.is_webhook_image(pod["spec"]["containers"][0]["image"]) and not pod["metadata"].get("deletionTimestamp"):
            LOG.debug("pod %s/%s: not run here (image %s, phase %s)", pod["metadata"]["namespace"], pod["metadata"]["name"],
                      pod["spec"]["containers"][0]["image"], (pod.get("status") or {}).get("phase"))

    def _forget(self, uid, deleting=False):
        """Stop a pod's webhook. A pod being deleted first runs its preStop sleep (serving meanwhile), then goes."""
        served = self.served.pop(uid)
        seconds = pre_stop_sleep(served.pod) if deleting else 0
        if seconds:
            LOG.info("pod %s: stopping, preStop sleep of %d s first", served, seconds)
            self.draining[uid] = (time.monotonic() + seconds, served)
            return
        self._stop(served, deleting)

    def _stop(self, served, deleting):
        try:
            served.stop()
        except (WebhookError, netns.NetnsError, OSError) as error:
            LOG.error("pod %s: cannot stop: %s", served, error)
        if not deleting:
            return
        # kwok leaves a served webhook pod's deletion to us (tests/lab/stages.py): as the kubelet does, the pod
        # object goes once its container has stopped, with a grace period of 0.
        try:
            self.core.delete_namespaced_pod(served.name, served.namespace, grace_period_seconds=0)
        except ApiException as error:
            if error.status != 404:
                LOG.error("pod %s: cannot delete: %s", served, error)

    def _stop_drained(self, everything=False):
        for uid, (deadline, served) in list(self.draining.items()):
            if everything or time.monotonic() >= deadline:
                del self.draining[uid]
                self._stop(served, deleting=True)

    def _sync_all(self):
        for served in list(self.served.values()):
            try:
                served.sync()
            except (WebhookError, ApiException, OSError) as error:
                LOG.error("pod %s: sync failed: %s", served, error)

    def _as_dict(self, pod):
        return self.api.sanitize_for_serialization(pod)

    def run(self):
        signal.signal(signal.SIGTERM, self._stop_signal)
        signal.signal(signal.SIGINT, self._stop_signal)
        resource_version = None
        last_sync = 0.0
        try:
            while not self.stopping:
                try:
                    if resource_version is None:
                        listing = self.core.list_pod_for_all_namespaces()
                        pods = {pod.metadata.uid: self._as_dict(pod) for pod in listing.items}
                        for uid in set(self.served) - set(pods):
                            self._forget(uid)
                        for pod in pods.values():
                            self._reconcile(pod)
                        resource_version = listing.metadata.resource_version
                    for event in watch.Watch().stream(self.core.list_pod_for_all_namespaces, resource_version=resource_version, timeout_seconds=1):
                        pod = event["raw_object"]  # the pod as the API serves it (the model would rename its fields)
                        resource_version = pod["metadata"]["resourceVersion"]
                        if event["type"] == "DELETED":
                            if pod["metadata"]["uid"] in self.served:
                                self._forget(pod["metadata"]["uid"])
                        else:
                            self._reconcile(pod)
                        if self.stopping:
                            break
                    if time.monotonic() - last_sync >= SYNC_SECONDS or any(not served.serving for served in self.served.values()):
                        self._sync_all()
                        last_sync = time.monotonic()
                except ApiException as error:
                    if error.status == 410:
                        resource_version = None  # the watch fell too far behind: list again
                    elif error.status >= 500:
                        self._api_server_unavailable()
                        resource_version = None
                    else:
                        raise
                except (urllib3.exceptions.HTTPError, OSError):
                    self._api_server_unavailable()
                    resource_version = None
                self._stop_drained()
        finally:
            for uid in list(self.served):
                self._forget(uid)
            self._stop_drained(everything=True)

    @staticmethod
    def _api_server_unavailable():
        # Killed, restarting or not ready yet: a kubelet keeps its pods running and tries again (its informers back
        # off and relist), so the served webhooks outlive an API server outage, as on a real node.
        time.sleep(1)

    def _stop_signal(self, _signum, _frame):
        self.stopping = True


def cleanup(state_dir):
    """Stop every webhook process, forwarder and pod namespace a previous daemon left behind."""
    root = _pods_dir(state_dir)
    for uid in os.listdir(root) if os.path.isdir(root) else []:
        record_path = os.path.join(root, uid, "pod.json")
        if os.path.exists(record_path):
            with open(record_path, encoding="utf-8") as record_file:
                record = json.load(record_file)
            netns.stop(_processes(record["pids"]))
            netns.remove(record["netns"])
        shutil.rmtree(os.path.join(root, uid), ignore_errors=True)


def _daemon_pid(state_dir):
    try:
        with open(_daemon_pid_path(state_dir), encoding="utf-8") as pid_file:
            pid = int(pid_file.read().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if netns.is_running(pid, DAEMON_MARKER) else None


def webhook_binary():
    try:
        return build.ensure_tool(next(tool for tool in build.TOOLS if tool.name == "webhook"))["gmsa-webhook"]
    except build.BuildError as error:
        raise WebhookError(str(error)) from error


def _facts_path(state_dir):
    return os.path.join(kubelet_dir(state_dir), "cluster.json")


def ensure_running(facts):
    """Start the lab kubelet for the cluster kube.up() described, unless it runs (labctl up); return its PID."""
    state_dir = facts["state_dir"]
    pid = _daemon_pid(state_dir)
    if pid:
        return pid
    webhook_binary()  # built (or its failure reported) here, not in the background
    os.makedirs(kubelet_dir(state_dir), exist_ok=True)
    # Paths, addresses and names only: the kubeconfig stays where kube.up() keeps it.
    with open(_facts_path(state_dir), "w", encoding="utf-8") as facts_file:
        json.dump(facts, facts_file)
    command = [sys.executable, "-m", DAEMON_MARKER, "run", state_dir]
    with open(os.path.join(kubelet_dir(state_dir), "kubelet.log"), "ab") as log:
        process = subprocess.Popen(  # pylint: disable=consider-using-with
            command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    with open(_daemon_pid_path(state_dir), "w", encoding="utf-8") as pid_file:
        pid_file.write(str(process.pid))
    return process.pid


def stop_all(state_dir):
    """Stop the lab kubelet and everything it runs (labctl down, before the cluster goes)."""
    pid = _daemon_pid(state_dir)
    if pid:
        netns.stop({pid: DAEMON_MARKER}, timeout=30)
    cleanup(state_dir)
    shutil.rmtree(kubelet_dir(state_dir), ignore_errors=True)


def status(state_dir):
    """The webhook pods served now: {namespace/name: {uid, netns, addresses, pids, serving, directory, log}}; {} when the daemon is down."""
    if not _daemon_pid(state_dir):
        return {}
    served = {}
    root = _pods_dir(state_dir)
    for uid in os.listdir(root) if os.path.isdir(root) else []:
        try:
            with open(os.path.join(root, uid, "pod.json"), encoding="utf-8") as record_file:
                record = json.load(record_file)
        except FileNotFoundError:
            continue  # starting or just stopped
        served[record["pod"]] = record
    return served


def wait_serving(lab, namespace, service, timeout=90):
    """Wait until the Service has ready endpoints, every one served here; return {addresses, port, pods, netns}."""
    deadline = time.monotonic() + timeout
    while True:
        slices = json.loads(kube.kubectl(lab["state_dir"], lab["binaries"], "get", "endpointslices", "-n", namespace,
                                         "-l", "kubernetes.io/service-name=" + service, "-o", "json"))["items"]
        ready = sorted(address for item in slices for endpoint in item.get("endpoints") or [] if endpoint["conditions"].get("ready")
                       for address in endpoint["addresses"])
        ports = [port["port"] for item in slices for port in item.get("ports") or []]
        served = {address: record for record in status(lab["state_dir"]).values() if record["serving"] for address in record["addresses"]}
        if ready and ports and all(address in served for address in ready):
            return {"addresses": ready, "port": ports[0], "pods": sorted({served[address]["pod"] for address in ready}),
                    "netns": {address: served[address]["netns"] for address in ready}}
        if time.monotonic() > deadline:
            raise WebhookError("Service %s/%s not served by the lab kubelet after %s s (ready endpoints %s); see %s"
                               % (namespace, service, timeout, ready, os.path.join(kubelet_dir(lab["state_dir"]), "kubelet.log")))
        time.sleep(0.5)


def main(argv):
    if len(argv) != 3 or argv[1] != "run":
        sys.exit(__doc__)
    state_dir = argv[2]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    cleanup(state_dir)
    with open(_facts_path(state_dir), encoding="utf-8") as facts_file:
        facts = json.load(facts_file)
    LabKubelet(facts, webhook_binary()).run()


if __name__ == "__main__":
    main(sys.argv)
