# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import pytest

from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._security_descriptor import (
    ADMINISTRATORS_SID,
    Ace,
    decode_security_descriptor,
    encode_group_msa_membership,
    encode_security_descriptor,
    rewrite_password_readers,
    sid_from_bytes,
    sid_to_bytes,
)
from ansible_collections.wincontainers.gmsa.plugins.module_utils._validation import ValidationError

USER_SID = "S-1-5-21-1004336348-1177238915-682003330-1105"
GROUP_SID = "S-1-5-21-1004336348-1177238915-682003330-1106"

# Binary SIDs: revision 1, sub-authority count, 48-bit authority big-endian, sub-authorities little-endian.
USER_SID_HEX = "0105 000000000005 15000000 dcf4dc3b 833d2b46 828ba628 51040000"
GROUP_SID_HEX = "0105 000000000005 15000000 dcf4dc3b 833d2b46 828ba628 52040000"
ADMINISTRATORS_SID_HEX = "0102 000000000005 20000000 20020000"

# The expected descriptors below are byte for byte what impacket's gMSA example (create_empty_sd plus one
# create_allow_ace per SID) produces for the same SIDs; they were cross-checked against impacket 0.12.
#   header: revision 1, sbz1, control 0x8004, offsets of owner, group (0), SACL (0) and DACL (0x14)
#   DACL:   revision 4, sbz1, size, ACE count, sbz2; each ACE: type 0, flags 0, size 0x24, mask 0x000f01ff, SID
#   owner:  S-1-5-32-544
ONE_READER = bytes.fromhex(
    "01 00 0480 40000000 00000000 00000000 14000000 "
    "04 00 2c00 0100 0000 "
    f"00 00 2400 ff010f00 {USER_SID_HEX} "
    f"{ADMINISTRATORS_SID_HEX}"
)
TWO_READERS = bytes.fromhex(
    "01 00 0480 64000000 00000000 00000000 14000000 "
    "04 00 5000 0200 0000 "
    f"00 00 2400 ff010f00 {USER_SID_HEX} "
    f"00 00 2400 ff010f00 {GROUP_SID_HEX} "
    f"{ADMINISTRATORS_SID_HEX}"
)
NO_READER = bytes.fromhex(f"01 00 0480 1c000000 00000000 00000000 14000000 04 00 0800 0000 0000 {ADMINISTRATORS_SID_HEX}")

# A header with no owner, group or SACL and the DACL right after it.
DACL_ONLY_HEADER_HEX = "01 00 0480 00000000 00000000 00000000 14000000"

# Built with impacket's ldaptypes: control adds SE_DACL_PROTECTED, group SY, and a DACL of
# (A;CI;0x10;;;...1105) (D;;0xf01ff;;;...1106) (OA;;0x10;<msDS-ManagedPassword attribute GUID>;;...1107)
# (A;IO;0xf01ff;;;...1108) (A;;0x20;;;...1109).
MIXED = bytes.fromhex(
    "01000490e4000000f400000000000000140000000400d0000500000000022400100000000105000000000005150000000100000002000000"
    "030000005104000001002400ff010f000105000000000005150000000100000002000000030000005204000005003800100000000100000086"
    "ed62e328b74208b27d2dea7a9df2180105000000000005150000000100000002000000030000005304000000082400ff010f000105000000000"
    "005150000000100000002000000030000005404000000002400200000000105000000000005150000000100000002000000030000005504000"
    "001020000000000052000000020020000010100000000000512000000"
)


@pytest.mark.parametrize(
    "sid, hex_value",
    [
        (USER_SID, USER_SID_HEX),
        (ADMINISTRATORS_SID, ADMINISTRATORS_SID_HEX),
        ("S-1-1-0", "0101 000000000001 00000000"),
        ("S-1-0x123456789ABC-7", "0101 123456789abc 07000000"),
    ],
)
def test_sid_binary_round_trip(sid, hex_value):
    assert sid_to_bytes(sid) == bytes.fromhex(hex_value)
    assert sid_from_bytes(bytes.fromhex(hex_value)) == sid


