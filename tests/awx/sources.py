"""Upstream sources of the AWX lab, pinned by commit, cloned into the cache and never into the repository.

Each comes from the local checkout or git bundle its environment variable names, else from GitHub (which our
machines cannot reach: set the variables there). The pins are checked as for the webhook (tests/lab/build.py):
a tag that names another commit, or a source without the pinned commit, is refused.

- AWX 24.6.1, the last release before AWX paused releases; only the paths the lab uses are checked out (the
  Django application, the awx.awx collection, the requirements), which also skips the documentation's largest
  files that some mirrors leave out.
- django-ansible-base at the tag of AWX 24.6.1's date: AWX pins it to a git branch, and PyPI has it only from
  December 2024 on.
- receptor v1.4.9: AWX's job runner; the Go module proxy refuses its module, its dependencies it serves.
"""

import os
import shutil

from tests.lab.build import BuildError, PinnedCheckout, checkout_dir, fetch_source, run_git, source_location, verify_pinned

AWX = PinnedCheckout(
    variable="WGMSA_AWX_SOURCE",
    url="https://github.com/ansible/awx",
    tag="24.6.1",
    commit="94e5795dfc37b95c576d61f3e3b4e936c021548c",
    module_subdir="",
)
AWX_PATHS = ("/awx/", "/awx_collection/", "/requirements/", "/setup.cfg", "/pyproject.toml", "/manage.py", "/MANIFEST.in")
DJANGO_ANSIBLE_BASE = PinnedCheckout(
    variable="WGMSA_DJANGO_ANSIBLE_BASE_SOURCE",
    url="https://github.com/ansible/django-ansible-base",
    tag="2024.7.1",
    commit="42d6f626b0decddfa678cb8cfb8aa9002a1b235a",
    module_subdir="",
)
RECEPTOR = PinnedCheckout(
    variable="WGMSA_RECEPTOR_SOURCE",
    url="https://github.com/ansible/receptor",
    tag="v1.4.9",
    commit="451f69eaa5aeec12360b83b389750144aa781168",
    module_subdir="",
)


def _sparse_pristine(clone, commit):
    return (
        os.path.isdir(clone)
        and run_git("rev-parse", "HEAD", cwd=clone)[1] == commit
        and run_git("status", "--porcelain", cwd=clone) == (0, "", "")
        and run_git("sparse-checkout", "list", cwd=clone)[1].split() == list(AWX_PATHS)
    )


def fetch_awx(log=print):
    """AWX's pinned commit, the lab's paths of it checked out in the cache; returns its path."""
    target = checkout_dir(AWX)
    if _sparse_pristine(target, AWX.commit):
        return target
    location = source_location(AWX)
    log("fetching awx %s (%s) from %s ..." % (AWX.tag, AWX.commit[:12], location))
    partial = target + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    code, _output, error = run_git("clone", "--quiet", "--no-checkout", location, partial)
    if code != 0:
        raise BuildError("cannot clone %s (%s names a local checkout or git bundle to use instead): %s" % (location, AWX.variable, error))
    verify_pinned(AWX, partial, location)
    for command in (("sparse-checkout", "set", "--no-cone") + AWX_PATHS, ("-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", AWX.commit)):
        code, _output, error = run_git(*command, cwd=partial)
        if code != 0:
            raise BuildError("cannot check out %s in %s: %s" % (AWX.commit, partial, error))
    if not _sparse_pristine(partial, AWX.commit):
        raise BuildError("the checkout of %s in %s is not the pinned commit" % (AWX.commit, partial))
    shutil.rmtree(target, ignore_errors=True)
    os.replace(partial, target)
    return target


def fetch_all(log=print):
    """{name: checkout path} of every upstream source the AWX lab builds from."""
    return {"awx": fetch_awx(log), "django-ansible-base": fetch_source(DJANGO_ANSIBLE_BASE, log), "receptor": fetch_source(RECEPTOR, log)}
