"""Build what the AWX lab runs, once per pinned version, under the lab directory: AWX's virtual environment,
receptor, and the awx.awx collection (for configure.yml's tests and lint).

- AWX runs on Python 3.11 with its own pinned requirements (requirements/requirements.txt of the release) from
  PyPI; its git-only requirements come from PyPI at the versions of its date, django-ansible-base from its pinned
  checkout (tests/awx/sources.py). The environment is reused while its inputs are unchanged.
- receptor is built from its pinned checkout; the Go module proxy serves its dependencies.
- awx.awx is built from AWX's awx_collection directory, stamped with AWX's version, as AWX's own
  `make build_collection` does (Galaxy is unreachable from our machines).

    python -m tests.awx.build [--only-awx-collection]     # build what is missing, print where everything is
"""

import argparse
import os
import shutil
import subprocess
import sys
import time

import yaml

from tests.awx import awx_dir, sources
from tests.lab.build import BuildError

PYTHON = "python3.11"
# AWX's git-only requirements (requirements/requirements_git.txt) at their versions of July 2024, from PyPI.
GIT_REQUIREMENT_RELEASES = ("certifi", "ansible-runner==2.4.0", "python3-saml==1.16.0")
DJANGO_ANSIBLE_BASE_EXTRAS = "rest_filters,jwt_consumer,resource_registry,rbac"
# pip and setuptools are pinned in requirements.txt for AWX's image build; the environment keeps its own.
NOT_INSTALLED = ("pip==", "setuptools==")


