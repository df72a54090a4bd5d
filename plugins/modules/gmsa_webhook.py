#!/usr/bin/python
# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: gmsa_webhook
short_description: Install, upgrade, renew or remove the windows-gmsa admission webhook and its CRD
version_added: 0.1.0
description:
  - Installs the C(GMSACredentialSpec) CRD (C(windows.k8s.io), v1 stored, v1alpha1 still served) and the
    L(windows-gmsa admission webhook,https://github.com/kubernetes-sigs/windows-gmsa) that inlines credential
    specs into Windows pods and refuses pods whose service account may not C(use) the credspec they name.
  - Does what C(Install-AksHciGMSAWebhook) and C(Uninstall-AksHciGMSAWebhook) do, on any conformant cluster.
  - Upgrades in place. The CRD is never deleted and recreated, so existing C(GMSACredentialSpec) objects survive
    (the upstream deploy script deletes them).
  - TLS does not depend on the CSR API. A private CA, kept in a Secret and reused on every run, signs a server
    certificate for the Service's DNS names. The server certificate is reissued when it enters its renewal
    window; the C(caBundle) stays the same. As alternatives, O(tls.mode=cert_manager) lets cert-manager issue
    and inject the certificates, and O(tls.mode=provided) uses a Secret and CA bundle you provide.
  - A renewal restarts the webhook pods. The webhook reads its certificate when it starts; upstream's
    C(--cert-reload) misses every renewal after the first once the kubelet has swapped the Secret's files
    (upstream issue 176), so it is not used. Instead the pod template carries the SHA-256 fingerprint of the
    served certificate (annotation C(wincontainers.gmsa/serving-certificate-sha256)), and a new certificate
    rolls the Deployment one pod at a time (C(maxSurge=1), C(maxUnavailable=0), readiness on C(/health)), so
    admission stays available throughout. One limit remains, upstream's. A request in flight on an old pod when
    it exits fails with C(EOF) or a broken pipe (with O(failure_policy=Fail), that pod creation is refused and
    its controller retries it). The webhook exits on SIGTERM without draining (v0.13.0 C(main.go) handles no
    signal), and the API server keeps its connections to the old pod and retries neither (C(DefaultShouldRetry)
    in C(k8s.io/apiserver/pkg/util/webhook)). The C(preStop) sleep only takes the old pod out of the Service
    before then.
  - With O(tls.mode=cert_manager) the module reads the certificate cert-manager stored on each run and rolls
    the pods when it changed. cert-manager renews on its own schedule, between runs; the pods keep serving the
    old certificate until the next run. Run the module periodically (more often than O(tls.renew_before_days)),
    or install a reloader that restarts Deployments whose Secrets change, for example stakater/reloader.
  - The webhook configurations are registered only once the Deployment is Available, so pod admission is never
    pointed at a webhook that is not running. Then the module waits until the webhook answers admission requests.
  - All writes are server-side apply with the field manager C(wincontainers.gmsa). It takes over the fields that
    other managers set, for example with C(kubectl edit). Check mode is a server-side dry run. C(--diff) shows the
    objects with Secret values hidden.
  - Every object carries the label C(app.kubernetes.io/managed-by=wincontainers.gmsa).
    O(state=absent) deletes only objects with that label.
  - Never takes over another installation. When an object of the install's names exists that this install did not
    create (from upstream's C(deploy-gmsa-webhook.sh), its Helm chart, C(Install-AksHciGMSAWebhook), or this collection
    in another namespace), the module fails before changing anything and names the objects. Remove that installation
    first, keeping the CRD (it holds the C(GMSACredentialSpec) objects), choose another O(name) and O(namespace), or
    migrate it with O(adopt=true).
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
      - V(present) installs or upgrades the webhook and the CRD, and renews certificates that need it.
      - V(absent) removes the webhook configurations first, then everything else the module created. The CRD
        stays unless O(remove_crd=true).
    type: str
    choices: [present, absent]
    default: present
  name:
    description:
      - Name of the Deployment, Service, ServiceAccount, ClusterRole and binding, and webhook configurations.
      - Also the prefix of the C(-ca) and C(-tls) Secrets. It must be an RFC 1035 label.
    type: str
    default: gmsa-webhook
  namespace:
    description:
      - Namespace of the webhook. When missing, it is created, labelled so that the webhooks skip it, held to the
        C(restricted) Pod Security level, and deleted again by O(state=absent).
      - A namespace that already exists (C(kube-system), one you made) is used as it is. It is neither labelled nor
        deleted, and the webhooks skip it by name.
      - When the namespace is still terminating (an uninstall just before), the module waits up to O(wait_timeout)
        for it to be gone, even with O(wait=false) or in check mode.
    type: str
    default: gmsa-webhook
  image:
    description:
      - Container image of the webhook.
    type: str
    default: registry.k8s.io/gmsa-webhook/k8s-gmsa-webhook:v0.13.0
  image_registry:
    description:
      - Registry (and optional path) that replaces the registry part of O(image), for air-gapped clusters that
        mirror C(registry.k8s.io). For example V(registry.example.com/mirror).
    type: str
  image_pull_policy:
    description: Pull policy of the webhook container.
    type: str
    choices: [Always, IfNotPresent, Never]
    default: IfNotPresent
  image_pull_secrets:
    description: Names of Secrets in O(namespace) used to pull the image.
    type: list
    elements: str
    default: []
  replicas:
    description:
      - Number of webhook pods. Two or more keep admission working while a node drains. A PodDisruptionBudget
        allows one pod to be evicted at a time (C(maxUnavailable=1); C(minAvailable=1) would block every drain with
        one replica).
      - Rollouts (renewals, upgrades) start a new pod and wait until it is ready before stopping an old one. On
        Kubernetes 1.30 and later a stopping pod keeps serving for 5 seconds (a C(preStop) sleep), so the API server
        stops calling it first; before 1.30, a roll may fail the few admissions that reach a pod as it stops.
    type: int
    default: 2
  node_selector:
    description:
      - Extra node labels for the webhook pods. C(kubernetes.io/os=linux) is always set.
    type: dict
    default: {}
  tolerations:
    description: Tolerations of the webhook pods, in Kubernetes form.
    type: list
    elements: dict
    default: []
  affinity:
    description:
      - Affinity of the webhook pods, in Kubernetes form (C(nodeAffinity), C(podAffinity), C(podAntiAffinity)).
      - When omitted, the pods prefer different nodes, so one node going down does not take admission with it.
    type: dict
  priority_class_name:
    description:
      - PriorityClass of the webhook pods, for example V(system-cluster-critical), so that admission is not what
        gets preempted when nodes are full.
    type: str
  qps:
    description:
      - Queries per second the webhook's client may send to the API server (environment C(QPS) of the webhook).
      - The default is the Helm chart's. The binary's own default (5) throttles bursts of pod creation.
    type: float
    default: 30
  burst:
    description: Burst of the webhook's API client (environment C(BURST)); the chart's default.
    type: int
    default: 50
  view_aggregation:
    description:
      - Create a ClusterRole C(<name>-viewer) aggregated into the built-in C(view) role, so users bound to C(view)
        with a ClusterRoleBinding may also read C(GMSACredentialSpec) objects (the chart's C(viewerRole)). Credspecs
        are cluster-scoped, so a RoleBinding to C(view) in one namespace does not reach them. They hold no secret, but
        they name the domain and the gMSA.
    type: bool
    default: false
  resources:
    description: Resource requests and limits of the webhook container, in Kubernetes form.
    type: dict
    default:
      requests: {cpu: 10m, memory: 32Mi}
      limits: {memory: 128Mi}
  log_level:
    description: Log level of the webhook.
    type: str
    choices: [panic, fatal, error, warn, info, debug, trace]
    default: info
  random_hostname:
    description:
      - Make the webhook give each pod that uses a gMSA a random hostname (C(RANDOM_HOSTNAME)). Enable this
        when several replicas of a workload share one gMSA, or they lose the trust relationship with the domain.
    type: bool
    default: false
  failure_policy:
    description:
      - What the API server does with a pod when the webhook cannot be reached. V(Fail) refuses the pod, which
        is safe. V(Ignore) admits the pod without gMSA checks.
    type: str
    choices: [Fail, Ignore]
    default: Fail
  timeout_seconds:
    description: How long the API server waits for the webhook per admission request (1-30 seconds).
    type: int
    default: 10
  excluded_namespaces:
    description:
      - Namespaces the webhooks never intercept, so a webhook outage cannot block their pods. O(namespace) is always
        excluded. Any namespace can also opt out with the label C(windows.k8s.io/disabled=true), or with
        C(gmsa-webhook=disabled), the label of upstream's deploy script.
    type: list
    elements: str
    default: [kube-system]
  tls:
    description: Certificates of the webhook.
    type: dict
    default: {}
    suboptions:
      mode:
        description:
          - V(self_signed) makes a CA and a server certificate locally with the C(cryptography) library.
          - V(cert_manager) creates cert-manager Issuers and Certificates. cert-manager then renews the certificate
            and injects the C(caBundle). cert-manager must already be installed.
          - V(provided) serves the certificate of the Secret O(tls.secret_name), which you create and renew, trusted
            through O(tls.ca_bundle). Each run checks it and rolls the pods when it changed. When you change CA,
            keep the old CA in O(tls.ca_bundle) until every pod serves the new certificate.
        type: str
        choices: [self_signed, cert_manager, provided]
        default: self_signed
      validity_days:
        description: Validity of the server certificate (the Certificate's C(duration) with V(cert_manager)).
        type: int
        default: 365
      renew_before_days:
        description:
          - Reissue the server certificate when it expires in fewer days than this (the Certificate's C(renewBefore)
            with V(cert_manager), where it must be smaller than O(tls.validity_days)).
          - With V(self_signed), a value not smaller than O(tls.validity_days) reissues it on every run.
        type: int
        default: 30
      ca_validity_days:
        description:
          - Validity of a new CA (V(self_signed), and the CA Certificate's C(duration) with V(cert_manager)). A CA is
            replaced only when it enters the renewal window. The previous CA then stays in the C(caBundle) until it
            expires, so the certificates in use stay trusted during the change.
        type: int
        default: 3650
      private_key_rotation_policy:
        description:
          - With V(cert_manager), whether cert-manager makes a new private key at each renewal (V(Always), the
            default of cert-manager 1.18 and later) or keeps it (V(Never)). V(self_signed) always makes a new key.
        type: str
        choices: [Always, Never]
        default: Always
      secret_name:
        description:
          - With V(provided), the C(kubernetes.io/tls) Secret in O(namespace) holding C(tls.crt) and C(tls.key). Its
            certificate must name C(<name>.<namespace>.svc) and be issued by a certificate of O(tls.ca_bundle).
          - The Secret is yours. The module reads it but never changes or deletes it.
        type: str
      ca_bundle:
        description: With V(provided), the PEM certificates the API server trusts for the webhook (the C(caBundle)).
        type: str
  adopt:
    description:
      - Migrate an installation of the webhook that upstream's C(deploy-gmsa-webhook.sh), its Helm chart or
        C(Install-AksHciGMSAWebhook) made under the same O(name) and O(namespace), keeping admission working
        throughout. Credspecs and the CRD are never deleted.
      - The hand-over trusts both CAs in the webhook configurations, starts this install's pods beside the other
        ones (as Deployment C(<name>-handover), because a Deployment's selector cannot change), points the Service
        at them, deletes the other Deployment and creates this install's in its place, then removes the stand-in and
        the other CA. The other install's objects of the same names are replaced in place (their uid stays).
      - What the other install made under other names (its TLS Secret, a differently named ClusterRoleBinding of its
        service account) is left in place and named in a warning. A namespace the other install made is used as it
        is and not deleted by O(state=absent). After adopting a Helm release, delete the release's record
        (C(kubectl delete secret -n <namespace> -l owner=helm,name=<release>)) and do not run C(helm uninstall), which
        would delete the adopted objects.
      - Needs O(wait=true), and O(tls.mode) V(self_signed) or V(provided). Refused, before anything changes, when an
        object of the install's names is a Secret, or belongs to this collection's install in another namespace.
      - A webhook answers at every step, but the other install's pods stop at once when their Deployment goes
        (upstream's manifests have no C(preStop) hook, and the binary exits on C(SIGTERM)), so an admission request in
        flight to one of them at that moment fails with C(EOF) or a broken pipe. In the lab, 1 of about 150 pod creations during a
        hand-over did. Migrate at a quiet time, or retry pod creations that fail so.
      - Check mode validates the new trust and lists what would be adopted, without rehearsing the hand-over.
    type: bool
    default: false
  remove_crd:
    description:
      - With O(state=absent), also delete the C(GMSACredentialSpec) CRD. The module refuses while C(GMSACredentialSpec)
        objects exist, because deleting the CRD deletes them all, unless O(force=true).
    type: bool
    default: false
  force:
    description: With O(remove_crd=true), delete the CRD even though C(GMSACredentialSpec) objects exist, and with them.
    type: bool
    default: false
  wait:
    description:
      - Wait until the Deployment is Available, the Service sends requests only to pods serving the current
        certificate (old pods still shutting down no longer receive any), and the webhook answers admission
        requests. Not done in check mode.
      - With O(state=absent), wait until the namespace the module created is gone, so an install right after works.
      - With O(tls.mode=cert_manager), a first install also waits for cert-manager to issue the certificate.
      - With V(false), a first install registers the webhook configurations at once, before the webhook runs.
        With O(failure_policy=Fail), pods are then refused until it does.
    type: bool
    default: true
  wait_timeout:
    description:
      - Seconds each wait of O(wait) may take. A run waits in turn for the namespace to go, the certificate, the
        Deployment, the Service's traffic and admission, each within its own O(wait_timeout).
      - A wait ends at most one request to the API server (30 seconds at most) after its O(wait_timeout).
    type: int
    default: 300
  probe_namespace:
    description:
      - Namespace in which a pod is created as a server-side dry run to check that the webhook answers admission.
        The pod names a credspec that does not exist, so only a working webhook can refuse it. Nothing is stored.
      - Choose a namespace that no other gMSA webhook install intercepts. Another install's webhook refuses the
        probe in the same words, and may be called first, so the probe would pass without reaching this install.
    type: str
    default: default
  opt_out_policy:
    description:
      - Also install (with O(state=present)) or remove (with O(state=absent)) the C(ValidatingAdmissionPolicy) that lets
        only named groups opt a namespace out of the webhook's checks, in the same task, as
        M(wincontainers.gmsa.gmsa_admission_policy) would. The webhook skips namespaces labelled
        C(windows.k8s.io/disabled=true), so whoever may label a namespace may otherwise turn its checks off.
      - Where the API server does not serve C(admissionregistration.k8s.io/v1) C(ValidatingAdmissionPolicy) (before
        Kubernetes 1.30), found out by API discovery, nothing is changed and the module warns, unless
        O(opt_out_policy.require_support=true).
      - When omitted, no policy is installed or removed.
    type: dict
    suboptions:
      name:
        description: Name of the policy and of its binding. Default C(<name>-opt-out-label), one per install.
        type: str
      allowed_groups:
        description: As O(wincontainers.gmsa.gmsa_admission_policy#module:allowed_groups).
        type: list
        elements: str
        default: [system:masters]
      require_support:
        description: As O(wincontainers.gmsa.gmsa_admission_policy#module:require_support).
        type: bool
        default: false
notes:
  - Runs on the controller. Needs the Python libraries C(kubernetes) and C(cryptography).
  - The lab of this collection runs the real webhook binary. It cannot start Windows containers, so admission is
    verified there, but a gMSA logon inside a pod is not.
seealso:
  - module: wincontainers.gmsa.gmsa_credspec
  - name: windows-gmsa webhook
    description: Upstream project of the webhook.
    link: https://github.com/kubernetes-sigs/windows-gmsa
requirements:
  - kubernetes >= 24.2.0
  - cryptography >= 42.0.0
attributes:
  check_mode:
    support: full
    details: Server-side dry run. Objects in a namespace this run would create are predicted from their manifests.
  diff_mode:
    support: full
    details: Secret values (TLS keys) are shown as C(<hidden>) or C(<hidden, changed>).
"""

EXAMPLES = r"""
# Fragments: the names, domain facts and vault_* variables are placeholders for your own.
- name: Install the gMSA webhook with defaults
  wincontainers.gmsa.gmsa_webhook:
    kubeconfig: ~/.kube/config

- name: Air-gapped cluster, three replicas, tolerate a control-plane taint
  wincontainers.gmsa.gmsa_webhook:
    image_registry: registry.example.com/k8s
    replicas: 3
    tolerations:
      - key: node-role.kubernetes.io/control-plane
        operator: Exists
        effect: NoSchedule

- name: Let cert-manager handle the certificates, renewing 60 days before a 1-year certificate expires
  wincontainers.gmsa.gmsa_webhook:
    tls:
      mode: cert_manager
      validity_days: 365
      renew_before_days: 60

- name: Serve a certificate from your own PKI
  wincontainers.gmsa.gmsa_webhook:
    namespace: gmsa-system  # must exist already, with the Secret in it
    tls:
      mode: provided
      secret_name: gmsa-webhook-serving
      ca_bundle: "{{ lookup('ansible.builtin.file', 'pki/issuing-ca.pem') }}"

- name: Critical priority on system nodes, a faster API client, credspecs visible to namespace viewers
  wincontainers.gmsa.gmsa_webhook:
    priority_class_name: system-cluster-critical
    affinity:
      nodeAffinity:
        requiredDuringSchedulingIgnoredDuringExecution:
          nodeSelectorTerms:
            - matchExpressions:
                - {key: node-role.kubernetes.io/system, operator: Exists}
    qps: 50
    burst: 100
    view_aggregation: true

- name: Migrate the install that deploy-gmsa-webhook.sh made, without an admission outage
  wincontainers.gmsa.gmsa_webhook:
    name: gmsa-webhook
    namespace: gmsa-webhook
    adopt: true

- name: Uninstall the webhook and keep the CRD and credspecs
  wincontainers.gmsa.gmsa_webhook:
    state: absent

- name: Uninstall everything, including the CRD (refused while credspecs exist)
  wincontainers.gmsa.gmsa_webhook:
    state: absent
    remove_crd: true
"""

RETURN = r"""
opt_out_policy:
  description:
    - The opt-out label policy of O(opt_out_policy); its objects are listed in RV(objects) with the webhook's.
  returned: when O(opt_out_policy) is given and the task succeeded
  type: dict
  contains:
    name:
      description: Name of the policy and its binding.
      type: str
      sample: gmsa-webhook-opt-out-label
    supported:
      description: Whether the API server serves C(ValidatingAdmissionPolicy) v1; nothing is changed when it does not.
      type: bool
      sample: true
    labels:
      description: The namespace labels the policy guards.
      type: list
      elements: str
      sample: [windows.k8s.io/disabled, gmsa-webhook]
image:
  description: Image the webhook Deployment runs.
  returned: state=present
  type: str
  sample: registry.k8s.io/gmsa-webhook/k8s-gmsa-webhook:v0.13.0
ready_replicas:
  description: Ready webhook pods when the module finished (0 in check mode).
  returned: state=present
  type: int
  sample: 2
certificate:
  description: The server certificate.
  returned: state=present and tls.mode=self_signed
  type: dict
  contains:
    not_after:
      description: Expiry of the server certificate (UTC, ISO 8601).
      type: str
      sample: "2027-11-28T23:10:04+00:00"
    ca_not_after:
      description: Expiry of the CA (UTC, ISO 8601).
      type: str
      sample: "2036-11-26T23:10:04+00:00"
    renewed:
      description: Whether this run issued a new server certificate.
      type: bool
      sample: false
    reason:
      description: Why the certificate was issued. Null when it was kept.
      type: str
      sample: the server certificate expires on 2026-12-10T10:00:00+00:00, within the renewal window
objects:
  description:
    - Every object handled, in order, with what happened to it. C(action) is V(created), V(updated), V(unchanged),
      V(deleted), V(kept) (not this collection's, left in place) or V(adopted) (another install's, replaced by this
      install's with O(adopt=true)).
  returned: always
  type: list
  elements: dict
  sample:
    - {object: CustomResourceDefinition gmsacredentialspecs.windows.k8s.io, action: unchanged}
    - {object: Deployment gmsa-webhook/gmsa-webhook, action: updated}
serving_certificate_sha256:
  description:
    - SHA-256 fingerprint of the certificate the webhook pods serve once rolled out, as on their pod template.
    - Null when cert-manager has not issued it yet.
  returned: state=present
  type: str
  sample: 3f1c...e9a0
admission:
  description: How the webhook proved it answers admission. Null when not waited for.
  returned: state=present
  type: str
  sample: the webhook refused a pod naming a missing credspec
"""

import base64
import dataclasses
import datetime
import re

from ansible.module_utils.basic import missing_required_lib
from ansible_collections.wincontainers.gmsa.plugins.module_utils import _tls
from ansible_collections.wincontainers.gmsa.plugins.module_utils.cluster import _admission_policy
from ansible_collections.wincontainers.gmsa.plugins.module_utils.cluster import _webhook_manifests as manifests
from ansible_collections.wincontainers.gmsa.plugins.module_utils.cluster._client import MANAGED_BY_LABEL, ApiError, Cluster, cluster_module, object_ref
from ansible_collections.wincontainers.gmsa.plugins.module_utils.cluster._apply import (
    Conflict,
    Reconciler,
    credspecs_with_grants,
    is_managed,
    lost_credspecs_message,
)
from ansible_collections.wincontainers.gmsa.plugins.module_utils._validation import ValidationError, validate_k8s_label, validate_k8s_subdomain
from ansible_collections.wincontainers.gmsa.plugins.module_utils.cluster._waiter import (
    WaitTimeout,
    admission_status,
    deployment_status,
    endpoints_status,
    namespaces_gone,
    wait_for,
)

ARGUMENT_SPEC = dict(
    state=dict(type="str", choices=["present", "absent"], default="present"),
    name=dict(type="str", default="gmsa-webhook"),
    namespace=dict(type="str", default="gmsa-webhook"),
    image=dict(type="str", default=manifests.DEFAULT_IMAGE),
    image_registry=dict(type="str"),
    image_pull_policy=dict(type="str", choices=["Always", "IfNotPresent", "Never"], default="IfNotPresent"),
    image_pull_secrets=dict(type="list", elements="str", default=[], no_log=False),
    replicas=dict(type="int", default=2),
    node_selector=dict(type="dict", default={}),
    tolerations=dict(type="list", elements="dict", default=[]),
    affinity=dict(type="dict"),
    priority_class_name=dict(type="str"),
    qps=dict(type="float", default=30.0),
    burst=dict(type="int", default=50),
    view_aggregation=dict(type="bool", default=False),
    resources=dict(type="dict", default=manifests.DEFAULT_RESOURCES),
    log_level=dict(type="str", choices=["panic", "fatal", "error", "warn", "info", "debug", "trace"], default="info"),
    random_hostname=dict(type="bool", default=False),
    failure_policy=dict(type="str", choices=["Fail", "Ignore"], default="Fail"),
    timeout_seconds=dict(type="int", default=10),
    excluded_namespaces=dict(type="list", elements="str", default=["kube-system"]),
    tls=dict(
        type="dict",
        default={},
        options=dict(
            mode=dict(type="str", choices=["self_signed", "cert_manager", "provided"], default="self_signed"),
            validity_days=dict(type="int", default=365),
            renew_before_days=dict(type="int", default=30),
            ca_validity_days=dict(type="int", default=3650),
            private_key_rotation_policy=dict(type="str", choices=["Always", "Never"], default="Always"),
            secret_name=dict(type="str"),
            ca_bundle=dict(type="str"),
        ),
        required_if=[("mode", "provided", ("secret_name", "ca_bundle"))],
    ),
    adopt=dict(type="bool", default=False),
    remove_crd=dict(type="bool", default=False),
    force=dict(type="bool", default=False),
    wait=dict(type="bool", default=True),
    wait_timeout=dict(type="int", default=300),
    probe_namespace=dict(type="str", default="default"),
    opt_out_policy=dict(
        type="dict",
        options=dict(
            name=dict(type="str"),
            allowed_groups=dict(type="list", elements="str", default=_admission_policy.DEFAULT_ALLOWED_GROUPS),
            require_support=dict(type="bool", default=False),
        ),
    ),
)

_RFC1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")


def image_reference(image, registry):
    """``image`` with its registry replaced by ``registry`` (the first path part counts as a registry when it has a dot, colon or is localhost)."""
    if not registry:
        return image
    first, separator, rest = image.partition("/")
    repository = rest if separator and ("." in first or ":" in first or first == "localhost") else image
    return f"{registry.rstrip('/')}/{repository}"


_AFFINITY_FIELDS = {"nodeAffinity", "podAffinity", "podAntiAffinity"}
_TOLERATION_FIELDS = {"key", "operator", "value", "effect", "tolerationSeconds"}
_TOLERATION_OPERATORS = ("Exists", "Equal")
_TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def _validate_pod_placement(params):
    """Check the options passed to the pod spec as they are, so a typo fails before anything is applied."""
    for key, value in params["node_selector"].items():
        if not isinstance(value, str):
            raise ValidationError(f"node_selector.{key}", f"must be a string (a label value), got {type(value).__name__}")
    for index, toleration in enumerate(params["tolerations"]):
        field = f"tolerations[{index}]"
        unknown = sorted(set(toleration) - _TOLERATION_FIELDS)
        if unknown:
            raise ValidationError(field, f"unknown field(s) {', '.join(unknown)}; a toleration has {', '.join(sorted(_TOLERATION_FIELDS))}")
        if toleration.get("operator", "Equal") not in _TOLERATION_OPERATORS:
            raise ValidationError(f"{field}.operator", f"must be one of {', '.join(_TOLERATION_OPERATORS)}")
        if toleration.get("effect") not in (None, "", *_TAINT_EFFECTS):
            raise ValidationError(f"{field}.effect", f"must be one of {', '.join(_TAINT_EFFECTS)}")
    for key, quantities in params["resources"].items():
        if key not in ("requests", "limits") or not isinstance(quantities, dict):
            raise ValidationError(f"resources.{key}", "resources take requests and limits, each a mapping of resource name to quantity")
    unknown = sorted(set(params["affinity"] or {}) - _AFFINITY_FIELDS)
    if unknown:
        raise ValidationError("affinity", f"unknown field(s) {', '.join(unknown)}; an affinity has {', '.join(sorted(_AFFINITY_FIELDS))}")
    if params["priority_class_name"] is not None:
        validate_k8s_subdomain(params["priority_class_name"], "priority_class_name")


def _validate_tls(tls):
    """Check the certificate options of the chosen mode; options of another mode are refused, not ignored."""
    for option in ("validity_days", "renew_before_days", "ca_validity_days"):
        if tls[option] < 1:
            raise ValidationError(f"tls.{option}", "must be at least 1")
    if tls["mode"] == "cert_manager" and tls["renew_before_days"] >= tls["validity_days"]:
        raise ValidationError("tls.renew_before_days", "must be smaller than tls.validity_days, as cert-manager requires")
    if tls["mode"] != "provided":
        for option in ("secret_name", "ca_bundle"):
            if tls[option] is not None:
                raise ValidationError(f"tls.{option}", "applies only to tls.mode=provided")
        return
    validate_k8s_subdomain(tls["secret_name"], "tls.secret_name")
    try:
        _tls.load_bundle(tls["ca_bundle"])
    except ValueError as error:
        raise ValidationError("tls.ca_bundle", f"must be PEM certificates: {error}") from None


def settings_from(params):
    """Validate the options and turn them into :class:`WebhookSettings`; raises ValidationError naming the option."""
    name = validate_k8s_label(params["name"], "name")
    if not _RFC1035_LABEL.fullmatch(name):
        raise ValidationError("name", f"{name!r} must start with a letter: it names a Service (RFC 1035 label)")
    for option in ("namespace", "probe_namespace"):
        validate_k8s_label(params[option], option)
    for index, excluded in enumerate(params["excluded_namespaces"]):
        validate_k8s_label(excluded, f"excluded_namespaces[{index}]")
    if params["probe_namespace"] in (params["namespace"], *params["excluded_namespaces"]):
        raise ValidationError("probe_namespace", f"{params['probe_namespace']!r} is skipped by the webhooks, so a probe there cannot show that admission works")
    if params["replicas"] < 1:
        raise ValidationError("replicas", "must be at least 1")
    if not 1 <= params["timeout_seconds"] <= 30:
        raise ValidationError("timeout_seconds", "must be between 1 and 30, the range the API server accepts")
    if params["qps"] <= 0:
        raise ValidationError("qps", "must be greater than 0")
    if params["burst"] < 1:
        raise ValidationError("burst", "must be at least 1")
    _validate_pod_placement(params)
    tls = params["tls"]
    _validate_tls(tls)
    if params["adopt"] and not params["wait"]:
        raise ValidationError("adopt", "needs wait=true: each step of the hand-over waits for the previous one to serve")
    if params["adopt"] and tls["mode"] == "cert_manager":
        raise ValidationError("adopt", "works with tls.mode self_signed or provided; switch to cert_manager after the migration")
    return manifests.WebhookSettings(
        name=name,
        namespace=params["namespace"],
        image=image_reference(params["image"], params["image_registry"]),
        image_pull_policy=params["image_pull_policy"],
        image_pull_secrets=tuple(params["image_pull_secrets"]),
        replicas=params["replicas"],
        node_selector=params["node_selector"],
        tolerations=tuple(params["tolerations"]),
        resources=params["resources"],
        log_level=params["log_level"],
        random_hostname=params["random_hostname"],
        failure_policy=params["failure_policy"],
        timeout_seconds=params["timeout_seconds"],
        excluded_namespaces=tuple(params["excluded_namespaces"]),
        cert_manager=tls["mode"] == "cert_manager",
        provided_secret=tls["secret_name"],
        qps=params["qps"],
        burst=params["burst"],
        affinity=params["affinity"],
        priority_class_name=params["priority_class_name"],
        view_aggregation=params["view_aggregation"],
        certificate_duration=f"{tls['validity_days'] * 24}h",
        certificate_renew_before=f"{tls['renew_before_days'] * 24}h",
        ca_duration=f"{tls['ca_validity_days'] * 24}h",
        private_key_rotation_policy=tls["private_key_rotation_policy"],
    )


def _secret_text(secret, key):
    value = ((secret or {}).get("data") or {}).get(key)
    return base64.b64decode(value).decode() if value else None


def plan_certificates(settings, tls, ca_live, server_live, now, trusted=""):
    """Decide which CA and server certificate to use, reusing what the cluster holds while it is good.

    ``trusted`` is what the live webhook configurations trust (PEM). Returns the CA, the previous CA certificate(s)
    still to be trusted (or None), the server certificate, and why the server certificate was issued (None when
    the stored one is kept).
    """
    renew_before = datetime.timedelta(days=tls["renew_before_days"])
    stored_ca_cert = _secret_text(ca_live, "tls.crt")
    previous = _secret_text(ca_live, "previous.crt")
    ca = _tls.KeyPair(cert=stored_ca_cert, key=_secret_text(ca_live, "tls.key") or "") if stored_ca_cert else None
    if ca is None or _tls.ca_renewal_reason(ca, now, renew_before):
        # A CA Secret deleted by hand takes its CA out of the stored material, not out of the running pods'
        # certificate: what the configurations trust stays trusted, as a replaced CA does, until the pods roll.
        previous = stored_ca_cert or previous or trusted or None
        ca = _tls.new_ca(f"{settings.name}.{settings.namespace} webhook CA", now, datetime.timedelta(days=tls["ca_validity_days"]))
    if previous and _tls.not_after(previous) <= now:
        previous = None

    dns_names = _tls.service_dns_names(settings.name, settings.namespace)
    reason = "no server certificate stored yet"
    if _secret_text(server_live, "tls.crt"):
        stored = _tls.KeyPair(cert=_secret_text(server_live, "tls.crt"), key=_secret_text(server_live, "tls.key") or "")
        reason = _tls.server_renewal_reason(stored, ca, dns_names, now, renew_before)
        if reason is None:
            return ca, previous, stored, None
    return ca, previous, _tls.new_server_cert(ca, dns_names, now, datetime.timedelta(days=tls["validity_days"])), reason


_OTHER_INSTALL = "the install of this collection"


def _owner(live, settings):
    """Who made an object of our name that is not this install's, in words for the refusal, or None when it is ours."""
    metadata = live["metadata"]
    object_labels = metadata.get("labels") or {}
    if is_managed(live):
        namespace = object_labels.get(manifests.INSTALL_NAMESPACE_LABEL)
        if namespace and namespace != settings.namespace:
            return f"{_OTHER_INSTALL} in namespace {namespace}"
        return None
    annotations = metadata.get("annotations") or {}
    if object_labels.get(MANAGED_BY_LABEL) == "Helm" or "meta.helm.sh/release-name" in annotations:
        return f"Helm release {annotations.get('meta.helm.sh/release-namespace', '?')}/{annotations.get('meta.helm.sh/release-name', '?')}"
    if str(object_labels.get("chart", "")).startswith("gmsa-"):
        return f"the windows-gmsa Helm chart ({object_labels['chart']})"
    return "not this collection (no wincontainers.gmsa label: upstream's deploy-gmsa-webhook.sh, Install-AksHciGMSAWebhook or kubectl)"


def planned_objects(settings):
    """Every object an install applies under the install's names, except the shared CRD and the namespace."""
    objects = [
        manifests.service_account(settings),
        manifests.cluster_role(settings),
        manifests.cluster_role_binding(settings),
        manifests.deployment(settings, None),
        manifests.service(settings),
        manifests.pod_disruption_budget(settings),
        manifests.mutating_webhook_configuration(settings, None),
        manifests.validating_webhook_configuration(settings, None),
    ]
    if settings.view_aggregation:
        objects.append(manifests.view_cluster_role(settings))
    if settings.cert_manager:
        objects += manifests.cert_manager_objects(settings, [])
    elif not settings.provided_secret:
        objects += [manifests.ca_secret(settings, "", "", None), manifests.tls_secret(settings, "", "", "")]
    return objects


def foreign_objects(reconciler, settings):
    """``{object: who made it}`` for the objects of this install's names that this install did not create."""
    owners = {}
    for obj in planned_objects(settings):
        live = reconciler.live(obj)
        owner = _owner(live, settings) if live is not None else None
        if owner:
            owners[object_ref(obj)] = owner
    return owners


# What a hand-over replaces; anything else of our names (a Secret) is refused even with adopt.
_ADOPTABLE = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment", "Service", "PodDisruptionBudget", "MutatingWebhookConfiguration",
              "ValidatingWebhookConfiguration")


def check_adoptable(reconciler, settings, foreign):
    """Refuse, before anything changes, a migration that cannot keep admission working or would take what it must not."""
    problems = [f"{ref} (made by {owner})" for ref, owner in sorted(foreign.items()) if owner.startswith(_OTHER_INSTALL) or ref.split()[0] not in _ADOPTABLE]
    binding = reconciler.live(manifests.cluster_role_binding(settings))
    if object_ref(manifests.cluster_role_binding(settings)) in foreign and binding.get("roleRef", {}).get("name") != settings.name:
        problems.append(f"ClusterRoleBinding {settings.name} (its roleRef, which cannot change, names ClusterRole {binding['roleRef'].get('name')})")
    if problems:
        raise Conflict(f"adopt=true cannot migrate {'; '.join(problems)}: remove or rename them first")


def check_preconditions(cluster, reconciler, settings, adopt):
    """Refuse, before anything changes, an install that would take over another one or lacks what its mode needs.

    Returns the objects another install made that ``adopt`` hands over (empty without it).
    """
    foreign = foreign_objects(reconciler, settings)
    if foreign and adopt:
        check_adoptable(reconciler, settings, foreign)
    elif foreign:
        named = "; ".join(f"{ref} (made by {owner})" for ref, owner in sorted(foreign.items()))
        raise Conflict(
            f"refusing to take over objects this install did not create: {named}. Another installation of the webhook uses "
            f"the name {settings.name!r} in namespace {settings.namespace!r}. Either remove it first (helm uninstall, "
            "Uninstall-AksHciGMSAWebhook, or kubectl delete of what deploy-gmsa-webhook.sh applied; keep the CRD, which holds "
            "the GMSACredentialSpec objects), install this one with another name and namespace, or migrate it with adopt=true"
        )
    if settings.cert_manager and cluster.get("CustomResourceDefinition", manifests.CERT_MANAGER_CRD_NAME) is None:
        raise Conflict(
            f"tls.mode=cert_manager needs cert-manager, but its CRD {manifests.CERT_MANAGER_CRD_NAME} is not installed; "
            "install cert-manager or use tls.mode=self_signed"
        )
    return foreign if adopt else {}


def settle_namespace(module, cluster, reconciler, settings):
    """The live namespace, after waiting for a terminating one to go (an uninstall just before leaves it so)."""
    namespace = manifests.namespace(settings)
    live = reconciler.live(namespace)
    if live is not None and (live.get("status") or {}).get("phase") == "Terminating":
        what = f"namespace {settings.namespace} to finish terminating before the webhook is installed in it again"
        wait_for(lambda: namespaces_gone(cluster, [settings.namespace]), what, module.params["wait_timeout"])
        reconciler.forget(namespace)
        live = None
    return live


def provided_certificate(reconciler, settings, tls):
    """The user's serving certificate (tls.mode=provided), checked against the Service name and tls.ca_bundle."""
    secret = manifests.tls_secret(settings, "", "", "")
    live = reconciler.live(secret)
    where = f"tls.secret_name: Secret {settings.namespace}/{settings.tls_secret}"
    if live is None:
        raise Conflict(f"{where} does not exist; create it (keys tls.crt and tls.key) before installing")
    cert, key = _secret_text(live, "tls.crt"), _secret_text(live, "tls.key")
    if not (cert and key):
        raise Conflict(f"{where} must hold tls.crt and tls.key")
    problem = _tls.provided_certificate_problem(
        _tls.KeyPair(cert=cert, key=key), tls["ca_bundle"], f"{settings.name}.{settings.namespace}.svc", datetime.datetime.now(datetime.timezone.utc)
    )
    if problem:
        raise Conflict(f"{where} cannot serve the webhook: {problem}")
    return cert


def cert_manager_certificate(module, cluster, settings):
    """The certificate cert-manager stored for the webhook, waiting for the first issue when the run waits."""

    def issued():
        cert = _secret_text(cluster.get("Secret", settings.tls_secret, settings.namespace), "tls.crt")
        return bool(cert), cert or f"cert-manager has not yet written Secret {settings.namespace}/{settings.tls_secret}"

    if module.params["wait"] and not module.check_mode:
        wait_for(issued, f"certificate {settings.namespace}/{settings.name}", module.params["wait_timeout"])
    served, detail = issued()
    if served:
        return detail
    if not module.check_mode:
        module.warn(f"{detail}; the pods start once it does, and the next run adds its fingerprint (which rolls them once)")
    return None


def apply_certificates(reconciler, settings, tls, configurations_exist):
    """Store the CA and the server certificate; return the caBundle, the ``certificate`` result and the served certificate."""
    ca_live = reconciler.live(manifests.ca_secret(settings, "", "", None))
    server_live = reconciler.live(manifests.tls_secret(settings, "", "", ""))
    trusted = ""
    if configurations_exist:
        trusted = _trusted_certificates([reconciler.live(manifests.validating_webhook_configuration(settings, None))])
    ca, previous, server, reason = plan_certificates(settings, tls, ca_live, server_live, datetime.datetime.now(datetime.timezone.utc), trusted)
    ca_bundle = ca.cert + (previous or "")
    # A Secret this run found absent is created, not applied: of two runs at once that each made their own keys, the
    # second fails there (409) instead of overwriting the first's and leaving each with a different CA.
    (reconciler.create if ca_live is None else reconciler.apply)(manifests.ca_secret(settings, ca.cert, ca.key, previous))
    # An existing install must trust a new CA before the webhook serves a certificate signed by it.
    if configurations_exist:
        _apply_configurations(reconciler, settings, ca_bundle)
    (reconciler.create if server_live is None else reconciler.apply)(manifests.tls_secret(settings, server.cert, server.key, ca_bundle))
    certificate = {
        "not_after": _tls.not_after(server.cert).isoformat(),
        "ca_not_after": _tls.not_after(ca.cert).isoformat(),
        "renewed": reason is not None,
        "reason": reason,
    }
    return ca_bundle, certificate, server.cert


_PEM_CERTIFICATE = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----\n?", re.DOTALL)


def _trusted_certificates(configurations):
    """The PEM certificates the caBundles of live webhook configurations trust, each once, in order."""
    bundles = (hook.get("clientConfig", {}).get("caBundle") for configuration in configurations for hook in (configuration or {}).get("webhooks") or [])
    certificates = (match.group(0) for bundle in bundles if bundle for match in _PEM_CERTIFICATE.finditer(base64.b64decode(bundle).decode()))
    return "".join(dict.fromkeys(certificate if certificate.endswith("\n") else certificate + "\n" for certificate in certificates))


def _leftovers(cluster, settings, their_deployment):
    """What the adopted install made under other names: named for the user, never deleted by this module."""
    names = [f"Secret {settings.namespace}/{volume['secret']['secretName']}" for volume in their_deployment["spec"]["template"]["spec"].get("volumes") or []
             if "secret" in volume and volume["secret"].get("secretName") != settings.tls_secret]
    for binding in cluster.list("ClusterRoleBinding"):
        subjects = binding.get("subjects") or []
        if not is_managed(binding) and {"kind": "ServiceAccount", "name": settings.name, "namespace": settings.namespace} in subjects:
            names.append(f"ClusterRoleBinding {binding['metadata']['name']} (ClusterRole {binding['roleRef']['name']})")
    return names


def hand_over(module, cluster, reconciler, settings, foreign, certificate_sha256, ca_bundle):
    """Move admission from another install to this one, with a serving webhook at every moment (adopt=true).

    Trust both CAs; run this install's pods beside theirs (a Deployment's selector cannot change, so under another
    name first); point the Service at them; replace their Deployment by this install's; remove the stand-in.
    Returns what the other install made that stays behind.
    """
    timeout = module.params["wait_timeout"]
    namespace, name = settings.namespace, settings.name
    configurations = (manifests.mutating_webhook_configuration, manifests.validating_webhook_configuration)
    their_bundle = _trusted_certificates(reconciler.live(configuration(settings, None)) for configuration in configurations)
    for configuration in configurations:
        place(reconciler, configuration(settings, ca_bundle + their_bundle), foreign)
    if module.check_mode:
        for obj in (manifests.service(settings), manifests.deployment(settings, None), manifests.pod_disruption_budget(settings)):
            if foreign.pop(object_ref(obj), None):
                reconciler.predict_adoption(obj)
        module.warn("check mode validated the new trust and lists what adopt takes over; it does not rehearse the hand-over of the pods")
        return []

    handover = reconciler.apply(manifests.handover_deployment(settings, certificate_sha256))
    wait_for(lambda: deployment_status(cluster.get("Deployment", handover["metadata"]["name"], namespace)), f"Deployment {namespace}/{name}-handover", timeout)
    place(reconciler, manifests.service(settings), foreign)
    wait_for_traffic(
        cluster, settings, lambda pod: manifests.HANDOVER_LABEL in pod["metadata"].get("labels", {}), f"the pods of Deployment {name}-handover", timeout
    )
    leftovers = []
    ours = manifests.deployment(settings, certificate_sha256)
    if foreign.pop(object_ref(ours), None):
        their_deployment = reconciler.live(ours)
        leftovers = _leftovers(cluster, settings, their_deployment)
        reconciler.delete(ours, force=True)
        wait_for(lambda: (cluster.get("Deployment", name, namespace) is None, f"their Deployment {namespace}/{name} is being deleted"),
                 f"Deployment {namespace}/{name} of the adopted install to go", timeout)
    reconciler.apply(ours)
    wait_for(lambda: deployment_status(cluster.get("Deployment", name, namespace)), f"Deployment {namespace}/{name}", timeout)
    reconciler.delete(handover)
    return leftovers


def wait_for_traffic(cluster, settings, selects, what, timeout, still_ours=None):
    """Wait until the Service sends requests only to the running pods that ``selects`` accepts; ``still_ours``, when
    given, runs before each look and raises when another writer has made the wait pointless."""
    namespace, name = settings.namespace, settings.name
    pod_selector = ",".join(f"{key}={value}" for key, value in manifests.service(settings)["spec"]["selector"].items())

    def status():
        if still_ours:
            still_ours()
        pods = [pod for pod in cluster.list("Pod", namespace, label_selector=pod_selector) if selects(pod)]
        return endpoints_status(cluster.list("EndpointSlice", namespace, label_selector=f"kubernetes.io/service-name={name}"), pods, what)

    wait_for(status, f"Service {namespace}/{name} to reach only {what}", timeout)


def place(reconciler, obj, foreign):
    """Apply ``obj``, or adopt it when another install made it (only ever in ``foreign`` with adopt=true); once
    adopted it is this install's, and later placements apply."""
    return reconciler.adopt(obj) if foreign.pop(object_ref(obj), None) else reconciler.apply(obj)


# How long a stopping webhook pod keeps serving; the preStop sleep action is on by default from Kubernetes 1.30.
PRE_STOP_SECONDS = 5
PRE_STOP_SLEEP_SINCE = (1, 30)


def install(module, cluster, reconciler, settings):
    if cluster.server_version() >= PRE_STOP_SLEEP_SINCE:
        settings = dataclasses.replace(settings, pre_stop_seconds=PRE_STOP_SECONDS)
    namespace_live = settle_namespace(module, cluster, reconciler, settings)
    foreign = check_preconditions(cluster, reconciler, settings, module.params["adopt"])
    adopting = bool(foreign)
    result = {"image": settings.image, "ready_replicas": 0, "admission": None}
    crd_missing = reconciler.live(manifests.crd()) is None
    reconciler.apply(manifests.crd())
    lost = credspecs_with_grants(cluster) if crd_missing else []
    if lost:
        module.warn(f"created CRD {manifests.CRD_NAME}; {lost_credspecs_message(lost)}: run wincontainers.gmsa.gmsa_credspec to recreate them")
    # A namespace that already exists (kube-system, one a user made) is used as it is: not labelled, never deleted.
    if namespace_live is None or manifests.created_namespace(namespace_live, settings):
        reconciler.apply(manifests.namespace(settings))
    for obj in (manifests.service_account(settings), manifests.cluster_role(settings), manifests.cluster_role_binding(settings)):
        place(reconciler, obj, foreign)
    if settings.view_aggregation:
        reconciler.apply(manifests.view_cluster_role(settings))
    else:
        reconciler.delete(manifests.view_cluster_role(settings))

    # Another install's configurations trust only its own CA: the hand-over changes them, not the renewal below.
    configurations = reconciler.live(manifests.validating_webhook_configuration(settings, None))
    configurations_exist = configurations is not None and not adopting
    if settings.cert_manager:
        for obj in manifests.cert_manager_objects(settings, _tls.service_dns_names(settings.name, settings.namespace)):
            reconciler.apply(obj)
        ca_bundle, served = None, cert_manager_certificate(module, cluster, settings)
    elif settings.provided_secret:
        served = provided_certificate(reconciler, settings, module.params["tls"])
        ca_bundle = module.params["tls"]["ca_bundle"]
        # Trust first: the API server must accept the new certificate before the roll brings it up.
        if configurations_exist:
            _apply_configurations(reconciler, settings, ca_bundle)
    else:
        ca_bundle, result["certificate"], served = apply_certificates(reconciler, settings, module.params["tls"], configurations_exist)
    result["serving_certificate_sha256"] = _tls.fingerprint(served) if served else None

    if adopting:
        leftovers = hand_over(module, cluster, reconciler, settings, foreign, result["serving_certificate_sha256"], ca_bundle)
        if leftovers:
            module.warn("the adopted install also made these, which this module leaves in place: " + ", ".join(leftovers))
        if module.check_mode:
            return result
    deployment = reconciler.apply(manifests.deployment(settings, result["serving_certificate_sha256"]))
    place(reconciler, manifests.service(settings), foreign)
    place(reconciler, manifests.pod_disruption_budget(settings), foreign)

    wait = module.params["wait"] and not module.check_mode
    timeout = module.params["wait_timeout"]
    if wait:

        def live_deployment():
            return cluster.get("Deployment", settings.name, settings.namespace)

        wait_for(lambda: deployment_status(live_deployment()), f"Deployment {settings.namespace}/{settings.name}", timeout)
        deployment = live_deployment()
        certificate_sha256 = result["serving_certificate_sha256"]
        if certificate_sha256:
            # The rollout is complete before the old pods stop receiving requests; returning earlier would let the
            # caller rely on a renewal (or drop an old CA) while a pod with the previous certificate still serves.
            def certificate_still_ours():
                # Another run at once may renew the certificate and roll the Deployment to it: no pod would ever
                # serve this run's certificate, so say so now instead of after the whole timeout.
                template = ((live_deployment() or {}).get("spec") or {}).get("template") or {}
                serving = ((template.get("metadata") or {}).get("annotations") or {}).get(manifests.CERTIFICATE_ANNOTATION)
                if serving != certificate_sha256:
                    raise Conflict(
                        f"conflict: while this run waited for Deployment {settings.namespace}/{settings.name}, another writer (a second run "
                        f"at the same time?) changed it to serve certificate sha256 {serving} instead of this run's {certificate_sha256}; "
                        "rerun to converge"
                    )

            wait_for_traffic(
                cluster, settings, lambda pod: pod["metadata"].get("annotations", {}).get(manifests.CERTIFICATE_ANNOTATION) == certificate_sha256,
                "pods serving the current certificate", timeout, still_ours=certificate_still_ours,
            )
    # A first install registers admission only now: pointing it at pods that are not running yet would
    # refuse every new pod in the cluster. After a hand-over, this drops the adopted install's CA.
    if settings.cert_manager or not configurations_exist:
        _apply_configurations(reconciler, settings, ca_bundle)
    if wait:
        probe_namespace = module.params["probe_namespace"]
        what = f"admission by webhook {settings.name} (Service {settings.namespace}/{settings.name}, probed in namespace {probe_namespace})"
        result["admission"] = wait_for(lambda: admission_status(cluster, probe_namespace), what, timeout)
    result["ready_replicas"] = (deployment.get("status") or {}).get("readyReplicas", 0)
    return result


def _apply_configurations(reconciler, settings, ca_bundle):
    reconciler.apply(manifests.mutating_webhook_configuration(settings, ca_bundle))
    reconciler.apply(manifests.validating_webhook_configuration(settings, ca_bundle))


def uninstall(module, cluster, reconciler, settings):
    crd = manifests.crd()
    if module.params["remove_crd"] and reconciler.live(crd) is not None:
        credspecs = cluster.list("GMSACredentialSpec")
        if credspecs and not module.params["force"]:
            names = ", ".join(sorted(item["metadata"]["name"] for item in credspecs))
            raise Conflict(
                f"refusing to delete CRD {manifests.CRD_NAME}: deleting it deletes its {len(credspecs)} GMSACredentialSpec objects ({names}); "
                "remove them first (gmsa_credspec state=absent) or set force=true"
            )
    # Admission first, so no pod is refused by a webhook that is going away. A provided Secret is the user's.
    objects = [
        manifests.validating_webhook_configuration(settings, None),
        manifests.mutating_webhook_configuration(settings, None),
        manifests.pod_disruption_budget(settings),
        manifests.service(settings),
        manifests.deployment(settings, None),
        manifests.handover_deployment(settings, None),
        *(reversed(manifests.cert_manager_objects(settings, [])) if settings.cert_manager else ()),
        *(() if settings.provided_secret else (manifests.tls_secret(settings, "", "", ""), manifests.ca_secret(settings, "", "", None))),
        manifests.view_cluster_role(settings),
        manifests.cluster_role_binding(settings),
        manifests.cluster_role(settings),
        manifests.service_account(settings),
    ]
    for obj in objects:
        reconciler.delete(obj)
    # Reconciler.delete keeps a namespace without this install's labels: one the collection did not create.
    if reconciler.delete(manifests.namespace(settings)) and module.params["wait"] and not module.check_mode:
        # Deleted in the background: a new install right after must not find it terminating.
        what = f"namespace {settings.namespace} to finish terminating"
        wait_for(lambda: namespaces_gone(cluster, [settings.namespace]), what, module.params["wait_timeout"])
    if module.params["remove_crd"]:
        reconciler.delete(crd, force=True)
    return {}


def opt_out_policy(params):
    """The options of the opt-out label policy, its name defaulted and everything checked; None when not asked for."""
    policy = params["opt_out_policy"]
    if policy is None:
        return None
    policy = dict(policy, name=policy["name"] or f"{params['name']}-opt-out-label")
    _admission_policy.validate(policy["name"], policy["allowed_groups"], params["state"], "opt_out_policy.")
    return policy


def main():
    module = cluster_module(ARGUMENT_SPEC)
    if _tls.x509 is None:
        module.fail_json(msg=missing_required_lib("cryptography"))
    try:
        settings = settings_from(module.params)
        policy = opt_out_policy(module.params)
    except ValidationError as error:
        module.fail_json(msg=str(error))

    reconciler = None
    try:
        cluster = Cluster(module)
        reconciler = Reconciler(cluster, module.check_mode)
        action = install if module.params["state"] == "present" else uninstall
        result = action(module, cluster, reconciler, settings)
        if policy is not None:
            guarded = _admission_policy.reconcile(
                cluster, reconciler, policy["name"], policy["allowed_groups"], module.params["state"], policy["require_support"], module.warn
            )
            result["opt_out_policy"] = dict(guarded, name=policy["name"])
    except (ApiError, Conflict, WaitTimeout, _admission_policy.Unsupported) as error:
        # What was already done is reported too: a failed run may have changed the cluster.
        module.fail_json(msg=str(error), changed=bool(reconciler and reconciler.changed), objects=reconciler.summary() if reconciler else [])

    for warning in reconciler.warnings():
        module.warn(warning)
    module.exit_json(**reconciler.result(module._diff), **result)


if __name__ == "__main__":
    main()
