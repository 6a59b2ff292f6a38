"""KME Consent: the band's consent state, its signed log pages and consent records."""

from __future__ import annotations

import dataclasses

from device_sim.band.services.connection import Answer, BandConnection, Effect, Service
from device_sim.band.simulated_band import SimulatedBand
from protocol.errors import KmebandError
from protocol.kme.consent import ConsentChange, ConsentError, ConsentLog, ConsentRecord
from protocol.kme.control.common import ControlResult, ControlStatus
from protocol.kme.control.consent import (
    MAX_LOG_PAGE_ENTRIES,
    ConsentLogPage,
    ConsentResult,
    ConsentSource,
    ConsentState,
    RequestConsentRecord,
    SelectConsentLogPage,
    SetConsent,
)
from protocol.kme.control.schema import ControlMessage, encode_control, unsigned_encoding
from protocol.kme.profile import (
    KME_CONSENT_CHANGE_LOG,
    KME_CONSENT_CONTROL_POINT,
    KME_CONSENT_RECORD,
    KME_CONSENT_STATE,
    MAX_CONTROL_VALUE,
)


class ConsentService:
    """Consent reads and requests; the band's consent store is the source of truth."""

    def __init__(self, band: SimulatedBand) -> None:
        self.band = band

    def handlers(self) -> Service:
        return Service(
            reads={
                KME_CONSENT_STATE: lambda c: self._state(),
                KME_CONSENT_CHANGE_LOG: self._log_page,
                KME_CONSENT_RECORD: lambda c: c.consent_record,
            },
            requests={KME_CONSENT_CONTROL_POINT: self._request},
        )

    def _state(self) -> bytes:
        consent = self.band.consent
        return encode_control(ConsentState(consent.flags(), len(consent)))

    def _log_page(self, conn: BandConnection) -> bytes:
        consent = self.band.consent
        first = conn.log_page
        entries = tuple(consent.log(first, MAX_LOG_PAGE_ENTRIES))
        page = ConsentLogPage(first, len(consent), entries)
        signature = self.band.identity.sign(unsigned_encoding(page))
        return encode_control(ConsentLogPage(first, page.total, entries, signature))

    def _request(self, conn: BandConnection, message: ControlMessage, raw: bytes) -> list[Effect]:
        if isinstance(message, SelectConsentLogPage):
            conn.log_page = message.first_index
            return [Answer(ControlResult(message.MESSAGE_TYPE, ControlStatus.OK))]
        if isinstance(message, RequestConsentRecord):
            status = self._sign_record(conn, message)
            return [Answer(ControlResult(message.MESSAGE_TYPE, status))]
        assert isinstance(message, SetConsent)  # the access table lists these three only
        try:
            entry = self.band.consent.set(
                message.category,
                message.granted,
                message.policy_version,
                source=ConsentSource.OWNER_CLIENT,
                tz_offset_min=self.band.firmware.tz_offset_min,
            )
        except KmebandError:
            return [Answer(ConsentResult(ControlStatus.INVALID_REQUEST))]
        return [Answer(ConsentResult(ControlStatus.OK, entry.index))]

    def _sign_record(self, conn: BandConnection, request: RequestConsentRecord) -> ControlStatus:
        """Sign the record of the consent governing the requested range."""
        now = int(self.band.clock.now())
        covers_to = min(request.covers_to, now)  # a record never speaks of the future
        if covers_to < request.covers_from:
            return ControlStatus.INVALID_REQUEST
        log = ConsentLog(ConsentChange.from_entry(e) for e in self.band.consent.log())
        try:
            record = ConsentRecord.covering(log, request.covers_from, covers_to, now)
        except ConsentError:
            return ControlStatus.LIMIT_REACHED
        signed = dataclasses.replace(
            record, signature=self.band.identity.sign(record.signed_bytes())
        )
        encoded = signed.encode()
        if len(encoded) > MAX_CONTROL_VALUE:
            return ControlStatus.LIMIT_REACHED
        conn.consent_record = encoded
        return ControlStatus.OK
