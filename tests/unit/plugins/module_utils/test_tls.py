"""Unit tests for the webhook's TLS material: issuance, and when to keep or renew it."""

import datetime
import hashlib
import ssl

import pytest
from ansible_collections.wincontainers.gmsa.plugins.module_utils import _tls
from cryptography import x509

NOW = datetime.datetime(2026, 11, 28, 12, 0, tzinfo=datetime.timezone.utc)
DAY = datetime.timedelta(days=1)
NAMES = _tls.service_dns_names("gmsa-webhook", "gmsa-system")


@pytest.fixture(scope="module")
def ca():
    return _tls.new_ca("test CA", NOW, 3650 * DAY)


@pytest.fixture(scope="module")
def server(ca):
    return _tls.new_server_cert(ca, NAMES, NOW, 365 * DAY)


def test_service_names_cover_what_the_api_server_dials():
    assert "gmsa-webhook.gmsa-system.svc" in NAMES
    assert NAMES[0] == "gmsa-webhook"


def test_server_certificate_is_for_serving_the_service_and_signed_by_the_ca(ca, server):
    cert = x509.load_pem_x509_certificate(server.cert.encode())
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca.cert.encode()))
    assert sorted(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)) == sorted(NAMES)
    assert cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH])
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert _tls.not_after(server.cert) == NOW + 365 * DAY


def test_ca_may_sign_leaf_certificates_only(ca):
    constraints = x509.load_pem_x509_certificate(ca.cert.encode()).extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca and constraints.path_length == 0


def test_server_certificate_never_outlives_its_ca():
    short_ca = _tls.new_ca("short", NOW, 10 * DAY)
    assert _tls.not_after(_tls.new_server_cert(short_ca, NAMES, NOW, 365 * DAY).cert) == _tls.not_after(short_ca.cert)


def test_valid_material_is_kept(ca, server):
    assert _tls.ca_renewal_reason(ca, NOW, 30 * DAY) is None
    assert _tls.server_renewal_reason(server, ca, NAMES, NOW, 30 * DAY) is None


@pytest.mark.parametrize(
    ("days_later", "renew"),
    [(334, False), (335, True), (400, True)],
    ids=["outside-window", "enters-window", "expired"],
)
def test_server_certificate_is_renewed_inside_the_window(ca, server, days_later, renew):
    reason = _tls.server_renewal_reason(server, ca, NAMES, NOW + days_later * DAY, 30 * DAY)
    assert (reason is not None) == renew
    if renew:
        assert "renewal window" in reason


def test_server_certificate_for_other_names_is_renewed(ca, server):
    reason = _tls.server_renewal_reason(server, ca, _tls.service_dns_names("gmsa-webhook", "elsewhere"), NOW, 30 * DAY)
    assert "names" in reason


def test_server_certificate_from_another_ca_is_renewed(server):
    other = _tls.new_ca("other", NOW, 3650 * DAY)
    assert "not issued by the current CA" in _tls.server_renewal_reason(server, other, NAMES, NOW, 30 * DAY)


def test_mismatched_or_unreadable_material_is_replaced(ca, server):
    other_key = _tls.new_server_cert(ca, NAMES, NOW, 365 * DAY).key
    assert "does not match" in _tls.server_renewal_reason(_tls.KeyPair(server.cert, other_key), ca, NAMES, NOW, 30 * DAY)
    assert "cannot be read" in _tls.server_renewal_reason(_tls.KeyPair("garbage", server.key), ca, NAMES, NOW, 30 * DAY)
    assert "cannot be read" in _tls.ca_renewal_reason(_tls.KeyPair(ca.cert, "garbage"), NOW, 30 * DAY)
    assert "does not match" in _tls.ca_renewal_reason(_tls.KeyPair(ca.cert, server.key), NOW, 30 * DAY)


