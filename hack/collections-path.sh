#!/usr/bin/env bash
# Make the checkout visible to Ansible as the collection wincontainers.gmsa, without copying it, and print the
# collections path to use (ANSIBLE_COLLECTIONS_PATH). The same layout as tests/lab/__init__.py makes for pytest.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
collections="$root/.cache/collections"
mkdir -p "$collections/ansible_collections/wincontainers"
ln -sfn "$root" "$collections/ansible_collections/wincontainers/gmsa"
echo "$collections"
