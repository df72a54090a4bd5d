"""How long the domain role takes to converge 1 and 50 gMSAs on the lab DC: first run and idempotent rerun.

Each run is a whole ``ansible-playbook`` of the wincontainers.gmsa.domain role (KDS root key check, the portable
identity, the gMSAs in one gmsa_account task, the domain facts), timed from the outside, so Ansible's own start
up is included. The accounts are removed afterwards (not timed).

    python benchmarks/domain_converge.py [--sizes 1 50] [--transport ldap]    # from the repository root

``--transport winrm`` drives pywinrm against the loopback WS-Management endpoint of the integration tests,
which carries out each script on the lab DC: it measures the transport and the endpoint, not a Windows host.
"""

import argparse
import contextlib
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "integration"))

# tests.conftest makes the checkout importable as ansible_collections.wincontainers.gmsa.
import tests.conftest  # noqa: E402,F401 pylint: disable=wrong-import-position,unused-import
import ansible_collections.wincontainers.gmsa as collection  # noqa: E402 pylint: disable=wrong-import-position
from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._client import open_domain_client  # noqa: E402 pylint: disable=wrong-import-position
from tests.lab import samba  # noqa: E402 pylint: disable=wrong-import-position

COLLECTIONS_PATH = os.path.dirname(os.path.dirname(os.path.dirname(collection.__path__[0])))
ANSIBLE_PLAYBOOK = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")


def ldap_connection(lab: dict) -> dict:
    return {
        "domain_transport": "ldap",
        "domain_server": lab["host"],
        "domain_username": f"{lab['netbios_name']}\\{lab['admin_user']}",
        "domain_password": lab["admin_password"],
    }


def run_role(directory: str, connection: dict, role_vars: dict) -> tuple[float, int]:
    """Run the role once; return the wall time and the number of changed tasks."""
    role = {"role": "wincontainers.gmsa.domain", "vars": dict(role_vars, domain_connection=connection)}
    play = [{"hosts": "localhost", "gather_facts": False, "roles": [role]}]
    playbook = os.path.join(directory, "domain.yml")
    with open(playbook, "w", encoding="utf-8") as handle:
        json.dump(play, handle)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS_PATH, ANSIBLE_NOCOLOR="1")
    command = [ANSIBLE_PLAYBOOK, "-i", "localhost,", "-c", "local", "-e", f"ansible_python_interpreter={sys.executable}", playbook]
    started = time.monotonic()
    completed = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    elapsed = time.monotonic() - started
    if completed.returncode != 0:
        sys.exit(f"the role failed:\n{completed.stdout}\n{completed.stderr}")
    changed = int(completed.stdout.rsplit("changed=", 1)[1].split()[0])
    return elapsed, changed


def measure(connection: dict, size: int, repeat: int) -> dict:
    """The median of ``repeat`` rounds, each on fresh accounts: the machine is shared, single runs are noisy."""
    rounds = [measure_once(connection, size) for _round in range(repeat)]
    return {
        "accounts": size,
        "first_run_s": round(statistics.median(first for first, _rerun in rounds), 2),
        "rerun_s": round(statistics.median(rerun for _first, rerun in rounds), 2),
        "rounds": repeat,
    }


def measure_once(connection: dict, size: int) -> tuple[float, float]:
    suffix = secrets.token_hex(3)
    role_vars = {
        "domain_lab_mode": True,
        "domain_identity_name": f"bench-{suffix}",
        "domain_identity_password": f"Aa1-{secrets.token_urlsafe(12)}",
        "domain_accounts": [{"name": f"b{suffix}{index:03d}"} for index in range(size)],
    }
    with tempfile.TemporaryDirectory(prefix="domain-bench-") as directory:
        first, first_changed = run_role(directory, connection, role_vars)
        rerun, rerun_changed = run_role(directory, connection, role_vars)
        run_role(directory, connection, dict(role_vars, domain_state="absent"))
    if not first_changed or rerun_changed:
        sys.exit(f"with {size} accounts the first run changed {first_changed} tasks and the rerun {rerun_changed}; expected some, then none")
    return first, rerun


def winrm_connection(lab: dict, stack) -> dict:
    """Start the loopback WS-Management endpoint (HTTP, NTLM with message encryption, WinRM's default) here."""
    from wsman_endpoint import WINRM_USER, PowerShellOnLdap, WSManEndpoint  # pylint: disable=import-outside-toplevel

    client = stack.enter_context(open_domain_client({
        **{key: None for key in ("domain_port", "domain_ca_cert", "domain_krb5_config")},
        **ldap_connection(lab),
        "domain_auth": "ntlm", "domain_tls": "none", "domain_validate_certs": True, "domain_timeout": 600,
    }))
    password = secrets.token_urlsafe(16)
    endpoint = stack.enter_context(WSManEndpoint(WINRM_USER, password, PowerShellOnLdap(client)))
    return {
        "domain_transport": "winrm",
        "domain_server": "127.0.0.1",
        "domain_port": endpoint.port,
        "domain_username": f"LAB\\{WINRM_USER}",
        "domain_password": password,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 50])
    parser.add_argument("--transport", choices=["ldap", "winrm"], default="ldap")
    parser.add_argument("--repeat", type=int, default=3, help="rounds per size; the median is printed")
    arguments = parser.parse_args()
    lab = samba.up()  # WGMSA_LAB_DIR chooses the lab directory
    with contextlib.ExitStack() as stack:
        connection = ldap_connection(lab) if arguments.transport == "ldap" else winrm_connection(lab, stack)
        results = [measure(connection, size, arguments.repeat) for size in arguments.sizes]
    print(f"domain role on the lab DC, transport {arguments.transport}, median of {arguments.repeat} rounds (rerun: changed=0)")
    print(f"{'accounts':>8}  {'first run':>10}  {'rerun':>8}")
    for row in results:
        print(f"{row['accounts']:>8}  {row['first_run_s']:>9.2f}s  {row['rerun_s']:>7.2f}s")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
