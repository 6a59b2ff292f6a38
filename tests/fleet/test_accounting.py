"""The fleet's accounting catches a missing, a duplicated and an invented seq."""

from __future__ import annotations

from kmeband.fleet.accounting import check_stream, seqs_in_export
from kmeband.fleet.engine import percentiles


def test_every_seq_once_is_clean() -> None:
    account = check_stream(5, 0, [3, 1, 2, 5, 4])
    assert account.ok and account.held == 5


def test_a_missing_seq_is_lost() -> None:
    account = check_stream(5, 0, [1, 2, 4, 5])
    assert (account.lost, account.duplicated, account.unexpected) == (1, 0, 0)
    assert not account.ok


def test_a_seq_stored_twice_is_duplicated() -> None:
    account = check_stream(5, 0, [1, 2, 3, 3, 4, 5])
    assert (account.lost, account.duplicated, account.unexpected) == (0, 1, 0)


def test_withheld_records_may_be_absent_but_no_more() -> None:
    assert check_stream(5, 2, [1, 2, 5]).ok
    assert check_stream(5, 2, [1, 5]).lost == 1
    # more seqs held than the band made, less what was withheld: too many arrived
    assert check_stream(5, 2, [1, 2, 3, 4]).unexpected == 1


def test_a_seq_the_band_never_made_is_unexpected() -> None:
    account = check_stream(3, 0, [1, 2, 3, 4])
    assert (account.lost, account.duplicated, account.unexpected) == (0, 0, 1)


def test_seqs_are_read_from_an_export() -> None:
    export = {"records": {"heart_rate": [{"seq": 1}, {"seq": 2}], "steps": [{"seq": 1}]}}
    assert seqs_in_export(export, "heart_rate") == [1, 2]
    assert seqs_in_export(export, "sleep") == []


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentiles(values, (50, 95, 99)) == (50.0, 95.0, 99.0)
    assert percentiles([], (50,)) == (0.0,)


def test_waves_cover_every_band_once_and_feed_every_worker() -> None:
    from kmeband.fleet.engine import FleetSpec, waves

    cut = waves(FleetSpec(bands=21, workers=2, wave_size=8))
    assert [i for wave in cut for i in wave] == list(range(21))
    assert max(len(w) for w in cut) == 8
    assert len(waves(FleetSpec(bands=4, workers=2, wave_size=8))) == 2
