#!/usr/bin/env bash
# Install the Debian packages the AWX lab needs, and nothing that starts at boot:
# - podman (rootful) with runc, and debootstrap for the execution environment's base image;
# - PostgreSQL 15 (the lab runs its own cluster; the package's own cluster is left as it is);
# - the headers python-ldap builds against (AWX's requirements);
# - Redis 7, unpacked from its Debian package into the lab directory rather than installed, so no redis
#   service exists at all.
set -euo pipefail

awx_dir=${1:?usage: awx-deps.sh AWX_LAB_DIR}
packages=(podman runc conmon netavark aardvark-dns slirp4netns debootstrap postgresql-15 libldap2-dev libsasl2-dev libjemalloc2 liblzf1)
# Recorded for `make host-clean`; every unit the install enables at boot (podman's, postgresql's) is disabled
# again at once.
"$(dirname "$0")/host-packages.sh" install awx "${packages[@]}"

redis="$awx_dir/debian/redis"
if [ ! -x "$redis/usr/bin/redis-server" ]; then
  downloads=$(mktemp -d)
  (cd "$downloads" && apt-get download -qq redis-server redis-tools 2>/dev/null)
  mkdir -p "$redis.partial"
  for deb in "$downloads"/*.deb; do dpkg-deb -x "$deb" "$redis.partial"; done
  rm -rf "$downloads" "$redis"
  mv "$redis.partial" "$redis"
fi
