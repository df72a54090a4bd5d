"""Build the lab's Go binaries, once per version, into a cache outside the repository.

Most tool sets are a small Go module under tests/lab/go/<name>/ whose go.mod pins the upstream release;
the version recorded there names the cache directory, so bumping a pin builds anew and nothing else does.

The windows-gmsa webhook is the exception: the Go module proxy refuses its nested module
(github.com/kubernetes-sigs/windows-gmsa/admission-webhook), so it is built from a git checkout of upstream
pinned to a commit, taken from $WGMSA_WINDOWS_GMSA_SOURCE (a local checkout or a git bundle) or, when that is
unset, cloned from GitHub. The checkout goes to the cache too; nothing of upstream enters the repository.

    python -m tests.lab.build            # build what is missing, print where everything is
"""

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field

from tests.lab import cache_root

GO_MODULES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "go")


class BuildError(Exception):
    """A binary could not be built; the message says which and why."""


@dataclass(frozen=True)
class PinnedCheckout:
    """An upstream git repository built at one commit, from a local copy named by an environment variable or the network."""

    variable: str
    url: str
    tag: str
    commit: str
    module_subdir: str


@dataclass(frozen=True)
class Tool:
    """A Go module (ours under tests/lab/go/<name>, or upstream's own in a pinned checkout) and its main packages."""

    name: str
    upstream: str
    binaries: dict
    version_ldflags: tuple = field(default=())
    # (major symbol, minor symbol) stamped with the version's numbers, as Kubernetes' release build does
    # (hack/lib/version.sh): before 1.31 kube-apiserver's /version reports them only from these.
    major_minor_ldflags: tuple = field(default=())
    checkout: PinnedCheckout = None


# The older minor a fleet's second cluster runs (tests/lab/fleet.py): kube-apiserver and its two controllers;
# kubectl, etcd and kwok stay those of TOOLS. kwok v0.8.0 reads each binary's --version and adapts its flags to
# it, down to Kubernetes 1.13 (sigs.k8s.io/kwok@v0.8.0 pkg/kwokctl/runtime/binary/cluster_kube_apiserver.go,
# ParseVersionFromBinary; pkg/kwokctl/components/kube_apiserver.go).
KUBERNETES_OLDER = Tool(
    name="kubernetes-1.30",
    upstream="k8s.io/kubernetes",
    binaries={
        "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
        "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
        "kube-scheduler": "k8s.io/kubernetes/cmd/kube-scheduler",
    },
    version_ldflags=("k8s.io/component-base/version.gitVersion",),
    major_minor_ldflags=("k8s.io/component-base/version.gitMajor", "k8s.io/component-base/version.gitMinor"),
)

TOOLS = (
    Tool(
        name="kubernetes",
        upstream="k8s.io/kubernetes",
        binaries={
            "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
            "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
            "kube-scheduler": "k8s.io/kubernetes/cmd/kube-scheduler",
            "kubectl": "k8s.io/kubernetes/cmd/kubectl",
        },
        # What the release build stamps: kwokctl and `kubectl version` read it.
        version_ldflags=("k8s.io/component-base/version.gitVersion",),
    ),
    Tool(name="etcd", upstream="go.etcd.io/etcd/server/v3", binaries={"etcd": "go.etcd.io/etcd/server/v3"}),
    Tool(
        name="kwok",
        upstream="sigs.k8s.io/kwok",
        binaries={"kwok": "sigs.k8s.io/kwok/cmd/kwok", "kwokctl": "sigs.k8s.io/kwok/cmd/kwokctl"},
    ),
    Tool(
        name="webhook",
        upstream="github.com/kubernetes-sigs/windows-gmsa/admission-webhook",
        binaries={"gmsa-webhook": "."},
        # What upstream's Dockerfile stamps (-X main.version=${VERSION}); --version prints "v" + it.
        version_ldflags=("main.version",),
        # The release whose image registry.k8s.io/gmsa-webhook/k8s-gmsa-webhook:v0.13.0 the collection deploys.
        checkout=PinnedCheckout(
            variable="WGMSA_WINDOWS_GMSA_SOURCE",
            url="https://github.com/kubernetes-sigs/windows-gmsa",
            tag="v0.13.0",
            commit="529ad47e405dfc539d14f32401d3ca3d5d50d254",
            module_subdir="admission-webhook",
        ),
    ),
    KUBERNETES_OLDER,
)

