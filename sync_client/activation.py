"""Activation and ownership from the client: keys on disk, activate a band, prove ownership.

The client data directory (``KMEBAND_CLIENT_DIR`` or ``~/.kmeband``) holds, each in its
own file with mode 0600:

- ``account.key``: 32 random bytes; keys the band pseudonym (HMAC of the serial) and the
  account tag, so neither reveals the account or the band;
- ``owner.key``: the 32-byte Ed25519 seed of the owner key that activation binds the band
  to and that proves ownership on every later connection;
- ``account.json``: the ingest URL and bearer token from ``POST /v1/accounts``.

Activation writes an ``ActivationRequest`` to the band, checks the band's attestation
(``protocol.kme.ownership.verify_activation``) and registers the band's public key with the
ingest under its pseudonym (``POST /v1/bands``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.errors import KmebandError
from protocol.kme.batch import band_pseudonym
from protocol.kme.control.activation import (
    ActivationResult,
    ActivationState,
    BandPublicKey,
    OwnerChallenge,
    RequestOwnerChallenge,
)
from protocol.kme.control.common import ControlResult, ControlStatus
from protocol.kme.control.device_control import FactoryReset
from protocol.kme.control.schema import decode_as
from protocol.kme.ownership import (
    activation_request,
    private_key_from_seed,
    prove_ownership,
    public_key_bytes,
    verify_activation,
)
from protocol.kme.profile import (
    KME_ACTIVATION_CONTROL_POINT,
    KME_ACTIVATION_STATE,
    KME_BAND_CERTIFICATE,
    KME_BAND_IDENTITY,
    KME_DEVICE_CONTROL_POINT,
)
from sync_client.ble import BandLink

log = logging.getLogger(__name__)

CLIENT_DIR_ENV = "KMEBAND_CLIENT_DIR"


class ActivationError(KmebandError):
    """Activation, ownership proof or the client's key files failed; see the message."""


def client_dir(explicit: Path | None = None) -> Path:
    """The client data directory: ``explicit``, else $KMEBAND_CLIENT_DIR, else ~/.kmeband."""
    if explicit is not None:
        return explicit
    return Path(os.environ.get(CLIENT_DIR_ENV) or Path.home() / ".kmeband")


def _secret_file(path: Path, length: int) -> bytes:
    """Read a key file (refusing one others can read) or create it with mode 0600."""
    if path.exists():
        if path.stat().st_mode & 0o077:
            raise ActivationError(
                f"{path.name} in the client directory is readable by others; "
                "run chmod 600 on it (and consider the key exposed)"
            )
        data = path.read_bytes()
        if len(data) != length:
            raise ActivationError(f"{path.name} is damaged; restore it from a backup")
        return data
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    data = secrets.token_bytes(length)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return data


@dataclass(frozen=True)
class ClientKeys:
    """The account key and owner key of this client (secrets: never logged or printed)."""

    account_key: bytes
    owner_key: Ed25519PrivateKey

    def __repr__(self) -> str:
        return "ClientKeys(<secret>)"

    @classmethod
    def load_or_create(cls, directory: Path) -> ClientKeys:
        account_key = _secret_file(directory / "account.key", 32)
        owner_seed = _secret_file(directory / "owner.key", 32)
        return cls(account_key, private_key_from_seed(owner_seed))

    @property
    def account_tag(self) -> bytes:
        """The 16-byte pseudonymous account reference given to bands."""
        return hmac.new(self.account_key, b"kmeband account tag", hashlib.sha256).digest()[:16]

    @property
    def owner_public_key(self) -> bytes:
        return public_key_bytes(self.owner_key)

    def band_pseudonym(self, serial: str) -> bytes:
        return band_pseudonym(self.account_key, serial)


@dataclass(frozen=True)
class AccountFile:
    """Where the account lives on the ingest: URL and bearer token (a secret)."""

    ingest_url: str
    token: str

    def __repr__(self) -> str:
        return f"AccountFile({self.ingest_url!r}, <token>)"

    def save(self, directory: Path) -> None:
        path = directory / "account.json"
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"ingest_url": self.ingest_url, "token": self.token}, f)
        path.chmod(0o600)

    @classmethod
    def load(cls, directory: Path) -> AccountFile | None:
        path = directory / "account.json"
        if not path.exists():
            return None
        if path.stat().st_mode & 0o077:
            raise ActivationError("account.json is readable by others; run chmod 600 on it")
        data = json.loads(path.read_text())
        return cls(str(data["ingest_url"]), str(data["token"]))


