# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""How the cluster modules reach the API server: the transports under :class:`._client.Cluster`.

The connection options are kubernetes.core's (``kubeconfig``, ``context``, ``host``, ``api_key``, ...), with its
``K8S_AUTH_*`` environment and its precedence (kubernetes.core plugins/module_utils/k8s/client.py
``_create_auth_spec`` and ``_create_configuration``). Two transports carry them out:

- :class:`HttpTransport`, for the common settings (a kubeconfig whose user has a token or a client certificate, or
  ``host`` with ``api_key`` or a client certificate): the standard library's HTTP client, a few milliseconds to start.
  Importing the ``kubernetes`` client costs a module process about 0.6 s of CPU, and creating kubernetes.core's
  client asks the server for API discovery first; the collection needs neither, as it knows its kinds' paths.
- :class:`KubernetesTransport`, for everything else (exec and auth-provider plugins, in-cluster configuration,
  proxies, also those of the environment, impersonation, basic auth, merged kubeconfig files): kubernetes.core's own client, so every setting
  it takes keeps working exactly as it does there.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import select
import signal
import ssl
import tempfile
import threading
import urllib.parse
from dataclasses import dataclass
from typing import Any

# kubernetes.core's options (AUTH_ARG_MAP: the name in kubernetes' Configuration -> the module option) whose
# K8S_AUTH_* variables are read under either name, as _create_auth_spec reads them.
_AUTH_OPTIONS = {
    "kubeconfig": "kubeconfig", "context": "context", "host": "host", "api_key": "api_key", "username": "username",
    "password": "password", "verify_ssl": "validate_certs", "ssl_ca_cert": "ca_cert", "cert_file": "client_cert",
    "key_file": "client_key", "proxy": "proxy", "no_proxy": "no_proxy",
}
# Settings only kubernetes.core's client carries out.
_KUBERNETES_ONLY = ("username", "password", "proxy", "no_proxy")
_KUBERNETES_ONLY_OPTIONS = ("proxy_headers", "impersonate_user", "impersonate_groups")
# The kubeconfig entries HttpTransport understands (k8s.io/client-go tools/clientcmd/api/v1 types.go Cluster,
# AuthInfo); a cluster or user with any other (exec, auth-provider, proxy-url, tls-server-name, ...) goes to
# kubernetes.core. Extensions carry nothing the connection uses.
_CLUSTER_KEYS = {"server", "certificate-authority", "certificate-authority-data", "insecure-skip-tls-verify", "extensions"}
_USER_KEYS = {"token", "client-certificate", "client-certificate-data", "client-key", "client-key-data", "extensions"}


class StatusError(Exception):
    """The API server answered with an error status; ``body`` is its Status object as text."""

    def __init__(self, status: int, reason: str, body: str, headers: Any) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.body = body
        self.headers = headers


class TransportError(Exception):
    """No answer came: the server is unreachable, refused TLS, or took longer than the timeout."""


class DiscoveryTimedOut(Exception):
    """Raised by the alarm into a discovery that got no answer; not an OSError, which urllib3 would retry."""


@dataclass(frozen=True)
class Endpoint:
    """An API server and the credentials for it, as HttpTransport uses them."""

    host: str
    token: str | None = None
    verify: bool = True
    ca_file: str | None = None
    ca_data: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    cert_data: bytes | None = None
    key_data: bytes | None = None


def _setting(params: dict[str, Any], environ: dict[str, str], name: str, option: str) -> Any:
    """An option's value, else its K8S_AUTH_ variable (under the option's name, then the Configuration's)."""
    if params.get(option) is not None:
        return params[option]
    value = environ.get(f"K8S_AUTH_{option.upper()}") or environ.get(f"K8S_AUTH_{name.upper()}")
    if value is not None and option == "validate_certs":  # the one bool among them
        return value.lower() not in ("0", "false", "no")
    return value


