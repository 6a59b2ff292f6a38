"""Security Manager Protocol PDUs (Core Spec Vol 3 Part H 3.3 to 3.6): codecs and errors.

Values in these dataclasses use the specification's notation, most significant octet first
(the order the toolbox in ``protocol.ble.smp_crypto`` and Appendix D use); ``encode`` and
:func:`decode_pdu` reverse multi-octet values to and from the little-endian wire.

:func:`decode_pdu` raises only :class:`SmpPduError`, whose ``reason`` is the Pairing Failed
reason to answer with (Command Not Supported for an unknown code, Invalid Parameters for a
wrong length or a value out of range).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from protocol.errors import KmebandError, UsageError

#: The L2CAP channel of the Security Manager on an LE link.
SMP_CID = 0x0006
#: Minimum and maximum encryption key sizes in octets (3.5.1).
MIN_ENCRYPTION_KEY_SIZE = 7
MAX_ENCRYPTION_KEY_SIZE = 16


class SmpCode(enum.IntEnum):
    """SMP command codes (3.3, Table 3.3)."""

    PAIRING_REQUEST = 0x01
    PAIRING_RESPONSE = 0x02
    PAIRING_CONFIRM = 0x03
    PAIRING_RANDOM = 0x04
    PAIRING_FAILED = 0x05
    ENCRYPTION_INFORMATION = 0x06
    CENTRAL_IDENTIFICATION = 0x07
    IDENTITY_INFORMATION = 0x08
    IDENTITY_ADDRESS_INFORMATION = 0x09
    SIGNING_INFORMATION = 0x0A
    SECURITY_REQUEST = 0x0B
    PAIRING_PUBLIC_KEY = 0x0C
    PAIRING_DHKEY_CHECK = 0x0D
    PAIRING_KEYPRESS_NOTIFICATION = 0x0E


class IoCapability(enum.IntEnum):
    """IO capabilities (3.5.1, Table 3.4)."""

    DISPLAY_ONLY = 0x00
    DISPLAY_YES_NO = 0x01
    KEYBOARD_ONLY = 0x02
    NO_INPUT_NO_OUTPUT = 0x03
    KEYBOARD_DISPLAY = 0x04


class AuthReq(enum.IntFlag):
    """The AuthReq field (3.5.1): bonding flags, MITM, SC, keypress and CT2 bits."""

    NO_BONDING = 0x00
    BONDING = 0x01
    MITM = 0x04
    SECURE_CONNECTIONS = 0x08
    KEYPRESS = 0x10
    CT2 = 0x20


class KeyDistribution(enum.IntFlag):
    """Initiator / Responder Key Distribution fields (3.6.1)."""

    NONE = 0x00
    ENC_KEY = 0x01
    ID_KEY = 0x02
    SIGN_KEY = 0x04
    LINK_KEY = 0x08


class PairingFailedReason(enum.IntEnum):
    """Pairing Failed reason codes (3.5.5, Table 3.7)."""

    PASSKEY_ENTRY_FAILED = 0x01
    OOB_NOT_AVAILABLE = 0x02
    AUTHENTICATION_REQUIREMENTS = 0x03
    CONFIRM_VALUE_FAILED = 0x04
    PAIRING_NOT_SUPPORTED = 0x05
    ENCRYPTION_KEY_SIZE = 0x06
    COMMAND_NOT_SUPPORTED = 0x07
    UNSPECIFIED_REASON = 0x08
    REPEATED_ATTEMPTS = 0x09
    INVALID_PARAMETERS = 0x0A
    DHKEY_CHECK_FAILED = 0x0B
    NUMERIC_COMPARISON_FAILED = 0x0C
    BR_EDR_PAIRING_IN_PROGRESS = 0x0D
    CROSS_TRANSPORT_KEY_NOT_ALLOWED = 0x0E
    KEY_REJECTED = 0x0F
    BUSY = 0x10


class KeypressType(enum.IntEnum):
    """Notification types of the Keypress Notification (3.5.8)."""

    PASSKEY_ENTRY_STARTED = 0
    PASSKEY_DIGIT_ENTERED = 1
    PASSKEY_DIGIT_ERASED = 2
    PASSKEY_CLEARED = 3
    PASSKEY_ENTRY_COMPLETED = 4


class SmpError(KmebandError):
    """Base of the Security Manager's errors."""


