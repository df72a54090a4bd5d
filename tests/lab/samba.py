"""The lab's Active Directory: a Samba AD DC on loopback, provisioned once and restored from a pristine copy.

Layout under ``<state_dir>/samba``::

    lab.json      realm, names and the admin password of this lab (mode 0600)
    tls/          CA and server certificate made for this lab (Samba serves them on 636 and StartTLS)
    krb5.conf     client Kerberos configuration (KDC 127.0.0.1, no DNS lookups); point KRB5_CONFIG here
    pristine/     the provisioned tree as it was before its first start
    live/         the tree the running DC uses; replaced from pristine/ on every fresh start

Paths inside the provisioned tree are absolute, so pristine/ is always restored to the same live/ path.
Nothing outside the state directory is changed; the DC only listens on loopback. Samba's ports are fixed,
so one lab DC runs on a machine at a time: starting and stopping is serialized by a machine-wide lock file.

Usage: ``python -m tests.lab.samba up|down|status`` from the repository root (run ``hack/install-samba.sh``
first, as root).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import sansldap

from ansible_collections.wincontainers.gmsa.plugins.module_utils import _tls
from tests.lab import default_state_dir

HOST = "127.0.0.1"
LDAP_PORT = 389
LDAPS_PORT = 636
ADMIN_USER = "Administrator"
DC_NAME = "dc1"

PROVISION_TIMEOUT = 300
START_TIMEOUT = 60
STOP_TIMEOUT = 20
MACHINE_LOCK = os.path.join(tempfile.gettempdir(), "wincontainers-gmsa-samba.lock")

# Services a lab DC does not need. dnsupdate would query the machine's resolver (an off-machine address);
# s3fs (smbd), nbt, wrepl and ntp_signd serve file sharing, NetBIOS, WINS and NTP, which no test uses.
DISABLED_SERVICES = "-s3fs -nbt -wrepl -ntp_signd -dnsupdate"


class LabError(Exception):
    """The lab DC could not be provisioned, started or stopped."""


class _Paths:
    """Where each piece of the Samba half of the lab lives."""

    def __init__(self, state_dir: str) -> None:
        self.root = os.path.join(os.path.abspath(state_dir), "samba")
        self.config = os.path.join(self.root, "lab.json")
        self.tls = os.path.join(self.root, "tls")
        self.ca_cert = os.path.join(self.tls, "ca.pem")
        self.server_cert = os.path.join(self.tls, "cert.pem")
        self.server_key = os.path.join(self.tls, "key.pem")
        self.krb5_conf = os.path.join(self.root, "krb5.conf")
        self.pristine = os.path.join(self.root, "pristine")
        self.live = os.path.join(self.root, "live")
        self.smb_conf = os.path.join(self.live, "etc", "smb.conf")
        self.run = os.path.join(self.live, "run")
        self.pid_file = os.path.join(self.run, "samba.pid")
        self.log_file = os.path.join(self.live, "log", "samba.log")


def up(state_dir: str | None = None) -> dict:
    """Make sure the lab DC runs and return how to reach it (see :func:`_connection_info`).

    A running DC that serves this lab's domain is reused as is. Otherwise the live tree is restored from the
    pristine copy (provisioned on first use) and Samba is started, so every fresh start begins with a clean
    domain.
    """
    paths = _Paths(state_dir or default_state_dir())
    with _machine_lock():
        pid = _running_pid(paths)
        if pid is not None and not _serves_domain(_base_dn(_read_config(paths))):
            # Alive but not serving, e.g. its services could not bind because another DC held the ports.
            _stop(pid)
            pid = None
        if pid is None:
            if not os.path.isdir(paths.pristine):
                _provision(paths)
            _restore_pristine(paths)
            _wait_for_ldap(paths, _start(paths))
        return _connection_info(paths, _read_config(paths))


def down(state_dir: str | None = None) -> None:
    """Stop the lab DC if it runs. The pristine copy stays, so the next :func:`up` takes seconds."""
    paths = _Paths(state_dir or default_state_dir())
    with _machine_lock():
        pid = _running_pid(paths)
        if pid is not None:
            _stop(pid)


def status(state_dir: str | None = None) -> dict:
    """Describe the lab DC without changing anything; the admin password is left out."""
    paths = _Paths(state_dir or default_state_dir())
    pid = _running_pid(paths)
    result = {"state_dir": paths.root, "provisioned": os.path.isdir(paths.pristine), "running": pid is not None, "pid": pid}
    if os.path.isfile(paths.config):
        info = _connection_info(paths, _read_config(paths))
        del info["admin_password"]
        result.update(info)
    return result


def _connection_info(paths: _Paths, config: dict) -> dict:
    dns_domain = config["dns_domain"]
    return {
        "host": HOST,
        "ldap_port": LDAP_PORT,
        "ldaps_port": LDAPS_PORT,
        "dc_hostname": f"{DC_NAME}.{dns_domain}",
        "realm": dns_domain.upper(),
        "dns_domain": dns_domain,
        "netbios_name": config["netbios_name"],
        "base_dn": _base_dn(config),
        "admin_user": ADMIN_USER,
        "admin_password": config["admin_password"],
        "krb5_config": paths.krb5_conf,
        "ca_cert": paths.ca_cert,
        "secrets_file": paths.config,
        # For samba-tool run against this DC's database (e.g. domain exportkeytab).
        "smb_conf": paths.smb_conf,
    }


def _base_dn(config: dict) -> str:
    return ",".join(f"DC={label}" for label in config["dns_domain"].split("."))


@contextlib.contextmanager
def _machine_lock():
    with open(MACHINE_LOCK, "a", encoding="utf-8") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        yield


def _read_config(paths: _Paths) -> dict:
    with open(paths.config, encoding="utf-8") as config_file:
        return json.load(config_file)


def _new_config(paths: _Paths) -> dict:
    """Names and password unique to this lab, stored readable by the owner only."""
    suffix = secrets.token_hex(3)
    config = {
        "dns_domain": f"gmsa{suffix}.test",
        "netbios_name": f"GMSA{suffix.upper()}",
        # token_urlsafe alone may miss a character class; the fixed tail satisfies AD password complexity.
        "admin_password": secrets.token_urlsafe(18) + "-Aa1",
    }
    descriptor = os.open(paths.config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as config_file:
        json.dump(config, config_file, indent=2)
    return config


def _provision(paths: _Paths) -> None:
    os.makedirs(paths.root, mode=0o700, exist_ok=True)
    config = _new_config(paths)
    dc_hostname = f"{DC_NAME}.{config['dns_domain']}"
    _write_tls_material(paths, dc_hostname)
    _write_krb5_conf(paths, config["dns_domain"])

    shutil.rmtree(paths.live, ignore_errors=True)
    os.makedirs(os.path.dirname(paths.smb_conf))
    os.makedirs(os.path.dirname(paths.log_file))
    # An empty configuration keeps Debian's /etc/samba/smb.conf (shares, passwd program) out of the lab.
    open(paths.smb_conf, "w", encoding="utf-8").close()
    options = {
        "interfaces": "lo",
        "bind interfaces only": "yes",
        "pid directory": paths.run,
        "ncalrpc dir": os.path.join(paths.run, "ncalrpc"),
        "winbindd socket directory": os.path.join(paths.run, "winbindd"),
        "log file": paths.log_file,
        "server services": DISABLED_SERVICES,
        # One worker per service instead of four: the lab serves one client at a time.
        "prefork children": "1",
        "tls enabled": "yes",
        "tls keyfile": paths.server_key,
        "tls certfile": paths.server_cert,
        "tls cafile": paths.ca_cert,
    }
    command = [
        "samba-tool", "domain", "provision",
        "--configfile", paths.smb_conf,
        "--targetdir", paths.live,
        "--server-role", "dc",
        "--dns-backend", "SAMBA_INTERNAL",
        "--realm", config["dns_domain"].upper(),
        "--domain", config["netbios_name"],
        "--host-name", DC_NAME,
        "--host-ip", HOST,
        "--adminpass", config["admin_password"],
    ] + [f"--option={name}={value}" for name, value in options.items()]
    try:
        _run(command, PROVISION_TIMEOUT, secret=config["admin_password"])
    except LabError:
        shutil.rmtree(paths.live, ignore_errors=True)
        raise
    _drop_dns_forwarder(paths.smb_conf)
    # The dnsupdate service, disabled above, is what normally registers the DC's ldap/ SPNs; Kerberos to LDAP
    # needs them. samba_spnupdate writes them to the local database without any network traffic.
    _run(["samba_spnupdate", "--configfile", paths.smb_conf], PROVISION_TIMEOUT)
    shutil.copytree(paths.live, paths.pristine, symlinks=True)


def _drop_dns_forwarder(smb_conf: str) -> None:
    """Provisioning copies the machine's resolver into 'dns forwarder'; the lab DNS must not reach it."""
    with open(smb_conf, encoding="utf-8") as conf_file:
        lines = conf_file.readlines()
    with open(smb_conf, "w", encoding="utf-8") as conf_file:
        conf_file.writelines(line for line in lines if line.strip().partition("=")[0].strip() != "dns forwarder")


