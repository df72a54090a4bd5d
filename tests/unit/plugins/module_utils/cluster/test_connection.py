"""Which transport the connection settings get, and what HttpTransport takes from them.

The precedence is kubernetes.core's (plugins/module_utils/k8s/client.py _create_auth_spec, _create_configuration):
an option before its K8S_AUTH_ variable; host with api_key or a client certificate needs no kubeconfig; options
override what the kubeconfig gives. Settings HttpTransport does not carry out must reach kubernetes.core's client.
"""

import base64
import socket
import threading
import time

import pytest
import yaml
from ansible_collections.wincontainers.gmsa.plugins.module_utils.cluster._connection import Endpoint, HttpTransport, direct_endpoint

CA = "-----BEGIN CERTIFICATE-----\nnot a real one\n-----END CERTIFICATE-----\n"


def _kubeconfig(user=None, cluster=None, context="lab", extra_contexts=()):
    return {
        "apiVersion": "v1", "kind": "Config", "current-context": context,
        "clusters": [{"name": "lab", "cluster": cluster or {"server": "https://127.0.0.1:6443/", "certificate-authority": "ca.crt"}}],
        "users": [{"name": "admin", "user": user if user is not None else {"client-certificate": "admin.crt", "client-key": "admin.key"}}],
        "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "admin", "namespace": "web"}}, *extra_contexts],
    }


@pytest.fixture(name="kubeconfig_file")
def fixture_kubeconfig_file(tmp_path):
    def write(config):
        path = tmp_path / "config"
        path.write_text(yaml.safe_dump(config))
        return str(path)

    return write


def test_a_kubeconfig_with_a_client_certificate_resolves_its_files_beside_it(kubeconfig_file, tmp_path):
    endpoint = direct_endpoint({"kubeconfig": kubeconfig_file(_kubeconfig())}, {})
    assert endpoint == Endpoint(
        host="https://127.0.0.1:6443", ca_file=str(tmp_path / "ca.crt"), cert_file=str(tmp_path / "admin.crt"), key_file=str(tmp_path / "admin.key"),
    )


def test_inline_data_and_a_token_from_an_inline_kubeconfig():
    config = _kubeconfig(
        user={"token": "abc"},
        cluster={"server": "https://api.example:6443", "certificate-authority-data": base64.b64encode(CA.encode()).decode()},
    )
    assert direct_endpoint({"kubeconfig": config}, {}) == Endpoint(host="https://api.example:6443", token="abc", ca_data=CA)


def test_the_context_option_picks_the_context(kubeconfig_file):
    other = {"name": "other", "context": {"cluster": "lab", "user": "robot"}}
    config = _kubeconfig(extra_contexts=[other])
    config["users"].append({"name": "robot", "user": {"token": "robot-token"}})
    endpoint = direct_endpoint({"kubeconfig": kubeconfig_file(config), "context": "other"}, {})
    assert endpoint.token == "robot-token" and endpoint.cert_file is None


def test_options_override_the_kubeconfig(kubeconfig_file):
    endpoint = direct_endpoint({"kubeconfig": kubeconfig_file(_kubeconfig()), "host": "https://10.0.0.1:6443/", "validate_certs": False}, {})
    assert endpoint.host == "https://10.0.0.1:6443" and endpoint.verify is False


def test_insecure_skip_tls_verify_turns_verification_off(kubeconfig_file):
    config = _kubeconfig(cluster={"server": "https://127.0.0.1:6443", "insecure-skip-tls-verify": True})
    assert direct_endpoint({"kubeconfig": kubeconfig_file(config)}, {}).verify is False


def test_host_and_api_key_need_no_kubeconfig_and_come_from_the_environment_too():
    environ = {"K8S_AUTH_HOST": "https://api.example:6443", "K8S_AUTH_API_KEY": "t0ken", "K8S_AUTH_VERIFY_SSL": "no",
               "KUBECONFIG": "/nonexistent/config"}
    assert direct_endpoint({}, environ) == Endpoint(host="https://api.example:6443", token="t0ken", verify=False)
    # The option wins over its variable.
    assert direct_endpoint({"api_key": "option"}, environ).token == "option"


def test_the_kubeconfig_variable_is_the_default_kubeconfig(kubeconfig_file):
    assert direct_endpoint({}, {"KUBECONFIG": kubeconfig_file(_kubeconfig())}).host == "https://127.0.0.1:6443"


