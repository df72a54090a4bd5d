"""Unit tests for the with_gmsa filter."""

import copy

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.wincontainers.gmsa.plugins.filter.with_gmsa import FilterModule, with_gmsa


def _deployment():
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "webapp", "namespace": "apps"},
        "spec": {
            "template": {
                "spec": {
                    "containers": [{"name": "iis", "image": "mcr.microsoft.com/windows/servercore/iis"}, {"name": "log", "image": "logger"}],
                    "nodeSelector": {"tier": "web"},
                }
            }
        },
    }


def test_pod_level_wiring_of_a_deployment():
    manifest = _deployment()
    original = copy.deepcopy(manifest)

    wired = with_gmsa(manifest, credspec="webapp01", service_account="webapp01", dns_servers=["10.0.0.10"], domain="Contoso.com")

    assert manifest == original
    assert wired["spec"]["template"]["spec"] == {
        "containers": original["spec"]["template"]["spec"]["containers"],
        "nodeSelector": {"tier": "web", "kubernetes.io/os": "windows"},
        "securityContext": {"windowsOptions": {"gmsaCredentialSpecName": "webapp01"}},
        "serviceAccountName": "webapp01",
        "dnsConfig": {"nameservers": ["10.0.0.10"], "searches": ["contoso.com"]},
    }


def test_container_level_wiring_touches_only_named_containers():
    wired = with_gmsa(_deployment(), credspec="webapp01", containers=["iis"])
    pod_spec = wired["spec"]["template"]["spec"]

    assert "securityContext" not in pod_spec
    assert pod_spec["containers"][0]["securityContext"] == {"windowsOptions": {"gmsaCredentialSpecName": "webapp01"}}
    assert "securityContext" not in pod_spec["containers"][1]
    assert "dnsConfig" not in pod_spec


@pytest.mark.parametrize(
    "manifest, path",
    [
        ({"kind": "Pod", "spec": {"containers": []}}, ("spec",)),
        (
            {"kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": []}}}}}},
            ("spec", "jobTemplate", "spec", "template", "spec"),
        ),
        ({"spec": {"containers": []}}, ("spec",)),
        ({"containers": []}, ()),
    ],
)
def test_finds_the_pod_spec_of_every_shape(manifest, path):
    node = with_gmsa(manifest, credspec="app")
    for key in path:
        node = node[key]
    assert node["securityContext"]["windowsOptions"]["gmsaCredentialSpecName"] == "app"
    assert node["nodeSelector"] == {"kubernetes.io/os": "windows"}


def test_rerun_is_stable():
    options = {"credspec": "webapp01", "dns_servers": ["10.0.0.10", "10.0.0.10"], "domain": "contoso.com",
               "tolerations": [{"key": "os", "value": "windows", "effect": "NoSchedule"}]}
    once = with_gmsa(_deployment(), **options)
    assert with_gmsa(once, **options) == once
    assert once["spec"]["template"]["spec"]["dnsConfig"]["nameservers"] == ["10.0.0.10"]
    assert len(once["spec"]["template"]["spec"]["tolerations"]) == 1


def test_dns_policy_none_sets_the_policy_with_servers():
    wired = with_gmsa({"containers": []}, credspec="app", dns_servers=["fd00::10"], dns_policy="None")
    assert wired["dnsPolicy"] == "None"
    assert wired["dnsConfig"] == {"nameservers": ["fd00::10"]}


