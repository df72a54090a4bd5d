#!/usr/bin/python
# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: gmsa_credspec
short_description: GMSACredentialSpec objects with their RBAC and identity Secrets, many in one task
version_added: 0.1.0
description:
  - For each gMSA in O(credspecs), builds the credential spec as C(New-CredentialSpec) writes it, from the facts of
    the domain and the gMSA's name. It can also write the spec to a JSON file.
  - Creates, for each gMSA, the C(GMSACredentialSpec) object and a ClusterRole allowing C(use) on exactly that object.
    It binds that role to the chosen service accounts with one RoleBinding per namespace.
  - Optionally stores the portable identity (the domain user that the CCG plugin on non-domain-joined nodes logs on
    with) in a Secret with the keys C(domain), C(username) and C(password), in each workload namespace.
  - Does what C(Add-AksHciGMSACredentialSpec) and C(Remove-AksHciGMSACredentialSpec) do, for any conformant
    cluster and for many gMSAs at once. Unchanged objects cost nothing, because a rerun lists each kind once and
    writes nothing.
  - Every credspec, ClusterRole and RoleBinding records the credspec that owns it in the label
    C(app.kubernetes.io/instance). A credspec never takes over, prunes or deletes the objects of another credspec or of
    the webhook; identity Secrets, which credspecs share, are recorded in each credspec's annotation
    C(wincontainers.gmsa/identity-secrets).
  - What an entry no longer asks for is removed, found by that label in every namespace. That covers the ClusterRole
    and RoleBindings of a former O(credspecs[].cluster_role_name), RoleBindings in namespaces that are no longer
    listed, and identity Secrets that no credspec uses any more. A service account removed from a namespace's list
    is removed from its RoleBinding.
  - Writes are server-side apply with the field manager C(wincontainers.gmsa). It takes over the fields that other
    managers set. Check mode is a server-side dry run. C(--diff) hides Secret values.
  - All input is validated before anything is changed, with errors that name the option (for example
    C(credspecs[2].host_account_config.plugin_guid)).
author:
  - wincontainers.gmsa maintainers (@wincontainers)
extends_documentation_fragment:
  - wincontainers.gmsa.attributes
  - ansible.builtin.action_common_attributes
  - kubernetes.core.k8s_auth_options
  - wincontainers.gmsa.cluster_requests
