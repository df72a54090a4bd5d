# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Binary SIDs and the ``msDS-GroupMSAMembership`` security descriptor, for the LDAP transport.

``msDS-GroupMSAMembership`` holds a self-relative SECURITY_DESCRIPTOR (MS-DTYP 2.4.6) whose DACL says who
may read the gMSA's password (``PrincipalsAllowedToRetrieveManagedPassword``). The encoder writes the
descriptor that impacket's gMSA example writes against Windows DCs, which Samba's own tooling matches (owner,
DACL revision and mask): revision 1, control SE_DACL_PRESENT | SE_SELF_RELATIVE, owner BUILTIN\\Administrators,
no group, no SACL, and a DACL of revision 4 (ACL_REVISION_DS) with one ACCESS_ALLOWED ACE of mask 0xF01FF per
principal, laid out as header, DACL, owner. The decoder accepts any layout and counts a principal as a
password reader as samba-tool's ``trustees`` does: an ACCESS_ALLOWED ACE that grants READ_PROPERTY.

:func:`rewrite_password_readers` changes only the plain grants of an existing descriptor: deny ACEs, object
ACEs and anything else others put there stay, in their order, so a deny still wins over a grant after it.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from ansible_collections.wincontainers.gmsa.plugins.module_utils._validation import format_sid, parse_sid

ADMINISTRATORS_SID = "S-1-5-32-544"
# ADS "generic all" (CCDCLCSWRPWPDTLOCRSDRCWDWO), what impacket and samba-tool grant each principal.
PASSWORD_READER_MASK = 0x000F01FF

_READ_PROPERTY = 0x00000010
_SE_DACL_PRESENT = 0x0004
_SE_SACL_PRESENT = 0x0010
_SE_DACL_AUTO_INHERITED = 0x0400
_SE_DACL_PROTECTED = 0x1000
_SE_SELF_RELATIVE = 0x8000
_SD_REVISION = 1
_SID_REVISION = 1
_ACL_REVISION_DS = 4

_ACCESS_ALLOWED = 0x00
_ACCESS_DENIED = 0x01
_ACCESS_ALLOWED_OBJECT = 0x05
_ACCESS_DENIED_OBJECT = 0x06
_ACE_TYPE_SDDL = {_ACCESS_ALLOWED: "A", _ACCESS_DENIED: "D", _ACCESS_ALLOWED_OBJECT: "OA", _ACCESS_DENIED_OBJECT: "OD"}
_ACE_FLAG_SDDL = ((0x01, "OI"), (0x02, "CI"), (0x04, "NP"), (0x08, "IO"), (0x10, "ID"))
_INHERIT_ONLY = 0x08
_OBJECT_TYPE_PRESENT = 0x1
_INHERITED_OBJECT_TYPE_PRESENT = 0x2
_SDDL_ALIASES = {"S-1-5-32-544": "BA", "S-1-5-18": "SY", "S-1-5-11": "AU", "S-1-1-0": "WD"}

# revision, sbz1, control, then offsets of owner, group, SACL and DACL
_SD_HEADER = struct.Struct("<BBHIIII")
# revision, sbz1, size, ACE count, sbz2
_ACL_HEADER = struct.Struct("<BBHHH")
# type, flags, size, access mask
_ACE_HEADER = struct.Struct("<BBHI")
_SID_HEADER_SIZE = 8


@dataclass(frozen=True)
class Ace:
    """One DACL entry. ``object_type`` and ``inherited_object_type`` are GUIDs, set only on object ACEs."""

    ace_type: int
    flags: int
    mask: int
    sid: str
    object_type: str | None = None
    inherited_object_type: str | None = None

    @property
    def grants_password_read(self) -> bool:
        return self.ace_type == _ACCESS_ALLOWED and not self.flags & _INHERIT_ONLY and bool(self.mask & _READ_PROPERTY)

    def to_sddl(self) -> str:
        flags = "".join(text for bit, text in _ACE_FLAG_SDDL if self.flags & bit)
        parts = (_ACE_TYPE_SDDL[self.ace_type], flags, f"0x{self.mask:x}", self.object_type or "", self.inherited_object_type or "", _sddl_sid(self.sid))
        return f"({';'.join(parts)})"


@dataclass(frozen=True)
class SecurityDescriptor:
    """A decoded security descriptor; ``dacl`` is ``None`` for a NULL DACL (no access control at all)."""

    control: int
    owner: str | None
    group: str | None
    dacl: tuple[Ace, ...] | None

    @property
    def password_readers(self) -> tuple[str, ...]:
        """SIDs allowed to read the password, in DACL order, each once."""
        return tuple(dict.fromkeys(ace.sid for ace in self.dacl or () if ace.grants_password_read))

    @property
    def other_aces(self) -> tuple[Ace, ...]:
        """ACEs that are not a plain grant (deny, object, inherit-only...): rewriting the DACL drops them."""
        return tuple(ace for ace in self.dacl or () if not ace.grants_password_read)

    def to_sddl(self) -> str:
        """Render as SDDL, e.g. ``O:BAD:(A;;0xf01ff;;;S-1-5-21-1-2-3-1105)``."""
        parts = []
        if self.owner:
            parts.append(f"O:{_sddl_sid(self.owner)}")
        if self.group:
            parts.append(f"G:{_sddl_sid(self.group)}")
        if self.dacl is None:
            parts.append("D:NO_ACCESS_CONTROL")
        else:
            dacl_flags = ("P" if self.control & _SE_DACL_PROTECTED else "") + ("AI" if self.control & _SE_DACL_AUTO_INHERITED else "")
            parts.append(f"D:{dacl_flags}{''.join(ace.to_sddl() for ace in self.dacl)}")
        return "".join(parts)