class SmpPduError(SmpError):
    """A received SMP PDU is malformed; ``reason`` is the Pairing Failed reason to answer."""

    def __init__(self, message: str, reason: PairingFailedReason) -> None:
        super().__init__(f"{message}; answer the peer with Pairing Failed ({reason.name})")
        self.reason = reason


def _check_length(name: str, value: bytes, length: int) -> bytes:
    if len(value) != length:
        raise UsageError(f"{name} must be {length} octets, not {len(value)}")
    return bytes(value)


@dataclass(frozen=True)
class DeviceAddress:
    """An LE device address: six octets MSB first (as written AA:BB:...) and its type."""

    address: bytes = field(repr=False)
    random: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "address", _check_length("address", self.address, 6))

    @classmethod
    def parse(cls, text: str, *, random: bool = False) -> DeviceAddress:
        """Parse "AA:BB:CC:DD:EE:FF" (or without colons)."""
        digits = text.replace(":", "").replace("-", "")
        try:
            raw = bytes.fromhex(digits)
        except ValueError:
            raw = b""
        if len(raw) != 6:
            raise UsageError("an LE address is six hexadecimal octets like AA:BB:CC:DD:EE:FF")
        return cls(raw, random)

    def __str__(self) -> str:
        return ":".join(f"{octet:02X}" for octet in self.address)

    @property
    def type_octet(self) -> int:
        """0x00 for a public address, 0x01 for a random one."""
        return 0x01 if self.random else 0x00

    def as_56_bits(self) -> bytes:
        """The 56-bit value f5 and f6 take: the type octet, then the address (MSB first)."""
        return bytes([self.type_octet]) + self.address


@dataclass(frozen=True)
class _PairingFeatures:
    io_capability: IoCapability
    oob_data_present: bool
    auth_req: AuthReq
    max_key_size: int
    initiator_key_distribution: KeyDistribution
    responder_key_distribution: KeyDistribution

    code: ClassVar[SmpCode]

    def __post_init__(self) -> None:
        if not MIN_ENCRYPTION_KEY_SIZE <= self.max_key_size <= MAX_ENCRYPTION_KEY_SIZE:
            raise UsageError("max_key_size must be 7..16 octets")
        if not 0 <= self.auth_req <= 0xFF:
            raise UsageError("auth_req is one octet")
        if not 0 <= self.initiator_key_distribution <= 0xFF:
            raise UsageError("initiator_key_distribution is one octet")
        if not 0 <= self.responder_key_distribution <= 0xFF:
            raise UsageError("responder_key_distribution is one octet")

    def encode(self) -> bytes:
        return bytes(
            [
                self.code,
                self.io_capability,
                1 if self.oob_data_present else 0,
                self.auth_req,
                self.max_key_size,
                self.initiator_key_distribution,
                self.responder_key_distribution,
            ]
        )

    def io_cap_octets(self) -> bytes:
        """IOcap for f6: AuthReq, then the OOB data flag, then the IO capability."""
        return bytes([self.auth_req, 1 if self.oob_data_present else 0, self.io_capability])


@dataclass(frozen=True)
class PairingRequest(_PairingFeatures):
    """Pairing Request (3.5.1): the initiator's features."""

    code: ClassVar[SmpCode] = SmpCode.PAIRING_REQUEST


@dataclass(frozen=True)
class PairingResponse(_PairingFeatures):
    """Pairing Response (3.5.2): the responder's features."""

    code: ClassVar[SmpCode] = SmpCode.PAIRING_RESPONSE


@dataclass(frozen=True)
class _Value128:
    value: bytes = field(repr=False)

    code: ClassVar[SmpCode]

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", _check_length(type(self).__name__, self.value, 16))

    def encode(self) -> bytes:
        return bytes([self.code]) + self.value[::-1]


@dataclass(frozen=True)
class PairingConfirm(_Value128):
    """Pairing Confirm (3.5.3): a commitment Ca/Cb (f4 output)."""

    code: ClassVar[SmpCode] = SmpCode.PAIRING_CONFIRM


@dataclass(frozen=True)
class PairingRandom(_Value128):
    """Pairing Random (3.5.4): the nonce Na/Nb opening a commitment."""

    code: ClassVar[SmpCode] = SmpCode.PAIRING_RANDOM


