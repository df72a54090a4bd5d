#!/usr/bin/env bash
# Install the Debian packages the toolchain needs: shellcheck (ansible-test's shell sanity test) and the
# Kerberos headers the pinned gssapi/krb5 Python packages build against (pyspnego's Kerberos provider), and
# MIT kinit, which the domain modules run for domain_auth=kerberos with a password (the unit tests run it too).
# Runs apt only when something is missing (recorded for `make host-clean`); says what to install when it
# cannot (not root).
set -euo pipefail

missing=()
command -v shellcheck >/dev/null || missing+=(shellcheck)
command -v krb5-config >/dev/null || missing+=(libkrb5-dev)
command -v kinit >/dev/null || missing+=(krb5-user)
[ ${#missing[@]} -eq 0 ] && exit 0
"$(dirname "$0")/host-packages.sh" install toolchain "${missing[@]}"