def _sddl_sid(sid: str) -> str:
    return _SDDL_ALIASES.get(sid, sid)


def sid_to_bytes(sid: str, field: str = "sid") -> bytes:
    """Encode a SID string as binary: authority big-endian on 48 bits, sub-authorities little-endian."""
    authority, sub_authorities = parse_sid(sid, field)
    return (
        struct.pack("<BB", _SID_REVISION, len(sub_authorities))
        + authority.to_bytes(6, "big")
        + struct.pack(f"<{len(sub_authorities)}I", *sub_authorities)
    )


def sid_from_bytes(data: bytes) -> str:
    """Decode a binary SID (an ``objectSid`` value). Raises ``ValueError`` if it is malformed."""
    sid, size = _sid_at(data, 0)
    if size != len(data):
        raise ValueError(f"binary SID has {len(data) - size} bytes after its end")
    return sid


def _sid_at(data: bytes, offset: int) -> tuple[str, int]:
    """Decode the SID at ``offset``; return it and its size in bytes."""
    header = data[offset:offset + _SID_HEADER_SIZE]
    if len(header) < _SID_HEADER_SIZE:
        raise ValueError(f"binary SID at offset {offset} is truncated")
    revision, count = header[0], header[1]
    if revision != _SID_REVISION:
        raise ValueError(f"binary SID at offset {offset} has revision {revision}, expected {_SID_REVISION}")
    size = _SID_HEADER_SIZE + 4 * count
    if offset + size > len(data):
        raise ValueError(f"binary SID at offset {offset} is truncated")
    sub_authorities = struct.unpack_from(f"<{count}I", data, offset + _SID_HEADER_SIZE)
    return format_sid(int.from_bytes(header[2:8], "big"), sub_authorities), size


def encode_group_msa_membership(principal_sids: Iterable[str], owner_sid: str = ADMINISTRATORS_SID, field: str = "principals") -> bytes:
    """Build the ``msDS-GroupMSAMembership`` value allowing ``principal_sids`` to read the password.

    Duplicates are dropped, order is kept. An empty list gives an empty DACL: nobody may read the password.
    Raises :class:`ValidationError` naming ``field[index]`` for a bad SID.
    """
    # Deduplicate on the binary form so that differently written copies of one SID count once.
    sids = dict.fromkeys(sid_to_bytes(sid, f"{field}[{index}]") for index, sid in enumerate(principal_sids))
    aces = tuple(Ace(_ACCESS_ALLOWED, 0, PASSWORD_READER_MASK, sid_from_bytes(sid)) for sid in sids)
    owner = sid_from_bytes(sid_to_bytes(owner_sid, "owner_sid"))
    return encode_security_descriptor(SecurityDescriptor(_SE_DACL_PRESENT | _SE_SELF_RELATIVE, owner, None, aces))


def _encode_ace(ace: Ace) -> bytes:
    body = b""
    if ace.ace_type in (_ACCESS_ALLOWED_OBJECT, _ACCESS_DENIED_OBJECT):
        object_flags = (_OBJECT_TYPE_PRESENT if ace.object_type else 0) | (_INHERITED_OBJECT_TYPE_PRESENT if ace.inherited_object_type else 0)
        body = object_flags.to_bytes(4, "little") + b"".join(uuid.UUID(guid).bytes_le for guid in (ace.object_type, ace.inherited_object_type) if guid)
    body += sid_to_bytes(ace.sid)
    return _ACE_HEADER.pack(ace.ace_type, ace.flags, _ACE_HEADER.size + len(body), ace.mask) + body


def encode_security_descriptor(descriptor: SecurityDescriptor) -> bytes:
    """Encode a self-relative descriptor: header, DACL, owner, group (no SACL), as the encoder above lays it out."""
    parts, offsets = [], {}
    position = _SD_HEADER.size
    if descriptor.dacl is not None:
        aces = b"".join(_encode_ace(ace) for ace in descriptor.dacl)
        parts.append(_ACL_HEADER.pack(_ACL_REVISION_DS, 0, _ACL_HEADER.size + len(aces), len(descriptor.dacl), 0) + aces)
        offsets["dacl"], position = position, position + len(parts[-1])
    for name in ("owner", "group"):
        sid = getattr(descriptor, name)
        if sid:
            parts.append(sid_to_bytes(sid))
            offsets[name], position = position, position + len(parts[-1])
    control = (descriptor.control | _SE_SELF_RELATIVE) & ~_SE_SACL_PRESENT
    control = control | _SE_DACL_PRESENT if descriptor.dacl is not None else control & ~_SE_DACL_PRESENT
    header = _SD_HEADER.pack(_SD_REVISION, 0, control, offsets.get("owner", 0), offsets.get("group", 0), 0, offsets.get("dacl", 0))
    return header + b"".join(parts)


