# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""TLS material for the admission webhook, made locally so no cluster needs the CSR API.

The upstream deploy script asks the cluster to sign the webhook's certificate with the
``kubernetes.io/kubelet-serving`` signer, which EKS, Rancher and others refuse. Here a private CA signs the
server certificate; the API server trusts that CA through the webhook configurations' ``caBundle``. The CA
lives longer than the server certificate and is reused across runs, so renewing the server certificate
does not change the ``caBundle``. The webhook reads its certificate when it starts (upstream's ``--cert-reload``
loses its file watch after the kubelet's first ``..data`` swap, upstream issue 176), so the module rolls the
Deployment when the served certificate changes, keyed by :func:`fingerprint`.

Everything here is pure: the caller passes ``now`` and persists the PEM text it gets back.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
from dataclasses import dataclass

try:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
except ImportError:  # reported by the modules through missing_required_lib
    x509 = None

_MAX_COMMON_NAME = 64
# Backdating absorbs clock skew between the controller and the API server.
_BACKDATE = datetime.timedelta(minutes=5)


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key, both PEM text."""

    cert: str
    key: str


def service_dns_names(service: str, namespace: str) -> list[str]:
    """The names the API server may use to reach a Service: ``svc``, ``svc.ns``, ``svc.ns.svc`` (and ``.cluster.local``)."""
    return [service, f"{service}.{namespace}", f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.cluster.local"]


def _new_key() -> ec.EllipticCurvePrivateKey:
    # P-256: accepted by every Kubernetes version's TLS stack and fast to generate.
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()


def _cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _builder(subject: x509.Name, issuer: x509.Name, public_key, now: datetime.datetime, validity: datetime.timedelta) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + validity)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def new_ca(common_name: str, now: datetime.datetime, validity: datetime.timedelta) -> KeyPair:
    """A self-signed CA that may sign server certificates only (path length 0)."""
    key = _new_key()
    # X.509 caps a common name at 64 characters (RFC 5280 ub-common-name); the name only labels the CA.
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:_MAX_COMMON_NAME])])
    cert = (
        _builder(name, name, key.public_key(), now, validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return KeyPair(cert=_cert_pem(cert), key=_key_pem(key))


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _subject_alternative_names(cert: x509.Certificate) -> list[str]:
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return names.get_values_for_type(x509.DNSName) + [str(address) for address in names.get_values_for_type(x509.IPAddress)]


def new_server_cert(ca: KeyPair, dns_names: list[str], now: datetime.datetime, validity: datetime.timedelta) -> KeyPair:
    """A serving certificate for ``dns_names`` (IP addresses allowed too) signed by ``ca``; it never outlives the CA."""
    ca_cert = x509.load_pem_x509_certificate(ca.cert.encode())
    ca_key = serialization.load_pem_private_key(ca.key.encode(), password=None)
    key = _new_key()
    not_after = min(now + validity, ca_cert.not_valid_after_utc)
    cert = (
        _builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0])]), ca_cert.subject, key.public_key(), now, not_after - now)
        .add_extension(x509.SubjectAlternativeName([_general_name(name) for name in dns_names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return KeyPair(cert=_cert_pem(cert), key=_key_pem(key))


def not_after(cert_pem: str) -> datetime.datetime:
    """When a PEM certificate expires (UTC)."""
    return x509.load_pem_x509_certificate(cert_pem.encode()).not_valid_after_utc


def ca_renewal_reason(ca: KeyPair, now: datetime.datetime, renew_before: datetime.timedelta) -> str | None:
    """Why the CA must be replaced, or None to keep it (and with it the ``caBundle``)."""
    try:
        cert = x509.load_pem_x509_certificate(ca.cert.encode())
        key = serialization.load_pem_private_key(ca.key.encode(), password=None)
    except ValueError as error:
        return f"the stored CA cannot be read ({error})"
    if cert.public_key() != key.public_key():
        return "the stored CA key does not match its certificate"
    if cert.not_valid_after_utc - renew_before <= now:
        return f"the CA expires on {cert.not_valid_after_utc.isoformat()}, within the renewal window"
    return None


def server_renewal_reason(server: KeyPair, ca: KeyPair, dns_names: list[str], now: datetime.datetime, renew_before: datetime.timedelta) -> str | None:
    """Why the server certificate must be reissued, or None when it is still good for ``renew_before``."""
    try:
        cert = x509.load_pem_x509_certificate(server.cert.encode())
        key = serialization.load_pem_private_key(server.key.encode(), password=None)
        ca_cert = x509.load_pem_x509_certificate(ca.cert.encode())
    except ValueError as error:
        return f"the stored server certificate cannot be read ({error})"
    if cert.public_key() != key.public_key():
        return "the server key does not match its certificate"
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return "the server certificate was not issued by the current CA"
    names = _subject_alternative_names(cert)
    if sorted(names) != sorted(dns_names):
        return f"the server certificate names {sorted(names)}, the Service needs {sorted(dns_names)}"
    if cert.not_valid_after_utc - renew_before <= now:
        return f"the server certificate expires on {cert.not_valid_after_utc.isoformat()}, within the renewal window"
    return None


def fingerprint(cert_pem: str) -> str:
    """SHA-256 of the first (leaf) certificate's DER, hex: what a pod-template annotation carries to roll the pods."""
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def load_bundle(bundle_pem: str) -> list:
    """The certificates of a PEM bundle; ValueError when it holds none or one cannot be read."""
    certificates = x509.load_pem_x509_certificates(bundle_pem.encode())
    if not certificates:
        raise ValueError("no PEM certificate found")
    return certificates


def provided_certificate_problem(server: KeyPair, bundle_pem: str, dns_name: str, now: datetime.datetime) -> str | None:
    """Why a certificate someone else provides cannot serve ``dns_name`` trusted by ``bundle_pem``, or None."""
    try:
        cert = x509.load_pem_x509_certificate(server.cert.encode())
        key = serialization.load_pem_private_key(server.key.encode(), password=None)
    except ValueError as error:
        return f"its certificate or key cannot be read ({error})"
    if cert.public_key() != key.public_key():
        return "its key does not match its certificate"
    if dns_name not in _subject_alternative_names(cert):
        return f"its certificate names {sorted(_subject_alternative_names(cert))}, the API server calls {dns_name}"
    if cert.not_valid_after_utc <= now:
        return f"its certificate expired on {cert.not_valid_after_utc.isoformat()}"
    for issuer in load_bundle(bundle_pem):
        try:
            cert.verify_directly_issued_by(issuer)
            return None
        except (ValueError, TypeError, InvalidSignature):
            continue
    return "its certificate was not issued by a certificate of tls.ca_bundle"
