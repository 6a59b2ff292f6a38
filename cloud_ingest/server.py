"""The reference ingest's HTTP API (aiohttp): keys, accounts, bands, batches, rights.

Every rejection is ``{"error": code, "message": text}`` with a status that says whose
move it is (4xx: fix the request; 429: wait Retry-After seconds; 5xx: try again later).
Log lines carry counts, status codes and batch ids only: never a token, key, pseudonym or
record value.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from cloud_ingest.connections import ConnectionGuard, GuardedAppRunner
from cloud_ingest.consent_check import ConsentRejected, verify_consent
from cloud_ingest.keys import IngestKeys, load_or_create_keys
from cloud_ingest.limits import RateLimiter
from cloud_ingest.opening import BatchOpenError, open_envelope
from cloud_ingest.rights import (
    EXPORT_FORMATS,
    EXPORTERS,
    ProfileError,
    parse_category,
    streams_of,
    validate_profile,
)
from cloud_ingest.store import Band, IngestStore
from protocol.errors import KmebandError
from protocol.kme.attestation import (
    MAX_CERTIFICATE_BYTES,
    SIMULATED_FACTORY_ROOT,
    AttestationError,
    verify_certificate,
)
from protocol.kme.batch import (
    BAND_PSEUDONYM_LEN,
    BatchError,
    MalformedBatchError,
    UnsupportedBatchError,
    decode_batch_plaintext,
    decode_envelope,
)
from protocol.kme.records import ConsentCategory

log = logging.getLogger("cloud_ingest")

ED25519_PUBLIC_KEY_LEN = 32


@dataclass(frozen=True)
class IngestConfig:
    """Limits and policy of an ingest instance."""

    max_body_bytes: int = 2 * 1024 * 1024
    rate_per_band: float = 20.0  # batches per second, sustained
    burst_per_band: float = 200.0
    min_policy_version: int = 1
    read_timeout_s: float = 10.0
    #: A connection must deliver a complete request head within this of opening or of
    #: its previous answer (so also the idle timeout of a kept-alive connection).
    header_timeout_s: float = 10.0
    #: Connections open at once that have not yet shown a valid token; beyond it the
    #: oldest of them is closed (see cloud_ingest.connections).
    max_unauthenticated: int = 256
    #: Exports streamed at once; more wait their turn.
    max_concurrent_exports: int = 4
    #: the factory root whose certificate a band's key needs (docs/ingest.md)
    attestation_root: bytes = SIMULATED_FACTORY_ROOT


class ApiError(Exception):
    """An HTTP error answer: status, machine-readable code, message for people."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status, headers=headers)


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "timeout",
    413: "too_large",
    415: "unsupported_media_type",
}


@web.middleware
async def json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message, exc.headers)
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[CONFIG].max_body_bytes
        return error_response(413, "too_large", f"the request body exceeds {limit} bytes")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        return error_response(exc.status, code, exc.reason or "request refused")
    except TimeoutError:
        return error_response(408, "timeout", "the request took too long; send it again")
    except Exception:
        log.exception("internal error on %s %s", request.method, request.path)
        return error_response(500, "internal", "the ingest failed; try again later")


STORE: web.AppKey[IngestStore] = web.AppKey("store", IngestStore)
KEYS: web.AppKey[IngestKeys] = web.AppKey("keys", IngestKeys)
CONFIG: web.AppKey[IngestConfig] = web.AppKey("config", IngestConfig)
STATE: web.AppKey[_State] = web.AppKey("state")
WALL_CLOCK: web.AppKey[Callable[[], int]] = web.AppKey("wall_clock")
GUARD: web.AppKey[ConnectionGuard] = web.AppKey("guard", ConnectionGuard)


