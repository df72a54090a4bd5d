# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The portable identity: the domain user whose credentials Windows nodes use to fetch gMSA passwords.

Shared by ``gmsa_identity`` and by ``gmsa_account``'s ``identities`` option (the domain stage's identities and gMSAs in
one task). Each user is brought to its options the way ``New-ADUser``/``Set-ADUser`` would, with its group membership.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._client import (
    DomainError,
    DomainUser,
    apply_list_changes,
    check_container,
    container_or_default,
    list_option_spec,
    list_option_values,
    principal_lookup_attribute,
)
from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._ldap import escape_dn_value
from ansible_collections.wincontainers.gmsa.plugins.module_utils._validation import (
    ValidationError,
    validate_distinguished_name,
    validate_principal,
    validate_user_name,
)

# The options that make one user, with gmsa_identity's defaults: its top-level options, and each entry of
# gmsa_account's ``identities`` (where every entry carries them all).
USER_OPTIONS = dict(
    state=dict(type="str", choices=["present", "absent"], default="present"),
    password=dict(type="str", no_log=True),
    update_password=dict(type="str", choices=["always", "on_create"], default="on_create", no_log=False),
    password_never_expires=dict(type="bool", default=True, no_log=False),
    enabled=dict(type="bool", default=True),
    path=dict(type="str"),
    description=dict(type="str"),
    groups=list_option_spec(),
    create_groups=dict(type="bool", default=False),
    groups_path=dict(type="str"),
)


def validate_user(params: dict) -> None:
    """Check the names and paths of one user before the domain is contacted; raise ValidationError naming the option."""
    validate_user_name(params["name"], "name")
    for option in ("path", "groups_path"):
        if params[option] is not None:
            validate_distinguished_name(params[option], option)
    for suboption, value in list_option_values(params["groups"]):
        validate_principal(value, f"groups.{suboption}")


def validate_users(users: list[dict], field: str | None) -> None:
    """:func:`validate_user` for each user, and each named once; a field of entry N is reported as ``field[N].option``."""
    for index, params in enumerate(users):
        _within(field, index, validate_user, params)
    names = [params["name"].lower() for params in users]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValidationError(field or "name", f"each user may be named once; {', '.join(duplicates)} is named more than once")


def _user_result(name: str, user: DomainUser | None, desired: dict | None) -> dict:
    result = dict(name=name, state="present" if desired else "absent", sid=user and user.sid, distinguished_name=user and user.distinguished_name)
    if desired:
        result.update(desired)
    return result


class _GroupPlan:
    """The ``groups`` option resolved to DNs, and the groups to create first (with ``create_groups``)."""

    def __init__(self, client, params: dict) -> None:
        self.to_create: list[str] = []
        self.container = None
        self.dns = None
        groups = params["groups"]
        if not groups:
            return
        values = list_option_values(groups)
        principals = client.resolve_principals(sorted({value for _field, value in values}))
        dns = {value: principal.distinguished_name for value, principal in principals.items()}
        for suboption, value in values:
            if value in dns:
                continue
            if not params["create_groups"]:
                raise ValidationError(
                    f"groups.{suboption}", f"no group {value!r} in the domain (give a sAMAccountName, SID or distinguished name, or set create_groups)"
                )
            if suboption.startswith("remove"):
                continue  # a group that does not exist has no member to remove
            if principal_lookup_attribute(value) != "sAMAccountName":
                raise ValidationError(f"groups.{suboption}", f"no group {value!r} in the domain; create_groups creates groups given by name only")
            self.container = self.container or check_container(
                client, container_or_default(params["groups_path"], client.domain_facts(), "CN=Users"), "groups_path"
            )
            self.to_create.append(value)
            dns[value] = f"CN={escape_dn_value(value)},{self.container}"
        self.dns = {suboption: None if names is None else [dns[name] for name in names if name in dns] for suboption, names in groups.items()}

    def create(self, client) -> None:
        for name in self.to_create:
            client.create_group(name, self.container)


def _desired_state(params: dict, user: DomainUser | None, groups: dict | None) -> dict:
    current_description = user.description if user else None
    return dict(
        enabled=params["enabled"],
        password_never_expires=params["password_never_expires"],
        description=(params["description"] if params["description"] is not None else current_description) or None,
        groups=apply_list_changes(list(user.groups) if user else [], groups),
    )


def _current_state(user: DomainUser) -> dict:
    return dict(enabled=user.enabled, password_never_expires=user.password_never_expires, description=user.description, groups=list(user.groups))


