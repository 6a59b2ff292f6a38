"""The ingest API end to end on loopback: upload, dedup, refusals, rights, limits."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import cbor2
import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from ingest_samples import T0, SampleBand, activity, b64, hr, sleep_summary

from cloud_ingest.cli import load_attestation_root
from cloud_ingest.keys import IngestKeys, load_or_create_keys
from cloud_ingest.server import IngestConfig, create_app
from cloud_ingest.store import IngestStore
from device_sim.band.factory import simulated_factory_key
from protocol.errors import UsageError
from protocol.kme.attestation import issue_certificate
from protocol.kme.batch import encode_batch_plaintext
from protocol.kme.records import ConsentCategory, StreamId
from sync_client.sealing import seal_batch


async def account(client: TestClient) -> dict[str, str]:
    response = await client.post("/v1/accounts")
    assert response.status == 201
    token = (await response.json())["token"]
    return {"Authorization": f"Bearer {token}"}


async def registered(client: TestClient, band: SampleBand) -> dict[str, str]:
    auth = await account(client)
    response = await client.post("/v1/bands", json=band.registration(), headers=auth)
    assert response.status == 201, await response.text()
    return auth


async def two_accounts(
    client: TestClient,
) -> tuple[SampleBand, dict[str, str], SampleBand, dict[str, str]]:
    """Two accounts with a band each: (band, its auth, the other band, the other auth)."""
    band = SampleBand()
    auth = await registered(client, band)
    other_band = SampleBand(serial="KME-TEST-000002")
    return band, auth, other_band, await registered(client, other_band)


async def post(client: TestClient, auth: dict[str, str], envelope: bytes) -> tuple[int, Any]:
    response = await client.post("/v1/batches", data=envelope, headers=auth)
    return response.status, await response.json()


async def test_keys_are_published_for_both_suites(client: TestClient, keys: IngestKeys) -> None:
    response = await client.get("/v1/keys")
    published = (await response.json())["keys"]
    assert [k["suite"] for k in published] == [[0x20, 1, 2], [0x647A, 1, 2]]
    assert published[0]["public_key"] == b64(keys.x25519_public)
    assert published[0]["default"] is True


async def test_a_batch_is_stored_once_and_a_replay_answers_200(
    client: TestClient, keys: IngestKeys, store: IngestStore
) -> None:
    band = SampleBand()
    auth = await registered(client, band)
    records = hr(500)
    envelope = band.seal(records, keys.public_key)
    status, answer = await post(client, auth, envelope)
    assert (status, answer["status"], answer["stored"]) == (200, "stored", 500)
    status, answer = await post(client, auth, envelope)
    assert (status, answer["status"], answer["stored"]) == (200, "duplicate", 0)
    assert store.record_count() == 500
    export = await (await client.get("/v1/export", headers=auth)).json()
    exported = export["records"]["hr_samples"]
    assert [r["seq"] for r in exported] == [r.seq for r in records]
    assert exported[3]["bpm"] == records[3].record.bpm  # type: ignore[union-attr]


async def test_an_overlapping_range_never_duplicates_a_record(
    client: TestClient, keys: IngestKeys, store: IngestStore
) -> None:
    band = SampleBand()
    auth = await registered(client, band)
    assert (await post(client, auth, band.seal(hr(100, first_seq=1), keys.public_key)))[0] == 200
    # A new batch id over seq 51..150: the first 50 are already held.
    status, answer = await post(client, auth, band.seal(hr(100, first_seq=51), keys.public_key))
    assert (status, answer["stored"], answer["duplicates"]) == (200, 50, 50)
    status, answer = await post(client, auth, band.seal(hr(20, first_seq=60), keys.public_key))
    assert (status, answer["stored"], answer["duplicates"]) == (200, 0, 20)
    assert store.record_count() == 150
    export = await (await client.get("/v1/export", headers=auth)).json()
    seqs = [r["seq"] for r in export["records"]["hr_samples"]]
    assert sorted(seqs) == list(range(1, 151))


async def _refused(
    client: TestClient, store: IngestStore, auth: dict[str, str], envelope: bytes
) -> tuple[int, dict[str, Any]]:
    before = store.snapshot()
    status, answer = await post(client, auth, envelope)
    assert set(answer) == {"error", "message"}
    assert store.snapshot() == before, "a refused batch must leave the store unchanged"
    return status, answer


async def test_tampered_truncated_and_wrongly_keyed_batches_are_refused(
    client: TestClient, keys: IngestKeys, store: IngestStore, tmp_path: Any
) -> None:
    band = SampleBand()
    auth = await registered(client, band)
    envelope = band.seal(hr(50), keys.public_key)
    items = cbor2.loads(envelope)
    items[4] = bytes([items[4][0] ^ 1]) + items[4][1:]
    status, answer = await _refused(client, store, auth, cbor2.dumps(items))
    assert (status, answer["error"]) == (400, "cannot_open")
    other_keys = load_or_create_keys(tmp_path / "other")
    status, answer = await _refused(client, store, auth, band.seal(hr(5), other_keys.public_key))
    assert (status, answer["error"]) == (400, "cannot_open")
    status, answer = await _refused(client, store, auth, envelope[:-10])
    assert (status, answer["error"]) == (400, "malformed_batch")
    status, answer = await _refused(client, store, auth, b"\xa1\x61")
    assert (status, answer["error"]) == (400, "malformed_batch")
    status, answer = await _refused(client, store, auth, b"\x00" * 300_000)
    assert (status, answer["error"]) == (413, "too_large")


async def test_an_unknown_band_or_anothers_band_is_refused(
    client: TestClient, keys: IngestKeys, store: IngestStore
) -> None:
    band = SampleBand()
    await registered(client, band)
    intruder = await account(client)
    status, answer = await _refused(client, store, intruder, band.seal(hr(5), keys.public_key))
    assert (status, answer["error"]) == (403, "unknown_band")
    stranger = SampleBand(serial="KME-TEST-999999")
    status, answer = await _refused(client, store, intruder, stranger.seal(hr(5), keys.public_key))
    assert (status, answer["error"]) == (403, "unknown_band")
    response = await client.post("/v1/bands", json=band.registration(), headers=intruder)
    assert response.status == 409
    assert (await response.json())["error"] == "band_taken"


async def test_requests_without_a_valid_token_are_refused(client: TestClient) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic x"}):
        response = await client.get("/v1/export", headers=headers)
        assert response.status == 401
        assert (await response.json())["error"] == "unauthorized"


async def test_consent_that_does_not_cover_the_records_is_refused_without_echoing_them(
    client: TestClient, keys: IngestKeys, store: IngestStore
) -> None:
    band = SampleBand()
    # Heart-rate consent only from T0 + 1000: the first records fall before it.
    band.grants[ConsentCategory.HEART_RATE] = [(T0 + 1000, None)]
    auth = await registered(client, band)
    status, answer = await _refused(
        client, store, auth, band.seal(hr(500, bpm=173), keys.public_key)
    )
    assert (status, answer["error"]) == (422, "consent_not_covering")
    assert "173" not in answer["message"] and str(T0) not in answer["message"]
    # Within the grant it is accepted.
    status, _ = await post(client, auth, band.seal(hr(10, start=T0 + 1000), keys.public_key))
    assert status == 200


async def test_avg_hr_needs_heart_rate_consent(
    client: TestClient, keys: IngestKeys, store: IngestStore
) -> None:
    band = SampleBand()
    band.grants[ConsentCategory.HEART_RATE] = []
    auth = await registered(client, band)
    status, answer = await _refused(
        client, store, auth, band.seal(activity(30, avg_hr=95), keys.public_key)
    )
    assert (status, answer["error"]) == (422, "consent_not_covering")
    assert "avg_hr" in answer["message"]
    status, _ = await post(client, auth, band.seal(activity(30, avg_hr=0), keys.public_key))
    assert status == 200


async def test_outdated_policy_and_bad_signatures_are_refused(
    client: TestClient, keys: IngestKeys, store: IngestStore
) -> None:
    band = SampleBand(policy_version=1)
    auth = await registered(client, band)
    status, answer = await _refused(client, store, auth, band.seal(hr(5), keys.public_key))
    assert (status, answer["error"]) == (422, "policy_outdated")
    band.policy_version = 3
    forger = SampleBand(signing_key=Ed25519PrivateKey.from_private_bytes(b"\x09" * 32))
    forged = forger.consent_record()
    status, answer = await _refused(
        client, store, auth, band.seal(hr(5), keys.public_key, consent=forged)
    )
    assert (status, answer["error"]) == (422, "consent_invalid")


async def test_a_withdrawal_refuses_new_data_of_its_category(
    client: TestClient, keys: IngestKeys, store: IngestStore
) -> None:
    band = SampleBand()
    auth = await registered(client, band)
    assert (await post(client, auth, band.seal(hr(10), keys.public_key)))[0] == 200
    response = await client.post(
        "/v1/consent/withdrawals", json={"category": "heart_rate", "erase": True}, headers=auth
    )
    assert response.status == 201
    assert (await response.json())["erased_records"] == 10
    status, answer = await _refused(
        client, store, auth, band.seal(hr(10, first_seq=11), keys.public_key)
    )
    assert (status, answer["error"]) == (422, "consent_withdrawn")
    # Other categories still flow.
    assert (await post(client, auth, band.seal(sleep_summary(), keys.public_key)))[0] == 200


async def test_rate_limit_answers_429_with_retry_after(
    client: TestClient, keys: IngestKeys, clock: Any
) -> None:
    band = SampleBand()
    auth = await registered(client, band)
    envelopes = [band.seal(hr(2, first_seq=1 + 2 * i), keys.public_key) for i in range(51)]
    for envelope in envelopes[:50]:
        assert (await post(client, auth, envelope))[0] == 200
    response = await client.post("/v1/batches", data=envelopes[50], headers=auth)
    assert response.status == 429
    assert int(response.headers["Retry-After"]) >= 1
    assert (await response.json())["error"] == "rate_limited"
    clock.t += 1.0
    assert (await post(client, auth, envelopes[50]))[0] == 200


async def test_rights_export_rectify_erase_per_account(
    client: TestClient, keys: IngestKeys, store: IngestStore
) -> None:
    band, auth, other_band, other = await two_accounts(client)
    await post(client, auth, band.seal(hr(3), keys.public_key))
    await post(client, auth, band.seal(activity(1440), keys.public_key))
    await post(client, auth, band.seal(sleep_summary(), keys.public_key))
    await post(client, other, other_band.seal(hr(7), keys.public_key))

    response = await client.put(
        "/v1/profile", json={"birth_year": 1990, "height_cm": 180}, headers=auth
    )
    assert response.status == 200
    bad = await client.put("/v1/profile", json={"height_cm": 9000}, headers=auth)
    assert (bad.status, (await bad.json())["error"]) == (422, "bad_profile")

    mine = await (await client.get("/v1/export?format=json", headers=auth)).json()
    assert mine["profile"] == {"birth_year": 1990, "height_cm": 180}
    assert len(mine["records"]["hr_samples"]) == 3
    theirs = await (await client.get("/v1/export", headers=other)).json()
    assert len(theirs["records"]["hr_samples"]) == 7 and theirs["profile"] is None
    assert "activity_minutes" not in theirs["records"]

    csv_text = await (await client.get("/v1/export?format=csv", headers=auth)).text()
    lines = csv_text.splitlines()
    assert lines[0] == "stream,band,seq,time,tz_offset_min,field,value"
    assert any(line.startswith("hr_samples,") and ",bpm,70" in line for line in lines)

    fhir = await (await client.get("/v1/export?format=fhir", headers=auth)).json()
    assert fhir["resourceType"] == "Bundle"
    codes = [e["resource"]["code"]["coding"][0]["code"] for e in fhir["entry"]]
    assert codes.count("8867-4") == 3
    assert codes.count("93832-4") == 1
    steps = [
        e["resource"]
        for e in fhir["entry"]
        if e["resource"]["code"]["coding"][0]["code"] == "41950-7"
    ]
    assert sum(s["valueQuantity"]["value"] for s in steps) == 1440 * 90

    erased = await (await client.delete("/v1/account/data", headers=auth)).json()
    assert erased["erased_records"] == 3 + 1440 + 1
    after = await (await client.get("/v1/export", headers=auth)).json()
    assert after["records"] == {} and after["profile"] is None
    assert store.record_count() == 7  # the other account's records are untouched
    # A replay of erased data does not bring it back.
    status, answer = await post(client, auth, band.seal(hr(3), keys.public_key))
    assert (status, answer["stored"]) == (200, 0)


async def test_deleting_the_account_ends_its_token_and_frees_its_bands(
    client: TestClient, keys: IngestKeys, store: IngestStore
) -> None:
    band, auth, other_band, other = await two_accounts(client)
    await post(client, auth, band.seal(hr(3), keys.public_key))
    await post(client, auth, band.seal(activity(20), keys.public_key))
    await post(client, other, other_band.seal(hr(7), keys.public_key))
    before = store.snapshot()

    response = await client.delete("/v1/account", headers=auth)
    assert response.status == 200
    assert await response.json() == {"erased_records": 23, "deleted_bands": 1}
    assert store.record_count() == 7  # the other account is untouched
    after = store.snapshot()
    assert after["accounts"] == before["accounts"] - 1 and after["bands"] == before["bands"] - 1
    # the token no longer works, even through the server's caches
    for path in ("/v1/export", "/v1/profile"):
        assert (await client.get(path, headers=auth)).status == 401
    status, _ = await post(client, auth, band.seal(hr(3), keys.public_key))
    assert status == 401
    assert (await client.delete("/v1/account", headers=auth)).status == 401
    # the band may be activated for a new account, and old data does not come back
    fresh = await registered(client, band)
    status, answer = await post(client, fresh, band.seal(hr(3), keys.public_key))
    assert (status, answer["stored"]) == (200, 0)
    status, answer = await post(client, fresh, band.seal(hr(2, first_seq=4), keys.public_key))
    assert (status, answer["stored"]) == (200, 2)  # new data is stored as usual


async def test_log_lines_carry_no_identifier_token_or_value(
    client: TestClient, keys: IngestKeys, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="cloud_ingest")
    band = SampleBand()
    auth = await registered(client, band)
    await post(client, auth, band.seal(hr(5, bpm=187), keys.public_key))
    band.grants[ConsentCategory.HEART_RATE] = []
    await post(client, auth, band.seal(hr(5, first_seq=6, bpm=187), keys.public_key))
    text = caplog.text
    assert "stored" in text and "refused" in text
    token = auth["Authorization"].split()[1]
    for secret in (token, band.pseudonym.hex(), b64(band.pseudonym), "187", band.serial):
        assert secret not in text


async def test_unknown_streams_of_json_errors(client: TestClient) -> None:
    response = await client.get("/v1/nothing")
    assert response.status == 404
    assert (await response.json())["error"] == "not_found"
    auth = await account(client)
    response = await client.get("/v1/export?format=xml", headers=auth)
    assert (response.status, (await response.json())["error"]) == (400, "bad_format")
    response = await client.post("/v1/bands", data=b"{", headers=auth)
    assert (response.status, (await response.json())["error"]) == (400, "bad_json")


def test_streams_have_consent_categories() -> None:
    from protocol.kme.records import STREAM_CONSENT

    assert set(STREAM_CONSENT) == set(StreamId)


async def test_records_outside_the_covered_range_or_a_mismatched_digest_are_refused(
    client: TestClient, keys: IngestKeys, store: IngestStore
) -> None:
    band = SampleBand()
    auth = await registered(client, band)
    late = hr(5, start=T0 + 40 * 86_400)  # after the record's covers_to
    status, answer = await _refused(client, store, auth, band.seal(late, keys.public_key))
    assert (status, answer["error"]) == (422, "consent_not_covering")
    other = SampleBand(policy_version=4).consent_record()
    header = band.header(hr(5), band.consent_record())
    envelope = seal_batch(header, encode_batch_plaintext(hr(5), other), keys.public_key)
    status, answer = await _refused(client, store, auth, envelope)
    assert (status, answer["error"]) == (422, "consent_mismatch")


async def test_a_grant_after_a_withdrawal_lets_new_data_in_again(
    client: TestClient, keys: IngestKeys, clock: Any
) -> None:
    band = SampleBand()
    auth = await registered(client, band)
    clock.wall = T0 + 86_400
    response = await client.post("/v1/consent/withdrawals", json={"category": 2}, headers=auth)
    assert (await response.json())["at"] == T0 + 86_400
    # The band logged the withdrawal and a new grant two days later.
    band.grants[ConsentCategory.HEART_RATE] = [
        (T0 - 86_400, T0 + 86_400),
        (T0 + 2 * 86_400, None),
    ]
    after = hr(5, start=T0 + 3 * 86_400)
    assert (await post(client, auth, band.seal(after, keys.public_key)))[0] == 200
    before = hr(5, first_seq=100, start=T0 + 3600)
    status, answer = await post(client, auth, band.seal(before, keys.public_key))
    assert (status, answer["error"]) == (422, "consent_withdrawn")


def test_account_tokens_never_start_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    from cloud_ingest import server

    drawn = iter(["-looks-like-an-option", "-again", "fine-token"])
    monkeypatch.setattr(server.secrets, "token_urlsafe", lambda n: next(drawn))
    assert server.new_token() == "fine-token"


async def test_registration_needs_a_factory_certificate_of_that_key(client: TestClient) -> None:
    band = SampleBand(serial="KME-TEST-000077")
    auth = await account(client)
    genuine = band.registration()
    public = band.signing_key.public_key().public_bytes_raw()
    # forged: the band's (or the client's) own key signs a certificate for itself
    forged = issue_certificate(band.signing_key, public, band.serial, T0).encode()
    # genuine, but for another band's key
    other_key = Ed25519PrivateKey.from_private_bytes(b"\x09" * 32).public_key().public_bytes_raw()
    borrowed = issue_certificate(simulated_factory_key(), other_key, band.serial, T0).encode()
    for certificate, code in (
        (b64(forged), "attestation_invalid"),
        (b64(borrowed), "attestation_invalid"),
        (b64(b"\x01\x02"), "attestation_invalid"),
    ):
        response = await client.post(
            "/v1/bands", json=genuine | {"certificate": certificate}, headers=auth
        )
        answer = await response.json()
        assert (response.status, answer["error"]) == (422, code), answer
        assert "certificate" in answer["message"]
    missing = {k: v for k, v in genuine.items() if k != "certificate"}
    response = await client.post("/v1/bands", json=missing, headers=auth)
    assert response.status == 400 and "certificate" in (await response.json())["message"]
    response = await client.post("/v1/bands", json=genuine, headers=auth)
    assert response.status == 201


async def test_the_attestation_root_is_configurable(
    store: IngestStore, keys: IngestKeys, tmp_path: Path
) -> None:
    own_root = Ed25519PrivateKey.from_private_bytes(b"\x0a" * 32)
    root_file = tmp_path / "root.hex"
    root_file.write_text(own_root.public_key().public_bytes_raw().hex() + "\n")
    config = IngestConfig(attestation_root=load_attestation_root(root_file))
    app = create_app(store, keys, config)
    async with TestClient(TestServer(app, host="127.0.0.1")) as own:
        band = SampleBand(serial="KME-TEST-000078")
        auth = await account(own)
        simulated = await own.post("/v1/bands", json=band.registration(), headers=auth)
        assert simulated.status == 422  # the simulated factory is not this ingest's root
        public = band.signing_key.public_key().public_bytes_raw()
        certificate = issue_certificate(own_root, public, band.serial, T0).encode()
        registration = band.registration() | {"certificate": b64(certificate)}
        assert (await own.post("/v1/bands", json=registration, headers=auth)).status == 201
    (tmp_path / "bad").write_text("not a key")
    with pytest.raises(UsageError, match="Ed25519 public key"):
        load_attestation_root(tmp_path / "bad")