def rewrite_password_readers(current: bytes, principal_sids: Iterable[str], field: str = "principals") -> bytes:
    """``current`` with exactly ``principal_sids`` granted the password read; every other ACE kept as it is.

    A plain grant of a principal that stays is kept in place; one of a principal that goes is dropped; a new
    principal's grant (the mask impacket and samba-tool write) goes to the end, after any deny ACE.
    """
    descriptor = decode_security_descriptor(current)
    wanted = {format_sid(*parse_sid(sid, f"{field}[{index}]")): None for index, sid in enumerate(principal_sids)}
    kept = [ace for ace in descriptor.dacl or () if not ace.grants_password_read or ace.sid in wanted]
    granted = {ace.sid for ace in kept if ace.grants_password_read}
    kept += [Ace(_ACCESS_ALLOWED, 0, PASSWORD_READER_MASK, sid) for sid in wanted if sid not in granted]
    return encode_security_descriptor(SecurityDescriptor(descriptor.control, descriptor.owner, descriptor.group, tuple(kept)))


def decode_security_descriptor(data: bytes) -> SecurityDescriptor:
    """Decode a self-relative security descriptor such as an ``msDS-GroupMSAMembership`` value.

    The SACL is skipped. Raises ``ValueError`` for malformed data and for ACE types other than
    (object) allow and deny, which have no place in this attribute.
    """
    if len(data) < _SD_HEADER.size:
        raise ValueError(f"security descriptor is {len(data)} bytes, shorter than its {_SD_HEADER.size}-byte header")
    revision, _sbz1, control, owner_offset, group_offset, _sacl_offset, dacl_offset = _SD_HEADER.unpack_from(data)
    if revision != _SD_REVISION:
        raise ValueError(f"security descriptor has revision {revision}, expected {_SD_REVISION}")
    if not control & _SE_SELF_RELATIVE:
        raise ValueError("security descriptor is not self-relative")
    return SecurityDescriptor(
        control=control,
        owner=_sid_at(data, owner_offset)[0] if owner_offset else None,
        group=_sid_at(data, group_offset)[0] if group_offset else None,
        dacl=_decode_acl(data, dacl_offset) if control & _SE_DACL_PRESENT and dacl_offset else None,
    )


def _decode_acl(data: bytes, offset: int) -> tuple[Ace, ...]:
    if offset + _ACL_HEADER.size > len(data):
        raise ValueError(f"DACL at offset {offset} is truncated")
    _revision, _sbz1, size, count, _sbz2 = _ACL_HEADER.unpack_from(data, offset)
    end = offset + size
    if end > len(data):
        raise ValueError(f"DACL at offset {offset} claims {size} bytes, past the end of the descriptor")
    aces = []
    position = offset + _ACL_HEADER.size
    for index in range(count):
        if position + _ACE_HEADER.size > end:
            raise ValueError(f"ACE {index} of the DACL is truncated")
        ace_type, flags, ace_size, mask = _ACE_HEADER.unpack_from(data, position)
        if ace_type not in _ACE_TYPE_SDDL:
            raise ValueError(f"ACE {index} of the DACL has type 0x{ace_type:02x}; only allow and deny ACEs are expected here")
        if ace_size < _ACE_HEADER.size or position + ace_size > end:
            raise ValueError(f"ACE {index} of the DACL has an invalid size {ace_size}")
        aces.append(_decode_ace_body(data[position + _ACE_HEADER.size:position + ace_size], ace_type, flags, mask, index))
        position += ace_size
    return tuple(aces)


def _decode_ace_body(body: bytes, ace_type: int, flags: int, mask: int, index: int) -> Ace:
    guids: dict[str, str] = {}
    if ace_type in (_ACCESS_ALLOWED_OBJECT, _ACCESS_DENIED_OBJECT):
        if len(body) < 4:
            raise ValueError(f"ACE {index} of the DACL is truncated")
        object_flags = int.from_bytes(body[:4], "little")
        body = body[4:]
        for bit, name in ((_OBJECT_TYPE_PRESENT, "object_type"), (_INHERITED_OBJECT_TYPE_PRESENT, "inherited_object_type")):
            if object_flags & bit:
                if len(body) < 16:
                    raise ValueError(f"ACE {index} of the DACL is truncated")
                guids[name] = str(uuid.UUID(bytes_le=body[:16]))
                body = body[16:]
    sid, _size = _sid_at(body, 0)
    return Ace(ace_type, flags, mask, sid, **guids)