def _missing(values: list[str], among: list[str]) -> list[str]:
    """The DNs of ``values`` that are not in ``among``, compared case-insensitively as AD compares DNs."""
    known = {value.lower() for value in among}
    return [value for value in values if value.lower() not in known]


@dataclass
class _Outcome:
    changed: bool
    password_changed: bool
    user: DomainUser | None
    desired: dict
    created_groups: list[str]


def _ensure_present(params: dict, check_mode: bool, client, user: DomainUser | None) -> _Outcome:
    """Create or update the user, and create the groups it joins when asked to."""
    container = None
    if user is None:
        if not params["password"]:
            raise ValidationError("password", f"is required to create the user {params['name']}")
        container = check_container(client, container_or_default(params["path"], client.domain_facts(), "CN=Users"), "path")
    groups = _GroupPlan(client, params)
    desired = _desired_state(params, user, groups.dns)
    current = _current_state(user) if user else dict(groups=[])
    password_changed = user is None or (
        params["update_password"] == "always" and bool(params["password"]) and not client.credentials_valid(params["name"], params["password"])
    )
    attributes_changed = any(current.get(key) != desired[key] for key in ("enabled", "password_never_expires", "description"))
    join, leave = _missing(desired["groups"], current["groups"]), _missing(current["groups"], desired["groups"])
    changed = password_changed or attributes_changed or bool(join or leave or groups.to_create)
    if not changed or check_mode:
        return _Outcome(changed, password_changed, user, desired, groups.to_create)
    groups.create(client)
    if user is None:
        user = client.create_user(params["name"], container, params["password"], desired["description"], desired["enabled"], desired["password_never_expires"])
    elif password_changed or attributes_changed:
        user = client.update_user(
            user,
            description=desired["description"],
            enabled=desired["enabled"],
            password_never_expires=desired["password_never_expires"],
            password=params["password"] if password_changed else None,
        )
    for group in join:
        client.set_group_members(group, add=[user.distinguished_name], remove=[])
    for group in leave:
        client.set_group_members(group, add=[], remove=[user.distinguished_name])
    return _Outcome(changed, password_changed, user, desired, groups.to_create)


def ensure_user(params: dict, check_mode: bool, client) -> tuple[dict, dict, dict]:
    """Bring one user to ``params``: its result (with ``changed``, ``password_changed``, ``created_groups``), and the
    diff's before and after."""
    name = params["name"]
    existing = client.find_user(name)
    before = _user_result(name, existing, _current_state(existing)) if existing else {}
    if params["state"] == "absent":
        if existing and not check_mode:
            client.delete_user(existing)
        return dict(_user_result(name, None, None), changed=bool(existing), password_changed=False, created_groups=[]), before, {}
    outcome = _ensure_present(params, check_mode, client, existing)
    result = _user_result(name, outcome.user, outcome.desired)
    # The diff says that the password changes, never what it is.
    after = dict(result, password="(changed)") if outcome.password_changed else result
    return dict(result, changed=outcome.changed, password_changed=outcome.password_changed, created_groups=outcome.created_groups), before, after


@dataclass
class UserBatch:
    """Users brought to their options one after the other; what was done, for the results and for a failure's message."""

    users: list[dict]
    # ``identities`` when the users are entries of that option (fields are then ``identities[N].option``), else None.
    option: str | None
    results: list[dict] = field(default_factory=list)
    before: dict = field(default_factory=dict)
    after: dict = field(default_factory=dict)
    reached: int | None = None

    def ensure(self, check_mode: bool, client) -> None:
        for self.reached, params in enumerate(self.users):
            result, self.before[params["name"]], self.after[params["name"]] = _within(self.option, self.reached, ensure_user, params, check_mode, client)
            self.results.append(result)

    @property
    def changed(self) -> list[str]:
        return [result["name"] for result in self.results if result["changed"]]

    def failure(self, error: DomainError | ValidationError) -> str:
        """``error`` with the users changed before it and, for a batch, those not reached."""
        message = str(error)
        if self.changed:
            message += f"; before the failure, this task changed {', '.join(self.changed)}"
        if self.option and self.reached is not None and self.reached + 1 < len(self.users):
            message += f"; not reached: {', '.join(params['name'] for params in self.users[self.reached + 1:])}"
        return message


def _within(field: str | None, index: int, function, *args):
    """``function(*args)``, with the field of a ValidationError under ``field[index]`` for an entry of a list option."""
    try:
        return function(*args)
    except ValidationError as error:
        raise error.within(f"{field}[{index}]") if field else error from None
