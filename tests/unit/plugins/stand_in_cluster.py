# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""What the in-memory API servers of the cluster unit tests share: they stand in for ``Cluster``."""


class StandInCluster:
    """Monkeypatched over a module's ``Cluster``, ``Cluster(module)`` returns the server itself; ``_key`` indexes objects."""

    host = "https://fake:6443"
    connection_pool_size = 4

    def __call__(self, _module):
        return self

    @staticmethod
    def _key(obj):
        return obj["kind"], obj["metadata"].get("namespace"), obj["metadata"]["name"]
