"""KME control messages of the Activation service: band ownership and its proofs.

The statements signed here are defined in ``protocol.kme.ownership``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar

from protocol.kme.control.common import ControlStatus
from protocol.kme.control.schema import (
    Bool,
    Bytes,
    ControlMessage,
    EnumOf,
    Field,
    Int,
    ListOf,
    register_message,
)


class KeyAlgorithm(enum.IntEnum):
    """Public-key algorithms of band and owner keys."""

    ED25519 = 1


@register_message
@dataclass(frozen=True, slots=True)
class ActivationState(ControlMessage):
    """Value of the Activation State characteristic (readable before pairing).

    Tells a client whether the band has an owner and which control schema versions it
    reads; carries nothing that identifies the band or the owner.
    """

    MESSAGE_TYPE: ClassVar[int] = 0x50
    SERVICE: ClassVar[str] = "activation"
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field(2, "activated", Bool()),
        Field(3, "schema_versions", ListOf(Int(1, 0xFF), 8)),
    )
    activated: bool
    schema_versions: tuple[int, ...]


@register_message
@dataclass(frozen=True, slots=True)
class BandPublicKey(ControlMessage):
    """Value of the Band Identity characteristic: the band's signing public key."""

    MESSAGE_TYPE: ClassVar[int] = 0x51
    SERVICE: ClassVar[str] = "activation"
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field(2, "algorithm", EnumOf(KeyAlgorithm)),
        Field(3, "public_key", Bytes(32, 32)),
    )
    algorithm: KeyAlgorithm
    public_key: bytes


@register_message
@dataclass(frozen=True, slots=True)
class ActivationRequest(ControlMessage):
    """Activation control point: bind an unowned band to an account.

    ``owner_public_key`` is the account's owner key (Ed25519); ``account_tag`` a
    pseudonymous 16-byte account reference (never an email); ``client_nonce`` 16 random
    bytes that make the band's attestation fresh. Answered by :class:`ActivationResult`.
    """

    MESSAGE_TYPE: ClassVar[int] = 0x52
    SERVICE: ClassVar[str] = "activation"
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field(2, "algorithm", EnumOf(KeyAlgorithm)),
        Field(3, "owner_public_key", Bytes(32, 32)),
        Field(4, "account_tag", Bytes(16, 16)),
        Field(5, "client_nonce", Bytes(16, 16)),
    )
    algorithm: KeyAlgorithm
    owner_public_key: bytes
    account_tag: bytes
    client_nonce: bytes


@register_message
@dataclass(frozen=True, slots=True)
class ActivationResult(ControlMessage):
    """Answer to :class:`ActivationRequest`.

    On OK, ``band_public_key`` and ``attestation`` (the band's signature over the
    activation statement, see ``protocol.kme.ownership``) let the cloud register the band
    under the account.
    """

    MESSAGE_TYPE: ClassVar[int] = 0x53
    SERVICE: ClassVar[str] = "activation"
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field(2, "status", EnumOf(ControlStatus)),
        Field(3, "band_public_key", Bytes(32, 32), required=False),
        Field(4, "attestation", Bytes(64, 64), required=False),
    )
    status: ControlStatus
    band_public_key: bytes | None = None
    attestation: bytes | None = None


@register_message
@dataclass(frozen=True, slots=True)
class RequestOwnerChallenge(ControlMessage):
    """Activation control point: ask for a fresh nonce; answered by :class:`OwnerChallenge`."""

    MESSAGE_TYPE: ClassVar[int] = 0x54
    SERVICE: ClassVar[str] = "activation"
    SCHEMA: ClassVar[tuple[Field, ...]] = ()


@register_message
@dataclass(frozen=True, slots=True)
class OwnerChallenge(ControlMessage):
    """A single-use nonce, valid on this connection until the next proof or disconnect."""

    MESSAGE_TYPE: ClassVar[int] = 0x55
    SERVICE: ClassVar[str] = "activation"
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field(2, "status", EnumOf(ControlStatus)),
        Field(3, "nonce", Bytes(16, 16), required=False),
    )
    status: ControlStatus
    nonce: bytes | None = None


@register_message
@dataclass(frozen=True, slots=True)
class OwnerProof(ControlMessage):
    """Activation control point: the owner key's signature over the challenge statement.

    Answered by :class:`ControlResult` (OK: this connection is the owner's until it ends;
    AUTH_FAILED otherwise).
    """

    MESSAGE_TYPE: ClassVar[int] = 0x56
    SERVICE: ClassVar[str] = "activation"
    SCHEMA: ClassVar[tuple[Field, ...]] = (Field(2, "signature", Bytes(64, 64)),)
    signature: bytes


__all__ = [
    "ActivationRequest",
    "ActivationResult",
    "ActivationState",
    "BandPublicKey",
    "KeyAlgorithm",
    "OwnerChallenge",
    "OwnerProof",
    "RequestOwnerChallenge",
]
