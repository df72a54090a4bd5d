#!/usr/bin/env bash
# Install the Debian packages the AWX lab needs, and nothing that starts at boot:
# - podman (rootful) with runc, and debootstrap for the execution environment's base image;
# - PostgreSQL 15 (the lab runs its own cluster; the package's own cluster is left as it is);
# - the headers python-ldap builds against (AWX's requirements);
# - Redis 7, unpacked from its Debian package into the lab directory rather than installed, so no redis
#   service exists at all.
# Units that podman's packages enable are disabled again when this script installed them.
set -euo pipefail

awx_dir=${1:?usage: awx-deps.sh AWX_LAB_DIR}
packages=(podman runc conmon netavark aardvark-dns slirp4netns debootstrap postgresql-15 libldap2-dev libsasl2-dev libjemalloc2 liblzf1)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "Missing system packages: ${missing[*]}. Install them (e.g. 'sudo apt-get install ${missing[*]}') and rerun." >&2
    exit 1
  fi
  echo "Installing system packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [[ " ${missing[*]} " == *" podman "* ]]; then
    systemctl disable podman.service podman.socket podman-restart.service podman-auto-update.service podman-auto-update.timer >/dev/null 2>&1 || true
  fi
fi

redis="$awx_dir/debian/redis"
if [ ! -x "$redis/usr/bin/redis-server" ]; then
  downloads=$(mktemp -d)
  (cd "$downloads" && apt-get download -qq redis-server redis-tools 2>/dev/null)
  mkdir -p "$redis.partial"
  for deb in "$downloads"/*.deb; do dpkg-deb -x "$deb" "$redis.partial"; done
  rm -rf "$downloads" "$redis"
  mv "$redis.partial" "$redis"
fi
