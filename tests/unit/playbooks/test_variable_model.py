# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""docs/variables.md's mapping from the model variables to the roles' variables is the one playbooks/vars/gmsa_model.yml
implements: every role variable the file sets is listed under exactly the model variables its template reads,
directly or through the file's other variables."""

from __future__ import annotations

import pathlib
import re

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[3]
IDENTIFIER = re.compile(r"\b[a-z_][a-z0-9_]*\b")
FILTER = re.compile(r"wincontainers\.gmsa\.\w+")
ROLE_PREFIXES = ("domain_", "webhook_", "credspecs_", "workload_", "verify_")
# What the roles' tasks register (e.g. credspecs_result) is a result of the run, not an inventory variable.
REGISTERED = {
    match.group(1) for tasks in (ROOT / "roles").glob("*/tasks/*.yml") for match in re.finditer(r"^\s*register: (\w+)$", tasks.read_text(), re.MULTILINE)
}


def model_templates() -> dict[str, str]:
    """Each variable the model file sets (dict values by their dotted path) and its template text."""
    templates = {}
    for name, value in yaml.safe_load((ROOT / "playbooks" / "vars" / "gmsa_model.yml").read_text()).items():
        items = value.items() if isinstance(value, dict) else [(None, value)]
        for key, text in items:
            templates[f"{name}.{key}" if key else name] = str(text)
    return templates


def model_inputs(name: str, templates: dict[str, str]) -> set[str]:
    """The inventory variables a derived variable reads: gmsa_* and role variables the file does not set."""
    inputs, seen, pending = set(), set(), [name]
    while pending:
        for word in IDENTIFIER.findall(FILTER.sub("", templates[pending.pop()])):
            derived = [key for key in templates if key == word or key.startswith(word + ".")]
            if derived:
                pending += [key for key in derived if key not in seen]
                seen.update(derived)
            elif (word.startswith("gmsa_") or word.startswith(ROLE_PREFIXES)) and word not in REGISTERED:
                inputs.add(word)
    return inputs


def documented_mapping() -> dict[str, set[str]]:
    text = (ROOT / "docs" / "variables.md").read_text()
    table = text.split("| model variable | role variables it sets |", 1)[1].split("\n\n", 1)[0]
    mapping = {}
    for row in table.strip().splitlines()[1:]:
        model_cell, roles_cell = row.strip("|").split("|")
        mapping[re.findall(r"`([^`]+)`", model_cell)[0]] = set(re.findall(r"`([^`]+)`", roles_cell))
    return mapping


def test_the_documented_mapping_is_the_model_files():
    templates = model_templates()
    implemented: dict[str, set[str]] = {}
    for name in templates:
        if name.startswith(ROLE_PREFIXES):
            for model_variable in model_inputs(name, templates):
                implemented.setdefault(model_variable, set()).add(name)
    documented = {model: {name for name in names if name in templates} for model, names in documented_mapping().items()}
    assert documented == implemented


def test_one_identity_variable_feeds_every_role():
    mapping = documented_mapping()
    assert {"domain_identity_name", "credspecs_identity.username", "verify_identity_username"} <= mapping["gmsa_identity_username"]
