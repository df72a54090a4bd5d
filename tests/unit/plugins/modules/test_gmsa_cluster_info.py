# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""gmsa_cluster_info against an in-memory API server; the lab's real webhook answers it in the verify stage of
tests/integration/test_site_playbook.py."""

import json

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.wincontainers.gmsa.plugins.module_utils.cluster._client import ApiError
from ansible_collections.wincontainers.gmsa.plugins.modules import gmsa_cluster_info
from tests.unit.plugins.stand_in_cluster import StandInCluster

DENIAL = 'creating Pod web/probe: refused by admission: admission webhook "admission.windows-gmsa.sigs.k8s.io" denied the request: not authorized'


def _pod(service_account):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe", "namespace": "web"}, "spec": {"serviceAccountName": service_account}}


class FakeApiServer(StandInCluster):
    """Lists from a dict of kind -> items; a dry-run pod of ``refused_account`` is refused, of ``mute_account`` unanswered."""

    def __init__(self, items, refused_account="default", mute_account=None):
        self.items, self.refused_account, self.mute_account = items, refused_account, mute_account
        self.requests = []

    def list(self, kind, namespace=None, label_selector=None, field_selector=None, metadata_only=False):
        self.requests.append(("list", kind, namespace, label_selector, metadata_only))
        return list(self.items.get(kind, []))

    def create(self, obj, dry_run=False):
        assert dry_run, "a probe pod was really created"
        account = obj["spec"]["serviceAccountName"]
        self.requests.append(("create", account))
        if account == self.refused_account:
            raise ApiError(DENIAL, 403, "Forbidden")
        if account == self.mute_account:
            raise ApiError("creating Pod web/probe: cannot reach the Kubernetes API server at https://fake:6443: timed out")
        return dict(obj, spec=dict(obj["spec"], inlined=True))


def _run(monkeypatch, capsys, server, args):
    monkeypatch.setattr(gmsa_cluster_info, "Cluster", server)
    with patch_module_args(args), pytest.raises(SystemExit):
        gmsa_cluster_info.main()
    return json.loads(capsys.readouterr().out)


def test_everything_is_read_with_one_list_per_kind_and_each_probe_decided(monkeypatch, capsys):
    credspecs = [{"metadata": {"name": name}} for name in ("b", "a", "other")]
    server = FakeApiServer({"GMSACredentialSpec": credspecs, "Pod": [{"metadata": {"name": "app-1"}}], "Node": [{"metadata": {"name": "win-1"}}]})
    result = _run(monkeypatch, capsys, server, {
        "credspecs": ["a", "b", "missing"], "workload": {"namespace": "web", "name": "app"}, "admission_probes": [_pod("app"), _pod("default")],
    })
    assert result["changed"] is False and not result.get("failed")
    assert [credspec["metadata"]["name"] for credspec in result["credspecs"]] == ["a", "b"]
    assert result["pods"] == [{"metadata": {"name": "app-1"}}] and result["windows_nodes"] == [{"metadata": {"name": "win-1"}}]
    admitted, refused = result["admission_probes"]
    assert admitted["failed"] is False and admitted["result"]["spec"]["inlined"] is True
    assert refused == {"failed": True, "msg": DENIAL, "result": {}}
    assert server.requests == [
        ("list", "GMSACredentialSpec", None, None, False),
        ("list", "Pod", "web", "app.kubernetes.io/name=app", False),
        ("list", "Node", None, "kubernetes.io/os=windows", True),
        ("create", "app"), ("create", "default"),
    ]


def test_a_probe_without_an_answer_fails_the_task_instead_of_counting_as_a_refusal(monkeypatch, capsys):
    result = _run(monkeypatch, capsys, FakeApiServer({}, mute_account="app"), {"admission_probes": [_pod("app")]})
    assert result["failed"] is True and "cannot reach the Kubernetes API server" in result["msg"]


def test_without_a_workload_nothing_of_it_is_read(monkeypatch, capsys):
    server = FakeApiServer({})
    result = _run(monkeypatch, capsys, server, {})
    assert server.requests == [] and result["pods"] == [] and result["windows_nodes"] == [] and result["admission_probes"] == []


@pytest.mark.parametrize(("args", "field"), [
    ({"credspecs": ["Web App"]}, "credspecs[0]"),
    ({"admission_probes": [{"kind": "Deployment", "metadata": {"name": "x", "namespace": "web"}}]}, "admission_probes[0]"),
    ({"admission_probes": [{"kind": "Pod", "metadata": {"name": "x", "namespace": "Web"}}]}, "admission_probes[0].metadata.namespace"),
    ({"workload": {"namespace": "web_ns", "name": "app"}}, "workload.namespace"),
])
def test_invalid_input_is_refused_before_the_cluster_is_asked(run_offline, args, field):
    result = run_offline(gmsa_cluster_info, args)
    assert result["failed"] and result["msg"].startswith(f"{field}: ")
