# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """How long the cluster modules wait for the Kubernetes API server."""

    # Notes only; ansible-doc takes a fragment that has options or attributes, so it has an empty options.
    DOCUMENTATION = r"""
options: {}
notes:
  - Every request to the Kubernetes API server times out after 30 seconds and then fails naming the server. That
    includes the API discovery that the Kubernetes client makes as it starts. A request that times out is not sent
    again.
  - A request that the server turns away for load (HTTP 429, or a 5xx answer with C(Retry-After)) is sent again
    after the time the server asks for, at most 10 times, as client-go does.
"""