@pytest.mark.parametrize(("options", "environ"), [
    ({"impersonate_user": "deployer"}, {}),
    ({}, {"K8S_AUTH_IMPERSONATE_GROUPS": "admins"}),
    ({"proxy": "http://proxy:3128"}, {}),
    ({}, {"K8S_AUTH_PROXY": "http://proxy:3128"}),
    ({}, {"K8S_AUTH_PROXY_HEADERS_PROXY_BASIC_AUTH": "user:secret"}),
    ({"username": "admin", "password": "secret"}, {}),
], ids=["impersonation", "impersonation-variable", "proxy", "proxy-variable", "proxy-headers", "basic-auth"])
def test_settings_only_kubernetes_core_carries_out_go_to_it(kubeconfig_file, options, environ):
    assert direct_endpoint({"kubeconfig": kubeconfig_file(_kubeconfig()), **options}, environ) is None


@pytest.mark.parametrize("user", [
    {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "kubelogin"}},
    {"auth-provider": {"name": "oidc"}},
    {"tokenFile": "/var/run/token"},
    {"username": "admin", "password": "secret"},
], ids=["exec", "auth-provider", "token-file", "basic-auth"])
def test_kubeconfig_users_it_does_not_know_go_to_kubernetes_core(kubeconfig_file, user):
    assert direct_endpoint({"kubeconfig": kubeconfig_file(_kubeconfig(user=user))}, {}) is None


def test_a_proxied_cluster_goes_to_kubernetes_core(kubeconfig_file):
    config = _kubeconfig(cluster={"server": "https://127.0.0.1:6443", "proxy-url": "http://proxy:3128"})
    assert direct_endpoint({"kubeconfig": kubeconfig_file(config)}, {}) is None


@pytest.mark.parametrize("context", ["missing", None])
def test_a_kubeconfig_it_cannot_follow_is_left_to_kubernetes_core_to_report(kubeconfig_file, context):
    config = _kubeconfig(context=context)
    assert direct_endpoint({"kubeconfig": kubeconfig_file(config)}, {}) is None


def test_missing_or_merged_kubeconfig_files_go_to_kubernetes_core(kubeconfig_file, tmp_path):
    assert direct_endpoint({"kubeconfig": str(tmp_path / "absent")}, {}) is None
    merged = f"{kubeconfig_file(_kubeconfig())}:{tmp_path / 'second'}"
    assert direct_endpoint({}, {"KUBECONFIG": merged}) is None


def test_in_cluster_configuration_is_kubernetes_cores(kubeconfig_file):
    in_pod = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443", "KUBECONFIG": kubeconfig_file(_kubeconfig())}
    assert direct_endpoint({}, in_pod) is None
    # A kubeconfig named explicitly is loaded instead, in a pod too.
    assert direct_endpoint({"kubeconfig": in_pod["KUBECONFIG"]}, in_pod).host == "https://127.0.0.1:6443"


@pytest.mark.parametrize(("environ", "direct"), [
    ({"HTTPS_PROXY": "http://proxy:3128"}, False),
    ({"https_proxy": "http://proxy:3128"}, False),
    ({"ALL_PROXY": "http://proxy:3128"}, False),
    ({"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "127.0.0.1,.example"}, True),
    ({"HTTP_PROXY": "http://proxy:3128"}, True),
    ({"HTTPS_PROXY": ""}, True),
], ids=["https", "https-lower-case", "all", "no-proxy", "other-scheme", "empty"])
def test_a_proxy_from_the_environment_keeps_the_connection_with_kubernetes_core(kubeconfig_file, environ, direct):
    # kubernetes' Configuration takes its proxy from these variables (urllib's getproxies), less NO_PROXY.
    endpoint = direct_endpoint({"kubeconfig": kubeconfig_file(_kubeconfig())}, environ)
    assert (endpoint is not None) is direct


def test_a_keep_alive_connection_the_server_closed_is_not_reused():
    """The server answers each request and then closes the connection without saying so (as one does to idle
    connections): the next request goes on a new connection instead of failing as if the server were unreachable."""
    listener = socket.create_server(("127.0.0.1", 0))
    served = []

    def serve():
        for _request in range(2):
            connection, _address = listener.accept()
            with connection:
                served.append(connection.recv(65536).split(b" ")[1])
                connection.sendall(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n{"ok": true}')
                time.sleep(0.1)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    transport = HttpTransport(Endpoint(host=f"http://127.0.0.1:{listener.getsockname()[1]}"))
    assert transport.send("get", "/api/v1/namespaces", [], {}, None, 5) == b'{"ok": true}'
    thread.join(0.3)
    time.sleep(0.2)  # the server has closed the first connection
    assert transport.send("get", "/api/v1/nodes", [("limit", "500")], {}, None, 5) == b'{"ok": true}'
    assert served == [b"/api/v1/namespaces", b"/api/v1/nodes?limit=500"]
    listener.close()
