#!/usr/bin/env bash
# Print the path of a Python >= 3.12 (ansible-core 2.21 needs it), or explain what is missing and fail.
set -euo pipefail

candidates=(python3.13 python3.12 python3)
for dir in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.13*/bin "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin; do
  [ -d "$dir" ] && candidates+=("$dir/python3")
done

for candidate in "${candidates[@]}"; do
  path=$(command -v "$candidate" 2>/dev/null) || continue
  if "$path" -c 'import sys, venv; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
    echo "$path"
    exit 0
  fi
done

echo "No Python >= 3.12 with the venv module found (looked for python3.13, python3.12, python3 and pyenv versions)." >&2
echo "ansible-core 2.21 needs Python 3.12 or newer: install one (e.g. 'pyenv install 3.12') and run 'make deps' again." >&2
exit 1
