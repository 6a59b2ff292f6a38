"""One sync of one band: connect, authenticate, read consent, pull every stream, upload.

:class:`SyncSession` wires the pieces together in the order the architecture requires:
consent is read from the band before any record is pulled, withdrawn categories are
purged from the outbox first, records are sealed and committed before the band is
acknowledged, and the upload drains this band's part of the outbox (which survives
anything in between); other bands' batches wait for their own sync, whose consent read
purges what was withdrawn on them.
"""

from __future__ import annotations

import datetime as dt
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import x25519

from protocol.kme.batch import SUITE_X25519, HpkeSuiteId
from protocol.kme.records import StreamId
from sync_client.activation import (
    AccountFile,
    ActivationError,
    ClientKeys,
    ensure_owner,
    read_certificate,
    register_band,
)
from sync_client.batcher import Batcher, BatchLimits, ServiceData
from sync_client.ble import Backend, BandInfo, BandLink, connect
from sync_client.consent import BandConsent, purge_withdrawn, read_band_consent
from sync_client.link_activity import LinkActivity
from sync_client.outbox import Outbox
from sync_client.puller import Progress, Puller, StreamResult
from sync_client.sealing import RecipientPublicKey
from sync_client.uploader import Uploader, UploadReport

CLIENT_VERSION = "0.1.0"


@dataclass
class SyncOptions:
    """How a sync runs."""

    keep_on_band: bool = False
    timeout_s: float = 10.0
    connect_attempts: int = 3
    streams: tuple[StreamId, ...] = tuple(StreamId)
    limits: BatchLimits = field(default_factory=BatchLimits)
    min_policy_version: int = 0
    suite: HpkeSuiteId = SUITE_X25519
    upload: bool = True
    set_clock: bool = True
    on_progress: Callable[[Progress], None] | None = None
    #: Called after each batch the ingest accepted, with the upload's counts so far.
    on_upload: Callable[[UploadReport], None] | None = None


@dataclass
class SyncReport:
    """What a sync did (no identifiers, no health data: safe to print)."""

    band_info: BandInfo | None = None
    newly_activated: bool = False
    clock_set: bool = False
    purged_batches: dict[int, int] = field(default_factory=dict)
    streams: list[StreamResult] = field(default_factory=list)
    upload: UploadReport | None = None
    sig_only: bool = False
    registration_error: str | None = None


class SyncSession:
    """Syncs one band into the outbox and on to the ingest."""

    def __init__(
        self,
        address: str,
        keys: ClientKeys,
        outbox: Outbox,
        ingest_key: RecipientPublicKey,
        account: AccountFile | None,
        *,
        backend: Backend | None = None,
        options: SyncOptions | None = None,
        passkey_callback: Callable[[], int | str] | None = None,
        backend_options: dict[str, object] | None = None,
    ) -> None:
        self.address = address
        self.keys = keys
        self.outbox = outbox
        self.ingest_key = ingest_key
        self.account = account
        self.backend = backend
        self.options = options or SyncOptions()
        self.passkey_callback = passkey_callback
        self.backend_options = backend_options
        self._puller: Puller | None = None

    def _on_disconnect(self, _client: object) -> None:
        if self._puller is not None:
            self._puller.connection_lost()

    async def run(self) -> SyncReport:
        """Connect, sync and upload; a PullLinkLostError leaves everything stored resumable."""
        opts = self.options
        report = SyncReport()
        client = await connect(
            self.address,
            backend=self.backend,
            attempts=opts.connect_attempts,
            timeout_s=opts.timeout_s,
            passkey_callback=self.passkey_callback,
            disconnected_callback=self._on_disconnect,
            backend_options=dict(self.backend_options or {}),
        )
        registered = False
        # one progress clock for the connection: every wait below fails only when nothing
        # has moved on the link for timeout_s, so a slow link is never cut off mid-sync
        activity = LinkActivity(opts.timeout_s)
        try:
            link = BandLink(client, opts.timeout_s, activity)
            info = await link.read_info()
            report.band_info = info
            if opts.set_clock:
                report.clock_set = await link.sync_clock(dt.datetime.now().astimezone())
            if not info.kme:
                report.sig_only = True  # live HR, battery and info only: nothing to pull
                return report
            band = self.keys.band_pseudonym(info.serial)
            band_key, report.newly_activated = await ensure_owner(link, self.keys)
            registered = await self._register(link, band, band_key, report)
            consent = await read_band_consent(
                client,
                min_policy_version=opts.min_policy_version,
                timeout_s=opts.timeout_s,
                activity=activity,
            )
            report.purged_batches = purge_withdrawn(self.outbox, band, consent)
            report.streams = await self._pull(client, band, info, consent, activity)
        finally:
            if self._puller is not None:
                await self._puller.unsubscribe()
            await client.disconnect()
        if opts.upload and self.account is not None and registered:
            # Only this band's batches: its consent was read (and its withdrawals purged)
            # just now; another band's queue waits for that band's own sync.
            self.outbox.unpark(band)  # a refusal may have been fixed since: offer once more
            uploader = Uploader(
                self.outbox,
                self.account.ingest_url,
                self.account.token,
                on_delivered=opts.on_upload,
            )
            report.upload = await uploader.drain(band)
        return report

    async def _register(
        self, link: BandLink, band: bytes, band_key: bytes, report: SyncReport
    ) -> bool:
        """Make sure the ingest knows the band (idempotent) before anything is uploaded.

        Registration at activation may have failed, or the client may have been killed
        between activating the band and registering it: every sync checks. When the ingest
        cannot be reached the sync still pulls into the outbox and uploads next time.
        """
        if self.account is None:
            return False
        if self.outbox.is_registered(band):
            return True
        try:
            await register_band(self.account, band, band_key, await read_certificate(link))
        except ActivationError as exc:
            report.registration_error = str(exc)
            return False
        self.outbox.mark_registered(band)
        return True

    async def _pull(
        self,
        client: object,
        band: bytes,
        info: BandInfo,
        consent: BandConsent,
        activity: LinkActivity,
    ) -> list[StreamResult]:
        opts = self.options
        batcher = Batcher(
            band=band,
            service=ServiceData(
                info.firmware_version[:64],
                info.model[:64],
                f"{platform.system()} {platform.release()}"[:64],
                CLIENT_VERSION,
            ),
            consent_record=consent.consent_record,
            recipient_key=self.ingest_key,
            suite=opts.suite,
            limits=opts.limits,
        )
        self._puller = Puller(
            client,  # type: ignore[arg-type]
            self.outbox,
            band,
            batcher,
            consent.allowed,
            keep_on_band=opts.keep_on_band,
            timeout_s=opts.timeout_s,
            on_progress=opts.on_progress,
            activity=activity,
        )
        return await self._puller.pull_all(opts.streams)


def load_ingest_key(raw: bytes) -> x25519.X25519PublicKey:
    """The ingest's X25519 public key from its 32 raw bytes (GET /v1/keys)."""
    return x25519.X25519PublicKey.from_public_bytes(raw)


def default_outbox(directory: Path) -> Outbox:
    return Outbox(directory / "outbox.db")


__all__ = [
    "CLIENT_VERSION",
    "SyncOptions",
    "SyncReport",
    "SyncSession",
    "default_outbox",
    "load_ingest_key",
]