def _log_path(name):
    path = os.path.join(awx_dir(), "logs", "build-%s.log" % name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return path


def run_logged(command, name, cwd=None, env=None):
    """Run a build step at low priority (the machine is shared), its output in logs/build-<name>.log."""
    with open(_log_path(name), "w", encoding="utf-8") as log:
        result = subprocess.run(["nice", "-n", "10"] + list(command), cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        with open(_log_path(name), encoding="utf-8") as log:
            raise BuildError("%s failed (exit %d), see %s:\n%s" % (name, result.returncode, _log_path(name), log.read()[-3000:]))


def venv_dir():
    return os.path.join(awx_dir(), "venv")


def _requirements(awx_source):
    with open(os.path.join(awx_source, "requirements", "requirements.txt"), encoding="utf-8") as pinned:
        lines = [line.strip() for line in pinned if line.strip() and not line.lstrip().startswith("#")]
    return [line for line in lines if not line.startswith(NOT_INSTALLED)] + list(GIT_REQUIREMENT_RELEASES)


def ensure_venv(checkouts, log=print):
    """AWX's virtual environment, installed when its requirements changed; returns its path."""
    requirements = _requirements(checkouts["awx"])
    dab = "%s[%s]" % (checkouts["django-ansible-base"], DJANGO_ANSIBLE_BASE_EXTRAS)
    stamp_text = "\n".join(requirements + [sources.DJANGO_ANSIBLE_BASE.commit]) + "\n"
    venv = venv_dir()
    stamp = os.path.join(venv, ".awx-requirements")
    try:
        with open(stamp, encoding="utf-8") as current:
            if current.read() == stamp_text:
                return venv
    except FileNotFoundError:
        pass
    python = shutil.which(PYTHON)
    if not python:
        raise BuildError("%s is not on PATH (AWX 24.6.1 runs on Python 3.11)" % PYTHON)
    log("installing AWX's requirements (%d) into %s, several minutes ..." % (len(requirements), venv))
    started = time.monotonic()
    shutil.rmtree(venv, ignore_errors=True)
    run_logged([python, "-m", "venv", venv], "venv")
    requirements_file = os.path.join(awx_dir(), "logs", "awx-requirements.txt")
    with open(requirements_file, "w", encoding="utf-8") as target:
        target.write("\n".join(requirements) + "\n")
    pip = [os.path.join(venv, "bin", "pip"), "install", "--disable-pip-version-check", "--quiet"]
    run_logged(pip + ["-r", requirements_file, dab], "pip")
    with open(stamp, "w", encoding="utf-8") as target:
        target.write(stamp_text)
    log("AWX's virtual environment ready in %.0f s" % (time.monotonic() - started))
    return venv


def ensure_receptor(checkouts, log=print):
    """The receptor binary of the pinned release; returns its path."""
    target = os.path.join(awx_dir(), "bin", "receptor-%s-%s" % (sources.RECEPTOR.tag, sources.RECEPTOR.commit[:12]), "receptor")
    if os.path.exists(target):
        return target
    if not shutil.which("go"):
        raise BuildError("the go command is not on PATH (receptor is built from source)")
    log("building receptor %s ..." % sources.RECEPTOR.tag)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    version = "-X 'github.com/ansible/receptor/internal/version.Version=%s'" % sources.RECEPTOR.tag.lstrip("v")
    env = dict(os.environ, CGO_ENABLED="0", GOTOOLCHAIN="local")
    command = ["go", "build", "-p", "2", "-trimpath", "-ldflags", version, "-o", target + ".partial", "./cmd/receptor-cl"]
    run_logged(command, "receptor", cwd=checkouts["receptor"], env=env)
    # Renamed only when complete, so an interrupted build is never taken for a cached binary.
    os.replace(target + ".partial", target)
    return target


def collections_dir():
    """The collections path holding awx.awx (ANSIBLE_COLLECTIONS_PATH for configure.yml, its tests and lint)."""
    return os.path.join(awx_dir(), "collections")


def ensure_awx_collection(checkouts, log=print):
    """awx.awx built from AWX's source with AWX's version and installed under collections_dir(); returns that."""
    installed = os.path.join(collections_dir(), "ansible_collections", "awx", "awx")
    stamp = os.path.join(installed, ".source-commit")
    if os.path.exists(stamp):
        with open(stamp, encoding="utf-8") as current:
            if current.read() == sources.AWX.commit:
                return collections_dir()
    log("building the awx.awx collection %s ..." % sources.AWX.tag)
    work = os.path.join(awx_dir(), "awx-collection-build")
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(os.path.join(checkouts["awx"], "awx_collection"), os.path.join(work, "src"))
    galaxy_path = os.path.join(work, "src", "galaxy.yml")
    with open(galaxy_path, encoding="utf-8") as galaxy_file:
        galaxy = yaml.safe_load(galaxy_file)
    galaxy["version"] = sources.AWX.tag
    with open(galaxy_path, "w", encoding="utf-8") as galaxy_file:
        yaml.safe_dump(galaxy, galaxy_file)
    bin_dir = os.path.dirname(sys.executable)
    run_logged([os.path.join(bin_dir, "ansible-galaxy"), "collection", "build", os.path.join(work, "src"), "--output-path", work], "awx-collection")
    tarball = os.path.join(work, "awx-awx-%s.tar.gz" % sources.AWX.tag)
    install = [os.path.join(bin_dir, "ansible-galaxy"), "collection", "install", "--force", "--no-deps", "-p", collections_dir(), tarball]
    run_logged(install, "awx-collection-install")
    with open(stamp, "w", encoding="utf-8") as target:
        target.write(sources.AWX.commit)
    return collections_dir()


def ensure_all(log=print):
    checkouts = sources.fetch_all(log)
    return {
        "awx_source": checkouts["awx"],
        "venv": ensure_venv(checkouts, log),
        "receptor": ensure_receptor(checkouts, log),
        "collections": ensure_awx_collection(checkouts, log),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only-awx-collection", action="store_true", help="build only awx.awx (for lint)")
    args = parser.parse_args(argv)
    try:
        if args.only_awx_collection:
            built = {"collections": ensure_awx_collection({"awx": sources.fetch_awx()})}
        else:
            built = ensure_all()
    except BuildError as error:
        sys.exit("AWX lab build failed: %s" % error)
    for name, path in built.items():
        print("%-12s %s" % (name, path))


if __name__ == "__main__":
    main()