def direct_endpoint(params: dict[str, Any], environ: dict[str, str] | None = None) -> Endpoint | None:
    """The endpoint HttpTransport can reach with these settings, or None when they need kubernetes.core's client.

    Follows kubernetes.core's precedence: ``host`` with ``api_key`` or a client certificate stands alone; else the
    kubeconfig (the option, else ``KUBECONFIG``, else ``~/.kube/config``) at ``context``; the options then override
    what the kubeconfig gave. In-cluster configuration, tried first when neither kubeconfig nor context is set and
    the process runs in a pod, is left to kubernetes.core.
    """
    environ = os.environ if environ is None else environ
    auth = {name: _setting(params, environ, name, option) for name, option in _AUTH_OPTIONS.items()}
    if any(auth[name] for name in _KUBERNETES_ONLY) or any(params.get(option) for option in _KUBERNETES_ONLY_OPTIONS):
        return None
    if any(environ.get(f"K8S_AUTH_{option.upper()}") for option in ("impersonate_user", "impersonate_groups")):
        return None
    if any(key.startswith("K8S_AUTH_PROXY_HEADERS_") for key in environ):
        return None
    if auth["host"]:
        auth["host"] = auth["host"].rstrip("/")
    standalone = auth["host"] and (auth["api_key"] or (auth["cert_file"] and auth["key_file"]))
    if standalone:
        settings: dict[str, Any] = {}
    elif not (auth["kubeconfig"] or auth["context"]) and environ.get("KUBERNETES_SERVICE_HOST") and environ.get("KUBERNETES_SERVICE_PORT"):
        return None
    else:
        settings = _kubeconfig_settings(auth["kubeconfig"] or environ.get("KUBECONFIG") or "~/.kube/config", auth["context"])
        if settings is None:
            return None
    # The options override the kubeconfig, as kubernetes.core sets them on the Configuration after loading it.
    overrides = {"host": auth["host"], "token": auth["api_key"], "ca_file": auth["ssl_ca_cert"], "cert_file": auth["cert_file"], "key_file": auth["key_file"]}
    settings.update({key: value for key, value in overrides.items() if value})
    if auth["verify_ssl"] is not None:
        settings["verify"] = bool(auth["verify_ssl"])
    if auth["ssl_ca_cert"]:
        settings.pop("ca_data", None)
    if auth["cert_file"]:
        settings.pop("cert_data", None)
    if auth["key_file"]:
        settings.pop("key_data", None)
    if not settings.get("host") or _proxied(settings["host"], environ):
        return None
    return Endpoint(**settings)


def _proxied(host: str, environ: dict[str, str]) -> bool:
    """Whether a proxy variable of the environment (HTTPS_PROXY, ALL_PROXY, ... less NO_PROXY) applies to ``host``.

    kubernetes' client sends its requests through it (kubernetes/client/configuration.py reads urllib's getproxies),
    so such a connection stays with kubernetes.core's client.
    """
    # As urllib.request.getproxies_environment reads them: any case, the lower-case name winning.
    proxies = {}
    for name in sorted(environ, key=str.islower):
        if name.lower().endswith("_proxy") and environ[name]:
            proxies[name.lower()[:-len("_proxy")]] = environ[name]
    url = urllib.parse.urlsplit(host)
    if not (proxies.get(url.scheme) or proxies.get("all")):
        return False
    from urllib.request import proxy_bypass_environment  # imported only here: about 20 ms of start-up

    return not proxy_bypass_environment(url.hostname or "", proxies)


def _kubeconfig_settings(kubeconfig: str | dict[str, Any], context_name: str | None) -> dict[str, Any] | None:
    """What a kubeconfig's context says about its API server and user, or None when HttpTransport cannot follow it
    (kubernetes.core then loads it and reports what is wrong with it, as it always has)."""
    if isinstance(kubeconfig, str):
        path = os.path.expanduser(kubeconfig)
        # Several files in KUBECONFIG are merged by kubernetes' loader.
        if os.pathsep in kubeconfig or not os.path.isfile(path):
            return None
        base = os.path.dirname(os.path.abspath(path))
        try:
            import yaml

            with open(path, encoding="utf-8") as stream:
                config = yaml.safe_load(stream)
        except (OSError, ValueError, ImportError, yaml.YAMLError):
            return None
    elif isinstance(kubeconfig, dict):
        # kubernetes' load_kube_config_from_dict resolves relative paths from the working directory.
        config, base = kubeconfig, os.getcwd()
    else:
        return None
    if not isinstance(config, dict):
        return None
    context_name = context_name or config.get("current-context")
    context = _named(config, "contexts", "context", context_name)
    cluster = _named(config, "clusters", "cluster", (context or {}).get("cluster"))
    user = _named(config, "users", "user", (context or {}).get("user")) if (context or {}).get("user") else {}
    if context is None or cluster is None or user is None or set(cluster) - _CLUSTER_KEYS or set(user) - _USER_KEYS:
        return None
    try:
        settings = {
            "host": (cluster.get("server") or "").rstrip("/"),
            "verify": not cluster.get("insecure-skip-tls-verify", False),
            "token": user.get("token"),
            "ca_file": _path(base, cluster.get("certificate-authority")),
            "ca_data": base64.b64decode(cluster["certificate-authority-data"]).decode("ascii") if cluster.get("certificate-authority-data") else None,
            "cert_file": _path(base, user.get("client-certificate")),
            "key_file": _path(base, user.get("client-key")),
            "cert_data": base64.b64decode(user["client-certificate-data"]) if user.get("client-certificate-data") else None,
            "key_data": base64.b64decode(user["client-key-data"]) if user.get("client-key-data") else None,
        }
    except (TypeError, ValueError):
        return None
    return {key: value for key, value in settings.items() if value is not None}