@dataclass(frozen=True)
class PairingDhKeyCheck(_Value128):
    """Pairing DHKey Check (3.5.7): Ea/Eb (f6 output)."""

    code: ClassVar[SmpCode] = SmpCode.PAIRING_DHKEY_CHECK


@dataclass(frozen=True)
class EncryptionInformation(_Value128):
    """Encryption Information (3.6.2): an LTK distributed in legacy pairing."""

    code: ClassVar[SmpCode] = SmpCode.ENCRYPTION_INFORMATION


@dataclass(frozen=True)
class IdentityInformation(_Value128):
    """Identity Information (3.6.4): the sender's Identity Resolving Key (IRK)."""

    code: ClassVar[SmpCode] = SmpCode.IDENTITY_INFORMATION


@dataclass(frozen=True)
class SigningInformation(_Value128):
    """Signing Information (3.6.6): the sender's CSRK."""

    code: ClassVar[SmpCode] = SmpCode.SIGNING_INFORMATION


@dataclass(frozen=True)
class PairingFailed:
    """Pairing Failed (3.5.5): ends the pairing with a reason."""

    reason: PairingFailedReason

    code: ClassVar[SmpCode] = SmpCode.PAIRING_FAILED

    def encode(self) -> bytes:
        return bytes([self.code, self.reason])


@dataclass(frozen=True)
class PairingPublicKey:
    """Pairing Public Key (3.5.6): the sender's P-256 point, X and Y 32 octets each."""

    x: bytes = field(repr=False)
    y: bytes = field(repr=False)

    code: ClassVar[SmpCode] = SmpCode.PAIRING_PUBLIC_KEY

    def __post_init__(self) -> None:
        object.__setattr__(self, "x", _check_length("public key X", self.x, 32))
        object.__setattr__(self, "y", _check_length("public key Y", self.y, 32))

    def encode(self) -> bytes:
        return bytes([self.code]) + self.x[::-1] + self.y[::-1]


@dataclass(frozen=True)
class KeypressNotification:
    """Pairing Keypress Notification (3.5.8): progress of the passkey entry."""

    kind: KeypressType

    code: ClassVar[SmpCode] = SmpCode.PAIRING_KEYPRESS_NOTIFICATION

    def encode(self) -> bytes:
        return bytes([self.code, self.kind])


@dataclass(frozen=True)
class SecurityRequest:
    """Security Request (3.6.7): the peripheral asks the central to pair or encrypt."""

    auth_req: AuthReq

    code: ClassVar[SmpCode] = SmpCode.SECURITY_REQUEST

    def encode(self) -> bytes:
        return bytes([self.code, self.auth_req])


@dataclass(frozen=True)
class CentralIdentification:
    """Central Identification (3.6.3): EDIV and Rand of a legacy LTK."""

    ediv: int
    rand: int

    code: ClassVar[SmpCode] = SmpCode.CENTRAL_IDENTIFICATION

    def __post_init__(self) -> None:
        if not 0 <= self.ediv <= 0xFFFF or not 0 <= self.rand < 1 << 64:
            raise UsageError("EDIV is 16 bits and Rand 64 bits")

    def encode(self) -> bytes:
        return (
            bytes([self.code]) + self.ediv.to_bytes(2, "little") + self.rand.to_bytes(8, "little")
        )


@dataclass(frozen=True)
class IdentityAddressInformation:
    """Identity Address Information (3.6.5): the sender's public or static random address."""

    address: DeviceAddress

    code: ClassVar[SmpCode] = SmpCode.IDENTITY_ADDRESS_INFORMATION

    def encode(self) -> bytes:
        return bytes([self.code, self.address.type_octet]) + self.address.address[::-1]


SmpPdu = (
    PairingRequest
    | PairingResponse
    | PairingConfirm
    | PairingRandom
    | PairingFailed
    | EncryptionInformation
    | CentralIdentification
    | IdentityInformation
    | IdentityAddressInformation
    | SigningInformation
    | SecurityRequest
    | PairingPublicKey
    | PairingDhKeyCheck
    | KeypressNotification
)