# Not part of the lab: tests/integration/test_webhook_install.py renders upstream's windows-gmsa chart with
# `helm template` (no cluster access), building it on first use.
HELM = Tool(name="helm", upstream="helm.sh/helm/v3", binaries={"helm": "helm.sh/helm/v3/cmd/helm"})


def checkout_dir(checkout):
    return os.path.join(cache_root(), "src", "%s-%s" % (os.path.basename(checkout.url), checkout.commit))


def module_dir(tool):
    if tool.checkout:
        return os.path.join(checkout_dir(tool.checkout), tool.checkout.module_subdir)
    return os.path.join(GO_MODULES_DIR, tool.name)


def pinned_version(tool):
    """The upstream version the tool is pinned to: what our go.mod requires (v1.36.3), or tag-commit of a checkout."""
    if tool.checkout:
        return "%s-%s" % (tool.checkout.tag, tool.checkout.commit[:12])
    try:
        with open(os.path.join(module_dir(tool), "go.mod"), encoding="utf-8") as go_mod:
            match = re.search(r"^\s*(?:require\s+)?%s\s+(\S+)" % re.escape(tool.upstream), go_mod.read(), re.MULTILINE)
    except FileNotFoundError as error:
        raise BuildError("no Go module pins %s: %s/go.mod is missing" % (tool.upstream, os.path.relpath(module_dir(tool)))) from error
    if not match:
        raise BuildError("%s/go.mod does not require %s" % (module_dir(tool), tool.upstream))
    return match.group(1)


def source_location(checkout, environ=None):
    """Where to clone the pinned source from: the local checkout or bundle the variable names, else upstream's URL."""
    location = (os.environ if environ is None else environ).get(checkout.variable)
    if not location:
        return checkout.url
    if not os.path.exists(location):
        raise BuildError(
            "%s=%s: no such checkout or git bundle (point it at a clone or bundle of %s holding %s, commit %s)"
            % (checkout.variable, location, checkout.url, checkout.tag, checkout.commit)
        )
    return os.path.abspath(location)


# Set by git for hooks and by scripts: they would point our commands at another repository or index.
GIT_LOCATION_VARIABLES = {"GIT_DIR", "GIT_INDEX_FILE", "GIT_WORK_TREE", "GIT_OBJECT_DIRECTORY", "GIT_COMMON_DIR"}


def run_git(*args, cwd=None):
    env = {name: value for name, value in os.environ.items() if name not in GIT_LOCATION_VARIABLES}
    result = subprocess.run(["git"] + list(args), cwd=cwd, env=env, capture_output=True, text=True, check=False)
    return result.returncode, result.stdout.strip(), result.stderr.strip()


def _head(clone):
    return run_git("rev-parse", "HEAD", cwd=clone)[1] if os.path.isdir(clone) else None


def _pristine(clone, commit):
    """Whether the clone has the commit checked out, unedited (it is reused as is)."""
    return _head(clone) == commit and run_git("status", "--porcelain", cwd=clone) == (0, "", "")


def verify_pinned(checkout, clone, location):
    """Refuse a source whose tag names another commit, or that lacks the pinned commit."""
    code, tagged, _error = run_git("rev-parse", "--verify", "--quiet", checkout.tag + "^{commit}", cwd=clone)
    if code == 0 and tagged != checkout.commit:
        raise BuildError("%s in %s is commit %s, not the pinned %s: refusing to build it" % (checkout.tag, location, tagged, checkout.commit))
    if run_git("cat-file", "-e", checkout.commit + "^{commit}", cwd=clone)[0] != 0:
        raise BuildError("%s does not hold the pinned commit %s (%s): refusing to build it" % (location, checkout.commit, checkout.tag))