async def fetch_ingest_key(ingest_url: str) -> bytes:
    """The ingest's default X25519 public key (``GET /v1/keys``), 32 raw bytes.

    Over https the key is as trustworthy as the server's certificate; plain http is only
    allowed to a loopback ingest (see ``check_ingest_url``).
    """
    import aiohttp

    from sync_client.uploader import check_ingest_url

    url = check_ingest_url(ingest_url) + "/v1/keys"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http,
            http.get(url) as response,
        ):
            if response.status != 200:
                raise ActivationError(
                    f"the ingest did not publish its key (HTTP {response.status})"
                )
            document = await response.json()
    except (aiohttp.ClientError, TimeoutError, ValueError, RecursionError) as exc:
        raise ActivationError(
            f"the ingest's key could not be fetched ({exc.__class__.__name__}); "
            "pass it with --ingest-key"
        ) from None
    for key in document.get("keys", []) if isinstance(document, dict) else []:
        if isinstance(key, dict) and key.get("default") and isinstance(key.get("public_key"), str):
            raw = base64.urlsafe_b64decode(key["public_key"] + "==")
            if len(raw) == 32:
                return raw
    raise ActivationError("the ingest publishes no default X25519 key; pass it with --ingest-key")


#: The last key fetched from the account's ingest, so a sync can seal without reaching it.
INGEST_KEY_FILE = "ingest-key.json"


class IngestKeyUnavailableError(ActivationError):
    """The ingest cannot be reached and no key of it was ever fetched: nothing can be sealed."""


