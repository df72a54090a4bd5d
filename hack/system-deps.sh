#!/usr/bin/env bash
# Install the Debian packages the checks need (shellcheck for ansible-test's shell sanity test).
# Runs apt only when something is missing; says what to install when it cannot (not root).
set -euo pipefail

missing=()
command -v shellcheck >/dev/null || missing+=(shellcheck)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "Missing system packages: ${missing[*]}. Install them (e.g. 'sudo apt-get install ${missing[*]}') and rerun." >&2
  exit 1
fi
echo "Installing system packages: ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