class _State:
    """In-memory caches in front of the store, owned by one application."""

    def __init__(self, config: IngestConfig, now: Callable[[], float]) -> None:
        self.now = now
        self.limiter = RateLimiter(config.rate_per_band, config.burst_per_band)
        self.accounts: dict[str, int] = {}  # token -> account id
        self.bands: dict[bytes, Band] = {}
        self.verified_consent: dict[tuple[bytes, bytes, bytes], object] = {}
        self._withdrawals: dict[int, dict[ConsentCategory, int]] = {}
        #: Exports made at once (each holds a read connection on its own snapshot).
        self.exports = asyncio.Semaphore(config.max_concurrent_exports)

    def withdrawals_of(self, account: int, store: IngestStore) -> dict[ConsentCategory, int]:
        cached = self._withdrawals.get(account)
        if cached is None:
            cached = self._withdrawals[account] = store.withdrawals(account)
        return cached

    def forget_withdrawals(self, account: int) -> None:
        self._withdrawals.pop(account, None)

    def forget_account(self, account: int, bands: list[bytes]) -> None:
        """Drop every cached fact about a deleted account: its tokens and its bands."""
        for token in [t for t, a in self.accounts.items() if a == account]:
            del self.accounts[token]
        gone = set(bands)
        for band in gone:
            self.bands.pop(band, None)
        for key in [k for k in self.verified_consent if k[0] in gone]:
            del self.verified_consent[key]
        self.forget_withdrawals(account)


def _wall() -> int:
    return int(time.time())


def create_app(
    store: IngestStore,
    keys: IngestKeys,
    config: IngestConfig | None = None,
    *,
    now: Callable[[], float] = time.monotonic,
    wall_clock: Callable[[], int] = _wall,
) -> web.Application:
    """The ingest as an aiohttp application (for TestServer or a runner)."""
    config = config or IngestConfig()
    app = web.Application(client_max_size=config.max_body_bytes, middlewares=[json_errors])
    app[STORE] = store
    app[KEYS] = keys
    app[CONFIG] = config
    app[STATE] = _State(config, now)
    app[WALL_CLOCK] = wall_clock
    app.router.add_get("/v1/keys", get_keys)
    app.router.add_post("/v1/accounts", post_account)
    app.router.add_post("/v1/bands", post_band)
    app.router.add_post("/v1/batches", post_batch)
    app.router.add_get("/v1/export", get_export)
    app.router.add_put("/v1/profile", put_profile)
    app.router.add_get("/v1/profile", get_profile)
    app.router.add_delete("/v1/account/data", delete_account_data)
    app.router.add_delete("/v1/account", delete_account)
    app.router.add_post("/v1/consent/withdrawals", post_withdrawal)
    return app


# -- helpers ----------------------------------------------------------------------------


def _account(request: web.Request) -> int:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(
            401,
            "unauthorized",
            "send 'Authorization: Bearer <token>' with the token POST /v1/accounts gave you",
        )
    state = request.app[STATE]
    account = state.accounts.get(token)
    if account is None:
        account = request.app[STORE].account_for_token(token)
        if account is None:
            raise ApiError(401, "unauthorized", "unknown token; create an account first")
        state.accounts[token] = account
    guard = request.app.get(GUARD)
    if guard is not None:
        guard.authenticated(request.transport)
    return account


async def _read(request: web.Request) -> bytes:
    if request.content.is_eof():
        # The whole body is already buffered (the usual case for a batch): reading cannot
        # wait, so no timer needs arming.
        return await request.read()
    async with asyncio.timeout(request.app[CONFIG].read_timeout_s):
        return await request.read()


#: The JSON endpoints take one small flat object (a profile, a band, a withdrawal).
MAX_JSON_BYTES = 4096
#: Objects and arrays one JSON body may hold: the endpoints need one; a bound this low
#: keeps the parser from building (and the collector from sweeping) deep nests.
MAX_JSON_CONTAINERS = 64


