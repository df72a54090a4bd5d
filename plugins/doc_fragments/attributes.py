# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)


class ModuleDocFragment:
    """Where every module of the collection runs; list it before ansible.builtin.action_common_attributes (the first wins)."""

    DOCUMENTATION = r"""
attributes:
  platform:
    support: full
    platforms: posix
    details: >-
      Runs on the controller (or an execution environment) and reaches the domain controller or the Kubernetes
      API server itself; neither is an Ansible host.
"""