@pytest.mark.parametrize(
    "manifest, options, message",
    [
        (_deployment(), {"credspec": "WebApp01"}, "with_gmsa: credspec: 'WebApp01' is not a lowercase RFC 1123 subdomain"),
        (_deployment(), {"credspec": "app", "containers": ["sidecar"]}, "with_gmsa: containers: sidecar not in the pod template; its containers are iis, log"),
        (_deployment(), {"credspec": "app", "dns_servers": ["dc01.contoso.com"]}, "with_gmsa: dns_servers[0]: 'dc01.contoso.com' is not an IP address"),
        (_deployment(), {"credspec": "app", "domain": "contoso..com"}, "with_gmsa: domain: 'contoso..com' has an empty label"),
        (_deployment(), {"credspec": "app", "dns_policy": "None"}, "with_gmsa: dns_policy: 'None' needs dns_servers"),
        (_deployment(), {"credspec": "app", "dns_policy": "Cluster"}, "with_gmsa: dns_policy: 'Cluster' is not one of"),
        (_deployment(), {"credspec": "app", "service_account": "Web_SA"}, "with_gmsa: service_account: 'Web_SA' is not a lowercase RFC 1123 subdomain"),
        ({"kind": "Service", "spec": {}}, {"credspec": "app"}, "with_gmsa: _input: kind 'Service' has no pod template"),
        ({"kind": "Deployment", "spec": {}}, {"credspec": "app"}, "with_gmsa: _input: Deployment has no spec.template.spec"),
        ({"metadata": {}}, {"credspec": "app"}, "with_gmsa: _input: is neither a workload"),
        ("kind: Pod", {"credspec": "app"}, "with_gmsa: _input must be a dict"),
    ],
)
def test_bad_input_names_the_option(manifest, options, message):
    with pytest.raises(AnsibleFilterError) as error:
        with_gmsa(manifest, **options)
    assert str(error.value).startswith(message)


def test_registered_under_its_name():
    assert FilterModule().filters() == {"with_gmsa": with_gmsa}


def test_the_identity_secret_is_mounted_only_when_asked_read_only_into_the_gmsa_containers():
    assert "volumes" not in with_gmsa(_deployment(), credspec="webapp01")["spec"]["template"]["spec"]

    mount = {"secret_name": "gmsa-identity", "mount_path": "C:\\gmsa-identity"}
    pod_spec = with_gmsa(_deployment(), credspec="webapp01", containers=["iis"], identity_secret_mount=mount)["spec"]["template"]["spec"]

    assert pod_spec["volumes"] == [{"name": "gmsa-identity", "secret": {"secretName": "gmsa-identity"}}]
    iis, log = pod_spec["containers"]
    assert iis["volumeMounts"] == [{"name": "gmsa-identity", "mountPath": "C:\\gmsa-identity", "readOnly": True}]
    assert "volumeMounts" not in log


@pytest.mark.parametrize(
    "mount, message",
    [
        ({"secret_name": "gmsa-identity"}, "identity_secret_mount.mount_path: is required"),
        ({"secret_name": "Bad_Name", "mount_path": "C:\\s"}, "identity_secret_mount.secret_name"),
        ({"secret_name": "gmsa-identity", "mount_path": "C:\\s", "read_only": False}, "identity_secret_mount: unknown keys read_only"),
    ],
)
def test_a_bad_identity_secret_mount_is_refused_naming_the_field(mount, message):
    with pytest.raises(AnsibleFilterError, match=message.replace("\\", "\\\\")):
        with_gmsa(_deployment(), credspec="webapp01", identity_secret_mount=mount)


class _TemplatingMapping(dict):
    """Stands for ansible-core's lazy template dict, whose deepcopy also copies its templating context."""

    def __deepcopy__(self, memo):
        raise AssertionError("with_gmsa deep-copied a container of the templating engine")


def test_copies_only_the_data_of_its_input():
    manifest = _TemplatingMapping(_deployment())
    manifest["spec"] = _TemplatingMapping(manifest["spec"])

    wired = with_gmsa(manifest, credspec="webapp01")

    assert not isinstance(wired, _TemplatingMapping) and not isinstance(wired["spec"], _TemplatingMapping)
    assert wired["spec"]["template"]["spec"]["securityContext"] == {"windowsOptions": {"gmsaCredentialSpecName": "webapp01"}}
    assert "securityContext" not in manifest["spec"]["template"]["spec"]