def _named(config: dict[str, Any], section: str, key: str, name: str | None) -> dict[str, Any] | None:
    for entry in config.get(section) or []:
        if isinstance(entry, dict) and entry.get("name") == name and isinstance(entry.get(key), dict):
            return entry[key]
    return None


def _path(base: str, path: str | None) -> str | None:
    return os.path.join(base, os.path.expanduser(path)) if path else None


def _ssl_context(endpoint: Endpoint) -> ssl.SSLContext:
    if endpoint.ca_file or endpoint.ca_data:
        context = ssl.create_default_context(cafile=endpoint.ca_file, cadata=endpoint.ca_data)
    else:
        # kubernetes' client verifies against certifi's bundle when no CA is given.
        try:
            import certifi

            context = ssl.create_default_context(cafile=certifi.where())
        except ImportError:
            context = ssl.create_default_context()
    if not endpoint.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if endpoint.cert_data or endpoint.cert_file:
        with contextlib.ExitStack() as files:
            # The ssl module loads a certificate and key only from files: inline ones go to private temporary files,
            # removed as soon as they are loaded.
            cert = endpoint.cert_file or _private_file(files, endpoint.cert_data)
            key = endpoint.key_file or (_private_file(files, endpoint.key_data) if endpoint.key_data else None)
            context.load_cert_chain(cert, key)
    return context


def _private_file(files: contextlib.ExitStack, content: bytes | None) -> str:
    handle = files.enter_context(tempfile.NamedTemporaryFile(suffix=".pem"))  # mode 0600
    handle.write(content or b"")
    handle.flush()
    return handle.name


class HttpTransport:
    """Requests over the standard library's HTTP client, one keep-alive connection per concurrent request."""

    def __init__(self, endpoint: Endpoint) -> None:
        url = urllib.parse.urlsplit(endpoint.host)
        self.host = endpoint.host
        self._https = url.scheme == "https"
        self._address = (url.hostname, url.port)
        self._prefix = url.path.rstrip("/")
        self._headers = {"Authorization": f"Bearer {endpoint.token}"} if endpoint.token else {}
        self._context = _ssl_context(endpoint) if self._https else None
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        # As many requests in flight as kubernetes' client would allow (Configuration.connection_pool_maxsize).
        self.pool_size = (os.cpu_count() or 1) * 5

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        connection = None
        while connection is None:
            with self._lock:
                if not self._idle:
                    break
                connection = self._idle.pop()
            if _dropped(connection):
                connection.close()
                connection = None
        if connection is None:
            host, port = self._address
            if self._https:
                connection = http.client.HTTPSConnection(host, port, timeout=timeout, context=self._context)
            else:
                connection = http.client.HTTPConnection(host, port, timeout=timeout)
        connection.timeout = timeout
        if connection.sock is not None:
            connection.sock.settimeout(timeout)
        return connection

    def send(self, method: str, path: str, query: list[tuple[str, str]], headers: dict[str, str], body: Any, timeout: float) -> bytes:
        """The answer's body; ``body`` is sent as JSON (a server-side apply patch is JSON too, as YAML's subset)."""
        target = self._prefix + path + ("?" + urllib.parse.urlencode(query) if query else "")
        connection = self._connection(timeout)
        try:
            payload = None if body is None else json.dumps(body).encode()
            connection.request(method.upper(), target, body=payload, headers={"Accept": "application/json", **self._headers, **headers})
            response = connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            raise TransportError(str(error) or type(error).__name__) from None
        if response.will_close:
            connection.close()
        else:
            with self._lock:
                self._idle.append(connection)
        if response.status >= 400:
            raise StatusError(response.status, response.reason, data.decode("utf-8", "replace"), response.headers)
        return data


