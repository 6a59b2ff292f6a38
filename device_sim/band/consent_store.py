"""The band's consent flags: the source of truth, with every change logged and persisted.

One flag per :class:`~protocol.kme.records.ConsentCategory`: granted or withdrawn, with the
privacy-policy version the wearer was shown. A change comes from the band's own screen or
from the owner's client (:class:`~protocol.kme.control.ConsentSource`); the store stamps it
with its :class:`~device_sim.clock.Clock`'s time and appends it to the change log, which
is never rewritten (entries are :class:`~protocol.kme.control.ConsentLogEntry`, the form the
Consent Change Log characteristic carries). Every category starts withdrawn: nothing is
collected before the wearer says yes.

:meth:`ConsentStore.is_allowed` answers "was this category consented at UTC time t?" from
the log, which is what the firmware's consent gate asks for each record. The state at t
is that of the latest-logged change stamped at or before t, so a record is gated by the
consent in force when it was measured, not when it is stored or read.

Persisted as a checksummed CBOR file (mode 0600), rewritten atomically on every change
(changes are rare); a damaged file raises StateFileCorruptError and is left untouched.
"""

from __future__ import annotations

import bisect
import math
import os
from collections.abc import Callable
from pathlib import Path

import cbor2

from device_sim.band.state_file import StateFileCorruptError, read_checked, write_checked
from device_sim.clock import Clock
from protocol.errors import UsageError
from protocol.kme.control.consent import ConsentFlag, ConsentLogEntry, ConsentSource
from protocol.kme.records import ConsentCategory

_MAGIC = b"KMECONST"
_VERSION = 1
MAX_POLICY_VERSION = 0xFFFF
_TZ_RANGE = (-720, 840)

ConsentListener = Callable[[ConsentLogEntry], None]


class ConsentError(UsageError):
    """A consent change or question that cannot be answered as asked."""


class ConsentCategoryError(ConsentError):
    """Not one of the privacy policy's consent categories."""


class PolicyVersionError(ConsentError):
    """A privacy-policy version that is out of range or older than one already accepted."""


def _category(value: object) -> ConsentCategory:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConsentCategoryError(
            "a consent category must be a ConsentCategory (or its wire number 1..7)"
        )
    try:
        return ConsentCategory(value)
    except ValueError:
        known = ", ".join(f"{c.value} {c.name}" for c in ConsentCategory)
        raise ConsentCategoryError(
            f"{value} is not a consent category; the categories are {known}"
        ) from None


