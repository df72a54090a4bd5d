# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # The options of plugins/module_utils/domain/_client.py DOMAIN_CONNECTION_ARGUMENT_SPEC.
    DOCUMENTATION = r"""
options:
  domain_transport:
    description:
      - How the module reaches Active Directory. The module runs on the controller; the domain controller is
        never an Ansible host.
      - V(winrm) runs PowerShell with the ActiveDirectory module on O(domain_server), a DC or a management
        host with RSAT (pywinrm).
      - V(ldap) talks LDAP to O(domain_server), which must then be a DC. Sealed GSS-SPNEGO on port 389, or
        LDAPS/StartTLS, so it works where WinRM is closed on the DCs.
      - Can be set with the environment variable E(GMSA_DOMAIN_TRANSPORT).
    type: str
    choices: [winrm, ldap]
    default: winrm
  domain_server:
    description:
      - DNS name (or address) of the WinRM host or domain controller.
      - With Kerberos or certificate validation use the name the service principal or certificate carries.
      - Can be set with the environment variable E(GMSA_DOMAIN_SERVER).
    type: str
    required: true
  domain_port:
    description:
      - Port of the service. Defaults to 5985 (WinRM over HTTP), 5986 (WinRM over HTTPS), 389 (LDAP,
        StartTLS) or 636 (LDAPS), following O(domain_transport) and O(domain_tls).
      - Can be set with the environment variable E(GMSA_DOMAIN_PORT).
    type: int
  domain_username:
    description:
      - The account that manages the objects, as C(DOMAIN\\user) or C(user@domain.example).
      - Required unless O(domain_auth=kerberos), which then uses the current Kerberos credential cache.
      - Can be set with the environment variable E(GMSA_DOMAIN_USERNAME).
    type: str
  domain_password:
    description:
      - Password of O(domain_username).
      - Can be set with the environment variable E(GMSA_DOMAIN_PASSWORD).
    type: str
  domain_auth:
    description:
      - The authentication protocol.
      - V(ntlm) and V(kerberos) encrypt the traffic without TLS (WinRM message encryption, LDAP sealing).
        V(kerberos) needs, on the controller, C(pykerberos) for WinRM (C(pywinrm[kerberos])) and the
        C(pyspnego[kerberos]) extra for LDAP, plus a Kerberos configuration (O(domain_krb5_config)).
      - V(credssp) exists for WinRM only and needs C(pywinrm[credssp]).
      - V(basic) is an LDAP simple bind; it sends the password itself, so it is refused unless O(domain_tls) is
        V(tls) or V(starttls). It is refused with the winrm transport: the WinRM service accepts Basic
        authentication for local accounts only, and a domain controller has none.
      - Can be set with the environment variable E(GMSA_DOMAIN_AUTH).
    type: str
    choices: [ntlm, kerberos, credssp, basic]
    default: ntlm
  domain_tls:
    description:
      - V(none) is WinRM over HTTP or LDAP on port 389, protected by the authentication protocol.
      - V(tls) is WinRM over HTTPS or LDAPS.
      - V(starttls) upgrades an LDAP connection on port 389 (LDAP only).
      - Can be set with the environment variable E(GMSA_DOMAIN_TLS).
    type: str
    choices: [none, tls, starttls]
    default: none
  domain_validate_certs:
    description:
      - Whether the server certificate is checked (chain and name) when O(domain_tls) is not V(none).
      - Turn it off only against a lab.
      - Can be set with the environment variable E(GMSA_DOMAIN_VALIDATE_CERTS).
    type: bool
    default: true
  domain_ca_cert:
    description:
      - PEM file of the CA certificates that are trusted for the server certificate.
      - Without it the system trust store is used; environment variables such as E(REQUESTS_CA_BUNDLE) are
        not consulted.
      - Can be set with the environment variable E(GMSA_DOMAIN_CA_CERT).
    type: path
  domain_krb5_config:
    description:
      - Kerberos configuration file (C(krb5.conf)) for O(domain_auth=kerberos) and for the Kerberos ticket
        check of M(wincontainers.gmsa.gmsa_domain_info).
      - Defaults to the environment variable E(KRB5_CONFIG), then the system configuration.
    type: path
  domain_timeout:
    description:
      - Seconds the module may spend talking to the domain, connection included. Past that it fails naming
        the server.
      - Can be set with the environment variable E(GMSA_DOMAIN_TIMEOUT).
    type: int
    default: 120
notes:
  - The connection options are usually set once for all domain modules with C(module_defaults) for the
    action group C(group/wincontainers.gmsa.domain), or injected as environment variables by an AWX/AAP
    credential type.
requirements:
  - pywinrm >= 0.5.0 (winrm transport)
  - sansldap and pyspnego (ldap transport)
"""
