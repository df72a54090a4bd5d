#!/usr/bin/env bash
# Install the Debian packages the toolchain needs: shellcheck (ansible-test's shell sanity test) and the
# Kerberos headers the pinned gssapi/krb5 Python packages build against (pyspnego's Kerberos provider).
# Runs apt only when something is missing; says what to install when it cannot (not root).
set -euo pipefail

missing=()
command -v shellcheck >/dev/null || missing+=(shellcheck)
command -v krb5-config >/dev/null || missing+=(libkrb5-dev)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "Missing system packages: ${missing[*]}. Install them (e.g. 'sudo apt-get install ${missing[*]}') and rerun." >&2
  exit 1
fi
echo "Installing system packages: ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
