# -*- coding: utf-8 -*-
# Copyright: (c) 2026, wincontainers.gmsa contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The action behind every module of the collection: the module runs in a fork of the task's worker when it can.

All of the collection's modules talk to the domain controller or the API server from the controller, so they usually
run with ``ansible_connection: local`` and the controller's own Python. A module process then costs more than the
module's work: the controller builds its AnsiballZ payload (``recursive_finder`` parses ``ansible.module_utils.basic``
and about 80 files, 0.2 s, once per module per run), and the new interpreter compiles the same files again from the
payload's zip, which never caches bytecode (0.4-0.6 s). A converged site run spent about 4 of its 8-9 s there.

So, when the module would run on this very machine with this very interpreter, it runs in a child forked from the
task's worker process instead, where ``ansible.module_utils`` is already imported and the collection's files are
imported from disk with their bytecode cache. Everything else is as in a module process:

- the arguments are those :meth:`ActionBase._update_module_args` makes (check mode, diff, ``no_log``, verbosity),
  serialised with the module's JSON profile, and the module reads them from ``basic._ANSIBLE_ARGS`` through
  ansible-core's own module runner (``ansible.module_utils._internal._ansiballz._loader.run_module``, the function the
  AnsiballZ wrapper calls), which also turns an exception that escapes the module into a failed result;
- the task's ``environment`` is the child's, and the module gets a private temporary directory that is removed after;
- the child's standard output is the module's result, parsed by :meth:`ActionBase._parse_returned_data`, as the
  output of a module process is; nothing the module changes (environment, signals, timers, threads) outlives the
  child.

Anything else runs the module the usual way: another connection, become, async, another interpreter (or interpreter
discovery), ``ANSIBLE_KEEP_REMOTE_FILES``, or an ansible-core whose internals this has not been tested against.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile

from ansible import constants as C
from ansible.module_utils.common.json import Direction, get_module_encoder
from ansible.plugins.action.normal import ActionModule as NormalAction
from ansible.release import __version__ as ansible_core_version
from ansible.utils.display import Display

display = Display()

# The collection's modules declare no METADATA, so AnsiballZ serialises their arguments and results with the legacy
# profile (ansible/executor/module_common.py, _DEFAULT_LEGACY_METADATA).
_PROFILE = "legacy"

# The ansible-core versions whose module runner and result parsing this uses as tested (2.21: _loader.run_module's
# keyword arguments; _parse_returned_data returning a UnifiedTaskResult).
_TESTED_CORE_VERSIONS = ("2.21.",)


class ControllerModuleAction(NormalAction):
    """ansible.builtin.normal, except that the module runs in a fork of the worker when :func:`fork_refusal` allows."""

    def _execute_module(self, module_name=None, module_args=None, tmp=None, task_vars=None, persist_files=False, delete_remote_tmp=None,
                        wrap_async=False, ignore_unknown_opts=False):
        task_vars = task_vars or {}
        module_name = module_name or self._task.action
        refusal = fork_refusal(self, task_vars, wrap_async)
        if refusal:
            display.vvv(f"{module_name}: a module process, since {refusal}")
            return super()._execute_module(module_name=module_name, module_args=module_args, task_vars=task_vars, wrap_async=wrap_async,
                                           ignore_unknown_opts=ignore_unknown_opts)
        display.vvv(f"{module_name}: in a fork of the worker, with the controller's Python {sys.executable}")
        module_args = self._task.args if module_args is None else module_args
        self._update_module_args(module_name, module_args, task_vars, ignore_unknown_opts=ignore_unknown_opts)
        environment = {}
        self._compute_environment_string(environment)
        with tempfile.TemporaryDirectory(prefix="ansible-moduletmp-") as module_tmpdir:
            module_args["_ansible_tmpdir"] = module_tmpdir
            params = json.dumps({"ANSIBLE_MODULE_ARGS": module_args}, cls=get_module_encoder(_PROFILE, Direction.CONTROLLER_TO_MODULE))
            output = run_in_fork(module_fqn(module_name), params.encode("utf-8"), environment)
        self._used_interpreter = f"#!{sys.executable}"
        result = self._parse_returned_data(output, _PROFILE)
        result.remove_internal_keys()
        return result.as_result_dict(for_round_trip=True)


