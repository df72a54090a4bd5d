"""Make the checkout importable for plain pytest runs: ``tests.lab`` (the lab harness and its pytest plugins),
and through it ``ansible_collections.wincontainers.gmsa`` (see tests/lab/__init__.py)."""

import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import tests.lab  # noqa: E402,F401 pylint: disable=unused-import,wrong-import-position