async def _json(request: web.Request) -> Any:
    if (request.content_length or 0) > MAX_JSON_BYTES:
        raise ApiError(413, "too_large", f"a JSON body holds at most {MAX_JSON_BYTES} bytes")
    raw = await _read(request)
    if len(raw) > MAX_JSON_BYTES:
        raise ApiError(413, "too_large", f"a JSON body holds at most {MAX_JSON_BYTES} bytes")
    if raw.count(b"{") + raw.count(b"[") > MAX_JSON_CONTAINERS:
        raise ApiError(
            400, "bad_json", f"a JSON body holds at most {MAX_JSON_CONTAINERS} objects or arrays"
        )
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        # RecursionError: nesting deeper than the parser follows is refused like bad JSON
        raise ApiError(400, "bad_json", "the request body must be JSON") from None


def _unb64(value: object, length: int, what: str) -> bytes:
    if isinstance(value, str):
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) == length:
            return raw
    raise ApiError(400, "bad_request", f"{what} must be {length} bytes, base64url-encoded")


def _unb64_any(value: str, max_length: int, what: str) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    if not raw or len(raw) > max_length:
        raise ApiError(400, "bad_request", f"{what} must be base64url, at most {max_length} bytes")
    return raw


def _wall_now(request: web.Request) -> int:
    return request.app[WALL_CLOCK]()


# -- handlers -----------------------------------------------------------------------------


async def get_keys(request: web.Request) -> web.Response:
    return web.json_response(request.app[KEYS].published())


def new_token() -> str:
    """A bearer token (256 random bits) that never starts with '-', so a command line
    can take it as ``--account-token TOKEN`` without it reading as an option."""
    while True:
        token = secrets.token_urlsafe(32)
        if not token.startswith("-"):
            return token


async def post_account(request: web.Request) -> web.Response:
    token = new_token()
    account = request.app[STORE].create_account(token, _wall_now(request))
    log.info("account created")
    return web.json_response({"account": account, "token": token}, status=201)


async def post_band(request: web.Request) -> web.Response:
    account = _account(request)
    body = await _json(request)
    if not isinstance(body, dict):
        raise ApiError(400, "bad_request", "send {'band': ..., 'public_key': ...}")
    band = _unb64(body.get("band"), BAND_PSEUDONYM_LEN, "band")
    public_key = _unb64(body.get("public_key"), ED25519_PUBLIC_KEY_LEN, "public_key")
    certificate = body.get("certificate")
    if not isinstance(certificate, str) or not certificate:
        raise ApiError(
            400,
            "bad_request",
            "send the band's factory certificate as 'certificate' (base64url), read from "
            "its Band Certificate characteristic",
        )
    try:
        verify_certificate(
            _unb64_any(certificate, MAX_CERTIFICATE_BYTES, "certificate"),
            request.app[CONFIG].attestation_root,
            public_key,
        )
    except AttestationError as exc:
        raise ApiError(422, "attestation_invalid", str(exc)) from None
    store = request.app[STORE]
    existing = store.band(band)
    if existing is not None and existing.account_id != account:
        raise ApiError(
            409,
            "band_taken",
            "this band is registered to another account; its owner must release it first",
        )
    store.register_band(account, band, public_key, _wall_now(request))
    request.app[STATE].bands.pop(band, None)
    log.info("band registered")
    return web.json_response({"registered": True}, status=200 if existing else 201)


