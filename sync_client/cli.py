"""The ``scan``, ``pair``, ``sync``, ``consent show|set``, ``alarm list|set|delete`` and
``band reset`` subcommands.

``register(subparsers)`` adds them to the project's CLI; each handler returns an exit
code: 0 done, 1 a typed error (the message says what to do), 2 usage, 3 band (or alarm)
not found, 4 some streams stopped (the rest synced). ``--json`` prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

from protocol.errors import KmebandError, UsageError
from protocol.kme.control.consent import ConsentState
from protocol.kme.control.schema import decode_as
from protocol.kme.profile import KME_CONSENT_STATE
from protocol.kme.records import ConsentCategory
from sync_client.activation import (
    AccountFile,
    ClientKeys,
    client_dir,
    create_account,
    ensure_owner,
    factory_reset,
    ingest_key_for,
    read_certificate,
    register_band,
)
from sync_client.alarms import (
    alarm_to_json,
    delete_alarm,
    describe_alarms,
    list_alarms,
    make_alarm,
    set_alarm,
)
from sync_client.ble import BandLink, BandNotFoundError, connect, scan
from sync_client.clone import clone_device
from sync_client.consent import read_band_consent, set_consent
from sync_client.outbox import Outbox, OutboxError
from sync_client.puller import Progress
from sync_client.rights import (
    EXPORT_FORMATS,
    delete_account,
    erase_data,
    export_data,
    load_account,
)
from sync_client.session import SyncOptions, SyncSession, load_ingest_key
from sync_client.uploader import UploadReport

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_PARTIAL = 0, 1, 2, 3, 4


class SyncProgress:
    """What a sync is doing, as one status line redrawn in place on a terminal.

    Only counts and rates are shown: no identifiers, no health data. Redrawn at most
    ``per_s`` times a second; :meth:`clear` removes the line before the final report.
    """

    def __init__(
        self, stream: TextIO, per_s: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.stream = stream
        self.min_gap_s = 1.0 / per_s
        self.clock = clock
        self._shown_at: float | None = None
        self._width = 0

    def pulled(self, progress: Progress) -> None:
        self._show(
            f"pulling {progress.stream.name.lower()}: {progress.records} records "
            f"({progress.records_per_s:.0f}/s)"
        )

    def delivered(self, report: UploadReport) -> None:
        self._show(
            f"uploading: {report.delivered_batches} batches, "
            f"{report.delivered_records} records delivered"
        )

    def _show(self, text: str) -> None:
        now = self.clock()
        if self._shown_at is not None and now - self._shown_at < self.min_gap_s:
            return
        self._shown_at = now
        self.stream.write("\r" + text.ljust(self._width))
        self.stream.flush()
        self._width = len(text)

    def clear(self) -> None:
        if self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0


def _emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    print(json.dumps(data, default=str) if args.json else text)


def _fail(args: argparse.Namespace, exc: Exception) -> None:
    """An error: a JSON object on stdout for scripts (--json), else a line on stderr."""
    if args.json:
        print(json.dumps({"error": str(exc)}))
    else:
        print(f"kmeband: error: {exc}", file=sys.stderr)


def _run(args: argparse.Namespace, coro: Any) -> int:
    try:
        result: int = asyncio.run(coro)
        return result
    except BandNotFoundError as exc:
        _fail(args, exc)
        return EXIT_NOT_FOUND
    except KmebandError as exc:
        _fail(args, exc)
        return exc.exit_code


def _passkey() -> int:
    return int(input("passkey shown on the band: ").strip())


async def _scan(args: argparse.Namespace) -> int:
    bands = await scan(args.timeout)
    rows = [{"address": b.address, "name": b.name, "rssi": b.rssi, "kme": b.kme} for b in bands]
    text = "\n".join(
        f"{b.address}  {b.name or '?'}  rssi {b.rssi}  {'KME' if b.kme else 'SIG-only'}"
        for b in bands
    )
    _emit(args, {"bands": rows}, text or "no band found")
    return EXIT_OK if bands else EXIT_NOT_FOUND


async def _pair(args: argparse.Namespace) -> int:
    client = await connect(args.address, passkey_callback=_passkey, timeout_s=args.timeout)
    try:
        link = BandLink(client, args.timeout)
        info = await link.read_info()
        data: dict[str, Any] = {"paired": True, "kme": info.kme}
        if info.kme:
            directory = client_dir(args.client_dir)
            keys = ClientKeys.load_or_create(directory)
            band_key, data["activated"] = await ensure_owner(link, keys)
            if args.ingest:
                # the account the client uploads to (and exports from, and erases)
                account = AccountFile.load(directory)
                if account is None:
                    account = await create_account(args.ingest)
                    account.save(directory)
                certificate = await read_certificate(link)
                pseudonym = keys.band_pseudonym(info.serial)
                await register_band(account, pseudonym, band_key, certificate)
                data["registered"] = True
                # fetched (and cached) now, so a later sync can seal while it is unreachable
                await ingest_key_for(directory, account)
        _emit(args, data, f"paired: {info.describe()}")
    finally:
        await client.disconnect()
    return EXIT_OK


async def _clone(args: argparse.Namespace) -> int:
    if args.seconds < 0:
        raise UsageError("--seconds cannot be negative")
    snapshot = await clone_device(
        args.address,
        record_s=args.seconds,
        scan_s=args.scan_seconds,
        passkey_callback=_passkey if args.pair else None,
    )
    out: Path = args.out
    partial = out.with_name(out.name + ".partial")
    try:  # a file is replaced only by a complete recording
        partial.write_text(json.dumps(snapshot.to_json(), indent=1) + "\n", encoding="utf-8")
        partial.replace(out)
    except OSError as exc:
        raise UsageError(
            f"{out} cannot be written ({exc.strerror}); choose another --out"
        ) from None
    chars = sum(len(s.characteristics) for s in snapshot.services)
    data = {
        "out": str(out),
        "services": len(snapshot.services),
        "characteristics": chars,
        "notifications": len(snapshot.notifications),
    }
    _emit(
        args,
        data,
        f"recorded {len(snapshot.services)} services, {chars} characteristics and "
        f"{len(snapshot.notifications)} notifications to {out}; serve it with "
        f"'kmeband sim --clone {out}'",
    )
    return EXIT_OK


async def _sync(args: argparse.Namespace) -> int:
    directory = client_dir(args.client_dir)
    keys = ClientKeys.load_or_create(directory)
    account = AccountFile.load(directory)
    if args.ingest_key:
        raw_key = base64.urlsafe_b64decode(args.ingest_key + "==")
    elif account is not None:
        raw_key = await ingest_key_for(directory, account)
    else:
        raise UsageError(
            "no account yet: pair with --ingest URL first (or give --ingest-key to only "
            "queue sealed batches)"
        )
    ingest_key = load_ingest_key(raw_key)
    options = SyncOptions(keep_on_band=args.keep_on_band, timeout_s=args.timeout)
    progress = SyncProgress(sys.stderr) if sys.stderr.isatty() and not args.json else None
    if progress is not None:
        options.on_progress, options.on_upload = progress.pulled, progress.delivered
    with Outbox(directory / "outbox.db") as outbox:
        session = SyncSession(args.address, keys, outbox, ingest_key, account, options=options)
        try:
            report = await session.run()
        finally:
            if progress is not None:
                progress.clear()
    data = {
        "sig_only": report.sig_only,
        "streams": [asdict(r) | {"stream": r.stream.name.lower()} for r in report.streams],
        "purged_batches": report.purged_batches,
        "uploaded": report.upload is not None,
        "account_error": report.upload.account_error if report.upload else None,
    }
    failed = [r for r in report.streams if r.error]
    text = "\n".join(
        f"{r.stream.name.lower()}: {r.queued} queued, {r.withheld} withheld"
        + (f", stopped: {r.error}" if r.error else "")
        for r in report.streams
    )
    if report.upload is not None and report.upload.account_error:
        text = f"{text}\nupload stopped: {report.upload.account_error}".lstrip()
    _emit(args, data, text or (report.band_info.describe() if report.band_info else ""))
    return EXIT_PARTIAL if failed else EXIT_OK


async def _consent(args: argparse.Namespace) -> int:
    directory = client_dir(args.client_dir)
    keys = ClientKeys.load_or_create(directory)
    client = await connect(args.address, timeout_s=args.timeout)
    try:
        link = BandLink(client, args.timeout)
        await ensure_owner(link, keys)
        if args.consent_action == "set":
            category = ConsentCategory[args.category.upper()]
            info = await link.read_info()
            with Outbox(directory / "outbox.db") as outbox:
                await set_consent(
                    client,
                    category,
                    args.value == "grant",
                    args.policy_version,
                    outbox=outbox,
                    band=keys.band_pseudonym(info.serial),
                    timeout_s=args.timeout,
                )
        state = decode_as(await link.read(KME_CONSENT_STATE), ConsentState)
        if args.consent_action == "show":
            await read_band_consent(client, timeout_s=args.timeout)  # the log must read cleanly
        flags = {
            f.category.name.lower(): {"granted": f.granted, "policy_version": f.policy_version}
            for f in state.flags
        }
        text = "\n".join(
            f"{name}: {'granted' if v['granted'] else 'withdrawn'} (policy {v['policy_version']})"
            for name, v in flags.items()
        )
        _emit(args, {"consent": flags, "log_length": state.log_length}, text)
    finally:
        await client.disconnect()
    return EXIT_OK


async def _alarm(args: argparse.Namespace) -> int:
    # a bad alarm is a usage error: say so before reaching for the band
    alarm = (
        make_alarm(args.alarm_id, args.time, args.days, args.smart_window, not args.disabled)
        if args.alarm_action == "set"
        else None
    )
    keys = ClientKeys.load_or_create(client_dir(args.client_dir))
    client = await connect(args.address, timeout_s=args.timeout)
    try:
        link = BandLink(client, args.timeout)
        await ensure_owner(link, keys)
        if alarm is not None:
            await set_alarm(link, alarm)
        elif args.alarm_action == "delete":
            await delete_alarm(link, args.alarm_id)
        alarms = await list_alarms(link)
    finally:
        await client.disconnect()
    _emit(args, {"alarms": [alarm_to_json(a) for a in alarms]}, describe_alarms(alarms))
    return EXIT_OK


async def _band_reset(args: argparse.Namespace) -> int:
    keys = ClientKeys.load_or_create(client_dir(args.client_dir))
    client = await connect(args.address, timeout_s=args.timeout)
    try:
        await factory_reset(BandLink(client, args.timeout), keys)
    finally:
        await client.disconnect()
    text = (
        "the band erased its records, consent, alarms, profile, owner and bonds; "
        "anyone may now pair and activate it"
    )
    _emit(args, {"reset": True}, text)
    return EXIT_OK


def _band_reset_confirmed(args: argparse.Namespace) -> int:
    if not args.yes:
        raise UsageError(
            "a factory reset erases everything on the band that was not synced and releases "
            "it from this account; sync first if you want its records, then add --yes"
        )
    return _run(args, _band_reset(args))


async def _export(args: argparse.Namespace) -> int:
    exported = await export_data(load_account(args.client_dir), args.format)
    if args.out is None or str(args.out) == "-":
        sys.stdout.write(exported.body if exported.body.endswith("\n") else exported.body + "\n")
        return EXIT_OK
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # health data: readable by the user only, like the client's other files
    fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(exported.body)
    summary = exported.summary() | {"out": str(args.out)}
    _emit(args, summary, f"exported ({args.format}) to {args.out}")
    return EXIT_OK


#: Written once the ingest has deleted the account and until the local steps are done, so
#: an erase that stopped half way can be run again to finish.
ERASE_PENDING = "erase-pending.json"


class EraseIncompleteError(KmebandError):
    """The account was deleted at the ingest but a local step failed; run the erase again."""


async def _erase(args: argparse.Namespace) -> int:
    directory = client_dir(args.client_dir)
    pending_path = directory / ERASE_PENDING
    outbox_path = directory / "outbox.db"
    if not args.account:
        erased = await erase_data(load_account(args.client_dir))
        _emit(args, {"erased_records": erased}, f"erased {erased} records from the ingest")
        return EXIT_OK
    pending = _pending_erase(pending_path) if not (directory / "account.json").exists() else None
    if pending is None:
        account = load_account(args.client_dir)
        if outbox_path.exists():
            # Before anything is erased: an outbox that cannot be cleared would leave the
            # erase half done (the account gone at the ingest, its batches still here).
            try:
                with Outbox(outbox_path) as outbox:
                    outbox.check()
            except OutboxError as exc:
                raise EraseIncompleteError(
                    f"nothing was erased (the ingest account and this client's files are as "
                    f"they were): {exc}; then run 'kmeband erase --account --yes' again"
                ) from None
        erased, bands = await delete_account(account)
        pending = {"erased_records": erased, "deleted_bands": bands}
        tmp = pending_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(pending, f)
        os.replace(tmp, pending_path)  # whole or absent, never half written
        # the account is gone at the ingest: forget it here, with what was queued for it
        (directory / "account.json").unlink(missing_ok=True)
    erased, bands = pending["erased_records"], pending["deleted_bands"]
    dropped = 0
    try:
        if outbox_path.exists():
            with Outbox(outbox_path) as outbox:
                dropped = outbox.drop_all()
    except OutboxError as exc:
        raise EraseIncompleteError(
            f"the account was deleted at the ingest ({erased} records erased, {bands} band(s) "
            "unregistered) and its token removed from this client, but the batches queued "
            f"for it here were not dropped: {exc}; then run 'kmeband erase --account --yes' "
            "again to finish"
        ) from None
    pending_path.unlink(missing_ok=True)
    data = {
        "erased_records": erased,
        "deleted_bands": bands,
        "dropped_batches": dropped,
        "account_deleted": True,
    }
    text = (
        f"deleted the account: erased {erased} records from the ingest, unregistered {bands} "
        f"band(s), dropped {dropped} queued batch(es); pair with --ingest to start a new account"
    )
    _emit(args, data, text)
    return EXIT_OK


def _pending_erase(path: Path) -> dict[str, int] | None:
    """What an earlier, unfinished erase did at the ingest; None when there is none."""
    try:
        document = json.loads(path.read_text())
        return {k: int(document[k]) for k in ("erased_records", "deleted_bands")}
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        # Unreadable: the ingest step is known done (the marker exists) and was reported
        # by the run that did it; this run erases nothing more there.
        return {"erased_records": 0, "deleted_bands": 0}


def _erase_confirmed(args: argparse.Namespace) -> int:
    if not args.yes:
        raise UsageError(
            "erasing everything the ingest holds for this account cannot be undone; "
            "run 'kmeband export' first if you want a copy, then add --yes"
        )
    return _run(args, _erase(args))


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per wait")
    p.add_argument("--client-dir", type=Path, default=None, help="keys and outbox directory")


def register(subparsers: Any) -> None:
    """Add ``scan``, ``pair``, ``clone``, ``sync`` and ``consent`` to the project's CLI."""
    p = subparsers.add_parser("scan", help="find bands nearby")
    _common(p)
    p.set_defaults(handler=lambda a: _run(a, _scan(a)))

    p = subparsers.add_parser("pair", help="pair with a band (passkey) and activate it")
    p.add_argument("address")
    p.add_argument(
        "--ingest",
        default=None,
        help="ingest URL: create this client's account there (once) and register the band",
    )
    _common(p)
    p.set_defaults(handler=lambda a: _run(a, _pair(a)))

    p = subparsers.add_parser(
        "clone", help="record any BLE device's GATT table, values and notifications"
    )
    p.add_argument("address")
    p.add_argument("--out", type=Path, required=True, help="where to write device.json")
    p.add_argument(
        "--seconds", type=float, default=10.0, help="how long to record notifications (10)"
    )
    p.add_argument("--scan-seconds", type=float, default=2.0, help="scan for its advertisement (2)")
    p.add_argument("--pair", action="store_true", help="pair first (asks for the passkey)")
    _common(p)
    p.set_defaults(handler=lambda a: _run(a, _clone(a)))

    p = subparsers.add_parser("sync", help="pull a band's records, seal, queue, upload")
    p.add_argument("address")
    p.add_argument(
        "--ingest-key",
        help="the ingest's X25519 key, base64url (default: fetched from the account's ingest)",
    )
    p.add_argument("--keep-on-band", action="store_true", help="do not let the band free data")
    _common(p)
    p.set_defaults(handler=lambda a: _run(a, _sync(a)))

    p = subparsers.add_parser("consent", help="show or change the band's consent")
    actions = p.add_subparsers(dest="consent_action", required=True)
    show = actions.add_parser("show")
    show.add_argument("address")
    _common(show)
    change = actions.add_parser("set")
    change.add_argument("address")
    change.add_argument("category", choices=[c.name.lower() for c in ConsentCategory])
    change.add_argument("value", choices=["grant", "withdraw"])
    change.add_argument("--policy-version", type=int, default=1)
    _common(change)
    p.set_defaults(handler=lambda a: _run(a, _consent(a)))

    p = subparsers.add_parser(
        "alarm",
        help="list, set or delete the band's alarms (owner only)",
        description=(
            "Alarms live on the band, in its local time (up to 8, ids 0..7). A smart window "
            "lets the band ring up to that many minutes early in light sleep. Every action "
            "prints the band's alarms afterwards. Exit 3 when the band or the alarm is not found."
        ),
    )
    actions = p.add_subparsers(dest="alarm_action", required=True)
    listing = actions.add_parser("list", help="print the band's alarms")
    listing.add_argument("address")
    _common(listing)
    change = actions.add_parser("set", help="create or replace an alarm")
    change.add_argument("address")
    change.add_argument("alarm_id", type=int, help="0..7")
    change.add_argument("time", help="HH:MM, 24-hour, band local time")
    change.add_argument(
        "--days", default="once", help="once, daily, weekdays, weekends or mon,tue,... (once)"
    )
    change.add_argument(
        "--smart-window", type=int, default=0, help="minutes the band may ring early (0..60)"
    )
    change.add_argument("--disabled", action="store_true", help="store the alarm switched off")
    _common(change)
    remove = actions.add_parser("delete", help="delete an alarm (exit 3 if there is none)")
    remove.add_argument("address")
    remove.add_argument("alarm_id", type=int, help="0..7")
    _common(remove)
    p.set_defaults(handler=lambda a: _run(a, _alarm(a)))

    p = subparsers.add_parser(
        "band",
        help="act on the band itself (owner only): reset",
        description=(
            "reset: the band's factory reset. It erases every record, the consent state and "
            "log, alarms, the user profile, the owner key and every bond, then drops the "
            "link, so the band can be handed to someone else. Needs --yes."
        ),
    )
    actions = p.add_subparsers(dest="band_action", required=True)
    reset = actions.add_parser("reset", help="factory-reset the band (owner only)")
    reset.add_argument("address")
    reset.add_argument("--yes", action="store_true", help="really reset (cannot be undone)")
    _common(reset)
    p.set_defaults(handler=_band_reset_confirmed)

    p = subparsers.add_parser(
        "export",
        help="download everything the ingest holds for this client's account",
        description=(
            "The right of access and to data portability: every record, batch, consent "
            "record and the profile the ingest holds for the account in the client's "
            "account.json, as JSON, long CSV or a FHIR R4 bundle. Exit 3 without an account."
        ),
    )
    p.add_argument("--format", choices=EXPORT_FORMATS, default="json")
    p.add_argument("--out", type=Path, default=None, help="file to write (default: stdout)")
    _common(p)
    p.set_defaults(handler=lambda a: _run(a, _export(a)))

    p = subparsers.add_parser(
        "erase",
        help="erase everything the ingest holds for this client's account",
        description=(
            "The right to erasure: the ingest deletes the account's records, batches, "
            "consent records and profile (it remembers only how far each stream was erased, "
            "so old batches cannot bring data back). With --account the account itself is "
            "deleted too, and forgotten here. Needs --yes."
        ),
    )
    p.add_argument("--yes", action="store_true", help="really erase (cannot be undone)")
    p.add_argument(
        "--account",
        action="store_true",
        help="also delete the account itself (its token stops working, its bands are "
        "unregistered) and, here, account.json and every batch still queued for it",
    )
    _common(p)
    p.set_defaults(handler=_erase_confirmed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kmeband-sync")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
