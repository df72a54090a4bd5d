"""A PowerShell run that outlasts WinRM's OperationTimeout, as a batch of many accounts does on a Windows host.

Windows returns from Send while the command runs and answers each Receive that saw no output within the
OperationTimeout with a fault that the client answers by asking again; the transport keeps asking until its own
deadline. The WS-Management double does the same: here it takes longer than the transport's OperationTimeout to
run a script, and the answer still arrives.
"""

import os
import time

from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._client import open_domain_client
from wsman_endpoint import WINRM_USER, WSManEndpoint

pytest_plugins = ("tests.lab.pytest_samba", "tests.integration.wsman_endpoint")

DOMAIN_TIMEOUT = 9  # the transport's OperationTimeout is then 4 s (domain_timeout less 5, at most 20)
DELAY = 6


def test_a_script_longer_than_the_operation_timeout_is_waited_for(powershell_host, tls_files, winrm_params, winrm_password, monkeypatch):
    def slowly(command, arguments, stdin):
        time.sleep(DELAY)
        return powershell_host(command, arguments, stdin)

    # pyspnego's NTLM acceptor reads one user file, named in the environment, for the whole process: this endpoint
    # names its own (with the session's password) until the test ends, then the session's endpoint has its own back.
    monkeypatch.setenv("NTLM_USER_FILE", os.environ["NTLM_USER_FILE"])
    with WSManEndpoint(WINRM_USER, winrm_password, slowly, tls_files=tls_files[:2]) as endpoint:
        params = dict(winrm_params, domain_port=endpoint.port, domain_timeout=DOMAIN_TIMEOUT)
        with open_domain_client(params) as client:
            started = time.monotonic()
            facts = client.domain_facts()
    assert facts.dns_name and time.monotonic() - started >= DELAY
    assert endpoint.timed_out_receives >= 1
