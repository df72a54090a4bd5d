# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The roles' argument specs declare the shape of every list and dict option, so a misspelt key fails at the
role's argument validation, before any task runs; and where a role hands an option to a module, the declared
shape is the module's (names, types, elements, choices, nested options), so the two cannot drift apart."""

from __future__ import annotations

import pathlib

import pytest
import yaml

from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._client import DOMAIN_CONNECTION_ARGUMENT_SPEC
from ansible_collections.wincontainers.gmsa.plugins.modules.gmsa_account import ACCOUNT_OPTIONS
from ansible_collections.wincontainers.gmsa.plugins.modules.gmsa_credspec import ARGUMENT_SPEC as CREDSPEC_SPEC

ROLES = pathlib.Path(__file__).resolve().parents[3] / "roles"
# Options whose keys are data, not settings: label maps and a whole Kubernetes manifest.
# Free-form by nature: label maps, a user's manifest, a registered module result (with changed, invocation, ...).
FREE_FORM = {
    ("webhook", "webhook_node_selector"),
    ("workload", "workload_node_selector"),
    ("workload", "workload_manifest"),
    ("verify", "verify_credspecs_built"),
    ("verify", "verify_domain_checked"),
}


def role_options(role: str, entry_point: str = "main") -> dict:
    specs = yaml.safe_load((ROLES / role / "meta" / "argument_specs.yml").read_text())
    return specs["argument_specs"][entry_point]["options"]


def shape(options: dict) -> dict:
    """What a typo or a wrong type runs into: each option's type, elements, choices and nested options.

    Role argument specs have no aliases (ansible-lint's role-arg-spec schema), so a module's alias counts as an
    option of its own: the role declares it as one.
    """
    return {
        name: (
            option.get("type", "str"),
            option.get("elements"),
            tuple(sorted(option.get("choices") or ())),
            shape(option.get("options") or {}),
        )
        for option_name, option in options.items()
        for name in (option_name, *option.get("aliases", ()))
    }


def collection_options():
    for specs in sorted(ROLES.glob("*/meta/argument_specs.yml")):
        role = specs.parent.parent.name
        for entry_point, spec in yaml.safe_load(specs.read_text())["argument_specs"].items():
            for name, option in spec.get("options", {}).items():
                yield role, entry_point, name, option


@pytest.mark.parametrize(
    "role, entry_point, name, option",
    [pytest.param(*item, id=f"{item[0]}:{item[1]}:{item[2]}") for item in collection_options() if item[3].get("type") in ("list", "dict")],
)
def test_every_list_and_dict_option_declares_its_keys(role, entry_point, name, option):
    if (role, name) in FREE_FORM:
        assert "options" not in option
        return
    if option["type"] == "list" and option.get("elements") != "dict":
        assert option.get("elements"), f"{role}.{name}: a list option names its elements"
        return
    assert option.get("options"), f"{role}.{name}: a {option['type']} option declares its keys (options), so a typo fails validation"


@pytest.mark.parametrize(
    "role, name, module_options",
    [
        ("credspecs", "credspecs_list", CREDSPEC_SPEC["credspecs"]["options"]),
        ("credspecs", "credspecs_domain", CREDSPEC_SPEC["domain"]["options"]),
        ("credspecs", "credspecs_identity", CREDSPEC_SPEC["identity"]["options"]),
        ("verify", "verify_credspecs", CREDSPEC_SPEC["credspecs"]["options"]),
        ("domain", "domain_accounts", ACCOUNT_OPTIONS),
        ("domain", "domain_connection", DOMAIN_CONNECTION_ARGUMENT_SPEC),
        ("verify", "verify_domain_connection", DOMAIN_CONNECTION_ARGUMENT_SPEC),
    ],
)
def test_role_option_has_the_shape_of_the_module_option_it_feeds(role, name, module_options):
    assert shape(role_options(role)[name]["options"]) == shape(module_options)


def test_required_options_have_no_default_that_satisfies_them():
    """Role defaults count as given at argument validation: a required option with a default is never missing."""
    offenders = []
    for role, entry_point, name, option in collection_options():
        defaults_file = ROLES / role / "defaults" / "main.yml"
        defaults = yaml.safe_load(defaults_file.read_text()) or {} if defaults_file.exists() else {}
        if option.get("required") and (name in defaults or "default" in option):
            offenders.append(f"{role}:{entry_point}:{name}")
    assert not offenders
