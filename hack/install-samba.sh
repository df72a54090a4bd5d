#!/bin/sh
# Install the Samba AD DC used by the lab (tests/lab/samba.py) on Debian bookworm, as root.
#
# Debian 12's own Samba 4.17 stores gMSA objects but never computes their passwords, so the lab needs
# Samba 4.22 from bookworm-backports. Nothing is started: the lab runs its own `samba` process on loopback.
# Idempotent: exits at once when the wanted version is already installed.
set -eu

WANTED_SERIES="4.22"
BACKPORTS_LIST=/etc/apt/sources.list.d/bookworm-backports.sources
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

if [ "$(id -u)" != 0 ]; then
    echo "install-samba.sh must run as root" >&2
    exit 1
fi

if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    cat > "$BACKPORTS_LIST" <<'SOURCES'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
fi

# Package scripts must not start smbd/nmbd/samba-ad-dc services: policy-rc.d 101 forbids it. Only a guard we
# created ourselves is removed afterwards.
POLICY=/usr/sbin/policy-rc.d
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$POLICY"
    chmod 0755 "$POLICY"
    trap 'rm -f "$POLICY"' EXIT
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086  # PACKAGES is a word list on purpose
apt-get install -y -qq --no-install-recommends -t bookworm-backports $PACKAGES

if [ "$(installed_series)" != "$WANTED_SERIES" ]; then
    echo "expected Samba $WANTED_SERIES, got $(samba --version 2>/dev/null || echo none)" >&2
    exit 1
fi
echo "installed Samba $(samba --version | sed 's/^Version //')"