def fetch_source(checkout, log=print, environ=None):
    """The pinned commit checked out in the cache, cloned once from where source_location says; returns its path."""
    target = checkout_dir(checkout)
    if _pristine(target, checkout.commit):
        return target
    location = source_location(checkout, environ)
    log("fetching %s %s (%s) from %s ..." % (os.path.basename(checkout.url), checkout.tag, checkout.commit[:12], location))
    partial = target + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    code, _output, error = run_git("clone", "--quiet", "--no-checkout", location, partial)
    if code != 0:
        raise BuildError("cannot clone %s (%s names a local checkout or git bundle to use instead): %s" % (location, checkout.variable, error))
    verify_pinned(checkout, partial, location)
    code, _output, error = run_git("-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", checkout.commit, cwd=partial)
    if code != 0 or not _pristine(partial, checkout.commit):
        raise BuildError("cannot check out %s in %s: %s" % (checkout.commit, partial, error))
    shutil.rmtree(target, ignore_errors=True)
    # Renamed only when complete, so an interrupted clone is never taken for the pinned source.
    os.replace(partial, target)
    return target


def tool_bin_dir(tool):
    return os.path.join(cache_root(), "bin", "%s-%s" % (tool.name, pinned_version(tool)))


def _ldflags(tool):
    version = tool.checkout.tag[1:] if tool.checkout else pinned_version(tool)
    stamps = ["-X %s=%s" % (symbol, version) for symbol in tool.version_ldflags]
    if tool.major_minor_ldflags:
        numbers = version.lstrip("v").split(".")[:2]
        stamps += ["-X %s=%s" % (symbol, number) for symbol, number in zip(tool.major_minor_ldflags, numbers)]
    return " ".join(["-s", "-w"] + stamps)


def _go_build(tool, binary, package, target):
    if not shutil.which("go"):
        raise BuildError("the go command is not on PATH (Go >= 1.26 builds the lab)")
    # Two cores: one go build at a time, each with two compile jobs, keeps the machine responsive.
    env = dict(os.environ, CGO_ENABLED="0")
    if tool.checkout:
        # Upstream commits its vendor/ directory: the build needs no network and no other Go toolchain.
        env.update(GOTOOLCHAIN="local", GOFLAGS=(env.get("GOFLAGS", "") + " -mod=vendor").strip())
    command = ["go", "build", "-p", "2", "-trimpath", "-ldflags", _ldflags(tool), "-o", target + ".partial", package]
    result = subprocess.run(command, cwd=module_dir(tool), env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BuildError("building %s from %s failed:\n%s" % (binary, package, result.stderr.strip()[-4000:]))
    # Renamed only when complete, so an interrupted build is never taken for a cached binary.
    os.replace(target + ".partial", target)


def ensure_tool(tool, log=print):
    """Build the tool's binaries that are not cached yet; return {binary name: path}."""
    bin_dir = tool_bin_dir(tool)
    os.makedirs(bin_dir, exist_ok=True)
    paths = {}
    for binary, package in tool.binaries.items():
        target = os.path.join(bin_dir, binary)
        if not os.path.exists(target):
            if tool.checkout:
                fetch_source(tool.checkout, log)
            log("building %s %s ..." % (binary, pinned_version(tool)))
            started = time.monotonic()
            _go_build(tool, binary, package, target)
            log("built %s in %.0f s" % (binary, time.monotonic() - started))
        paths[binary] = target
    return paths


def ensure_all(log=print):
    """Build whatever is missing; return {binary name: path} for every lab binary."""
    paths = {}
    for tool in TOOLS:
        paths.update(ensure_tool(tool, log))
    return paths


def main():
    try:
        paths = ensure_all()
    except BuildError as error:
        sys.exit("lab build failed: %s" % error)
    for binary, path in sorted(paths.items()):
        print("%-24s %s" % (binary, path))


if __name__ == "__main__":
    main()