options:
  state:
    description:
      - V(present) creates or updates the objects.
      - V(absent) deletes the objects this module created for each entry of O(credspecs), that is its C(GMSACredentialSpec)
        and every ClusterRole and RoleBinding labelled as that credspec's, whatever their names. Only the C(name) or
        C(account_name) of an entry is used. An identity Secret is kept while another credspec created by this
        collection still refers to it. Objects without the label C(app.kubernetes.io/managed-by=wincontainers.gmsa),
        or that belong to another credspec, are never deleted.
    type: str
    choices: [present, absent]
    default: present
  domain:
    description:
      - Facts of the gMSAs' domain, for example the C(domain) result of M(wincontainers.gmsa.gmsa_domain_info). Used by
        every entry of O(credspecs) that has no C(domain) of its own.
    type: dict
    suboptions: &domain
      dns_name:
        description: DNS name of the domain (C(DNSRoot)), for example V(contoso.com).
        type: str
        required: true
      dns_tree_name:
        description: DNS name of the forest root domain. Defaults to O(domain.dns_name).
        type: str
        aliases: [forest_name]
      netbios_name:
        description: NetBIOS name of the domain, for example V(CONTOSO).
        type: str
        required: true
      sid:
        description: SID of the domain (C(S-1-5-21-x-y-z)), not the SID of the gMSA.
        type: str
        required: true
      guid:
        description: objectGUID of the domain.
        type: str
        required: true
      distinguished_name:
        description: Not used. Accepted so that the C(domain) result of M(wincontainers.gmsa.gmsa_domain_info) can be passed as it is.
        type: str
  identity:
    description:
      - The portable identity stored in each entry's identity Secret. Used by every entry of O(credspecs) that has
        no C(identity) of its own.
      - Without an identity, no Secret is created. That is the case for domain-joined nodes.
    type: dict
    suboptions: &identity
      username:
        description: sAMAccountName of the domain user.
        type: str
        required: true
      password:
        description: Password of the domain user. Never logged or shown in a diff.
        type: str
        required: true
      domain:
        description: Domain of the user, as the CCG plugin expects it. Defaults to the entry's C(domain.dns_name).
        type: str
  credspecs:
    description: The gMSAs. One entry each.
    type: list
    elements: dict
    required: true
    suboptions:
      account_name:
        description: Name of the gMSA, with or without the trailing C($).
        type: str
        required: true
      name:
        description:
          - Name of the C(GMSACredentialSpec) object. By default it is derived from O(credspecs[].account_name),
            in lower case, with every run of other characters than C(a-z0-9) replaced by C(-).
        type: str
      domain:
        description: Domain facts for this gMSA, overriding O(domain).
        type: dict
        suboptions: *domain
      additional_accounts:
        description: More gMSAs listed in the spec, as C(New-CredentialSpec -AdditionalAccounts) does.
        type: list
        elements: dict
        default: []
        suboptions:
          name:
            description: Name of the gMSA.
            type: str
            required: true
          domain:
            description: DNS name of its domain. Defaults to the entry's domain.
            type: str
      spec:
        description:
          - An existing credential spec to use instead of building one, as a dict or its JSON text. For example the
            C(credspec) of a C(GMSACredentialSpec) made elsewhere.
          - It must describe O(credspecs[].account_name) in the domain of the domain facts (SID, GUID, DNS, forest and
            NetBIOS names) and list the same accounts; the module fails naming every value that differs, before
            anything changes. Its C(HostAccountConfig) is kept unless O(credspecs[].host_account_config) is given.
          - Mutually exclusive with O(credspecs[].spec_file) and O(credspecs[].additional_accounts).
        type: raw
      spec_file:
        description:
          - A credential spec file on the controller, as C(New-CredentialSpec) writes it (the file that
            C(Add-AksHciGMSACredentialSpec -credSpecFilePath) takes). Checked and used as O(credspecs[].spec) is.
        type: path
      host_account_config:
        description:
          - How a node that is not domain joined gets the gMSA password, through a CCG plugin (C(HostAccountConfig)).
          - Give O(credspecs[].host_account_config.plugin) for a known plugin, O(credspecs[].host_account_config.plugin_guid),
            or O(credspecs[].host_account_config.from_credspec) to take the plugin of a credspec already in the cluster.
        type: dict
        suboptions:
          plugin:
            description: A plugin whose CLSID its vendor publishes.
            type: str
            choices: [azure_key_vault, aws_secrets_manager]
          plugin_guid:
            description: CLSID of the plugin, in braces, for example V({859E1386-BDB4-49E8-85C7-3070B13920E1}).
            type: str
          from_credspec:
            description:
              - Name of a C(GMSACredentialSpec) in the cluster whose C(HostAccountConfig) gives the plugin's CLSID, and its
                input unless O(credspecs[].host_account_config.plugin_input) is given. On AKS on Azure Stack HCI, a
                credspec that C(Add-AksHciGMSACredentialSpec) created holds the plugin that Microsoft does not publish.
              - The module fails before changing anything when that credspec does not exist or has no plugin.
            type: str
          plugin_input:
            description:
              - Input of the plugin (C(PluginInput)). Its format depends on the plugin. Required, unless
                O(credspecs[].host_account_config.from_credspec) gives it.
              - C(${secret_name}) and C(${secret_namespace}) are replaced with the identity Secret's name and
                namespace. C(${secret_namespace}) requires exactly one identity Secret namespace.
            type: str
      service_accounts:
        description:
          - Service accounts allowed to C(use) this credspec. The module creates one RoleBinding per namespace.
        type: list
        elements: dict
        default: []
        suboptions:
          name:
            description: Name of the service account.
            type: str
            required: true
          namespace:
            description: Its namespace.
            type: str
            required: true
      cluster_role_name:
        description: Name of the ClusterRole allowing C(use), and of its RoleBindings. Defaults to C(gmsa-use-<name>).
        type: str
      identity:
        description: The portable identity for this gMSA, overriding O(identity).
        type: dict
        suboptions: *identity
      identity_secret:
        description: Where the identity Secret goes.
        type: dict
        default: {}
        suboptions:
          name:
            description: Name of the Secret.
            type: str
            default: gmsa-identity
          namespaces:
            description:
              - Namespaces that get the Secret. By default, the namespaces of
                O(credspecs[].service_accounts), or V(default) when there are none.
            type: list
            elements: str
      json_path:
        description:
          - Also write the credential spec to this file, as JSON, the way Docker and containerd read it on a node.
            With O(state=absent) the file is removed.
        type: path
  overwrite:
    description:
      - Replace a C(GMSACredentialSpec) or identity Secret whose contents differ from the desired ones, and take over
        objects of the same names that this collection did not create, or that belong to another credspec or to the
        webhook. This is what C(Add-AksHciGMSACredentialSpec -overwrite) does.
      - The API server's default RBAC (label C(kubernetes.io/bootstrapping=rbac-defaults), for example
        C(cluster-admin)) is never taken over.
      - Without it, the module fails before changing anything and lists those objects. Then a running workload
        never gets a different identity by accident. The entry's own ClusterRole and RoleBindings are always
        updated.
    type: bool
    default: false
  group:
    description:
      - Name of the set of credspecs this task manages, recorded in the label C(wincontainers.gmsa/credspec-group) of
        each C(GMSACredentialSpec). An RFC 1123 label. Required by O(prune).
    type: str
  prune:
    description:
      - With O(state=present), also delete every C(GMSACredentialSpec) of O(group) that no entry of O(credspecs)
        names, with its ClusterRoles and RoleBindings in every namespace (found by their owner label) and the identity
        Secrets no remaining credspec uses.
      - Then renaming an entry (its C(name), or the C(account_name) it is derived from) or removing it from the list
        leaves no C(use) grant behind. Give each task that manages credspecs on a cluster its own O(group).
    type: bool
    default: false
  create_service_accounts:
    description:
      - With O(state=present), first create the namespaces and service accounts of every entry's
        O(credspecs[].service_accounts) that do not exist yet, as M(wincontainers.gmsa.gmsa_service_accounts) does, in
        the same task. They get the label C(app.kubernetes.io/managed-by=wincontainers.gmsa); one that exists is left
        exactly as it is, never labelled, so a cleanup never deletes it.
      - Removing them is M(wincontainers.gmsa.gmsa_service_accounts) with O(state=absent), which deletes only labelled
        ones and keeps a namespace that holds anything else.
    type: bool
    default: false
