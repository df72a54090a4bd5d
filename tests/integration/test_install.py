# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""README "Install for real use", step by step, as a user runs it: no lab needed.

The collection is installed the three ways the README gives (a built tarball, a git URL, a requirements.yml
naming the git repository) into scratch collections paths, and ansible-doc must find its modules there and only
there. The git source is a file:// clone of this checkout's committed HEAD, so what is tested is what a user
cloning the repository gets. ``--no-deps`` as the README says for machines without Galaxy: kubernetes.core comes
from the ``ansible`` package of this virtual environment.

The Python requirements, Kerberos and CredSSP extras included, must be satisfied by this virtual environment,
which ``make deps`` builds from requirements.txt exactly as the README's ``pip install -r`` does.

Run from the repository root: ``python -m pytest tests/integration/test_install.py -q``.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import pathlib
import subprocess
import sys

import pytest
from packaging.requirements import Requirement

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent


def run(*command, cwd=None, env=None):
    completed = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert completed.returncode == 0, f"{' '.join(map(str, command))}: {completed.stdout[-2000:]}{completed.stderr[-2000:]}"
    return completed.stdout


def galaxy_install(collections_path, *source):
    # --force: a copy under ~/.ansible/collections (molecule's prerun makes one) would make ansible-galaxy skip it.
    run(str(BIN / "ansible-galaxy"), "collection", "install", "--no-deps", "--force", "-p", str(collections_path), *source)


def documented_modules(collections_path, cwd):
    """The collection's modules ansible-doc lists, and the file it renders one from, with only collections_path."""
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections_path))
    listed = json.loads(run(str(BIN / "ansible-doc"), "-t", "module", "-l", "wincontainers.gmsa", "--json", cwd=cwd, env=env))
    rendered = json.loads(run(str(BIN / "ansible-doc"), "-t", "module", "wincontainers.gmsa.gmsa_kds_root_key", "--json", cwd=cwd, env=env))
    return set(listed), rendered["wincontainers.gmsa.gmsa_kds_root_key"]["doc"]["filename"]


def assert_installed(collections_path, tmp_path):
    modules, filename = documented_modules(collections_path, tmp_path)
    installed = collections_path / "ansible_collections" / "wincontainers" / "gmsa"
    shipped = {f"wincontainers.gmsa.{path.stem}" for path in (installed / "plugins" / "modules").glob("*.py") if path.stem != "__init__"}
    assert "wincontainers.gmsa.gmsa_credspec" in shipped
    assert modules == shipped
    assert pathlib.Path(filename).resolve().is_relative_to(installed.resolve()), filename
    # The README's step 3 points at these two files in the installed collection.
    assert (installed / "bindep.txt").is_file()
    assert "pywinrm" in (installed / "requirements.txt").read_text()


@pytest.fixture(scope="module")
def git_repository(tmp_path_factory):
    """A bare file:// clone of the checkout's committed HEAD, with its branch named main as on GitHub."""
    repository = tmp_path_factory.mktemp("git") / "gmsa.git"
    run("git", "clone", "--quiet", "--bare", "--no-local", str(ROOT), str(repository))
    head = run("git", "-C", str(ROOT), "rev-parse", "HEAD").strip()
    run("git", "-C", str(repository), "branch", "--force", "main", head)
    return repository


def test_from_a_built_tarball(tmp_path):
    run(str(BIN / "ansible-galaxy"), "collection", "build", str(ROOT), "--output-path", str(tmp_path / "dist"))
    (tarball,) = (tmp_path / "dist").glob("wincontainers-gmsa-*.tar.gz")
    galaxy_install(tmp_path / "collections", str(tarball))
    assert_installed(tmp_path / "collections", tmp_path)


def test_from_a_git_url(tmp_path, git_repository):
    galaxy_install(tmp_path / "collections", f"git+file://{git_repository},main")
    assert_installed(tmp_path / "collections", tmp_path)


def test_from_a_requirements_file_naming_the_git_repository(tmp_path, git_repository):
    requirements = tmp_path / "requirements.yml"
    requirements.write_text(json.dumps({"collections": [{"name": f"file://{git_repository}", "type": "git", "version": "main"}]}))
    galaxy_install(tmp_path / "collections", "-r", str(requirements))
    assert_installed(tmp_path / "collections", tmp_path)


def requirement_lines():
    lines = (line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines())
    return [Requirement(line) for line in lines if line]


def unmet(requirement: Requirement, extras=()):
    """What of a requirement (and of its extras' requirements, recursively) this environment lacks."""
    if requirement.marker and not any(requirement.marker.evaluate({"extra": extra}) for extra in extras or ("",)):
        return []
    try:
        version = importlib.metadata.version(requirement.name)
    except importlib.metadata.PackageNotFoundError:
        return [f"{requirement} (not installed)"]
    if not requirement.specifier.contains(version, prereleases=True):
        return [f"{requirement} (installed {version})"]
    missing = []
    for extra in requirement.extras:
        dependencies = [Requirement(text) for text in importlib.metadata.requires(requirement.name) or ()]
        for dependency in dependencies:
            if dependency.marker and dependency.marker.evaluate({"extra": extra}) and not dependency.marker.evaluate({"extra": ""}):
                missing += unmet(dependency, (extra,))
    return missing


def test_python_requirements_with_kerberos_and_credssp_extras_are_met():
    requirements = {requirement.name: requirement for requirement in requirement_lines()}
    assert {"kerberos", "credssp"} <= requirements["pywinrm"].extras
    assert "kerberos" in requirements["pyspnego"].extras
    missing = [text for requirement in requirements.values() for text in unmet(requirement)]
    assert not missing, missing


def test_the_kerberos_and_credssp_libraries_load():
    """What pywinrm and pyspnego import for domain_auth kerberos and credssp (winrm/transport.py, spnego/_gss.py)."""
    run(sys.executable, "-c", "import kerberos, requests_credssp, gssapi, krb5")
    from winrm.vendor.requests_kerberos import kerberos_ as winrm_kerberos  # pylint: disable=import-outside-toplevel
    from spnego._gss import HAS_GSSAPI  # pylint: disable=import-outside-toplevel

    assert winrm_kerberos.kerberos.__name__ == "kerberos"
    assert HAS_GSSAPI