def test_sid_to_bytes_names_the_field():
    with pytest.raises(ValidationError, match=r"^principals\[3\]: 'S-1-5-21-x' is not a SID"):
        sid_to_bytes("S-1-5-21-x", "principals[3]")


@pytest.mark.parametrize(
    "hex_value, message",
    [
        ("0105000000000005", "binary SID at offset 0 is truncated"),
        ("010100000000000100", "binary SID at offset 0 is truncated"),
        ("020100000000000100000000", "binary SID at offset 0 has revision 2, expected 1"),
        ("01010000000000010000000000", "binary SID has 1 bytes after its end"),
    ],
)
def test_sid_from_bytes_rejects_malformed_data(hex_value, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        sid_from_bytes(bytes.fromhex(hex_value))


@pytest.mark.parametrize(
    "sids, expected", [([USER_SID], ONE_READER), ([USER_SID, GROUP_SID], TWO_READERS), ([], NO_READER)], ids=["one-reader", "two-readers", "no-reader"]
)
def test_encode_group_msa_membership_exact_bytes(sids, expected):
    assert encode_group_msa_membership(sids) == expected


def test_encode_drops_duplicates_written_differently():
    assert encode_group_msa_membership([USER_SID, USER_SID.lower(), GROUP_SID]) == TWO_READERS


def test_encode_names_the_bad_principal():
    with pytest.raises(ValidationError, match=r"^allowed\[1\]: 'CONTOSO\\\\web' is not a SID"):
        encode_group_msa_membership([USER_SID, "CONTOSO\\web"], field="allowed")


@pytest.mark.parametrize("sids", [[USER_SID], [USER_SID, GROUP_SID], []])
def test_encode_decode_round_trip(sids):
    descriptor = decode_security_descriptor(encode_group_msa_membership(sids))
    assert descriptor.owner == ADMINISTRATORS_SID
    assert descriptor.group is None
    assert descriptor.password_readers == tuple(sids)
    assert descriptor.other_aces == ()


def test_sddl_of_written_descriptor():
    assert decode_security_descriptor(TWO_READERS).to_sddl() == f"O:BAD:(A;;0xf01ff;;;{USER_SID})(A;;0xf01ff;;;{GROUP_SID})"
    assert decode_security_descriptor(NO_READER).to_sddl() == "O:BAD:"


def test_decode_owner_before_dacl_layout():
    # Samba's NDR marshalling puts the owner right after the header and the DACL after it.
    data = bytes.fromhex(
        "01 00 0480 14000000 00000000 00000000 24000000 "
        f"{ADMINISTRATORS_SID_HEX} "
        f"04 00 2c00 0100 0000 00 00 2400 ff010f00 {USER_SID_HEX}"
    )
    descriptor = decode_security_descriptor(data)
    assert (descriptor.owner, descriptor.password_readers) == (ADMINISTRATORS_SID, (USER_SID,))


def test_decode_flags_aces_that_are_not_plain_grants():
    descriptor = decode_security_descriptor(MIXED)
    assert descriptor.owner == ADMINISTRATORS_SID
    assert descriptor.group == "S-1-5-18"
    assert descriptor.password_readers == ("S-1-5-21-1-2-3-1105",)
    assert descriptor.other_aces == (
        Ace(0x01, 0x00, 0xF01FF, "S-1-5-21-1-2-3-1106"),
        Ace(0x05, 0x00, 0x10, "S-1-5-21-1-2-3-1107", object_type="e362ed86-b728-0842-b27d-2dea7a9df218"),
        Ace(0x00, 0x08, 0xF01FF, "S-1-5-21-1-2-3-1108"),
        Ace(0x00, 0x00, 0x20, "S-1-5-21-1-2-3-1109"),
    )
    assert descriptor.to_sddl() == (
        "O:BAG:SYD:P(A;CI;0x10;;;S-1-5-21-1-2-3-1105)(D;;0xf01ff;;;S-1-5-21-1-2-3-1106)"
        "(OA;;0x10;e362ed86-b728-0842-b27d-2dea7a9df218;;S-1-5-21-1-2-3-1107)(A;IO;0xf01ff;;;S-1-5-21-1-2-3-1108)"
        "(A;;0x20;;;S-1-5-21-1-2-3-1109)"
    )


def test_decode_null_dacl():
    descriptor = decode_security_descriptor(bytes.fromhex(f"01 00 0080 14000000 00000000 00000000 00000000 {ADMINISTRATORS_SID_HEX}"))
    assert descriptor.dacl is None
    assert descriptor.password_readers == ()
    assert descriptor.to_sddl() == "O:BAD:NO_ACCESS_CONTROL"


# Byte offsets in ONE_READER: DACL header at 20 (size at 22, ACE count at 24), first ACE at 28 (type 28, size 30).
@pytest.mark.parametrize(
    "data, message",
    [
        (ONE_READER[:19], "security descriptor is 19 bytes, shorter than its 20-byte header"),
        (b"\x02" + ONE_READER[1:], "security descriptor has revision 2, expected 1"),
        (ONE_READER[:2] + b"\x04\x00" + ONE_READER[4:], "security descriptor is not self-relative"),
        (ONE_READER[:-4], "binary SID at offset 64 is truncated"),
        (bytes.fromhex(f"{DACL_ONLY_HEADER_HEX} 04 00 2c00"), "DACL at offset 20 is truncated"),
        (ONE_READER[:22] + (300).to_bytes(2, "little") + ONE_READER[24:], "DACL at offset 20 claims 300 bytes, past the end of the descriptor"),
        (ONE_READER[:28] + b"\x09" + ONE_READER[29:], "ACE 0 of the DACL has type 0x09; only allow and deny ACEs are expected here"),
        (ONE_READER[:30] + (4).to_bytes(2, "little") + ONE_READER[32:], "ACE 0 of the DACL has an invalid size 4"),
        (ONE_READER[:24] + (2).to_bytes(2, "little") + ONE_READER[26:], "ACE 1 of the DACL is truncated"),
        # An ACCESS_ALLOWED_OBJECT ACE whose flags announce an object type GUID that is not there.
        (bytes.fromhex(f"{DACL_ONLY_HEADER_HEX} 04 00 1400 0100 0000 05 00 0c00 10000000 01000000"), "ACE 0 of the DACL is truncated"),
    ],
)
def test_decode_rejects_malformed_descriptors(data, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        decode_security_descriptor(data)


def test_encode_reproduces_impackets_mixed_descriptor():
    # Deny, object and inherit-only ACEs, a group and DACL flags, byte for byte as impacket laid them out.
    assert encode_security_descriptor(decode_security_descriptor(MIXED)) == MIXED


def test_rewrite_keeps_deny_and_object_aces_and_adds_the_new_reader_last():
    rewritten = decode_security_descriptor(rewrite_password_readers(MIXED, ["S-1-5-21-1-2-3-1105", "S-1-5-21-1-2-3-1110"]))
    assert rewritten.to_sddl() == (
        "O:BAG:SYD:P(A;CI;0x10;;;S-1-5-21-1-2-3-1105)(D;;0xf01ff;;;S-1-5-21-1-2-3-1106)"
        "(OA;;0x10;e362ed86-b728-0842-b27d-2dea7a9df218;;S-1-5-21-1-2-3-1107)(A;IO;0xf01ff;;;S-1-5-21-1-2-3-1108)"
        "(A;;0x20;;;S-1-5-21-1-2-3-1109)(A;;0xf01ff;;;S-1-5-21-1-2-3-1110)"
    )


def test_rewrite_drops_only_the_grant_of_a_reader_that_goes():
    rewritten = decode_security_descriptor(rewrite_password_readers(MIXED, []))
    assert rewritten.password_readers == ()
    assert rewritten.other_aces == decode_security_descriptor(MIXED).other_aces


def test_rewrite_of_the_same_readers_changes_nothing():
    assert rewrite_password_readers(TWO_READERS, [GROUP_SID, USER_SID]) == TWO_READERS


def test_rewrite_names_the_bad_principal():
    with pytest.raises(ValidationError, match=r"readers\[1\]"):
        rewrite_password_readers(ONE_READER, [USER_SID, "S-1-x"], field="readers")