notes:
  - Runs on the controller. The C(GMSACredentialSpec) CRD must be installed (M(wincontainers.gmsa.gmsa_webhook)).
  - Service accounts need not exist yet. RoleBindings can name them before they are created.
seealso:
  - module: wincontainers.gmsa.gmsa_webhook
  - name: Configure GMSA for Windows Pods and containers
    description: Kubernetes documentation.
    link: https://kubernetes.io/docs/tasks/configure-pod-container/configure-gmsa/
requirements:
  - kubernetes >= 24.2.0
attributes:
  check_mode:
    support: full
    details: Server-side dry run. Without the CRD installed yet, the objects are predicted from their manifests.
  diff_mode:
    support: full
    details: Values of identity Secrets are shown as C(<hidden>) or C(<hidden, changed>).
"""

EXAMPLES = r"""
# Fragments: the names, domain facts and vault_* variables are placeholders for your own.
- name: Credspecs for two applications, with RBAC and the portable identity for the CCG plugin
  wincontainers.gmsa.gmsa_credspec:
    domain: "{{ domain_facts }}"   # dns_name, dns_tree_name, netbios_name, sid, guid
    identity:
      username: gmsa-portable
      password: "{{ vault_gmsa_portable_password }}"
    credspecs:
      - account_name: WebApp01
        service_accounts:
          - {name: webapp, namespace: web}
        host_account_config:
          plugin_guid: "{REPLACE-WITH-YOUR-PLUGIN-CLSID}"   # placeholder, refused until replaced
          plugin_input: "SecretNamespace=${secret_namespace};SecretName=${secret_name}"
      - account_name: Reports$
        name: reports
        service_accounts:
          - {name: reports, namespace: reporting}
          - {name: reports-batch, namespace: reporting}

- name: Azure Key Vault plugin, spec also written to a file
  wincontainers.gmsa.gmsa_credspec:
    domain:
      dns_name: contoso.com
      netbios_name: CONTOSO
      sid: S-1-5-21-2126449477-2524075714-3094792973
      guid: 244818ae-87ca-4fcd-92ec-e79e5252348a
    credspecs:
      - account_name: WebApp01
        json_path: /srv/credspecs/webapp01.json
        host_account_config:
          plugin: azure_key_vault
          plugin_input: "ObjectId=00000000-0000-0000-0000-000000000000;SecretUri=https://vault.vault.azure.net/secrets/gmsa"

- name: A credential spec New-CredentialSpec wrote, checked against AD, with the plugin of a credspec AKS-HCI made
  wincontainers.gmsa.gmsa_credspec:
    domain: "{{ domain_facts }}"
    identity:
      username: gmsa-portable
      password: "{{ vault_gmsa_portable_password }}"
    credspecs:
      - account_name: WebApp01
        spec_file: files/webapp01.json        # New-CredentialSpec -AccountName WebApp01 -Path webapp01.json
        service_accounts:
          - {name: webapp, namespace: web}
        host_account_config:
          from_credspec: webapp01-akshci      # made by Add-AksHciGMSACredentialSpec
          plugin_input: "SecretNamespace=${secret_namespace};SecretName=${secret_name}"

- name: Remove a credspec and what was created with it
  wincontainers.gmsa.gmsa_credspec:
    state: absent
    credspecs:
      - account_name: WebApp01
"""

RETURN = r"""
credspecs:
  description: One entry per O(credspecs) item, in order.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Name of the C(GMSACredentialSpec) object.
      type: str
      sample: webapp01
    credspec:
      description: The credential spec (state=present).
      type: dict
      sample: {CmsPlugins: [ActiveDirectory], DomainJoinConfig: {MachineAccountName: WebApp01}}
    cluster_role:
      description: Name of the ClusterRole allowing C(use) on the object.
      type: str
      sample: gmsa-use-webapp01
    role_binding_namespaces:
      description: Namespaces that have a RoleBinding to that ClusterRole.
      type: list
      elements: str
      sample: [web]
    identity_secrets:
      description: Identity Secrets, as C(namespace/name).
      type: list
      elements: str
      sample: [web/gmsa-identity]
files:
  description: JSON files written (or removed with O(state=absent)) because their content differed.
  returned: when a file changed
  type: list
  elements: str
  sample: [/srv/credspecs/webapp01.json]
objects:
  description:
    - Every object of the task, with what happened to it, V(created), V(updated), V(unchanged), V(deleted) or V(kept) (not
      this collection's, left in place). When the task fails, also V(failed) and V(not attempted) (after the first
      failed write, no further write starts).
  returned: always
  type: list
  elements: dict
  sample:
    - {object: GMSACredentialSpec webapp01, action: created}
    - {object: Secret web/gmsa-identity, action: unchanged}
