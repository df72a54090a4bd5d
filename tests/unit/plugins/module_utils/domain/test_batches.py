"""Unit tests for the batches of the domain client: order, the first failure stops the rest, what is sent per item."""

import dataclasses
import re

import pytest
from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain import _ps_scripts, _winrm_transport
from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._client import (
    BatchFailed,
    DomainError,
    GmsaAccount,
    GmsaCreation,
    GmsaSettings,
    each_in_order,
)

from test_ps_scripts import winrm_client  # a WinRM client on a fake protocol

SETTINGS = GmsaSettings("web.contoso.com", ("host/web",), ("S-1-5-21-1-2-3-1105",), 0x18, None, True)
ACCOUNT = GmsaAccount("web", "web$", "CN=web,CN=Managed Service Accounts,DC=contoso,DC=com", "S-1-5-21-1-2-3-1200",
                      "0b6b5c9e-6a54-4a1e-9d5c-1f3e0e2b9a11", 30, SETTINGS)


def test_the_first_failure_stops_a_batch_and_says_how_many_were_done():
    seen = []

    def operation(item):
        seen.append(item)
        if item == 3:
            raise DomainError("dc01: creating gMSA app3: refused")
        return item * 10

    assert each_in_order([0, 1, 2], operation) == [0, 10, 20]
    seen.clear()
    with pytest.raises(BatchFailed, match="app3: refused") as failed:
        each_in_order(list(range(10)), operation)
    assert failed.value.done == 3 and seen == [0, 1, 2, 3]


def _batch_client(monkeypatch, fail_at=None):
    """A WinRM client whose scripts 'run' here: each batch answers as for_each_item would, failing at item ``fail_at``."""
    client, _protocol = winrm_client({})
    runs = []

    def run(operation, data):
        runs.append((operation, data))
        offset = sum(len(earlier["items"]) for _operation, earlier in runs[:-1])
        results, failure = [], None
        for position, item in enumerate(data["items"]):
            if offset + position == fail_at:
                failure = {
                    "index": position, "message": "Access is denied", "type": "UnauthorizedAccessException",
                    "id": "ActiveDirectoryCmdlet:System.UnauthorizedAccessException",
                }
                break
            results.append(None if operation == "delete_gmsas" else dict(_account_result(item.get("name", "web"))))
        return {"results": results, "failure": failure}

    monkeypatch.setattr(client, "run", run)
    return client, runs


def _account_result(name):
    return {
        "name": name, "sam_account_name": f"{name}$", "distinguished_name": f"CN={name},DC=contoso,DC=com", "sid": "S-1-5-21-1-2-3-1300",
        "object_guid": "0b6b5c9e-6a54-4a1e-9d5c-1f3e0e2b9a11", "password_interval_days": 30, "dns_host_name": f"{name}.contoso.com",
        "spns": [f"host/{name}"], "membership": None, "encryption_types": 24, "description": None, "enabled": True,
    }


def _creations(count):
    return [GmsaCreation(f"app{index:03d}", "CN=Managed Service Accounts,DC=contoso,DC=com", 30, SETTINGS) for index in range(count)]


def test_a_winrm_batch_runs_one_powershell_per_hundred_accounts(monkeypatch):
    client, runs = _batch_client(monkeypatch)
    accounts = client.create_gmsas(_creations(250))
    assert [account.name for account in accounts] == [f"app{index:03d}" for index in range(250)]
    assert [(operation, len(data["items"])) for operation, data in runs] == [("create_gmsas", 100), ("create_gmsas", 100), ("create_gmsas", 50)]


def test_a_winrm_batch_failure_counts_the_items_of_earlier_runs_and_stops(monkeypatch):
    client, runs = _batch_client(monkeypatch, fail_at=142)
    with pytest.raises(BatchFailed, match=r"create_gmsas failed: Access is denied \(ActiveDirectoryCmdlet") as failed:
        client.create_gmsas(_creations(250))
    assert failed.value.done == 142 and len(runs) == 2


@pytest.mark.parametrize(
    ("operation", "call"),
    [
        ("create_gmsas", lambda client: client.create_gmsas(_creations(1))),
        ("update_gmsas", lambda client: client.update_gmsas([(ACCOUNT, dataclasses.replace(SETTINGS, description="web", enabled=False))])),
        ("delete_gmsas", lambda client: client.delete_gmsas([ACCOUNT])),
    ],
)
def test_each_batch_item_carries_exactly_the_keys_its_script_reads(monkeypatch, operation, call):
    client, runs = _batch_client(monkeypatch)
    call(client)
    (sent_operation, data), = runs
    # What the script reads of an item (the batch's own $item.PSObject aside) is what the one-item script reads of $in.
    read = set(re.findall(r"\$item\.([A-Za-z_]+)", _ps_scripts.OPERATIONS[operation])) - {"PSObject"}
    assert read == set(_ps_scripts.input_keys(_ps_scripts.BATCHES[operation]))
    assert sent_operation == operation and set(data["items"][0]) == read
    assert f"$itemKeys = @({', '.join(repr(key) for key in sorted(read))})" in _ps_scripts.build_script(operation)


def test_a_batch_script_is_its_one_item_script_run_for_each_item():
    for batch, single in _ps_scripts.BATCHES.items():
        lines = _ps_scripts.OPERATIONS[single].replace("$in.", "$item.").splitlines()
        assert all(line in _ps_scripts.OPERATIONS[batch].splitlines() for line in lines) and "foreach ($item in $in.items) {" in _ps_scripts.OPERATIONS[batch]
        assert _ps_scripts.input_keys(batch) == ["items"]


def test_batches_stay_below_a_size_that_a_winrm_run_carries():
    assert 1 < _winrm_transport.BATCH_SIZE <= 100
