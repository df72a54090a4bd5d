# -*- coding: utf-8 -*-
# Copyright: (c) 2026, wincontainers.gmsa contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

from ansible_collections.wincontainers.gmsa.plugins.plugin_utils._controller_module import ControllerModuleAction


class ActionModule(ControllerModuleAction):
    """The action of gmsa_domain_info: the module runs in a fork of the task's worker when it can (see ControllerModuleAction)."""
