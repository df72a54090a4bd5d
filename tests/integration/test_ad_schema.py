# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The attribute list the static check of the scripts uses is the lab DC's schema, read now."""

from __future__ import annotations

from tests.integration.ad_schema import CHECKED_IN_LIST, HEADER, read_schema_attributes

# The lab DC, and the connection fixtures (ldap_params, ...).
pytest_plugins = ("tests.lab.pytest_samba", "tests.integration.wsman_endpoint")


def test_checked_in_schema_list_is_the_lab_dcs_schema(ldap_params):
    live = read_schema_attributes(ldap_params)
    assert {"msDS-GroupMSAMembership", "msDS-ManagedPassword", "servicePrincipalName"} <= set(live)
    with open(CHECKED_IN_LIST, encoding="ascii") as checked_in:
        assert checked_in.read() == HEADER + "".join(f"{name}\n" for name in live), "regenerate it: python -m tests.integration.ad_schema"
