#!/usr/bin/env bash
# What the lab installs on this machine, recorded so that `make host-clean` can take it away again.
#
#   hack/host-packages.sh install GROUP [--backports] PACKAGE...   install what is missing; record it under GROUP
#   hack/host-packages.sh list                                     what the lab added, per group
#   hack/host-packages.sh remove                                   purge what was recorded and forget it
#
# Debian's packages enable their services at boot (samba-ad-dc, smbd, winbind, postgresql, ...). The lab runs its
# own processes and wants none of them: policy-rc.d keeps the package scripts from starting them, and every
# unit the install enabled is disabled again right away (systemctl works on the unit links without a running
# systemd). Only what this script installed is recorded, so `remove` never purges a package the machine had.
set -euo pipefail

RECORD_DIR=${WGMSA_HOST_RECORD_DIR:-/var/lib/wincontainers-gmsa}
BACKPORTS_LIST=/etc/apt/sources.list.d/bookworm-backports.sources

enabled_units() {
    find /etc/systemd/system -path '*.wants/*' -printf '%f\n' 2>/dev/null | sort -u
}

need_root() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "Missing system packages: $*. Install them (e.g. 'sudo apt-get install $*') and rerun." >&2
        exit 1
    fi
}

install() {
    local group=$1 suite=() missing=() package
    shift
    if [ "${1:-}" = --backports ]; then
        suite=(-t bookworm-backports)
        shift
    fi
    for package in "$@"; do
        dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null | grep -qx installed || missing+=("$package")
    done
    # WGMSA_HOST_UPGRADE=1: install (upgrade) the named packages even when present; they are not recorded.
    local record=1
    if [ -n "${WGMSA_HOST_UPGRADE:-}" ]; then
        missing=("$@")
        record=
    fi
    [ ${#missing[@]} -eq 0 ] && return 0
    need_root "${missing[@]}"
    mkdir -p "$RECORD_DIR"
    if [ ${#suite[@]} -gt 0 ] && ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
        printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' >"$BACKPORTS_LIST"
        echo "$BACKPORTS_LIST" >>"$RECORD_DIR/files"
    fi
    # policy-rc.d exit 101: package scripts must not start services. Only a guard we created is removed.
    local policy=/usr/sbin/policy-rc.d own_policy=
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 0755 "$policy"
        own_policy=1
    fi
    local before
    before=$(enabled_units)
    echo "Installing system packages ($group): ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${suite[@]}" "${missing[@]}" >/dev/null
    [ -n "$own_policy" ] && rm -f "$policy"
    [ -n "$record" ] && printf '%s\n' "${missing[@]}" >>"$RECORD_DIR/$group.packages"
    local unit
    for unit in $(comm -13 <(echo "$before") <(enabled_units)); do
        systemctl disable "$unit" >/dev/null 2>&1 || true
        echo "disabled at boot: $unit (enabled by the install of ${missing[*]})"
    done
}

list() {
    [ -d "$RECORD_DIR" ] || { echo "nothing recorded in $RECORD_DIR"; return 0; }
    local record
    for record in "$RECORD_DIR"/*.packages; do
        [ -e "$record" ] && echo "$(basename "$record" .packages): $(sort -u "$record" | tr '\n' ' ')"
    done
    [ -e "$RECORD_DIR/files" ] && echo "files: $(sort -u "$RECORD_DIR/files" | tr '\n' ' ')"
    return 0
}

remove() {
    [ -d "$RECORD_DIR" ] || { echo "nothing recorded in $RECORD_DIR"; return 0; }
    local packages
    packages=$(cat "$RECORD_DIR"/*.packages 2>/dev/null | sort -u | tr '\n' ' ')
    if [ -n "$packages" ]; then
        need_root "$packages"
        echo "Purging: $packages"
        # shellcheck disable=SC2086  # a word list on purpose
        DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq $packages >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get autoremove -y -qq >/dev/null
    fi
    if [ -e "$RECORD_DIR/files" ]; then
        xargs -r rm -f <"$RECORD_DIR/files"
    fi
    rm -rf "$RECORD_DIR"
}

case "${1:-}" in
install) shift; install "$@" ;;
list) list ;;
remove) remove ;;
*) sed -n '2,7p' "$0" >&2; exit 2 ;;
esac