"""

import base64
import os
import re
import tempfile

from ansible_collections.wincontainers.gmsa.plugins.module_utils._credspec import CCG_PLUGIN_GUIDS, adopt_credspec, build_credspec, plugin_of, to_json
from ansible_collections.wincontainers.gmsa.plugins.module_utils.cluster import _namespaces
from ansible_collections.wincontainers.gmsa.plugins.module_utils.cluster._client import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    ApiError,
    Cluster,
    cluster_module,
    object_ref,
)
from ansible_collections.wincontainers.gmsa.plugins.module_utils.cluster._apply import (
    CREDSPEC_COMPONENT,
    CREDSPEC_GRANTS_SELECTOR,
    INSTANCE_LABEL,
    NAME_LABEL,
    Conflict,
    Reconciler,
    credspecs_with_grants,
    is_managed,
    lost_credspecs_message,
)
from ansible_collections.wincontainers.gmsa.plugins.module_utils._validation import (
    ValidationError,
    credspec_name_from_account,
    validate_dns_name,
    validate_k8s_label,
    validate_k8s_subdomain,
    validate_plugin_guid,
    validate_user_name,
)

DOMAIN_SPEC = dict(
    dns_name=dict(type="str", required=True),
    dns_tree_name=dict(type="str", aliases=["forest_name"]),
    netbios_name=dict(type="str", required=True),
    sid=dict(type="str", required=True),
    guid=dict(type="str", required=True),
    distinguished_name=dict(type="str"),
)
IDENTITY_SPEC = dict(
    username=dict(type="str", required=True),
    password=dict(type="str", required=True, no_log=True),
    domain=dict(type="str"),
)
ARGUMENT_SPEC = dict(
    state=dict(type="str", choices=["present", "absent"], default="present"),
    domain=dict(type="dict", options=DOMAIN_SPEC),
    identity=dict(type="dict", options=IDENTITY_SPEC),
    overwrite=dict(type="bool", default=False),
    prune=dict(type="bool", default=False),
    create_service_accounts=dict(type="bool", default=False),
    group=dict(type="str"),
    credspecs=dict(
        type="list",
        elements="dict",
        required=True,
        options=dict(
            account_name=dict(type="str", required=True),
            name=dict(type="str"),
            domain=dict(type="dict", options=DOMAIN_SPEC),
            additional_accounts=dict(
                type="list", elements="dict", default=[], options=dict(name=dict(type="str", required=True), domain=dict(type="str"))
            ),
            spec=dict(type="raw"),
            spec_file=dict(type="path"),
            host_account_config=dict(
                type="dict",
                options=dict(
                    plugin=dict(type="str", choices=sorted(CCG_PLUGIN_GUIDS)),
                    plugin_guid=dict(type="str"),
                    from_credspec=dict(type="str"),
                    plugin_input=dict(type="str"),
                ),
                mutually_exclusive=[("plugin", "plugin_guid", "from_credspec")],
                required_one_of=[("plugin", "plugin_guid", "from_credspec")],
            ),
            service_accounts=dict(
                type="list", elements="dict", default=[], options=dict(name=dict(type="str", required=True), namespace=dict(type="str", required=True))
            ),
            cluster_role_name=dict(type="str"),
            identity=dict(type="dict", options=IDENTITY_SPEC),
            identity_secret=dict(
                type="dict",
                default={},
                no_log=False,
                options=dict(name=dict(type="str", default="gmsa-identity"), namespaces=dict(type="list", elements="str")),
            ),
            json_path=dict(type="path"),
        ),
    ),
)

# The identity Secrets a credspec uses, so removing one credspec keeps Secrets another still needs.
SECRETS_ANNOTATION = "wincontainers.gmsa/identity-secrets"
# Which credspec owns an object: every credspec, ClusterRole and RoleBinding names it in INSTANCE_LABEL, so no
# credspec takes over, prunes or deletes another's (nor the webhook's, whose objects say gmsa-webhook).
# The set of credspecs one task manages (option group), so prune never reaches another task's credspecs.
GROUP_LABEL = "wincontainers.gmsa/credspec-group"
RBAC_DEFAULTS_LABEL = "kubernetes.io/bootstrapping"
_PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")


def _labels(component, instance=None):
    labels = {MANAGED_BY_LABEL: MANAGED_BY, NAME_LABEL: component}
    if instance:
        labels[INSTANCE_LABEL] = instance
    return labels


def _b64(text):
    return base64.b64encode(text.encode()).decode()


def render_plugin_input(template, secret_name, secret_namespaces, field):
    """Replace ``${secret_name}`` and ``${secret_namespace}`` in a PluginInput; other ``${...}`` are errors."""

    def value(match):
        placeholder = match.group(1)
        if placeholder == "secret_name":
            return secret_name
        if placeholder == "secret_namespace":
            if len(secret_namespaces) != 1:
                raise ValidationError(
                    field, f"uses ${{secret_namespace}} but the identity Secret goes to {len(secret_namespaces)} namespaces; give exactly one"
                )
            return secret_namespaces[0]
        raise ValidationError(field, f"unknown placeholder ${{{placeholder}}}; only ${{secret_name}} and ${{secret_namespace}} are replaced")

    return _PLACEHOLDER.sub(value, template)


def validate_identity(identity, field="identity"):
    """Check the identity's name and domain; the password is data, whatever it holds."""
    if identity:
        validate_user_name(identity["username"], f"{field}.username")
        if identity["domain"] is not None:
            validate_dns_name(identity["domain"], f"{field}.domain")


