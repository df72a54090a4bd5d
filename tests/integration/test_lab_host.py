"""The lab's installs leave nothing to start at boot (hack/host-packages.sh), and say what they installed.

Debian's samba, samba-ad-dc, winbind (and postgresql-15 for the AWX lab) enable their units when installed;
the lab runs its own processes and disables them again. This checks the machine as the lab left it: the packages
the lab installed (as hack/host-packages.sh recorded them). A package the machine had before is the machine's own,
and the lab leaves its units as they were.
"""

import os
import subprocess

import pytest

from tests.lab import REPO_ROOT

HOST_PACKAGES = os.path.join(REPO_ROOT, "hack", "host-packages.sh")
# Every package the lab's install scripts name whose units would start a server at boot.
SERVER_PACKAGES = ("samba", "samba-ad-dc", "winbind", "postgresql-common", "postgresql-15", "podman")


def _installed(package):
    result = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Status}", package], capture_output=True, text=True, check=False)
    return result.stdout.strip() == "installed"


def _recorded():
    """The packages the lab installed: ``host-packages.sh list`` prints ``GROUP: PACKAGE...`` per group."""
    listing = subprocess.run([HOST_PACKAGES, "list"], capture_output=True, text=True, check=True).stdout
    return {package for line in listing.splitlines() if line.split(":", 1)[0] != "files" for package in line.partition(":")[2].split()}


def _units(package):
    listing = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True, check=True).stdout.split()
    return sorted(
        os.path.basename(path) for path in listing if "/systemd/system/" in path and path.endswith((".service", ".socket", ".timer"))
    )


@pytest.mark.parametrize("package", [package for package in SERVER_PACKAGES if _installed(package) and package in _recorded()])
def test_no_unit_of_the_labs_packages_is_enabled_at_boot(package):
    units = _units(package)
    states = {unit: subprocess.run(["systemctl", "is-enabled", unit], capture_output=True, text=True, check=False).stdout.strip() for unit in units}
    enabled = [unit for unit, state in states.items() if state == "enabled"]
    assert not enabled, "%s: enabled at boot by its install: %s" % (package, enabled)


def test_samba_is_installed_so_the_check_above_ran():
    assert _installed("samba-ad-dc"), "the lab's Samba is not installed: run make lab-deps"


def test_install_of_what_is_there_records_nothing(tmp_path):
    env = dict(os.environ, WGMSA_HOST_RECORD_DIR=str(tmp_path / "record"))
    subprocess.run([HOST_PACKAGES, "install", "itest", "samba-ad-dc"], env=env, check=True)
    assert not (tmp_path / "record").exists()
    listing = subprocess.run([HOST_PACKAGES, "list"], env=env, capture_output=True, text=True, check=True).stdout
    assert "nothing recorded" in listing