async def post_batch(request: web.Request) -> web.Response:
    account = _account(request)
    data = await _read(request)
    app = request.app
    state = app[STATE]
    try:
        envelope = decode_envelope(data)
    except UnsupportedBatchError as exc:
        raise ApiError(400, "unsupported", str(exc)) from exc
    except BatchError as exc:
        raise ApiError(400, "malformed_batch", str(exc)) from exc
    header = envelope.header
    band = state.bands.get(header.band)
    if band is None:
        band = app[STORE].band(header.band)
        if band is not None:
            state.bands[header.band] = band
    if band is None or band.account_id != account:
        raise ApiError(
            403,
            "unknown_band",
            "this band is not registered to your account; register it with POST /v1/bands",
        )
    wait = state.limiter.check(header.band, state.now())
    if wait > 0:
        raise ApiError(
            429,
            "rate_limited",
            "too many batches from this band; wait and send again",
            {"Retry-After": state.limiter.retry_after_header(wait)},
        )
    store = app[STORE]
    if store.has_batch(header.batch_id):
        log.info("batch %s replayed: nothing stored", header.batch_id.hex())
        return _stored(header.batch_id, 0, header.count, "duplicate")
    try:
        _, plaintext = open_envelope(envelope, app[KEYS])
        body = decode_batch_plaintext(header, plaintext)
    except BatchOpenError as exc:
        raise ApiError(400, "cannot_open", str(exc)) from exc
    except MalformedBatchError as exc:
        raise ApiError(400, "malformed_batch", str(exc)) from exc
    except BatchError as exc:
        raise ApiError(400, "malformed_batch", str(exc)) from exc
    try:
        digest = verify_consent(
            body.consent_record,
            band.public_key,
            header,
            body,
            min_policy_version=app[CONFIG].min_policy_version,
            withdrawals=state.withdrawals_of(account, store),
            cache=state.verified_consent,
        )
    except ConsentRejected as exc:
        log.info("batch %s refused: %s", header.batch_id.hex(), exc.code)
        raise ApiError(422, exc.code, str(exc)) from exc
    outcome = store.store_batch(account, header, body, plaintext, digest, _wall_now(request))
    if outcome.replay:
        return _stored(header.batch_id, 0, header.count, "duplicate")
    if log.isEnabledFor(logging.INFO):
        log.info(
            "batch %s stored: %d records, %d duplicates",
            header.batch_id.hex(),
            outcome.stored,
            outcome.duplicates,
        )
    return _stored(header.batch_id, outcome.stored, outcome.duplicates, "stored")


def _stored(batch_id: bytes, stored: int, duplicates: int, status: str) -> web.Response:
    # Formatted directly: every value is a hex string, a fixed word or an int, so this is
    # the JSON json.dumps would write, for a fraction of its cost on the hot path.
    body = (
        f'{{"batch_id": "{batch_id.hex()}", "status": "{status}", '
        f'"stored": {int(stored)}, "duplicates": {int(duplicates)}}}'
    )
    return web.Response(body=body.encode("ascii"), content_type="application/json", charset="utf-8")


_EXPORT_TYPES = {
    "json": "application/json",
    "csv": "text/csv",
    "fhir": "application/fhir+json",
}


async def get_export(request: web.Request) -> web.StreamResponse:
    """Stream the account's export in chunks (HTTP chunked encoding).

    The chunks come from a read-only snapshot of the store (so writers never wait for an
    export) and each is small (EXPORT_CHUNK_RECORDS records, under a millisecond to
    make): after each, the export leaves the loop to everyone else for as long again.
    The answer is written as it is made, never held whole in memory. Made on the loop
    rather than on a worker thread: a thread would hold the interpreter lock in 5 ms
    slices against every other request.
    """
    account = _account(request)
    fmt = request.query.get("format", "json")
    if fmt not in EXPORT_FORMATS:
        raise ApiError(400, "bad_format", "format must be one of json, csv, fhir")
    log.info("export (%s)", fmt)
    async with request.app[STATE].exports:
        view = request.app[STORE].read_view()
        chunks = EXPORTERS[fmt](view, account)
        try:
            chunk = next(chunks, None)
            response = web.StreamResponse(headers=_export_headers(fmt))
            response.enable_chunked_encoding()
            await response.prepare(request)
            while chunk is not None:
                await response.write(chunk.encode("utf-8"))
                started = time.perf_counter()
                chunk = next(chunks, None)
                # Background priority: after each chunk, leave the loop to everyone else
                # for as long as the chunk took, so an export takes at most half of it.
                await asyncio.sleep(time.perf_counter() - started)
            await response.write_eof()
            return response
        finally:
            chunks.close()
            view.close()


def _export_headers(fmt: str) -> dict[str, str]:
    headers = {"Content-Type": f"{_EXPORT_TYPES[fmt]}; charset=utf-8"}
    if fmt == "csv":
        headers["Content-Disposition"] = 'attachment; filename="kmeband-export.csv"'
    return headers


