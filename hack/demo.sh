#!/usr/bin/env bash
# `make demo`: run the collection's main job on the built-in lab and summarise it.
#   1. (make) the toolchain and the lab: make deps lab-up
#   2. the site playbook against examples/inventories/lab: domain -> cluster -> workload -> verify
#   3. a summary: what the collection manages now, where the workload runs, which checks passed or could not run here
# Progress is Ansible's own task output; the summary and the timings come last.
set -euo pipefail

bin=${1:?usage: demo.sh VENV_BIN}
root=$(cd "$(dirname "$0")/.." && pwd)
inventory="$root/examples/inventories/lab"
log_dir="$root/build/demo"
mkdir -p "$log_dir"

collections=$("$root/hack/collections-path.sh")
export ANSIBLE_COLLECTIONS_PATH="$collections"
export ANSIBLE_DISPLAY_SKIPPED_HOSTS=false ANSIBLE_LOCALHOST_WARNING=false ANSIBLE_DEPRECATION_WARNINGS=false
export ANSIBLE_FORCE_COLOR=${ANSIBLE_FORCE_COLOR:-$([ -t 1 ] && echo true || echo false)}

banner() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

banner "[1/2] site playbook on the lab: domain -> cluster (webhook, credspecs) -> workload -> verify"
SECONDS=0
set +e
rm -f "$log_dir/summary.txt"
"$bin/ansible-playbook" -i "$inventory" wincontainers.gmsa.site "$root/hack/demo-summary.yml" \
  -e demo_summary_file="$log_dir/summary.txt" 2>&1 | tee "$log_dir/site.log"
status=${PIPESTATUS[0]}
set -e
elapsed=$SECONDS

banner "[2/2] summary: site playbook and verification in ${elapsed} s"
if [ "$status" -ne 0 ]; then
  echo "  the site playbook failed (exit $status): see the output above, or build/demo/site.log" >&2
  exit "$status"
fi
sed 's/^/  /' "$log_dir/summary.txt"
grep -A1 '^PLAY RECAP' "$log_dir/site.log" | tail -1 | sed 's/\x1b\[[0-9;]*m//g; s/^localhost *: */  Ansible: /'
echo "  (a rerun reports changed=0: everything is already in place). Full log: build/demo/site.log"
cat <<TEXT

  Take it down again (workload, credspecs, namespaces, webhook; AD objects too with cleanup_domain=true):
    ANSIBLE_COLLECTIONS_PATH=$collections $bin/ansible-playbook -i examples/inventories/lab wincontainers.gmsa.cleanup -e cleanup_domain=true
TEXT