def cache_ingest_key(directory: Path, ingest_url: str, raw: bytes) -> None:
    """Remember the ingest's public key (mode 0600, written atomically)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / INGEST_KEY_FILE
    tmp = path.with_suffix(".tmp")
    document = {"ingest_url": ingest_url, "public_key": base64.urlsafe_b64encode(raw).decode()}
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(document, f)
    os.replace(tmp, path)


def cached_ingest_key(directory: Path, ingest_url: str) -> bytes | None:
    """The key last fetched from ``ingest_url``, or None (never fetched, or another URL)."""
    path = directory / INGEST_KEY_FILE
    if not path.exists():
        return None
    if path.stat().st_mode & 0o022:
        # anyone who can write it could make the client seal batches to their own key
        raise ActivationError(f"{INGEST_KEY_FILE} is writable by others; run chmod 600 on it")
    try:
        document = json.loads(path.read_text())
        raw = base64.urlsafe_b64decode(document["public_key"])
        same = document["ingest_url"] == ingest_url
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None  # a damaged cache is no cache: the next reachable sync rewrites it
    return raw if same and len(raw) == 32 else None


async def ingest_key_for(directory: Path, account: AccountFile) -> bytes:
    """The key to seal batches for ``account``'s ingest: fetched (and cached) when the
    ingest answers, else the cached one, so a sync pulls and seals into the outbox while
    the ingest is unreachable and the outbox uploads later."""
    try:
        raw = await fetch_ingest_key(account.ingest_url)
    except ActivationError as exc:
        cached = cached_ingest_key(directory, account.ingest_url)
        if cached is not None:
            log.info("the ingest's key could not be fetched; sealing with the cached key")
            return cached
        raise IngestKeyUnavailableError(
            f"the ingest's key could not be fetched from {account.ingest_url} and this "
            "client never fetched it before, so nothing can be sealed for it: run the sync "
            "again once the ingest is reachable (the band keeps its records meanwhile), "
            "or pass the key with --ingest-key"
        ) from exc
    cache_ingest_key(directory, account.ingest_url, raw)
    return raw


async def create_account(ingest_url: str) -> AccountFile:
    """``POST /v1/accounts`` on the ingest: a new account and its bearer token."""
    import aiohttp

    from sync_client.uploader import check_ingest_url

    url = check_ingest_url(ingest_url)
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http,
            http.post(url + "/v1/accounts") as response,
        ):
            body = await response.json()
            if response.status != 201:
                raise ActivationError(f"the ingest refused a new account ({response.status})")
    except aiohttp.ClientError as exc:
        raise ActivationError(f"the ingest is unreachable ({exc.__class__.__name__})") from None
    return AccountFile(url, str(body["token"]))


async def register_band(
    account: AccountFile, band: bytes, band_public_key: bytes, certificate: bytes
) -> None:
    """``POST /v1/bands``: the band's pseudonym and public key under the account, with the
    factory certificate of that key (the ingest refuses a key no trusted factory certified)."""
    import aiohttp

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    headers = {"Authorization": f"Bearer {account.token}"}
    payload = {
        "band": b64(band),
        "public_key": b64(band_public_key),
        "certificate": b64(certificate),
    }
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http,
            http.post(account.ingest_url + "/v1/bands", json=payload, headers=headers) as r,
        ):
            if r.status == 422:
                reason = (await r.json(content_type=None)).get("message", "")
                raise ActivationError(
                    f"the ingest refused the band's key: {reason}; this is not a band KME "
                    "made, or its certificate was damaged"
                )
            if r.status not in (200, 201):
                raise ActivationError(
                    f"the ingest refused to register the band ({r.status}); "
                    "if it belongs to another account, its owner must release it"
                )
    except aiohttp.ClientError as exc:
        raise ActivationError(f"the ingest is unreachable ({exc.__class__.__name__})") from None


async def read_activation(link: BandLink) -> tuple[bool, bytes]:
    """Whether the band has an owner, and its signing public key."""
    state = decode_as(await link.read(KME_ACTIVATION_STATE), ActivationState)
    identity = decode_as(await link.read(KME_BAND_IDENTITY), BandPublicKey)
    return state.activated, identity.public_key


async def read_certificate(link: BandLink) -> bytes:
    """The factory's certificate of the band's key (Band Certificate), for registration."""
    if not link.has_char(KME_BAND_CERTIFICATE):
        raise ActivationError(
            "the band has no factory certificate (Band Certificate characteristic); "
            "the ingest registers only bands KME made"
        )
    return await link.read(KME_BAND_CERTIFICATE)


async def activate(link: BandLink, keys: ClientKeys) -> bytes:
    """Bind an unowned band to this client's owner key; return the band's public key."""
    request = activation_request(keys.owner_key, keys.account_tag, secrets.token_bytes(16))
    result = await link.request(KME_ACTIVATION_CONTROL_POINT, request, ActivationResult)
    try:
        return verify_activation(request, result)
    except KmebandError as exc:
        raise ActivationError(str(exc)) from None


_RATE_LIMITED = (
    "the band refuses ownership proofs for a while after wrong ones (up to 10 minutes): "
    "wait, then sync again"
)


async def prove_owner(link: BandLink, keys: ClientKeys, band_public_key: bytes) -> None:
    """Answer the band's challenge with the owner key; this connection is then the owner's."""
    challenge = await link.request(
        KME_ACTIVATION_CONTROL_POINT, RequestOwnerChallenge(), OwnerChallenge
    )
    if challenge.status is ControlStatus.RATE_LIMITED:
        raise ActivationError(_RATE_LIMITED)
    if challenge.status is not ControlStatus.OK or challenge.nonce is None:
        raise ActivationError(
            f"the band gave no ownership challenge ({challenge.status.name}); activate it first"
        )
    proof = prove_ownership(keys.owner_key, band_public_key, challenge.nonce)
    answer = await link.request(KME_ACTIVATION_CONTROL_POINT, proof, ControlResult)
    if answer.status is ControlStatus.RATE_LIMITED:
        raise ActivationError(_RATE_LIMITED)
    if answer.status is not ControlStatus.OK:
        raise ActivationError(
            "the band did not accept this client as its owner; it is bound to another "
            "account (its owner must factory-reset it to hand it over)"
        )


async def ensure_owner(link: BandLink, keys: ClientKeys) -> tuple[bytes, bool]:
    """Activate the band if unowned, else prove ownership. Returns (band key, newly activated)."""
    activated, band_key = await read_activation(link)
    if not activated:
        return await activate(link, keys), True
    await prove_owner(link, keys, band_key)
    return band_key, False


async def factory_reset(link: BandLink, keys: ClientKeys) -> None:
    """Prove ownership, then have the band erase itself (``FactoryReset``).

    The band answers before it erases and drops the link; afterwards it is unowned, holds
    no records, consent, alarms, profile or bonds, and any phone may pair and activate it.
    What the ingest already holds stays in this client's account (``kmeband erase``).
    """
    await ensure_owner(link, keys)
    answer = await link.request(KME_DEVICE_CONTROL_POINT, FactoryReset(), ControlResult)
    if answer.status is not ControlStatus.OK:
        raise ActivationError(
            f"the band refused the factory reset ({answer.status.name}); only its owner "
            "may reset it"
        )


__all__ = [
    "CLIENT_DIR_ENV",
    "AccountFile",
    "ActivationError",
    "ClientKeys",
    "activate",
    "client_dir",
    "create_account",
    "ensure_owner",
    "factory_reset",
    "prove_owner",
    "read_activation",
    "read_certificate",
    "register_band",
]