#: Total PDU length (code octet included) of each command.
PDU_LENGTHS: dict[SmpCode, int] = {
    SmpCode.PAIRING_REQUEST: 7,
    SmpCode.PAIRING_RESPONSE: 7,
    SmpCode.PAIRING_CONFIRM: 17,
    SmpCode.PAIRING_RANDOM: 17,
    SmpCode.PAIRING_FAILED: 2,
    SmpCode.ENCRYPTION_INFORMATION: 17,
    SmpCode.CENTRAL_IDENTIFICATION: 11,
    SmpCode.IDENTITY_INFORMATION: 17,
    SmpCode.IDENTITY_ADDRESS_INFORMATION: 8,
    SmpCode.SIGNING_INFORMATION: 17,
    SmpCode.SECURITY_REQUEST: 2,
    SmpCode.PAIRING_PUBLIC_KEY: 65,
    SmpCode.PAIRING_DHKEY_CHECK: 17,
    SmpCode.PAIRING_KEYPRESS_NOTIFICATION: 2,
}

_VALUE128_TYPES: dict[SmpCode, Callable[[bytes], SmpPdu]] = {
    cls.code: cls
    for cls in (
        PairingConfirm,
        PairingRandom,
        PairingDhKeyCheck,
        EncryptionInformation,
        IdentityInformation,
        SigningInformation,
    )
}


def _invalid(message: str) -> SmpPduError:
    return SmpPduError(message, PairingFailedReason.INVALID_PARAMETERS)


def _decode_features(code: SmpCode, data: bytes) -> PairingRequest | PairingResponse:
    io_capability, oob, auth_req, max_key_size, init_keys, resp_keys = data[1:7]
    if io_capability not in IoCapability._value2member_map_:
        raise _invalid("reserved IO capability in a pairing request or response")
    if oob > 1:
        raise _invalid("reserved OOB data flag in a pairing request or response")
    if not MIN_ENCRYPTION_KEY_SIZE <= max_key_size <= MAX_ENCRYPTION_KEY_SIZE:
        raise _invalid("maximum encryption key size outside 7..16")
    cls = PairingRequest if code is SmpCode.PAIRING_REQUEST else PairingResponse
    return cls(
        io_capability=IoCapability(io_capability),
        oob_data_present=oob == 1,
        auth_req=AuthReq(auth_req),
        max_key_size=max_key_size,
        initiator_key_distribution=KeyDistribution(init_keys),
        responder_key_distribution=KeyDistribution(resp_keys),
    )


def decode_pdu(data: bytes) -> SmpPdu:
    """Decode one SMP PDU; raises :class:`SmpPduError` (and nothing else) when malformed."""
    data = bytes(data)
    if not data:
        raise _invalid("empty SMP PDU")
    if data[0] not in SmpCode._value2member_map_:
        raise SmpPduError("unknown SMP command code", PairingFailedReason.COMMAND_NOT_SUPPORTED)
    code = SmpCode(data[0])
    if len(data) != PDU_LENGTHS[code]:
        raise _invalid(f"{code.name} PDU of the wrong length")
    if code in (SmpCode.PAIRING_REQUEST, SmpCode.PAIRING_RESPONSE):
        return _decode_features(code, data)
    value_type = _VALUE128_TYPES.get(code)
    if value_type is not None:
        return value_type(data[1:17][::-1])
    if code is SmpCode.PAIRING_FAILED:
        if data[1] not in PairingFailedReason._value2member_map_:
            raise _invalid("reserved Pairing Failed reason")
        return PairingFailed(PairingFailedReason(data[1]))
    if code is SmpCode.PAIRING_PUBLIC_KEY:
        return PairingPublicKey(data[1:33][::-1], data[33:65][::-1])
    if code is SmpCode.PAIRING_KEYPRESS_NOTIFICATION:
        if data[1] not in KeypressType._value2member_map_:
            raise _invalid("reserved keypress notification type")
        return KeypressNotification(KeypressType(data[1]))
    if code is SmpCode.SECURITY_REQUEST:
        return SecurityRequest(AuthReq(data[1]))
    if code is SmpCode.CENTRAL_IDENTIFICATION:
        return CentralIdentification(
            int.from_bytes(data[1:3], "little"), int.from_bytes(data[3:11], "little")
        )
    # Only Identity Address Information is left.
    if data[1] > 1:
        raise _invalid("reserved identity address type")
    return IdentityAddressInformation(DeviceAddress(data[2:8][::-1], random=data[1] == 1))


def encode_pdu(pdu: SmpPdu) -> bytes:
    """Encode any SMP PDU to its wire octets (same as ``pdu.encode()``)."""
    return pdu.encode()
