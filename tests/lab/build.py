"""Build the lab's Go binaries, once per version, into a cache outside the repository.

Each tool set is a small Go module under tests/lab/go/<name>/ whose go.mod pins the upstream release;
the version recorded there names the cache directory, so bumping a pin builds anew and nothing else does.

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


class ToolNotPinned(BuildError):
    """No Go module of ours pins the tool, so it cannot be built.

    This is the windows-gmsa webhook's state on machines whose Go module proxy refuses
    github.com/kubernetes-sigs/windows-gmsa/admission-webhook (see docs/limits.md).
    """


@dataclass(frozen=True)
class Tool:
    """A Go module of ours (tests/lab/go/<name>) and the main packages built from it."""

    name: str
    upstream: str
    binaries: dict
    version_ldflags: tuple = field(default=())


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
        binaries={"gmsa-webhook": "github.com/kubernetes-sigs/windows-gmsa/admission-webhook"},
    ),
)


def module_dir(tool):
    return os.path.join(GO_MODULES_DIR, tool.name)


def pinned_version(tool):
    """The upstream version our go.mod requires, e.g. v1.36.3."""
    try:
        with open(os.path.join(module_dir(tool), "go.mod"), encoding="utf-8") as go_mod:
            match = re.search(r"^\s*(?:require\s+)?%s\s+(\S+)" % re.escape(tool.upstream), go_mod.read(), re.MULTILINE)
    except FileNotFoundError as error:
        raise ToolNotPinned("no Go module pins %s: %s/go.mod is missing" % (tool.upstream, os.path.relpath(module_dir(tool)))) from error
    if not match:
        raise BuildError("%s/go.mod does not require %s" % (module_dir(tool), tool.upstream))
    return match.group(1)


def tool_bin_dir(tool):
    return os.path.join(cache_root(), "bin", "%s-%s" % (tool.name, pinned_version(tool)))


def _ldflags(tool):
    stamps = ["-X %s=%s" % (symbol, pinned_version(tool)) for symbol in tool.version_ldflags]
    return " ".join(["-s", "-w"] + stamps)


def _go_build(tool, binary, package, target):
    if not shutil.which("go"):
        raise BuildError("the go command is not on PATH (Go >= 1.26 builds the lab)")
    # Two cores: one go build at a time, each with two compile jobs, keeps the machine responsive.
    env = dict(os.environ, CGO_ENABLED="0")
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
            log("building %s %s ..." % (binary, pinned_version(tool)))
            started = time.monotonic()
            _go_build(tool, binary, package, target)
            log("built %s in %.0f s" % (binary, time.monotonic() - started))
        paths[binary] = target
    return paths


def ensure_all(log=print):
    """Build whatever is missing; return {binary name: path} for every lab binary that is pinned."""
    paths = {}
    for tool in TOOLS:
        try:
            paths.update(ensure_tool(tool, log))
        except ToolNotPinned as error:
            log("not built: %s" % error)
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