def validate_json_path(path, field):
    """A spec file goes into an existing directory, under a name without control characters, not over a directory."""
    if any(not char.isprintable() for char in path):
        raise ValidationError(field, f"{path!r} contains control characters")
    if os.path.isdir(path):
        raise ValidationError(field, f"{path} is a directory; give the path of the JSON file")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ValidationError(field, f"the directory {directory} does not exist")
    return path


def _domain_facts(domain):
    facts = dict(domain)
    facts["dns_tree_name"] = facts.get("dns_tree_name") or facts["dns_name"]
    return facts


def plan_entry(entry, index, params):
    """Validate one ``credspecs`` entry and return what it should create (no cluster access)."""
    field = f"credspecs[{index}]"
    try:
        name = validate_k8s_subdomain(entry["name"], "name") if entry["name"] else credspec_name_from_account(entry["account_name"], "account_name")
        role_name = validate_k8s_subdomain(entry["cluster_role_name"] or f"gmsa-use-{name}", "cluster_role_name")
        for position, account in enumerate(entry["service_accounts"]):
            validate_k8s_subdomain(account["name"], f"service_accounts[{position}].name")
            validate_k8s_label(account["namespace"], f"service_accounts[{position}].namespace")
        validate_identity(entry["identity"])
        identity = entry["identity"] or params["identity"]
        if entry["json_path"]:
            validate_json_path(entry["json_path"], "json_path")
        secret_name = validate_k8s_subdomain(entry["identity_secret"]["name"], "identity_secret.name")
        secret_namespaces = entry["identity_secret"]["namespaces"] or sorted({a["namespace"] for a in entry["service_accounts"]}) or ["default"]
        for position, namespace in enumerate(secret_namespaces):
            validate_k8s_label(namespace, f"identity_secret.namespaces[{position}]")
        if params["state"] == "absent":
            # Where the entry keeps its identity Secrets: what removal looks at when the credspec, which records
            # them, is gone already (the CRD deleted by hand, or a run stopped between the two deletions).
            secret_names = [(namespace, secret_name) for namespace in secret_namespaces]
            return {"name": name, "role_name": role_name, "json_path": entry["json_path"], "secret_names": secret_names}
        domain = entry["domain"] or params["domain"]
        if domain is None:
            raise ValidationError("domain", "is required: give the domain facts here or in the module's domain option")
        host_account_config = None
        if entry["host_account_config"]:
            config = entry["host_account_config"]
            if not config["plugin_input"]:
                raise ValidationError("host_account_config.plugin_input", "is required unless from_credspec gives it")
            host_account_config = {
                "plugin_guid": config["plugin_guid"] or CCG_PLUGIN_GUIDS[config["plugin"]],
                "plugin_input": render_plugin_input(config["plugin_input"], secret_name, secret_namespaces, "host_account_config.plugin_input"),
            }
        credspec = entry_credspec(entry, _domain_facts(domain), host_account_config)
    except ValidationError as error:
        raise error.within(field) from None
    return {
        "name": name,
        "role_name": role_name,
        "credspec": credspec,
        "service_accounts": entry["service_accounts"],
        "identity": identity and dict(identity, domain=identity.get("domain") or domain["dns_name"]),
        "secrets": [(namespace, secret_name) for namespace in secret_namespaces] if identity else [],
        "json_path": entry["json_path"],
        "group": params["group"],
    }


def entry_credspec(entry, domain, host_account_config):
    """The entry's credential spec: the one it brings (spec, spec_file) once checked against AD, or built from AD."""
    if entry["spec"] is None and not entry["spec_file"]:
        return build_credspec(domain, entry["account_name"], entry["additional_accounts"], host_account_config)
    if entry["spec"] is not None and entry["spec_file"]:
        raise ValidationError("spec", "and spec_file are mutually exclusive")
    if entry["additional_accounts"]:
        raise ValidationError("additional_accounts", "comes from the credential spec given in spec or spec_file; leave it out")
    if entry["spec_file"]:
        return adopt_credspec(read_spec_file(entry["spec_file"]), domain, entry["account_name"], host_account_config, "spec_file")
    return adopt_credspec(entry["spec"], domain, entry["account_name"], host_account_config, "spec")


def read_spec_file(path):
    """A credential spec file's text; New-CredentialSpec may write UTF-8 or UTF-16 (Windows PowerShell's Out-File)."""
    try:
        with open(path, "rb") as spec_file:
            data = spec_file.read()
    except OSError as error:
        raise ValidationError("spec_file", f"{path} cannot be read: {error.strerror}") from None
    try:
        return data.decode("utf-16") if data[:2] in (b"\xff\xfe", b"\xfe\xff") else data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValidationError("spec_file", f"{path} is neither UTF-8 nor UTF-16 text: {error.reason}") from None


