# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """How long the cluster modules wait for the Kubernetes API server."""

    # Notes only; ansible-doc takes a fragment that has options or attributes, so it has an empty options.
    DOCUMENTATION = r"""
options: {}
notes:
  - Every request to the Kubernetes API server times out after 30 seconds and then fails naming the server. A
    request that times out is not sent again.
  - The connection options and C(K8S_AUTH_*) variables are kubernetes.core's, with its precedence. A kubeconfig
    whose user has a token or a client certificate, or O(host) with O(api_key) or a client certificate, is served
    by the Python standard library's HTTP client, which starts in milliseconds and sends no API discovery. Every
    other setting (exec and auth-provider plugins, in-cluster configuration, O(proxy) or a proxy variable of the
    environment such as E(HTTPS_PROXY), impersonation, basic auth, several files in E(KUBECONFIG)) goes through
    the C(kubernetes) client as in kubernetes.core, whose API discovery at start-up has the same 30-second timeout.
  - A request that the server turns away for load (HTTP 429, or a 5xx answer with C(Retry-After)) is sent again
    after the time the server asks for, at most 10 times, as client-go does.
"""
