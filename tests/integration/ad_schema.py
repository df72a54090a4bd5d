# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The attribute names (lDAPDisplayName) of the lab DC's schema, which the static check of the scripts uses.

Regenerate the checked-in list after a change of the lab's Samba version (test_ad_schema.py fails until then):

    .venv/bin/python -m tests.integration.ad_schema > tests/unit/plugins/module_utils/domain/ad_schema_attributes.txt
"""

from __future__ import annotations

import os
import sys

from tests.lab import samba  # also makes ansible_collections.wincontainers.gmsa importable

from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._client import open_domain_client

CHECKED_IN_LIST = os.path.join(
    os.path.dirname(__file__), os.pardir, "unit", "plugins", "module_utils", "domain", "ad_schema_attributes.txt"
)
HEADER = "# lDAPDisplayName of every attributeSchema object of the lab DC: python -m tests.integration.ad_schema\n"


def read_schema_attributes(ldap_params: dict) -> list[str]:
    """Every attribute name of the DC's schema, sorted case-insensitively."""
    with open_domain_client(ldap_params) as client:
        schema_dn = client._connection.rootdse(("schemaNamingContext",))["schemaNamingContext"][0]
        entries = client._search("reading the schema", schema_dn, "(objectClass=attributeSchema)", ("lDAPDisplayName",), "one")
    return sorted((entry.values("lDAPDisplayName")[0].decode("ascii") for entry in entries), key=str.lower)


def main() -> int:
    dc = samba.up()
    params = {
        "domain_transport": "ldap", "domain_server": dc["host"], "domain_port": None, "domain_auth": "ntlm", "domain_tls": "none",
        "domain_username": f"{dc['netbios_name']}\\{dc['admin_user']}", "domain_password": dc["admin_password"],
        "domain_validate_certs": True, "domain_ca_cert": None, "domain_krb5_config": dc["krb5_config"], "domain_timeout": 60,
    }
    sys.stdout.write(HEADER + "".join(f"{name}\n" for name in read_schema_attributes(params)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
