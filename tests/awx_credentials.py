"""AWX's handling of the collection's custom credential types (extensions/awx/credential_types), for tests.

AWX renders a credential type's injectors with Jinja in a sandbox: file injectors become files in the job's
private data directory (their paths as ``tower.filename.<name>``), env and extra_vars injectors become the job's
environment and extra variables. Unset inputs are left undefined, unset booleans are false.
"""

from __future__ import annotations

import pathlib
import types

import yaml
from jinja2.sandbox import ImmutableSandboxedEnvironment

CREDENTIAL_TYPES_DIR = pathlib.Path(__file__).resolve().parents[1] / "extensions" / "awx" / "credential_types"


def load(name: str) -> dict:
    """The credential type definition in ``name`` (e.g. ``gmsa_domain_connection.yml``)."""
    return yaml.safe_load((CREDENTIAL_TYPES_DIR / name).read_text())


def awx_inject(credential_type: dict, inputs: dict, private_data_dir: pathlib.Path) -> tuple[dict, dict]:
    """Return the environment and extra variables AWX injects for a credential with ``inputs``."""
    namespace: dict = {"tower": types.SimpleNamespace(filename=types.SimpleNamespace())}
    namespace.update({key: value for key, value in inputs.items() if isinstance(value, bool) or len(value)})
    for field in credential_type["inputs"]["fields"]:
        if field["type"] == "boolean":
            namespace.setdefault(field["id"], False)
    sandbox = ImmutableSandboxedEnvironment()
    injectors = credential_type["injectors"]
    for label, template in injectors.get("file", {}).items():
        path = private_data_dir / label
        path.write_text(sandbox.from_string(template).render(**namespace))
        setattr(namespace["tower"].filename, label.split(".")[1], str(path))
    env = {name: sandbox.from_string(template).render(**namespace) for name, template in injectors.get("env", {}).items()}
    extra_vars = {name: sandbox.from_string(template).render(**namespace) for name, template in injectors.get("extra_vars", {}).items()}
    return env, extra_vars
