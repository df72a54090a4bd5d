"""Make the checkout importable for plain pytest runs.

As ``ansible_collections.wincontainers.gmsa``: ansible-test needs the collection at
``.../ansible_collections/wincontainers/gmsa``; a git checkout is usually not there, so pytest gets a
symlinked tree under ``.cache/`` instead. As ``tests.lab``: the lab harness and its pytest plugins.
"""

import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _collections_root():
    parts = _ROOT.split(os.sep)
    if parts[-3:] == ["ansible_collections", "wincontainers", "gmsa"]:
        return os.sep.join(parts[:-3])
    tree = os.path.join(_ROOT, ".cache", "collections")
    link = os.path.join(tree, "ansible_collections", "wincontainers", "gmsa")
    if not os.path.islink(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(_ROOT, link)
    return tree


for _path in (_collections_root(), _ROOT):
    if _path not in sys.path:
        sys.path.insert(0, _path)