async def put_profile(request: web.Request) -> web.Response:
    account = _account(request)
    try:
        profile = validate_profile(await _json(request))
    except ProfileError as exc:
        raise ApiError(422, "bad_profile", str(exc)) from exc
    request.app[STORE].set_profile(account, profile, _wall_now(request))
    log.info("profile rectified")
    return web.json_response({"profile": profile})


async def get_profile(request: web.Request) -> web.Response:
    account = _account(request)
    return web.json_response({"profile": request.app[STORE].profile(account)})


async def delete_account_data(request: web.Request) -> web.Response:
    account = _account(request)
    erased = request.app[STORE].erase_account_data(account)
    log.info("account data erased: %d records", erased)
    return web.json_response({"erased_records": erased})


async def delete_account(request: web.Request) -> web.Response:
    account = _account(request)
    erased, bands = request.app[STORE].delete_account(account)
    request.app[STATE].forget_account(account, bands)
    log.info("account deleted: %d records erased, %d bands unregistered", erased, len(bands))
    return web.json_response({"erased_records": erased, "deleted_bands": len(bands)})


async def post_withdrawal(request: web.Request) -> web.Response:
    account = _account(request)
    body = await _json(request)
    if not isinstance(body, dict):
        raise ApiError(400, "bad_request", "send {'category': 'heart_rate', 'erase': false}")
    try:
        category = parse_category(body.get("category"))
    except ProfileError as exc:
        raise ApiError(422, "bad_category", str(exc)) from exc
    erase = body.get("erase", False)
    if type(erase) is not bool:
        raise ApiError(400, "bad_request", "'erase' must be true or false")
    at = _wall_now(request)
    erased = request.app[STORE].withdraw(
        account, category, at, streams_of(category) if erase else []
    )
    request.app[STATE].forget_withdrawals(account)
    log.info("consent withdrawal recorded; %d records erased", erased)
    return web.json_response(
        {"category": category.name.lower(), "at": at, "erased_records": erased}, status=201
    )


# -- running it -----------------------------------------------------------------------------


class IngestServer:
    """The ingest on a loopback port, in-process: ``async with IngestServer(...) as s:``.

    ``port=0`` picks a free ephemeral port; ``url`` and ``public_key`` are set once it
    runs.
    """

    def __init__(
        self,
        db_path: Path | str,
        key_dir: Path | str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        config: IngestConfig | None = None,
    ) -> None:
        self.db_path = Path(db_path)
        self.key_dir = Path(key_dir)
        self.host, self.port = host, port
        self.config = config or IngestConfig()
        self.url = ""
        self._runner: web.AppRunner | None = None
        self.store: IngestStore | None = None
        self.keys: IngestKeys | None = None
        self.guard: ConnectionGuard | None = None

    @property
    def public_key(self) -> Any:
        if self.keys is None:
            raise KmebandError("the ingest is not running; start it first")
        return self.keys.public_key

    async def start(self) -> None:
        self.keys = load_or_create_keys(self.key_dir)
        self.store = IngestStore(self.db_path, background_checkpoint=True)
        app = create_app(self.store, self.keys, self.config)
        self.guard = app[GUARD] = ConnectionGuard(self.config.max_unauthenticated)
        self._runner = GuardedAppRunner(
            app,
            self.guard,
            access_log=None,
            handler_cancellation=True,
            keepalive_timeout=self.config.header_timeout_s,
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=1024)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            self.store.close()
            raise KmebandError(
                f"cannot listen on {self.host}:{self.port}: {exc.strerror}; pick another --port"
            ) from exc
        # the runner lists the bound sockets' addresses: the real port when 0 was asked for
        addresses = self._runner.addresses
        port = int(addresses[0][1]) if addresses else self.port
        self.port = port
        self.url = f"http://{self.host}:{port}"
        log.info("ingest listening on %s", self.url)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.store is not None:
            self.store.close()
            self.store = None

    async def __aenter__(self) -> IngestServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
