"""pytest plugin: the lab's Kubernetes cluster as a session fixture (load with ``-p tests.lab.pytest_kube``).

The cluster is left running after the session, so the next run starts in seconds; `labctl.py down` stops it.
Nothing is skipped: when the lab cannot start, every test using it errors with the LabError that says why.
"""

import pytest

from tests.lab import kube, webhook


@pytest.fixture(scope="session")
def kube_lab():
    """The running lab cluster, with the lab kubelet running the real webhook for webhook pods (tests/lab/webhook.py).

    Keys: state_dir, cluster (its name), netns (the network namespace its control plane runs in), kubeconfig,
    server (https://127.0.0.1:PORT, the same inside netns and, through a forwarder, on the host), ca_file,
    binaries ({name: path} for kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, etcd, kwok,
    kwokctl), pod_cidr, nodes ({"linux": name, "windows": name}).
    """
    facts = kube.up()
    webhook.ensure_running(facts)
    return facts
