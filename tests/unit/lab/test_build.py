"""tests/lab/build.py: where the pinned windows-gmsa source comes from, and that nothing else gets built.

Each test makes a tiny git repository of its own to stand for upstream; nothing leaves the temporary directory.
"""

import dataclasses
import os
import subprocess

import pytest

from tests.lab import build

WEBHOOK = next(tool for tool in build.TOOLS if tool.name == "webhook")


def git(cwd, *args):
    env = {name: value for name, value in os.environ.items() if name not in build.GIT_LOCATION_VARIABLES}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(name="upstream")
def fixture_upstream(tmp_path):
    """A repository with the release tagged on its first commit and a later commit on top."""
    repo = tmp_path / "upstream"
    repo.mkdir()
    git(repo, "init", "--quiet", "--initial-branch=master")
    for message in ("release", "later"):
        (repo / "admission-webhook").mkdir(exist_ok=True)
        (repo / "admission-webhook" / "main.go").write_text("package main // %s\n" % message)
        git(repo, "add", ".")
        git(repo, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "--quiet", "-m", message)
        if message == "release":
            git(repo, "tag", "v0.13.0")
    return {"path": repo, "release": git(repo, "rev-parse", "v0.13.0"), "later": git(repo, "rev-parse", "HEAD")}


@pytest.fixture(name="cache", autouse=True)
def fixture_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("WGMSA_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(WEBHOOK.checkout.variable, raising=False)


def pinned(commit):
    return dataclasses.replace(WEBHOOK.checkout, commit=commit)


def test_the_webhook_is_pinned_to_the_v0_13_0_release_and_cached_by_commit():
    assert (WEBHOOK.checkout.tag, WEBHOOK.checkout.commit) == ("v0.13.0", "529ad47e405dfc539d14f32401d3ca3d5d50d254")
    assert build.tool_bin_dir(WEBHOOK).endswith("/bin/webhook-v0.13.0-529ad47e405d")


def test_without_the_variable_the_source_is_upstream_on_github():
    assert build.source_location(WEBHOOK.checkout, environ={}) == "https://github.com/kubernetes-sigs/windows-gmsa"


def test_a_variable_naming_nothing_is_refused_naming_the_variable(tmp_path):
    with pytest.raises(build.BuildError, match=r"^WGMSA_WINDOWS_GMSA_SOURCE=%s/nowhere: no such checkout or git bundle" % tmp_path):
        build.source_location(WEBHOOK.checkout, environ={"WGMSA_WINDOWS_GMSA_SOURCE": str(tmp_path / "nowhere")})


def test_an_unreachable_source_fails_naming_the_variable(tmp_path):
    checkout = dataclasses.replace(WEBHOOK.checkout, url=str(tmp_path / "no-such-repo"))
    with pytest.raises(build.BuildError, match=r"cannot clone .*no-such-repo \(WGMSA_WINDOWS_GMSA_SOURCE names a local checkout"):
        build.fetch_source(checkout, log=lambda _line: None, environ={})


@pytest.mark.parametrize("form", ["checkout", "bundle"])
def test_the_pinned_commit_is_checked_out_from_a_local_checkout_or_bundle(upstream, tmp_path, form):
    source = upstream["path"]
    if form == "bundle":
        source = tmp_path / "upstream.bundle"
        git(upstream["path"], "bundle", "create", str(source), "--all")
    lines = []
    clone = build.fetch_source(pinned(upstream["release"]), log=lines.append, environ={"WGMSA_WINDOWS_GMSA_SOURCE": str(source)})
    assert git(clone, "rev-parse", "HEAD") == upstream["release"]
    assert (tmp_path / "cache" / "src").is_dir() and clone.startswith(str(tmp_path / "cache" / "src"))
    assert lines == ["fetching windows-gmsa v0.13.0 (%s) from %s ..." % (upstream["release"][:12], source)]
    # Cached: the next call clones nothing, even with the variable gone.
    assert build.fetch_source(pinned(upstream["release"]), log=lines.append, environ={}) == clone and len(lines) == 1


def test_an_edited_cached_checkout_is_cloned_again(upstream):
    environ = {"WGMSA_WINDOWS_GMSA_SOURCE": str(upstream["path"])}
    clone = build.fetch_source(pinned(upstream["release"]), log=lambda _line: None, environ=environ)
    with open(clone + "/admission-webhook/main.go", "a", encoding="utf-8") as edited:
        edited.write("// local change\n")
    lines = []
    assert build.fetch_source(pinned(upstream["release"]), log=lines.append, environ=environ) == clone
    assert len(lines) == 1 and "local change" not in open(clone + "/admission-webhook/main.go", encoding="utf-8").read()


def test_a_tag_naming_another_commit_is_refused(upstream):
    # The pin says the later commit is the release; the source's tag disagrees.
    with pytest.raises(build.BuildError, match=r"v0.13.0 in .* is commit %s, not the pinned %s: refusing" % (upstream["release"], upstream["later"])):
        build.fetch_source(pinned(upstream["later"]), log=lambda _line: None, environ={"WGMSA_WINDOWS_GMSA_SOURCE": str(upstream["path"])})


def test_a_source_without_the_pinned_commit_is_refused(upstream, tmp_path):
    git(upstream["path"], "tag", "-d", "v0.13.0")
    absent = "0123456789abcdef0123456789abcdef01234567"
    with pytest.raises(build.BuildError, match=r"does not hold the pinned commit %s \(v0.13.0\): refusing" % absent):
        build.fetch_source(pinned(absent), log=lambda _line: None, environ={"WGMSA_WINDOWS_GMSA_SOURCE": str(upstream["path"])})
    # Nothing is left where a later run would take it for the pinned source.
    assert [path.name for path in (tmp_path / "cache" / "src").iterdir() if not path.name.endswith(".partial")] == []


def test_an_inherited_git_index_or_repository_is_not_touched(upstream, tmp_path, monkeypatch):
    # As when the build runs from a git hook, or from a script that set these for its own repository.
    monkeypatch.setenv("GIT_INDEX_FILE", str(tmp_path / "foreign-index"))
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "foreign.git"))
    clone = build.fetch_source(pinned(upstream["release"]), log=lambda _line: None, environ={"WGMSA_WINDOWS_GMSA_SOURCE": str(upstream["path"])})
    assert git(clone, "rev-parse", "HEAD") == upstream["release"]
    assert not (tmp_path / "foreign-index").exists() and not (tmp_path / "foreign.git").exists()
