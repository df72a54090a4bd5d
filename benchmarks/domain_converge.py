"""How long the domain role takes to converge 50 and 500 gMSAs on the lab DC, over ldap and winrm: first run and rerun.

Each run is a whole ``ansible-playbook`` of the wincontainers.gmsa.domain role (the portable identity, the KDS root
key check and the gMSAs in one gmsa_account task, the domain facts), timed from the outside (wall, Ansible's start-up
included) and by the gmsa_account task's own duration. Both transports run in the same invocation, so their
ratio is measured under the same load. The accounts are removed afterwards (not timed).

    python benchmarks/domain_converge.py [--sizes 50 500] [--transports ldap winrm] [--repeat 1]

``winrm`` drives pywinrm against the loopback WS-Management endpoint of the integration tests, which carries out
each script on the lab DC over LDAP: it measures the transport, the batching and the endpoint, not a Windows host.
The module's overall deadline (``domain_timeout``, 600 s by default) is raised to 900 s: the lab DC spends about a
quarter of a second on each gMSA it creates, and the machine may be heavily loaded.
"""

import argparse
import contextlib
import json
import os
import secrets
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "integration"))

from benchmarks._ansible import changed_tasks, run_playbook, task_seconds, tasks  # noqa: E402 pylint: disable=wrong-import-position
from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._client import open_domain_client  # noqa: E402 pylint: disable=wrong-import-position
from tests.lab import samba  # noqa: E402 pylint: disable=wrong-import-position

DOMAIN_TIMEOUT = 900
ACCOUNTS_TASK = "wincontainers.gmsa.domain : Ensure the portable identities and gMSAs are "


def ldap_connection(lab: dict) -> dict:
    return {
        "domain_transport": "ldap",
        "domain_server": lab["host"],
        "domain_username": f"{lab['netbios_name']}\\{lab['admin_user']}",
        "domain_password": lab["admin_password"],
        "domain_timeout": DOMAIN_TIMEOUT,
    }


def run_role(directory: str, connection: dict, role_vars: dict, name: str) -> tuple[float, float, int]:
    """Run the role once; return the wall time, the gmsa_account task's time and the number of changed tasks."""
    role = {"role": "wincontainers.gmsa.domain", "vars": dict(role_vars, domain_connection=connection)}
    result = run_playbook([{"hosts": "localhost", "gather_facts": False, "roles": [role]}], directory, name)
    (accounts_task,) = [task for task in tasks(result["report"]) if ACCOUNTS_TASK in task["task"]["name"]]
    return result["wall"], task_seconds(accounts_task), changed_tasks(result["report"])


def measure(connection: dict, size: int, repeat: int) -> dict:
    """The median of ``repeat`` rounds, each on fresh accounts: the machine is shared, single runs are noisy."""
    rounds = [measure_once(connection, size) for _round in range(repeat)]
    return {
        "accounts": size,
        **{key: round(statistics.median(values[key] for values in rounds), 2) for key in rounds[0]},
        "rounds": repeat,
    }


def measure_once(connection: dict, size: int) -> dict:
    suffix = secrets.token_hex(3)
    role_vars = {
        "domain_lab_mode": True,
        "domain_identity_name": f"bench-{suffix}",
        "domain_identity_password": f"Aa1-{secrets.token_urlsafe(12)}",
        "domain_accounts": [{"name": f"b{suffix}{index:03d}"} for index in range(size)],
    }
    with tempfile.TemporaryDirectory(prefix="domain-bench-") as directory:
        first, first_task, first_changed = run_role(directory, connection, role_vars, "first")
        rerun, rerun_task, rerun_changed = run_role(directory, connection, role_vars, "rerun")
        run_role(directory, connection, dict(role_vars, domain_state="absent"), "remove")
    if not first_changed or rerun_changed:
        sys.exit(f"with {size} accounts the first run changed {first_changed} tasks and the rerun {rerun_changed}; expected some, then none")
    return {"first_task_s": first_task, "first_wall_s": first, "rerun_task_s": rerun_task, "rerun_wall_s": rerun}


def winrm_connection(lab: dict, stack) -> dict:
    """Start the loopback WS-Management endpoint (HTTP, NTLM with message encryption, WinRM's default) here."""
    from wsman_endpoint import WINRM_USER, PowerShellOnLdap, WSManEndpoint  # pylint: disable=import-outside-toplevel

    settings = {
        **{key: None for key in ("domain_port", "domain_ca_cert", "domain_krb5_config", "domain_kerberos_hostname", "domain_proxy")},
        **ldap_connection(lab),
        "domain_auth": "ntlm", "domain_tls": "none", "domain_validate_certs": True, "domain_kerberos_delegation": False,
    }
    password = secrets.token_urlsafe(16)
    # Each command opens a connection of its own, as each powershell.exe process does on Windows.
    endpoint = stack.enter_context(WSManEndpoint(WINRM_USER, password, PowerShellOnLdap(lambda: open_domain_client(settings))))
    return {
        "domain_transport": "winrm",
        "domain_server": "127.0.0.1",
        "domain_port": endpoint.port,
        "domain_username": f"LAB\\{WINRM_USER}",
        "domain_password": password,
        "domain_timeout": DOMAIN_TIMEOUT,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 500])
    parser.add_argument("--transports", choices=["ldap", "winrm"], nargs="+", default=["ldap", "winrm"])
    parser.add_argument("--repeat", type=int, default=1, help="rounds per size; the median is printed")
    arguments = parser.parse_args()
    lab = samba.up()  # WGMSA_LAB_DIR chooses the lab directory
    results = {}
    with contextlib.ExitStack() as stack:
        for transport in arguments.transports:
            connection = ldap_connection(lab) if transport == "ldap" else winrm_connection(lab, stack)
            results[transport] = [measure(connection, size, arguments.repeat) for size in arguments.sizes]
    print(f"\ndomain role on the lab DC, median of {arguments.repeat} round(s); task = the gmsa_account task, wall = ansible-playbook (rerun: changed=0)")
    print(f"{'transport':>9} {'accounts':>8} {'first task':>11} {'first wall':>11} {'rerun task':>11} {'rerun wall':>11}")
    for transport, rows in results.items():
        for row in rows:
            print(
                f"{transport:>9} {row['accounts']:>8} {row['first_task_s']:>10.2f}s {row['first_wall_s']:>10.2f}s"
                f" {row['rerun_task_s']:>10.2f}s {row['rerun_wall_s']:>10.2f}s"
            )
    if set(results) == {"ldap", "winrm"}:
        for ldap_row, winrm_row in zip(results["ldap"], results["winrm"]):
            ratios = [winrm_row[key] / ldap_row[key] for key in ("first_task_s", "rerun_task_s")]
            print(f"winrm / ldap at {ldap_row['accounts']} accounts: first run {ratios[0]:.2f}x, rerun {ratios[1]:.2f}x (task times)")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
