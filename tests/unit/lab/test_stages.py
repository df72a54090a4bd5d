"""The kwok stages that keep a webhook pod not Ready until the lab kubelet has seen it serve."""

import pytest

from tests.lab import stages


POD_READY = {
    "metadata": {"name": "pod-ready"},
    "spec": {
        "selector": {"matchExpressions": [{"key": ".status.phase", "operator": "In", "values": ["Pending"]}]},
        "next": {"statusTemplate": 'conditions:\n- status: "True"\n  type: Ready\n- status: "True"\n  type: ContainersReady\n'
                                   'containerStatuses:\n- ready: true\nphase: Running\n'},
    },
}


def test_a_webhook_pod_starts_not_ready_and_turns_ready_on_the_serving_annotation():
    start, ready, unready = stages.webhook_stages(POD_READY)
    assert start["spec"]["next"]["statusTemplate"] == (
        'conditions:\n- status: "False"\n  type: Ready\n- status: "False"\n  type: ContainersReady\ncontainerStatuses:\n- ready: false\nphase: Running\n'
    )
    assert start["spec"]["selector"]["matchExpressions"][-1] == {"key": stages.WEBHOOK_POD_KEY, "operator": "In", "values": ["true"]}
    serving = {"key": '.metadata.annotations["lab.wincontainers.gmsa/serving"]', "operator": "In", "values": ["true"]}
    assert serving in ready["spec"]["selector"]["matchExpressions"]
    assert dict(serving, operator="NotIn") in unready["spec"]["selector"]["matchExpressions"]
    assert 'status: "True"\n  type: Ready' in ready["spec"]["next"]["statusTemplate"]
    assert 'status: "False"\n  type: Ready' in unready["spec"]["next"]["statusTemplate"]


def test_a_changed_kwok_pod_ready_stage_is_refused():
    changed = {"spec": dict(POD_READY["spec"], next={"statusTemplate": "phase: Running\n"}), "metadata": POD_READY["metadata"]}
    with pytest.raises(stages.StageError, match="kwok's pod-ready stage changed"):
        stages.webhook_stages(changed)
