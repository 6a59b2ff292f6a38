"""The data subject's rights against the ingest: export everything held, erase it.

Both act for the account in the client's ``account.json`` (ingest URL and bearer token,
see :mod:`sync_client.activation`): ``GET /v1/export?format=json|csv|fhir`` and
``DELETE /v1/account/data`` (docs/ingest.md). The token is never printed or logged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol.errors import KmebandError, UsageError
from sync_client.activation import AccountFile, client_dir
from sync_client.uploader import check_ingest_url

EXPORT_FORMATS = ("json", "csv", "fhir")
REQUEST_TIMEOUT_S = 60.0


class RightsError(KmebandError):
    """The ingest could not be reached or refused a rights request; see the message."""


class NoAccountError(RightsError):
    """The client has no account file: nothing was ever synced from here."""

    exit_code = 3


@dataclass(frozen=True)
class Export:
    """What ``GET /v1/export`` returned: the format and the body (text, as sent)."""

    format: str
    body: str

    def summary(self) -> dict[str, Any]:
        """Counts for a script: records by stream (JSON), rows (CSV), entries (FHIR)."""
        if self.format == "csv":
            return {"format": "csv", "rows": max(0, len(self.body.splitlines()) - 1)}
        data = json.loads(self.body)
        if self.format == "fhir":
            return {"format": "fhir", "entries": len(data.get("entry", []))}
        records = data.get("records", {})
        counts = {k: len(v) for k, v in records.items()} if isinstance(records, dict) else {}
        return {"format": "json", "records": sum(counts.values()), "streams": counts}


def load_account(directory: Path | None = None) -> AccountFile:
    """The account of the client in ``directory`` (default: the client directory)."""
    account = AccountFile.load(client_dir(directory))
    if account is None:
        raise NoAccountError(
            "this client has no account file (account.json): sync a band first, or point "
            "--client-dir at the client directory that did"
        )
    return account


async def _request(account: AccountFile, method: str, path: str) -> tuple[int, str]:
    import aiohttp

    url = check_ingest_url(account.ingest_url) + path
    headers = {"Authorization": f"Bearer {account.token}"}
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)) as http,
            http.request(method, url, headers=headers) as response,
        ):
            return response.status, await response.text()
    except aiohttp.ClientError as exc:
        raise RightsError(
            f"the ingest is unreachable ({exc.__class__.__name__}); check it is running"
        ) from None
    except TimeoutError:
        raise RightsError("the ingest did not answer in time; try again later") from None


def _refusal(status: int, body: str, what: str) -> RightsError:
    try:
        code = json.loads(body).get("error", "")
    except (ValueError, AttributeError):
        code = ""
    if status == 401:
        return RightsError(f"the ingest does not know this account's token ({what} refused)")
    return RightsError(f"the ingest refused the {what} ({status} {code}); try again later")


async def export_data(account: AccountFile, fmt: str = "json") -> Export:
    """Everything the ingest holds for the account, as JSON, CSV or FHIR R4."""
    if fmt not in EXPORT_FORMATS:
        raise UsageError(f"export format must be one of {', '.join(EXPORT_FORMATS)}")
    status, body = await _request(account, "GET", f"/v1/export?format={fmt}")
    if status != 200:
        raise _refusal(status, body, "export")
    return Export(fmt, body)


async def erase_data(account: AccountFile) -> int:
    """Erase every record, batch, consent record and the profile; returns records erased."""
    status, body = await _request(account, "DELETE", "/v1/account/data")
    if status != 200:
        raise _refusal(status, body, "erasure")
    try:
        return int(json.loads(body)["erased_records"])
    except (ValueError, KeyError, TypeError):
        raise RightsError("the ingest's answer to the erasure is malformed") from None


async def delete_account(account: AccountFile) -> tuple[int, int]:
    """Erase everything and delete the account itself at the ingest (its token stops
    working, its band registrations go); returns (records erased, bands unregistered)."""
    status, body = await _request(account, "DELETE", "/v1/account")
    if status != 200:
        raise _refusal(status, body, "account deletion")
    try:
        answer = json.loads(body)
        return int(answer["erased_records"]), int(answer["deleted_bands"])
    except (ValueError, KeyError, TypeError):
        raise RightsError("the ingest's answer to the account deletion is malformed") from None


__all__ = [
    "EXPORT_FORMATS",
    "Export",
    "NoAccountError",
    "RightsError",
    "delete_account",
    "erase_data",
    "export_data",
    "load_account",
]
