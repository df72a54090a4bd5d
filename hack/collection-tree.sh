#!/usr/bin/env bash
# Lay the collection out as .../ansible_collections/wincontainers/gmsa (where ansible-test wants it), with
# its dependency kubernetes.core linked in from the virtual environment, and print that path. Copies what git
# tracks plus new, not ignored files, so the tree matches what a commit would hold. The tree lives outside the
# checkout: inside it, ansible-test would ask this repository's git and skip every (ignored) file.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
venv_python=${1:?usage: collection-tree.sh VENV_PYTHON}
tree="${TMPDIR:-/tmp}/wincontainers-gmsa-tree-$(echo "$root" | md5sum | cut -c1-8)/ansible_collections"
target="$tree/wincontainers/gmsa"

rm -rf "$target"
mkdir -p "$target" "$tree/kubernetes"
(cd "$root" && git ls-files -z --cached --others --exclude-standard | xargs -0 -r tar -cf - --ignore-failed-read 2>/dev/null) | tar -xf - -C "$target"

site=$("$venv_python" -c 'import ansible_collections.kubernetes.core as m, os; print(os.path.dirname(m.__path__[0]))')
ln -sfn "$site/core" "$tree/kubernetes/core"
echo "$target"
