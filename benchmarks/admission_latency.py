"""How long admission takes through the real windows-gmsa webhook: server-side dry-run pod creations on the lab.

gmsa_webhook installs the webhook (served by the lab kubelet, tests/lab/webhook.py: the real binary, upstream
v0.13.0) and gmsa_credspec a credspec that one service account may use. Then, --count times each, a pod is
created as a server-side dry run (all of admission, nothing stored): by the authorized account (mutated and
validated: the webhook inlines the credspec and checks `use` with a SubjectAccessReview), by another account
(refused by the webhook), and with no gMSA in a namespace opted out of gMSA webhooks (the API server alone).

    python benchmarks/admission_latency.py [--count 50]     # from the repository root, as root; starts the lab if needed
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from kubernetes import client, config  # noqa: E402 pylint: disable=wrong-import-position
from kubernetes.client.rest import ApiException  # noqa: E402 pylint: disable=wrong-import-position

from benchmarks.credspec_apply import DOMAIN, run_playbook  # noqa: E402 pylint: disable=wrong-import-position
from tests.lab import kube, webhook  # noqa: E402 pylint: disable=wrong-import-position

PREFIX = "bench-admission"
APPS = PREFIX + "-apps"
SKIPPED = PREFIX + "-skipped"
WEBHOOK = {"name": PREFIX, "namespace": PREFIX}
CREDSPEC = {"account_name": "BenchAdmission", "name": PREFIX, "service_accounts": [{"name": "allowed", "namespace": APPS}]}


def pod(namespace, account, credspec):
    security = client.V1PodSecurityContext(windows_options=client.V1WindowsSecurityContextOptions(gmsa_credential_spec_name=credspec)) if credspec else None
    return client.V1Pod(
        metadata=client.V1ObjectMeta(generate_name="bench-", namespace=namespace),
        spec=client.V1PodSpec(
            service_account_name=account, node_selector={"kubernetes.io/os": "windows"}, security_context=security,
            containers=[client.V1Container(name="app", image="mcr.microsoft.com/windows/servercore/iis:windowsservercore-ltsc2022")],
        ),
    )


def timed_creations(core, count, namespace, account, credspec, refused):
    """Seconds per dry-run creation; fails if the outcome is not the expected one."""
    seconds = []
    for _attempt in range(count):
        started = time.perf_counter()
        try:
            created = core.create_namespaced_pod(namespace, pod(namespace, account, credspec), dry_run="All")
            outcome = "admitted" if not credspec or created.spec.security_context.windows_options.gmsa_credential_spec else "not mutated"
        except ApiException as error:
            outcome = "refused" if "is not authorized to `use` GMSA cred spec" in (error.body or "") else "error %s" % error.status
        seconds.append(time.perf_counter() - started)
        if outcome != ("refused" if refused else "admitted"):
            sys.exit("%s creating a pod as %s/%s: %s" % ("expected a refusal" if refused else "expected admission", namespace, account, outcome))
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=50)
    count = parser.parse_args().count
    lab = kube.up()
    core = client.CoreV1Api(config.new_client_from_config(lab["kubeconfig"]))
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=APPS)))
    # Opted out of every gMSA webhook of the shared lab (the label their namespaceSelectors exclude), not only this one.
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=SKIPPED, labels={"windows.k8s.io/disabled": "true"})))
    for account in ("allowed", "other"):
        core.create_namespaced_service_account(APPS, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=account)))
    workdir = tempfile.mkdtemp(prefix="admission-bench-")
    auth = {"kubeconfig": lab["kubeconfig"]}
    install = dict(WEBHOOK, excluded_namespaces=[SKIPPED], probe_namespace=APPS, **auth)
    figures = {}
    try:
        run_playbook(lab, [{"wincontainers.gmsa.gmsa_webhook": install}], workdir, "install")
        served = webhook.wait_serving(lab, WEBHOOK["namespace"], WEBHOOK["name"])
        run_playbook(lab, [{"wincontainers.gmsa.gmsa_credspec": dict(auth, domain=DOMAIN, credspecs=[CREDSPEC])}], workdir, "credspec")
        timed_creations(core, 5, APPS, "allowed", PREFIX, refused=False)  # warm-up: connections, caches
        figures["gMSA pod, admitted (mutate + validate)"] = timed_creations(core, count, APPS, "allowed", PREFIX, refused=False)
        figures["gMSA pod, other account (refused)"] = timed_creations(core, count, APPS, "other", PREFIX, refused=True)
        figures["plain pod, namespace opted out"] = timed_creations(core, count, SKIPPED, "default", None, refused=False)
    finally:
        run_playbook(lab, [{"wincontainers.gmsa.gmsa_credspec": dict(auth, state="absent", credspecs=[CREDSPEC])}], workdir, "credspec-absent")
        run_playbook(lab, [{"wincontainers.gmsa.gmsa_webhook": dict(WEBHOOK, state="absent", **auth)}], workdir, "uninstall")
        for namespace in (APPS, SKIPPED):
            core.delete_namespace(namespace)

    print("\nserver-side dry-run pod creations through the real windows-gmsa webhook (%s, %d replicas served by the lab kubelet)"
          % (webhook.webhook_tag(), len(served["pods"])))
    print("%-40s%6s%12s%12s%12s" % ("", "n", "median", "p90", "max"))
    for label, seconds in figures.items():
        milliseconds = sorted(1000 * value for value in seconds)
        p90 = milliseconds[int(0.9 * (len(milliseconds) - 1))]
        print("%-40s%6d%9.1f ms%9.1f ms%9.1f ms" % (label, len(milliseconds), statistics.median(milliseconds), p90, milliseconds[-1]))


if __name__ == "__main__":
    main()
