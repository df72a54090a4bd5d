"""domain_timeout is the deadline of a module's whole conversation with the domain: against a peer that accepts
and never answers (tests/unit/plugins/module_utils/conftest.py), each transport ends with an error naming the
server within the deadline plus one request's timeout."""

import re
import time

import pytest

from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._client import (
    DOMAIN_CONNECTION_ARGUMENT_SPEC,
    DomainConnectionError,
    DomainError,
    open_domain_client,
)

DOMAIN_TIMEOUT = 2
# What a loaded machine needs on top to start a request and raise.
MARGIN = 1.5
# pywinrm's HTTP read timeout with this deadline: OperationTimeout max(1, min(20, 2 - 5)) = 1 s, plus 5 s.
WINRM_READ_TIMEOUT = 6


def params(**values):
    connection = {name: spec.get("default") for name, spec in DOMAIN_CONNECTION_ARGUMENT_SPEC.items()}
    connection.update(domain_server="127.0.0.1", domain_username="LAB\\admin", domain_password="not-sent", domain_timeout=DOMAIN_TIMEOUT)
    return dict(connection, **values)


def fails_within(seconds, error_type, message, connection):
    started = time.monotonic()
    with pytest.raises(error_type, match=message) as caught:
        open_domain_client(connection).domain_facts()
    assert time.monotonic() - started < seconds, f"took {time.monotonic() - started:.1f} s"
    assert "not-sent" not in str(caught.value)


def test_ldap_bind_to_a_dc_that_never_answers(hung_peer):
    fails_within(
        DOMAIN_TIMEOUT + MARGIN, DomainConnectionError, f"domain controller ldap://127.0.0.1:{hung_peer} did not answer within",
        params(domain_transport="ldap", domain_port=hung_peer),
    )


def test_ldaps_handshake_with_a_dc_that_never_answers(hung_peer):
    fails_within(
        DOMAIN_TIMEOUT + MARGIN, DomainConnectionError, f"TLS handshake with ldaps://127.0.0.1:{hung_peer} failed: .*timed out",
        params(domain_transport="ldap", domain_tls="tls", domain_port=hung_peer),
    )


def test_winrm_to_a_host_that_never_answers(hung_peer):
    fails_within(
        DOMAIN_TIMEOUT + WINRM_READ_TIMEOUT + MARGIN, DomainConnectionError,
        f"https://127.0.0.1:{hung_peer}/wsman: cannot reach the WinRM service: .*timed out",
        params(domain_transport="winrm", domain_tls="tls", domain_port=hung_peer),
    )


def test_kinit_against_a_kdc_that_never_answers(hung_peer, tmp_path, monkeypatch):
    krb5_config = tmp_path / "krb5.conf"
    # TCP only (udp_preference_limit 1; a UDP request to a closed port would be refused at once), to the peer that
    # never answers: MIT kinit then waits for ever by itself.
    krb5_config.write_text(
        "[libdefaults]\n default_realm = CONTOSO.COM\n dns_lookup_kdc = false\n udp_preference_limit = 1\n"
        f"[realms]\n CONTOSO.COM = {{\n  kdc = 127.0.0.1:{hung_peer}\n }}\n"
    )
    monkeypatch.delenv("KRB5CCNAME", raising=False)
    fails_within(
        DOMAIN_TIMEOUT + MARGIN, DomainError, re.escape("kinit got no answer from the KDCs of realm CONTOSO.COM for admin@CONTOSO.COM within"),
        params(domain_transport="winrm", domain_tls="tls", domain_port=5986, domain_auth="kerberos", domain_username="admin@contoso.com",
               domain_krb5_config=str(krb5_config)),
    )
