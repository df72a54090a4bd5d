#!/bin/sh
# Install the Samba AD DC used by the lab (tests/lab/samba.py) on Debian bookworm, as root.
#
# Debian 12's own Samba 4.17 stores gMSA objects but never computes their passwords, so the lab needs
# Samba 4.22 from bookworm-backports. Nothing is started or enabled at boot: the lab runs its own `samba`
# process on loopback.
# Idempotent: exits at once when the wanted version is already installed.
set -eu

WANTED_SERIES="4.22"
# krb5-user: kinit/klist for the lab's Kerberos checks; libkrb5-dev: headers the pinned gssapi and krb5 Python
# packages build against (pyspnego's Kerberos provider).
PACKAGES="samba samba-ad-dc samba-ad-provision samba-dsdb-modules samba-vfs-modules winbind krb5-user ldb-tools libkrb5-dev"

installed_series() {
    command -v samba >/dev/null 2>&1 || return 0
    samba --version 2>/dev/null | sed -n 's/^Version \([0-9]*\.[0-9]*\).*/\1/p'
}

missing_packages() {
    for package in $PACKAGES; do
        dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null | grep -qx installed || echo "$package"
    done
}

if [ "$(installed_series)" = "$WANTED_SERIES" ] && [ -z "$(missing_packages)" ]; then
    echo "Samba $(samba --version | sed 's/^Version //') already installed"
    exit 0
fi

# Recorded for `make host-clean`; the services the packages enable at boot are disabled again at once.
# shellcheck disable=SC2086  # PACKAGES is a word list on purpose
"$(dirname "$0")/host-packages.sh" install samba --backports $PACKAGES

if [ "$(installed_series)" != "$WANTED_SERIES" ]; then
    # The machine had another Samba series (Debian 12's 4.17): upgrade it, without recording packages it had.
    WGMSA_HOST_UPGRADE=1 "$(dirname "$0")/host-packages.sh" install samba --backports samba
fi
if [ "$(installed_series)" != "$WANTED_SERIES" ]; then
    echo "expected Samba $WANTED_SERIES, got $(samba --version 2>/dev/null || echo none)" >&2
    exit 1
fi
echo "installed Samba $(samba --version | sed 's/^Version //')"
