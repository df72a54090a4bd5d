"""What the benchmarks share: run a playbook of the checkout's collection and read its tasks' times.

Each playbook runs with the ansible.posix.json callback, so every task's start and end come back as data, and
optionally with the module's Python under ``/usr/bin/time``, so the peak RSS of each module process is recorded.
"""

import datetime
import json
import os
import subprocess
import sys
import tempfile
import time

# tests.conftest makes the checkout importable as ansible_collections.wincontainers.gmsa.
import tests.conftest  # noqa: F401 pylint: disable=unused-import
import ansible_collections.wincontainers.gmsa as collection

COLLECTIONS_PATH = os.path.dirname(os.path.dirname(os.path.dirname(collection.__path__[0])))
ANSIBLE_PLAYBOOK = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")


def run_playbook(play: list | str, workdir: str, name: str, env: dict | None = None, measure_rss: bool = False, inventory: str = "localhost,") -> dict:
    """Run ``play`` (plays, or a playbook's path or name) on ``inventory``; return ``wall`` (seconds), the json
    callback's ``report`` and, when asked, ``rss_kib``: the peak RSS of each module process, in the order they ran.
    Exits on failure."""
    path = play
    if not isinstance(play, str):
        path = os.path.join(workdir, name + ".json")
        with open(path, "w", encoding="utf-8") as playbook:
            json.dump(play, playbook)
    interpreter = sys.executable
    rss_file = None
    if measure_rss:
        rss_file = tempfile.NamedTemporaryFile("r", dir=workdir, suffix=".rss", delete=False)  # noqa: SIM115 - read after the run
        interpreter = os.path.join(workdir, "python-under-time")
        with open(interpreter, "w", encoding="utf-8") as wrapper:
            wrapper.write(f'#!/bin/sh\nexec /usr/bin/time -f %M -a -o {rss_file.name} {sys.executable} "$@"\n')
        os.chmod(interpreter, 0o755)
    environment = dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=COLLECTIONS_PATH,
        ANSIBLE_PYTHON_INTERPRETER=interpreter,
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
        ANSIBLE_LOCALHOST_WARNING="false",
        **(env or {}),
    )
    started = time.monotonic()
    process = subprocess.run([ANSIBLE_PLAYBOOK, "-i", inventory, "-c", "local", path], capture_output=True, text=True, env=environment, check=False)
    wall = time.monotonic() - started
    if process.returncode != 0:
        sys.exit(f"{name} failed:\n{process.stdout[-4000:]}\n{process.stderr[-2000:]}")
    result = {"wall": wall, "report": json.loads(process.stdout)}
    if rss_file is not None:
        result["rss_kib"] = [int(line) for line in rss_file.read().split() if line.isdigit()]
        rss_file.close()
    return result


def tasks(report: dict) -> list[dict]:
    return [task for play in report["plays"] for task in play["tasks"]]


def task_seconds(task: dict) -> float:
    """A task's duration as the json callback records it (ISO timestamps)."""
    duration = task["task"]["duration"]
    start, end = (datetime.datetime.fromisoformat(duration[key].replace("Z", "+00:00")) for key in ("start", "end"))
    return (end - start).total_seconds()


def changed_tasks(report: dict) -> int:
    return report["stats"]["localhost"]["changed"]