class ConsentStore:
    """The band's consent flags and their change log (see the module doc).

    ``ConsentStore(clock)`` keeps everything in memory; :meth:`open` persists to a file.
    """

    def __init__(self, clock: Clock, *, path: Path | None = None) -> None:
        self._clock = clock
        self._path = path
        self._log: list[ConsentLogEntry] = []
        # per category: change times (sorted) and the granted flag in force from each
        self._times: dict[ConsentCategory, list[int]] = {c: [] for c in ConsentCategory}
        self._states: dict[ConsentCategory, list[bool]] = {c: [] for c in ConsentCategory}
        self._listeners: list[ConsentListener] = []

    @classmethod
    def open(cls, path: str | os.PathLike[str], clock: Clock) -> ConsentStore:
        """Load the consent file at ``path``, or create it (everything withdrawn)."""
        file_path = Path(path)
        store = cls(clock, path=file_path)
        if not file_path.exists():
            store._save()
            return store
        payload = read_checked(file_path, _MAGIC, _VERSION)
        try:
            rows = cbor2.loads(payload)
            entries = [
                ConsentLogEntry(
                    index=r[0],
                    category=ConsentCategory(r[1]),
                    granted=bool(r[2]),
                    policy_version=r[3],
                    time=r[4],
                    tz_offset_min=r[5],
                    source=ConsentSource(r[6]),
                )
                for r in rows
            ]
        except (cbor2.CBORDecodeError, IndexError, KeyError, TypeError, ValueError):
            raise StateFileCorruptError(
                file_path, "consent file has a valid checksum but unreadable entries"
            ) from None
        if [e.index for e in entries] != list(range(len(entries))):
            raise StateFileCorruptError(file_path, "consent log entries are out of order")
        for entry in entries:
            store._index(entry)
        return store

    # ------------------------------------------------------------------ changes

    def set(
        self,
        category: ConsentCategory,
        granted: bool,
        policy_version: int,
        *,
        source: ConsentSource = ConsentSource.OWNER_CLIENT,
        tz_offset_min: int = 0,
        at: float | None = None,
    ) -> ConsentLogEntry:
        """Grant or withdraw ``category`` now (by the clock); log, persist, and notify.

        ``at`` overrides the time for a band's out-of-the-box (first boot) consents when
        its simulated life starts before the clock's now; normal changes leave it None.

        Withdrawing is as easy as granting: same call, ``granted=False``. Raises
        ConsentCategoryError, PolicyVersionError or ConsentError (nothing is changed).
        """
        cat = _category(category)
        if not isinstance(granted, bool):
            raise ConsentError("granted must be True (grant) or False (withdraw)")
        if (
            isinstance(policy_version, bool)
            or not isinstance(policy_version, int)
            or not 1 <= policy_version <= MAX_POLICY_VERSION
        ):
            raise PolicyVersionError(
                f"the privacy-policy version must be a whole number from 1 to "
                f"{MAX_POLICY_VERSION}, got {policy_version!r}"
            )
        accepted = self.flag(cat).policy_version
        if granted and policy_version < accepted:
            raise PolicyVersionError(
                f"{cat.name} was already accepted under policy version {accepted}; a grant "
                f"must show that version or a newer one, not {policy_version}"
            )
        try:
            source = ConsentSource(source)
        except ValueError:
            raise ConsentError("source must be a ConsentSource") from None
        if not isinstance(tz_offset_min, int) or not _TZ_RANGE[0] <= tz_offset_min <= _TZ_RANGE[1]:
            raise ConsentError("tz_offset_min must be whole minutes between -720 and 840")
        now = self._clock.now() if at is None else at
        if not (math.isfinite(now) and now >= 0):
            raise ConsentError("the band clock is not set; set the time before changing consent")
        entry = ConsentLogEntry(
            index=len(self._log),
            category=cat,
            granted=granted,
            policy_version=policy_version,
            time=math.floor(now),
            tz_offset_min=tz_offset_min,
            source=source,
        )
        self._index(entry)
        try:
            self._save()
        except BaseException:
            self._unindex(entry)
            raise
        for listener in list(self._listeners):
            listener(entry)
        return entry

    def grant(
        self, category: ConsentCategory, policy_version: int, **kw: object
    ) -> ConsentLogEntry:
        """Shorthand for ``set(category, True, policy_version, ...)``."""
        return self.set(category, True, policy_version, **kw)  # type: ignore[arg-type]

    def withdraw(
        self, category: ConsentCategory, policy_version: int | None = None, **kw: object
    ) -> ConsentLogEntry:
        """Shorthand for ``set(category, False, ...)``; the version defaults to the current one."""
        version = policy_version or max(1, self.flag(category).policy_version)
        return self.set(category, False, version, **kw)  # type: ignore[arg-type]

    def factory_reset(self) -> None:
        """Erase the consent state and its whole change log (factory reset).

        Afterwards nothing is granted and the log is empty: the next owner's grants start
        a new log at index 0, and nothing of the previous owner's choices remains."""
        self._log = []
        self._times = {c: [] for c in ConsentCategory}
        self._states = {c: [] for c in ConsentCategory}
        self._save()

    def subscribe(self, listener: ConsentListener) -> Callable[[], None]:
        """Call ``listener(entry)`` after every change; returns an unsubscribe function."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    # ------------------------------------------------------------------ questions

    def is_allowed(self, category: ConsentCategory, t: float) -> bool:
        """Whether ``category`` was consented at UTC time ``t`` (the firmware's gate)."""
        cat = _category(category)
        times = self._times[cat]
        i = bisect.bisect_right(times, math.floor(t)) if math.isfinite(t) else 0
        return i > 0 and self._states[cat][i - 1]

    def is_granted(self, category: ConsentCategory) -> bool:
        """The flag as it stands now (after the latest change)."""
        states = self._states[_category(category)]
        return bool(states) and states[-1]

    def flag(self, category: ConsentCategory) -> ConsentFlag:
        """The current flag of ``category`` (policy version 0 and time 0 if never set)."""
        cat = _category(category)
        for entry in reversed(self._log):
            if entry.category is cat:
                return ConsentFlag(
                    cat, entry.granted, entry.policy_version, entry.time, entry.tz_offset_min
                )
        return ConsentFlag(cat, False, 0, 0, 0)

    def flags(self) -> tuple[ConsentFlag, ...]:
        """Every category's current flag, in category order (the Consent State value)."""
        return tuple(self.flag(c) for c in ConsentCategory)

    def log(self, first_index: int = 0, max_entries: int | None = None) -> list[ConsentLogEntry]:
        """Change-log entries from ``first_index`` (for the Consent Change Log pages)."""
        if first_index < 0:
            raise ConsentError("first_index must be 0 or more")
        end = None if max_entries is None else first_index + max_entries
        return self._log[first_index:end]

    def __len__(self) -> int:
        return len(self._log)

    def intervals(self, category: ConsentCategory) -> list[tuple[int, int | None]]:
        """The [start, end) UTC intervals in which ``category`` was granted (end None: still)."""
        cat = _category(category)
        out: list[tuple[int, int | None]] = []
        start: int | None = None
        for t, granted in zip(self._times[cat], self._states[cat], strict=True):
            if granted and start is None:
                start = t
            elif not granted and start is not None:
                if t > start:
                    out.append((start, t))
                start = None
        if start is not None:
            out.append((start, None))
        return out

    # ------------------------------------------------------------------ internals

    def _index(self, entry: ConsentLogEntry) -> None:
        self._log.append(entry)
        self._index_only(entry)

    def _index_only(self, entry: ConsentLogEntry) -> None:
        # The newest-logged change decides every instant from its stamp on, even if the
        # clock was set back and older entries carry later stamps: those are superseded.
        times, states = self._times[entry.category], self._states[entry.category]
        i = bisect.bisect_right(times, entry.time)
        del times[i:], states[i:]
        times.append(entry.time)
        states.append(entry.granted)

    def _unindex(self, entry: ConsentLogEntry) -> None:
        """Undo the last :meth:`_index` (the file could not be written)."""
        self._log.pop()
        self._times[entry.category] = []
        self._states[entry.category] = []
        for e in self._log:
            if e.category is entry.category:
                self._index_only(e)

    def _save(self) -> None:
        if self._path is None:
            return
        rows = [
            [
                e.index,
                int(e.category),
                e.granted,
                e.policy_version,
                e.time,
                e.tz_offset_min,
                int(e.source),
            ]
            for e in self._log
        ]
        write_checked(self._path, _MAGIC, _VERSION, cbor2.dumps(rows, canonical=True))

    def __repr__(self) -> str:
        granted = [c.name for c in ConsentCategory if self.is_granted(c)]
        return f"<ConsentStore granted={granted} changes={len(self._log)}>"
