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
      - With O(domain_auth=kerberos) and the winrm transport it must be C(user@domain.example); the module gets
        a ticket for it with C(kinit) (the password on its standard input) into a credential cache of its own,
        removed at the end of the run.
      - Required unless O(domain_auth=kerberos), which without O(domain_username) and O(domain_password) uses
        the current Kerberos credential cache (E(KRB5CCNAME)).
      - Can be set with the environment variable E(GMSA_DOMAIN_USERNAME).
    type: str
  domain_password:
    description:
      - Password of O(domain_username).
      - Can be set with the environment variable E(GMSA_DOMAIN_PASSWORD).
    type: str
  domain_auth:
    description:
      - The authentication protocol. V(kerberos) with O(domain_tls=tls) is the recommended setting; the server
        is authenticated twice (its certificate and its Kerberos key) and no password hash crosses the network.
        The modules warn about NTLM without TLS, Basic, and O(domain_validate_certs=false).
      - V(ntlm) and V(kerberos) encrypt the traffic without TLS (WinRM message encryption, LDAP sealing).
        V(kerberos) needs, on the controller, C(pykerberos) for WinRM (C(pywinrm[kerberos])) and the
        C(pyspnego[kerberos]) extra for LDAP, plus a Kerberos configuration (O(domain_krb5_config)).
      - V(credssp) exists for WinRM only and needs C(pywinrm[credssp]). It hands the password itself to the
        WinRM host, which can then reach the DC as the user.
      - Which to choose for the winrm transport. When O(domain_server) is a DC, V(kerberos) (or V(ntlm)), since the
        ActiveDirectory cmdlets run on the DC itself. When it is a management host with RSAT that is not a DC,
        the cmdlets must authenticate onward to a DC (the double hop), which a plain NTLM or Kerberos logon
        cannot. Use V(kerberos) with O(domain_kerberos_delegation=true) when the management host's computer
        account is trusted for delegation, else V(credssp) (enabled on the host with
        C(Enable-WSManCredSSP -Role Server)) over O(domain_tls=tls).
      - V(basic) is an LDAP simple bind; it sends the password itself, so it is refused unless O(domain_tls) is
        V(tls) or V(starttls). It is refused with the winrm transport, since the WinRM service accepts Basic
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
  domain_kerberos_hostname:
    description:
      - Host name in the WinRM service's principal C(HTTP/<name>), when O(domain_server) is an address or
        an alias that the principal does not carry. Defaults to O(domain_server).
      - Winrm transport only.
      - Can be set with the environment variable E(GMSA_DOMAIN_KERBEROS_HOSTNAME).
    type: str
  domain_kerberos_delegation:
    description:
      - Get a forwardable ticket and delegate it to the WinRM host, so that the ActiveDirectory cmdlets on a
        management host can reach the DC as the user. Needs O(domain_auth=kerberos) and a host trusted for
        delegation. Not needed when O(domain_server) is a DC.
      - Winrm transport only.
      - Can be set with the environment variable E(GMSA_DOMAIN_KERBEROS_DELEGATION).
    type: bool
    default: false
  domain_proxy:
    description:
      - URL of an HTTP proxy to reach the WinRM service through.
      - Without it no proxy is used; the environment variables E(HTTP_PROXY) and E(HTTPS_PROXY) are never
        consulted (pywinrm would otherwise follow them).
      - Winrm transport only.
      - Can be set with the environment variable E(GMSA_DOMAIN_PROXY).
    type: str
  domain_timeout:
    description:
      - Seconds the module may spend talking to the domain, connection included. Past that it fails naming
        the server.
      - It is the deadline of every step, each bounded by the time left, so a hung server is given up at most one
        request after it. Those steps are the TCP connect and TLS handshake (at most 10 seconds each), each LDAP bind and
        operation, C(kinit) (at most 30 seconds) and each WinRM request. A WinRM request may take one operation timeout
        (O(domain_timeout) less 5 seconds, between 1 and 20) plus 5 seconds.
      - The default fits a batch of about 500 new gMSAs on a slow domain controller. Creating a gMSA costs the DC
        far more than reading one (a Samba 4.22 DC spends 0.2-0.3 seconds of its single LDAP worker on each; 500
        took 2.5 minutes on a machine at load 5 to 10 and 6 minutes at load 20), while a rerun that changes nothing
        reads every account in a few searches (12 seconds for 500). For bigger batches allow about 1 second per
        account to be created.
      - Can be set with the environment variable E(GMSA_DOMAIN_TIMEOUT).
    type: int
    default: 600
notes:
  - The connection options are usually set once for all domain modules with C(module_defaults) for the
    action group C(group/wincontainers.gmsa.domain), or injected as environment variables by an AWX/AAP
    credential type.
requirements:
  - pywinrm >= 0.5.0 (winrm transport); C(pywinrm[kerberos]) and the C(kinit) command for Kerberos,
    C(pywinrm[credssp]) for CredSSP
  - sansldap and pyspnego (ldap transport)
"""