def _dropped(connection: http.client.HTTPConnection) -> bool:
    """Whether the server (or a load balancer in front of it) closed an idle keep-alive connection: its socket is
    readable with nothing asked. urllib3 checks the same before it reuses a connection (util/connection.py
    is_connection_dropped); a request on such a connection would fail as if the server were unreachable."""
    if connection.sock is None:
        return True
    readable, _writable, _failed = select.select([connection.sock], [], [], 0)
    return bool(readable)


@contextlib.contextmanager
def _time_limit(seconds: float):
    """Interrupt what blocks this (the main) thread after ``seconds`` by raising :class:`DiscoveryTimedOut`.

    Ansible bounds a task's action the same way (ansible/_internal/_errors/_task_timeout.py: SIGALRM).
    """

    def expire(_signum, _frame):
        raise DiscoveryTimedOut()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class KubernetesTransport:
    """Requests through kubernetes.core's client, for the settings only it carries out.

    Raises :class:`TransportError` when the client cannot be set up, with a message naming the server.
    """

    def __init__(self, module: Any, timeout: float) -> None:
        # Imported here: only these settings pay for the kubernetes client.
        from ansible_collections.kubernetes.core.plugins.module_utils.k8s.client import get_api_client
        from ansible_collections.kubernetes.core.plugins.module_utils.k8s.exceptions import CoreException

        module.requires("kubernetes")
        from kubernetes.client import Configuration
        from kubernetes.client.rest import RESTClientObject
        from kubernetes.dynamic.exceptions import DynamicApiError
        from urllib3.exceptions import HTTPError as Urllib3Error

        self._api_error, self._unreachable = DynamicApiError, (Urllib3Error, OSError)
        # The client asks the server for /version, /api and /apis as it is created, without a timeout
        # (kubernetes.dynamic.discovery Discoverer._load_server_info and LazyDiscoverer.discover send no
        # _request_timeout, so urllib3 waits for ever): a peer that accepts and never answers would hang the module.
        configured = module.params.get("host") or os.environ.get("K8S_AUTH_HOST") or Configuration.get_default_copy().host or "the kubeconfig's server"
        try:
            with _time_limit(timeout):
                k8s_client = get_api_client(module=module)
        except CoreException as error:
            raise TransportError(f"cannot configure the Kubernetes client: {error}") from None
        except self._unreachable as error:
            raise TransportError(f"cannot reach the Kubernetes API server at {configured}: {error}") from None
        except DiscoveryTimedOut:
            raise TransportError(f"cannot reach the Kubernetes API server at {configured}: no answer to API discovery within {timeout:g} s") from None
        # urllib3 sends a GET again after a timeout, 3 times by default (Retry.DEFAULT), each with the whole timeout:
        # one request is one attempt here, and Cluster decides what is sent again.
        k8s_client.configuration.retries = False
        k8s_client.client.client.rest_client = RESTClientObject(k8s_client.configuration)
        self._client = k8s_client.client
        self.host = k8s_client.configuration.host
        self.pool_size = k8s_client.configuration.connection_pool_maxsize or 1

    def send(self, method: str, path: str, query: list[tuple[str, str]], headers: dict[str, str], body: Any, timeout: float) -> bytes:
        headers = dict(headers)
        content_type = headers.pop("Content-Type", "application/json")
        # kubernetes' REST client serialises the body itself for JSON content types only (kubernetes/client/rest.py).
        if body is not None and "json" not in content_type:
            body = json.dumps(body)
        try:
            response = self._client.request(
                method, path, body=body, query_params=list(query), header_params=headers, content_type=content_type,
                serialize=False, _request_timeout=timeout,
            )
        except self._api_error as error:
            raise StatusError(error.status, error.reason or "", error.body or "", error.headers or {}) from None
        except self._unreachable as error:
            raise TransportError(str(error)) from None
        return response.data