def fork_refusal(action: NormalAction, task_vars: dict, wrap_async: bool) -> str | None:
    """Why the module must run as a module process for this task, or None when a fork of the worker runs it alike."""
    if not ansible_core_version.startswith(_TESTED_CORE_VERSIONS):
        return f"ansible-core {ansible_core_version} is not one this collection runs modules in a fork with"
    if action._connection.transport != "local":
        return f"the connection is {action._connection.transport}, not local"
    if action._connection.become is not None:
        return "the task uses become"
    if wrap_async or action._task.async_val:
        return "the task is async"
    if C.DEFAULT_KEEP_REMOTE_FILES:
        return "ANSIBLE_KEEP_REMOTE_FILES asks for the module's files"
    # As ActionBase._configure_module and module_common._get_shebang resolve it: the ansible_python_interpreter of the
    # host the module runs on (the one delegated to, if any), else the configuration.
    host_vars = task_vars["ansible_delegated_vars"][action._task.delegate_to] if action._task.delegate_to else task_vars
    interpreter = action._templar.template(C.config.get_config_value("INTERPRETER_PYTHON", variables=host_vars))
    if not isinstance(interpreter, str) or not is_controller_python(interpreter):
        return f"the module's interpreter ({interpreter}) is not the controller's Python ({sys.executable})"
    return None


def is_controller_python(interpreter: str) -> bool:
    """Whether ``interpreter`` is the Python running Ansible: the same program in the same directory.

    The directory matters: a virtual environment's ``bin/python`` links to the interpreter it was made from, and only
    its own directory gives it its packages. Its ``python`` and ``python3`` are the same.
    """
    interpreter, controller = os.path.abspath(interpreter), os.path.abspath(sys.executable)
    return os.path.dirname(interpreter) == os.path.dirname(controller) and os.path.realpath(interpreter) == os.path.realpath(controller)


def module_fqn(module_name: str) -> str:
    """The import name of one of the collection's modules, whatever name the task used (gmsa_x, or its FQCN)."""
    return f"ansible_collections.wincontainers.gmsa.plugins.modules.{module_name.rsplit('.', 1)[-1]}"


def run_in_fork(fqn: str, params: bytes, environment: dict) -> dict:
    """Run the module ``fqn`` with ``params`` in a forked child; return its ``rc``, ``stdout`` and ``stderr``."""
    read_end, write_end = os.pipe()
    with tempfile.TemporaryFile() as stderr:
        # A worker of ansible-core 2.21 runs only its main thread while the action runs (checked with threading.enumerate
        # at -vvv), so the child inherits no lock that another thread holds.
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child ends in os._exit, which coverage does not see
            _module_child(fqn, params, environment, read_end, write_end, stderr.fileno())
        os.close(write_end)
        try:
            with open(read_end, "rb") as stdout:
                output = stdout.read()
            _pid, status = os.waitpid(pid, 0)
        except BaseException:
            # The task's timeout, or an interrupt: the module goes with the task, as a module process would.
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise
        stderr.seek(0)
        return {"rc": os.waitstatus_to_exitcode(status), "stdout": output.decode("utf-8", "replace"), "stderr": stderr.read().decode("utf-8", "replace")}


def _module_child(fqn: str, params: bytes, environment: dict, read_end: int, write_end: int, stderr: int) -> None:  # pragma: no cover
    """The forked child: the module's standard output goes to the pipe, its exit status is the child's."""
    code = 1
    try:
        os.close(read_end)
        os.dup2(write_end, 1)
        os.dup2(stderr, 2)
        sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # pylint: disable=consider-using-with
        sys.stderr = open(2, "w", encoding="utf-8", closefd=False)  # pylint: disable=consider-using-with
        os.environ.update({name: str(value) for name, value in environment.items()})
        # Imported here: the controller needs them only in the child.
        from ansible.module_utils import _internal  # pylint: disable=import-outside-toplevel
        from ansible.module_utils._internal._ansiballz import _loader  # pylint: disable=import-outside-toplevel

        # The module side of ansible.module_utils, as in a module process: warn() and deprecate() go into the result
        # instead of to the controller's display, and results are encoded with the module's JSON profile.
        _internal.is_controller = False
        _loader.run_module(json_params=params, profile=_PROFILE, module_fqn=fqn, modlib_path=os.path.dirname(__file__), extensions={})
    except SystemExit as exited:
        code = 0 if exited.code is None else exited.code if isinstance(exited.code, int) else 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            # Not sys.exit: the child must not run the worker's exit handlers (they would remove the run's files).
            os._exit(code)  # pylint: disable=protected-access