def _write_tls_material(paths: _Paths, dc_hostname: str) -> None:
    """A lab CA and a server certificate valid for every name and address clients use to reach the DC."""
    os.makedirs(paths.tls, mode=0o700, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    validity = datetime.timedelta(days=3650)
    ca = _tls.new_ca(f"wincontainers.gmsa lab CA {dc_hostname}", now, validity)
    server = _tls.new_server_cert(ca, [dc_hostname, "localhost", HOST, "::1"], now, validity)

    with open(paths.ca_cert, "w", encoding="utf-8") as ca_file:
        ca_file.write(ca.cert)
    with open(paths.server_cert, "w", encoding="utf-8") as cert_file:
        cert_file.write(server.cert)
    # Samba refuses a TLS key readable by anyone but its owner.
    descriptor = os.open(paths.server_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as key_file:
        key_file.write(server.key)


def _write_krb5_conf(paths: _Paths, dns_domain: str) -> None:
    realm = dns_domain.upper()
    with open(paths.krb5_conf, "w", encoding="utf-8") as krb5_file:
        krb5_file.write(
            "[libdefaults]\n"
            f"    default_realm = {realm}\n"
            "    dns_lookup_kdc = false\n"
            "    dns_lookup_realm = false\n"
            "    dns_canonicalize_hostname = false\n"
            "    rdns = false\n"
            "\n"
            "[realms]\n"
            f"    {realm} = {{\n"
            f"        kdc = {HOST}\n"
            f"        admin_server = {HOST}\n"
            f"        kpasswd_server = {HOST}\n"
            "    }\n"
            "\n"
            "[domain_realm]\n"
            f"    .{dns_domain} = {realm}\n"
            f"    {dns_domain} = {realm}\n"
        )


def _restore_pristine(paths: _Paths) -> None:
    shutil.rmtree(paths.live, ignore_errors=True)
    shutil.copytree(paths.pristine, paths.live, symlinks=True)


def _start(paths: _Paths) -> subprocess.Popen:
    """Start samba in the foreground of its own session: it outlives this process (pytest sessions reuse it),
    and its exit during start-up is seen at once. It writes its pid file itself."""
    _ensure_ports_free()
    with open(paths.log_file, "ab") as log:
        return subprocess.Popen(
            ["samba", "--configfile", paths.smb_conf, "--foreground"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
        )


def _ensure_ports_free() -> None:
    for port in (LDAP_PORT, LDAPS_PORT):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.settimeout(1)
            if probe.connect_ex((HOST, port)) == 0:
                raise LabError(
                    f"{HOST}:{port} is already served by a process that is not this lab's DC (the DC of another lab"
                    " directory? Samba's ports are fixed, so one lab DC runs at a time); stop it first"
                )


def _wait_for_ldap(paths: _Paths, samba: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    base_dn = _base_dn(_read_config(paths))
    while not _serves_domain(base_dn):
        if samba.poll() is not None:
            raise LabError(f"samba exited with code {samba.returncode} during start-up; see {paths.log_file}")
        if time.monotonic() > deadline:
            raise LabError(f"samba did not answer LDAP on {HOST}:{LDAP_PORT} within {START_TIMEOUT} s; see {paths.log_file}")
        time.sleep(0.2)


def _serves_domain(base_dn: str) -> bool:
    """Whether LDAP on the lab address answers for ``base_dn`` (and not for another lab's domain).

    The rootDSE is read anonymously with sansldap alone: the lab's readiness does not depend on the code under test.
    """
    protocol = sansldap.LDAPClient()
    protocol.search_request("", scope=sansldap.SearchScope.BASE, attributes=["defaultNamingContext"])
    try:
        with socket.create_connection((HOST, LDAP_PORT), timeout=2) as connection:
            connection.sendall(protocol.data_to_send())
            while True:
                data = connection.recv(65536)
                if not data:
                    return False
                for message in protocol.receive(data):
                    if isinstance(message, sansldap.SearchResultEntry):
                        naming_contexts = [value for attribute in message.attributes for value in attribute.values]
                        return naming_contexts == [base_dn.encode()]
                    if isinstance(message, sansldap.SearchResultDone):
                        return False
    except (OSError, sansldap.ProtocolError):
        return False


def _running_pid(paths: _Paths) -> int | None:
    """The PID of this lab's samba master process, or None; a stale or reused PID is not ours."""
    try:
        with open(paths.pid_file, encoding="ascii") as pid_file:
            pid = int(pid_file.read().strip())
        executable = os.readlink(f"/proc/{pid}/exe")
        descriptor_dir = f"/proc/{pid}/fd"
        open_files = [os.readlink(os.path.join(descriptor_dir, name)) for name in os.listdir(descriptor_dir)]
    except (OSError, ValueError):
        return None
    # samba rewrites its command line ("samba: root process"); the databases it holds open identify it.
    if os.path.basename(executable) != "samba" or not any(path.startswith(paths.live + os.sep) for path in open_files):
        return None
    return pid


def _stop(pid: int) -> None:
    """SIGTERM the master (it ends its workers), then SIGKILL the process group that remains.

    samba was started as the leader of its own session, so its process group id is its PID."""
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while _process_group_alive(pid):
        if time.monotonic() > deadline:
            os.killpg(pid, signal.SIGKILL)
            break
        time.sleep(0.1)


def _process_group_alive(group_id: int) -> bool:
    try:
        os.killpg(group_id, 0)
    except ProcessLookupError:
        return False
    return True


def _run(command: list, timeout: int, secret: str | None = None) -> None:
    try:
        completed = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError as error:
        raise LabError(f"{command[0]} is not installed; run hack/install-samba.sh as root") from error
    except subprocess.TimeoutExpired as error:
        raise LabError(f"{command[0]} {command[1]} did not finish within {timeout} s") from error
    if completed.returncode != 0:
        output = (completed.stdout + completed.stderr)[-3000:]
        if secret:
            output = output.replace(secret, "********")
        raise LabError(f"{' '.join(command[:3])} failed with exit code {completed.returncode}:\n{output}")


def main(argv: list | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.lab.samba", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("up", "down", "status"))
    parser.add_argument("--state-dir", default=default_state_dir())
    arguments = parser.parse_args(argv)
    try:
        if arguments.action == "down":
            down(arguments.state_dir)
            return 0
        if arguments.action == "up":
            info = up(arguments.state_dir)
            info["admin_password"] = f"(see {info['secrets_file']})"
        else:
            info = status(arguments.state_dir)
    except LabError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(json.dumps(info, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
