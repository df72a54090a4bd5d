#!/usr/bin/env bash
# Build the collection tarball, install it into a scratch collections path, and render the documentation of
# every plugin it ships with ansible-doc: what a user gets from Galaxy must document itself.
set -euo pipefail

bin=${1:?usage: build-check.sh VENV_BIN}
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/build/dist"
install_path="$root/build/installed"

rm -rf "$out" "$install_path"
mkdir -p "$out"
"$bin/ansible-galaxy" collection build "$root" --output-path "$out" --force
tarball=$(ls "$out"/wincontainers-gmsa-*.tar.gz)
"$bin/ansible-galaxy" collection install --no-deps --force -p "$install_path" "$tarball"

# Site-packages collections (kubernetes.core) stay visible: ansible scans sys.path for them by default.
export ANSIBLE_COLLECTIONS_PATH="$install_path"
rendered=0
for plugin_type in module filter; do
  for plugin in $("$bin/ansible-doc" -t "$plugin_type" -l wincontainers.gmsa --json | "$bin/python" -c 'import json, sys; print("\n".join(json.load(sys.stdin)))'); do
    "$bin/ansible-doc" -t "$plugin_type" "$plugin" >/dev/null
    rendered=$((rendered + 1))
  done
done
for role in "$install_path"/ansible_collections/wincontainers/gmsa/roles/*/; do
  [ -d "$role" ] || continue
  "$bin/ansible-doc" -t role "wincontainers.gmsa.$(basename "$role")" >/dev/null
  rendered=$((rendered + 1))
done
if [ "$rendered" -eq 0 ]; then
  echo "build-check: the installed collection documents no plugin or role" >&2
  exit 1
fi
echo "build-check: $(basename "$tarball") installs; ansible-doc rendered $rendered plugins and roles"