def with_plugins_from_cluster(module, entries):
    """The entries, with each plugin named by from_credspec read from that GMSACredentialSpec (only then is the cluster read)."""
    cluster, resolved = None, []
    for index, entry in enumerate(entries):
        config = entry["host_account_config"]
        if not config or not config["from_credspec"]:
            resolved.append(entry)
            continue
        field = f"credspecs[{index}].host_account_config.from_credspec"
        name = validate_k8s_subdomain(config["from_credspec"], field)
        cluster = cluster or Cluster(module)
        live = cluster.get("GMSACredentialSpec", name)
        if live is None:
            raise ValidationError(field, f"there is no GMSACredentialSpec {name} in the cluster to take the plugin from")
        plugin = plugin_of(live.get("credspec") or {}, field)
        if plugin is None:
            raise ValidationError(field, f"GMSACredentialSpec {name} has no HostAccountConfig: it names no plugin")
        plugin_guid = validate_plugin_guid(plugin["plugin_guid"], f"{field} ({name}'s PluginGUID)")
        config = dict(config, from_credspec=None, plugin_guid=plugin_guid, plugin_input=config["plugin_input"] or plugin["plugin_input"])
        resolved.append(dict(entry, host_account_config=config))
    return resolved


def manifests(plan):
    """The objects of one planned entry: credspec, ClusterRole, RoleBindings, identity Secrets."""
    name, role_name = plan["name"], plan["role_name"]
    credspec_metadata = {"name": name, "labels": _labels(CREDSPEC_COMPONENT, name)}
    if plan["group"]:
        credspec_metadata["labels"][GROUP_LABEL] = plan["group"]
    if plan["secrets"]:
        credspec_metadata["annotations"] = {SECRETS_ANNOTATION: ",".join(f"{namespace}/{secret}" for namespace, secret in plan["secrets"])}
    objects = [
        {"apiVersion": "windows.k8s.io/v1", "kind": "GMSACredentialSpec", "metadata": credspec_metadata, "credspec": plan["credspec"]},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": role_name, "labels": _labels(CREDSPEC_COMPONENT, name)},
            "rules": [{"apiGroups": ["windows.k8s.io"], "resources": ["gmsacredentialspecs"], "verbs": ["use"], "resourceNames": [name]}],
        },
    ]
    by_namespace = {}
    for account in plan["service_accounts"]:
        by_namespace.setdefault(account["namespace"], []).append(account["name"])
    for namespace, accounts in sorted(by_namespace.items()):
        objects.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": role_name, "namespace": namespace, "labels": _labels(CREDSPEC_COMPONENT, name)},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role_name},
                "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace} for account in sorted(set(accounts))],
            }
        )
    identity = plan["identity"]
    for namespace, secret in plan["secrets"]:
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": secret, "namespace": namespace, "labels": _labels("gmsa-identity")},
                "type": "Opaque",
                "data": {"domain": _b64(identity["domain"]), "username": _b64(identity["username"]), "password": _b64(identity["password"])},
            }
        )
    return objects


def _owner(obj):
    """Who an object of this collection belongs to: (component, instance), e.g. ('gmsa-credspec', 'webapp01')."""
    labels = obj["metadata"].get("labels") or {}
    return labels.get(NAME_LABEL), labels.get(INSTANCE_LABEL)


def _by_owner(grants):
    """The ClusterRoles and RoleBindings of this collection's credspecs, by the name of the credspec that owns them."""
    owned = {}
    # RoleBindings first: what is removed goes in the reverse order of its creation.
    for grant in sorted(grants, key=lambda grant: grant["kind"] != "RoleBinding"):
        component, instance = _owner(grant)
        if is_managed(grant) and component == CREDSPEC_COMPONENT:
            owned.setdefault(instance, []).append(grant)
    return owned


def is_rbac_default(obj):
    """Whether the API server created the object (cluster-admin, edit, view...) and reconciles it at every start."""
    return bool(obj) and (obj["metadata"].get("labels") or {}).get(RBAC_DEFAULTS_LABEL) == "rbac-defaults"


def _conflict(live, desired):
    """Why applying ``desired`` over ``live`` needs overwrite=true, or None."""
    if live is None:
        return None
    if not is_managed(live):
        return "exists and was not created by this collection"
    if _owner(live) != _owner(desired):
        component, instance = _owner(live)
        return f"belongs to {component} {instance!r}" if instance else f"belongs to {component}"
    if desired["kind"] == "GMSACredentialSpec" and live.get("credspec") != desired["credspec"]:
        return "exists with a different credential spec"
    if desired["kind"] == "Secret" and (live.get("data") or {}) != desired["data"]:
        return "exists with a different identity"
    return None


def write_json(module, path, credspec):
    """Write the spec file when its content differs; return whether it did (or would)."""
    content = to_json(credspec)
    if os.path.exists(path):
        with open(path, encoding="utf-8") as current:
            if current.read() == content:
                return False
    if not module.check_mode:
        directory = os.path.dirname(os.path.abspath(path))
        handle, partial = tempfile.mkstemp(dir=directory, prefix=".credspec-")
        with os.fdopen(handle, "w", encoding="utf-8") as new:
            new.write(content)
        os.chmod(partial, 0o644)
        os.replace(partial, path)
    return True


def _secret_references(credspec):
    """The identity Secrets (``namespace/name``) a live credspec created by this collection says it uses."""
    if not is_managed(credspec):
        return set()
    return set(filter(None, (credspec["metadata"].get("annotations") or {}).get(SECRETS_ANNOTATION, "").split(",")))