def test_ca_is_replaced_only_inside_its_window(ca):
    assert _tls.ca_renewal_reason(ca, NOW + 3619 * DAY, 30 * DAY) is None
    assert "renewal window" in _tls.ca_renewal_reason(ca, NOW + 3621 * DAY, 30 * DAY)


def test_keys_are_pkcs8_pem_without_encryption(server):
    assert server.key.startswith("-----BEGIN PRIVATE KEY-----")


def test_ip_addresses_become_ip_names_and_renewal_compares_them():
    ca = _tls.new_ca("test CA", NOW, 3650 * DAY)
    server = _tls.new_server_cert(ca, ["127.0.0.1", "localhost"], NOW, 365 * DAY)
    names = x509.load_pem_x509_certificate(server.cert.encode()).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(address) for address in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert _tls.server_renewal_reason(server, ca, ["localhost", "127.0.0.1"], NOW, 30 * DAY) is None
    assert "needs ['127.0.0.2', 'localhost']" in _tls.server_renewal_reason(server, ca, ["localhost", "127.0.0.2"], NOW, 30 * DAY)


def test_chain_passes_strict_x509_verification(ca, server, tmp_path):
    """Python 3.13 verifies with VERIFY_X509_STRICT by default (key identifiers, CA key usage): clients must accept the chain."""
    (tmp_path / "ca.pem").write_text(ca.cert)
    context = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    (tmp_path / "server.pem").write_text(server.cert + server.key)
    server_context.load_cert_chain(str(tmp_path / "server.pem"))
    client_side, server_side = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = context.wrap_bio(server_side, client_side, server_hostname=NAMES[2])
    accepted = server_context.wrap_bio(client_side, server_side, server_side=True)
    for _round in range(4):
        for end in (client, accepted):
            try:
                end.do_handshake()
            except ssl.SSLWantReadError:
                pass
    assert client.version() is not None


def test_fingerprint_is_the_sha256_of_the_leaf_certificate(server, ca):
    der = x509.load_pem_x509_certificate(server.cert.encode()).public_bytes(_tls.serialization.Encoding.DER)
    assert _tls.fingerprint(server.cert) == hashlib.sha256(der).hexdigest()
    # A chain (leaf first) has the leaf's fingerprint; another certificate has another.
    assert _tls.fingerprint(server.cert + ca.cert) == _tls.fingerprint(server.cert) != _tls.fingerprint(ca.cert)


def test_provided_certificate_is_accepted_when_it_serves_the_service_and_chains_to_the_bundle(ca, server):
    other_ca = _tls.new_ca("other CA", NOW, 3650 * DAY)
    assert _tls.provided_certificate_problem(server, other_ca.cert + ca.cert, "gmsa-webhook.gmsa-system.svc", NOW) is None
    assert "was not issued by a certificate of tls.ca_bundle" in _tls.provided_certificate_problem(server, other_ca.cert, "gmsa-webhook.gmsa-system.svc", NOW)
    assert "the API server calls gmsa-webhook.other.svc" in _tls.provided_certificate_problem(server, ca.cert, "gmsa-webhook.other.svc", NOW)
    assert "expired on" in _tls.provided_certificate_problem(server, ca.cert, "gmsa-webhook.gmsa-system.svc", NOW + 400 * DAY)
    assert "key does not match" in _tls.provided_certificate_problem(_tls.KeyPair(server.cert, ca.key), ca.cert, "gmsa-webhook.gmsa-system.svc", NOW)
    with pytest.raises(ValueError):
        _tls.load_bundle("not a certificate")


def test_a_ca_for_long_service_and_namespace_names_is_made():
    # A Service and a namespace may each be 63 characters; a CA's common name may be 64 at most.
    ca = _tls.new_ca("%s.%s webhook CA" % ("s" * 63, "n" * 63), NOW, 3650 * DAY)
    common_name = x509.load_pem_x509_certificate(ca.cert.encode()).subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)[0].value
    assert common_name == ("s" * 63 + ".")[:64]