def _stale(plan, grants, previous_secrets, keep_namespaces, secrets_in_use):
    """What ``plan``'s credspec had and no longer needs, found by its owner label in every namespace.

    ``grants`` are the live ClusterRoles and RoleBindings by owner (:func:`_by_owner`): those of this credspec go when
    they have another name than its ``role_name`` (renamed, or None: all) or, for RoleBindings, a namespace outside
    ``keep_namespaces``. Identity Secrets it used go unless ``secrets_in_use`` names them.
    """
    for grant in grants.get(plan["name"], ()):
        metadata = grant["metadata"]
        if metadata["name"] != plan["role_name"] or (grant["kind"] == "RoleBinding" and metadata["namespace"] not in keep_namespaces):
            yield grant
    for reference in sorted(previous_secrets - secrets_in_use):
        namespace, secret = reference.split("/", 1)
        yield {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": secret, "namespace": namespace, "labels": _labels("gmsa-identity")}}


def _removed(name, grants, credspecs, secrets_in_use, secrets_if_gone=frozenset()):
    """The credspec ``name`` and every grant labelled as its own; its identity Secrets unless still in use: those it
    records, or ``secrets_if_gone`` when it no longer exists."""
    secrets = _secret_references(credspecs[name]) if name in credspecs else set(secrets_if_gone)
    yield from _stale({"name": name, "role_name": None}, grants, secrets, set(), secrets_in_use)
    # Deleted only if it names itself as its owner; otherwise reported as kept.
    yield {"apiVersion": "windows.k8s.io/v1", "kind": "GMSACredentialSpec", "metadata": {"name": name, "labels": _labels(CREDSPEC_COMPONENT, name)}}


def ensure_present(module, cluster, reconciler, plans):
    desired = [obj for plan in plans for obj in manifests(plan)]
    if cluster.get("CustomResourceDefinition", "gmsacredentialspecs.windows.k8s.io") is None:
        if not module.check_mode:
            message = "the GMSACredentialSpec CRD (gmsacredentialspecs.windows.k8s.io) is not installed; install it with wincontainers.gmsa.gmsa_webhook"
            lost = credspecs_with_grants(cluster)
            if lost:
                message += f"; {lost_credspecs_message(lost)}: run this task again once the CRD is back to recreate them"
            raise Conflict(message)
        module.warn("the GMSACredentialSpec CRD is not installed; check mode predicts the credspecs from their manifests")
    credspecs = {item["metadata"]["name"]: item for item in reconciler.prefetch("GMSACredentialSpec")}
    grants = _by_owner(reconciler.prefetch("ClusterRole") + reconciler.prefetch("RoleBinding"))
    # Secrets are not listed whole (a namespace may hold many, with their data): the collection's own in each
    # namespace, then what is still unknown (first runs, takeovers) by name across namespaces, or by namespace
    # (metadata only) when that takes fewer requests.
    secrets = [obj for obj in desired if obj["kind"] == "Secret"]
    for namespace in sorted({obj["metadata"]["namespace"] for obj in secrets}):
        reconciler.prefetch("Secret", namespace, label_selector=f"{MANAGED_BY_LABEL}={MANAGED_BY}")
    by_name, namespaces = {}, set()
    for obj in secrets:
        if not reconciler.known(obj):
            by_name.setdefault(obj["metadata"]["name"], []).append(obj)
            namespaces.add(obj["metadata"]["namespace"])
    if len(namespaces) < len(by_name):
        for namespace in sorted(namespaces):
            reconciler.prefetch("Secret", namespace, metadata_only=True)
    else:
        for secret_name, named in sorted(by_name.items()):
            reconciler.prefetch("Secret", expect=named, field_selector=f"metadata.name={secret_name}")

    protected = [object_ref(obj) for obj in desired if is_rbac_default(reconciler.live(obj))]
    if protected:
        raise Conflict(
            f"refusing to replace {', '.join(protected)}: the API server's default RBAC, which it restores at every start; choose another cluster_role_name"
        )
    if not module.params["overwrite"]:
        conflicts = [
            f"{object_ref(obj)} {reason}"
            for obj in desired
            for reason in [_conflict(reconciler.live(obj), obj)]
            if reason
        ]
        if conflicts:
            raise Conflict("refusing to replace (set overwrite=true to do so), nothing was changed: " + "; ".join(conflicts))

    # RoleBindings last: without the bind verb, the API server allows a binding only to a role that exists and grants
    # nothing more than the writer holds (kubernetes pkg/registry/rbac/rolebinding/policybased/storage.go).
    reconciler.apply_all([obj for obj in desired if obj["kind"] != "RoleBinding"], [obj for obj in desired if obj["kind"] == "RoleBinding"])
    # What an entry no longer names (a namespace dropped, a Secret renamed) goes, unless another credspec uses it;
    # with prune, so do the credspecs no entry names (renamed or removed entries).
    planned = {plan["name"] for plan in plans}
    group = module.params["group"] if module.params["prune"] else None
    pruned = sorted(
        name for name, item in credspecs.items() if group and name not in planned and is_managed(item) and item["metadata"]["labels"].get(GROUP_LABEL) == group
    )
    in_use = {ref for name, item in credspecs.items() if name not in planned and name not in pruned for ref in _secret_references(item)}
    in_use |= {f"{namespace}/{secret}" for plan in plans for namespace, secret in plan["secrets"]}
    stale = [
        obj
        for plan in plans
        for obj in _stale(plan, grants, _secret_references(credspecs.get(plan["name"])), {account["namespace"] for account in plan["service_accounts"]}, in_use)
    ]
    reconciler.delete_all(stale + [obj for name in pruned for obj in _removed(name, grants, credspecs, in_use)])

    files_changed = [plan["json_path"] for plan in plans if plan["json_path"] and write_json(module, plan["json_path"], plan["credspec"])]
    return [
        {
            "name": plan["name"],
            "credspec": plan["credspec"],
            "cluster_role": plan["role_name"],
            "role_binding_namespaces": sorted({account["namespace"] for account in plan["service_accounts"]}),
            "identity_secrets": [f"{namespace}/{secret}" for namespace, secret in plan["secrets"]],
        }
        for plan in plans
    ], files_changed


def _secrets_in_use(reconciler, removed):
    """The identity Secrets that the live credspecs other than ``removed`` use."""
    credspecs = reconciler.prefetch("GMSACredentialSpec")
    return {ref for item in credspecs if item["metadata"]["name"] not in removed for ref in _secret_references(item)}


def ensure_absent(module, cluster, reconciler, plans):
    credspecs = {item["metadata"]["name"]: item for item in reconciler.prefetch("GMSACredentialSpec")}
    removed = {plan["name"] for plan in plans}
    grants = _by_owner([obj for kind in ("ClusterRole", "RoleBinding") for obj in reconciler.prefetch(kind, label_selector=CREDSPEC_GRANTS_SELECTOR)])
    results = []
    files_changed = []
    doomed = [
        obj for plan in plans
        for obj in _removed(plan["name"], grants, credspecs, set(), {f"{namespace}/{secret}" for namespace, secret in plan["secret_names"]})
    ]
    reconciler.delete_all([obj for obj in doomed if obj["kind"] != "Secret"])
    # The identity Secrets go only after the credspecs, judged by a second reading: two runs removing the credspecs of
    # one Secret at once would each see the other's still there and keep it. The later reading of the two sees both gone.
    in_use = _secrets_in_use(reconciler, removed)
    reconciler.delete_all([obj for obj in doomed if obj["kind"] == "Secret" and f"{obj['metadata']['namespace']}/{obj['metadata']['name']}" not in in_use])
    for plan in plans:
        if plan["json_path"] and os.path.exists(plan["json_path"]):
            files_changed.append(plan["json_path"])
            if not module.check_mode:
                os.remove(plan["json_path"])
        results.append({"name": plan["name"], "cluster_role": plan["role_name"]})
    return results, files_changed


def main():
    module = cluster_module(ARGUMENT_SPEC, required_if=[("prune", True, ("group",))])
    params = module.params
    try:
        if params["group"] is not None:
            validate_k8s_label(params["group"], "group")
        validate_identity(params["identity"])
        plans = [plan_entry(entry, index, params) for index, entry in enumerate(with_plugins_from_cluster(module, params["credspecs"]))]
        for index, plan in enumerate(plans if params["state"] == "present" else ()):
            if not plan["service_accounts"]:
                # Never silently: Add-AksHciGMSACredentialSpec would have bound default/default (-serviceAccount's default).
                module.warn(f"credspecs[{index}]: no service_accounts, so no pod may use GMSACredentialSpec {plan['name']}; "
                            "name them (Add-AksHciGMSACredentialSpec binds the service account default of namespace default)")
        for key, what, option in (("name", "GMSACredentialSpec", "name"), ("role_name", "ClusterRole", "cluster_role_name")):
            names = [plan[key] for plan in plans]
            duplicates = sorted({name for name in names if names.count(name) > 1})
            if duplicates:
                raise ValidationError("credspecs", f"several entries give the {what} name(s) {', '.join(duplicates)}; set {option} to tell them apart")
        if params["state"] == "present":
            secrets = {}
            for plan in plans:
                for key in plan["secrets"]:
                    if secrets.setdefault(key, plan["identity"]) != plan["identity"]:
                        raise ValidationError("credspecs", f"identity Secret {key[0]}/{key[1]} is given different identities by different entries")
    except ValidationError as error:
        module.fail_json(msg=str(error))

    reconciler = None
    try:
        cluster = Cluster(module)
        reconciler = Reconciler(cluster, module.check_mode, keep_diff=module._diff)
        if params["create_service_accounts"] and params["state"] == "present":
            _namespaces.create_missing(reconciler, [account for plan in plans for account in plan["service_accounts"]])
        action = ensure_present if params["state"] == "present" else ensure_absent
        results, files_changed = action(module, cluster, reconciler, plans)
    except (ApiError, Conflict) as error:
        module.fail_json(msg=str(error), changed=bool(reconciler and reconciler.changed), objects=reconciler.summary() if reconciler else [])

    for warning in reconciler.warnings():
        module.warn(warning)
    result = dict(reconciler.result(module._diff), credspecs=results)
    if files_changed:
        result.update(changed=True, files=files_changed)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
