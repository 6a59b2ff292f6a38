"""The ingest under hostile load, on loopback: does a well-behaved uploader stay served?

    python bench/adversarial.py [--good-batches 150] [--interval-ms 50] [--slow-clients 400]
                                [--export-records 60000] [--max-attack-s 60]

The ingest runs in its own process (``kmeband ingest serve``, default limits). A
well-behaved uploader posts pre-sealed 100-record batches, one every ``--interval-ms``, on
one kept-alive connection, first with no attack (its baseline), then while an attacker
process runs, all at once and until the uploader is done:

- slow clients: ``--slow-clients`` connections that send a request head a byte at a time
  and never finish it (each reopened when the ingest closes it);
- big-integer bodies: envelopes holding a tag-30 rational of two 250 kB integers, and
  tag-2 bignums, from an attacker's own free account;
- huge-seq bodies: batches of two records at seqs 0 and 2**40 after seq 2**40 was stored
  and erased (deduplication once built the whole range);
- deeply nested JSON on the JSON endpoints;
- large exports: ``GET /v1/export`` of an account holding ``--export-records`` records.

Bounded in count and time (the attack lasts as long as the uploader's second phase, at
most ``--max-attack-s``), loopback only. The last line is one JSON object:
``good_p99_ms`` (the uploader's p99 latency under attack), ``good_p99_ratio`` (that over
its p99 with no attack, same run; target <= 5), ``attack_requests``, ``server_errors_5xx``
(target 0), ``rss_growth_mb`` (the ingest's resident memory after the attack minus before
it; target <= 100), and details.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "tests" / "adversarial"))

from batch_records import realistic_records  # noqa: E402
from bench_consent import signed_consent_record  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519  # noqa: E402
from hostile import FAR_SEQ, big_rational_envelope, bignum_envelope, nested_json  # noqa: E402

from protocol.kme.batch import (  # noqa: E402
    BatchHeader,
    band_pseudonym,
    consent_digest_of,
    encode_batch_plaintext,
)
from protocol.kme.records import StoredRecord, StreamId  # noqa: E402
from sync_client.sealing import seal_batch  # noqa: E402

ATTACKS = ("slow", "bigint", "hugeseq", "deepjson", "export")
SERVE = [sys.executable, "-m", "kmeband.cli", "ingest", "serve", "--port", "0"]
SERVE += ["--rate-per-band", "1000"]  # the exporter's account is filled quickly


def _b64(raw: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class Band:
    """An account's band: its signing key, pseudonym and consent record."""

    def __init__(self, n: int) -> None:
        self.key = ed25519.Ed25519PrivateKey.from_private_bytes(bytes([n]) * 32)
        self.pseudonym = band_pseudonym(bytes([0x80 + n]) * 32, f"KME-ADV-{n:06d}")
        self.consent = signed_consent_record(self.key)
        self.token = ""

    def seal(self, records: list[StoredRecord], public_key: x25519.X25519PublicKey) -> bytes:
        header = BatchHeader(
            batch_id=os.urandom(16),
            band=self.pseudonym,
            stream=records[0].stream,
            first_seq=records[0].seq,
            last_seq=records[-1].seq,
            count=len(records),
            consent_digest=consent_digest_of(self.consent),
            firmware_version="1.4.2",
            model="KME Smart 1",
            client_os="Linux 6.8",
            client_version="kmeband 0.1.0",
            created=1_760_000_000,
        )
        return seal_batch(header, encode_batch_plaintext(records, self.consent), public_key)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def register(self, http: aiohttp.ClientSession) -> None:
        self.token = (await (await http.post("/v1/accounts")).json())["token"]
        public = self.key.public_key().public_bytes_raw()
        registration = {"band": _b64(self.pseudonym), "public_key": _b64(public)}
        async with http.post("/v1/bands", json=registration, headers=self.auth) as answer:
            if answer.status not in (200, 201):
                raise SystemExit(f"registration refused: {answer.status}")


def hr_batches(count: int, per_batch: int, first_seq: int = 1) -> list[list[StoredRecord]]:
    template = realistic_records(StreamId.HR_SAMPLES, per_batch * count, seed=7)
    out = []
    for b in range(count):
        out.append(
            [
                StoredRecord(StreamId.HR_SAMPLES, first_seq + b * per_batch + j, r.record)
                for j, r in enumerate(template[b * per_batch : (b + 1) * per_batch])
            ]
        )
    return out


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[98]


# -- the well-behaved uploader ------------------------------------------------------------


async def good_phase(
    url: str, band: Band, envelopes: list[bytes], interval_s: float
) -> tuple[list[float], int]:
    """Post one envelope every ``interval_s`` on one kept-alive connection, as a phone
    draining its outbox does; (latencies in ms, 5xx answers)."""
    latencies, errors = [], 0
    async with aiohttp.ClientSession(url, timeout=aiohttp.ClientTimeout(total=60)) as http:
        for envelope in envelopes:
            await asyncio.sleep(interval_s)
            t0 = time.perf_counter()
            async with http.post("/v1/batches", data=envelope, headers=band.auth) as answer:
                await answer.read()
                if answer.status >= 500:
                    errors += 1
                elif answer.status != 200:
                    raise SystemExit(f"the good uploader was refused: {answer.status}")
            latencies.append((time.perf_counter() - t0) * 1000)
    return latencies, errors


# -- the attacker (its own process) ---------------------------------------------------------


async def _slow_client(host: str, port: int, running: Any, counts: dict[str, int]) -> None:
    while running():
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            await asyncio.sleep(0.2)
            continue
        counts["slow_connections"] += 1
        try:
            writer.write(b"POST /v1/batches HTTP/1.1\r\n")
            for _ in range(1000):  # a header byte every half second, never the end
                if not running() or reader.at_eof():
                    break
                writer.write(b"X")
                await writer.drain()
                await asyncio.sleep(0.5)
        except OSError:
            pass  # closed by the ingest (timeout or evicted): open another
        finally:
            writer.close()


async def _requester(
    http: aiohttp.ClientSession,
    running: Any,
    counts: dict[str, int],
    make: Any,
) -> None:
    while running():
        method, path, body, headers = make()
        try:
            async with http.request(method, path, data=body, headers=headers) as answer:
                while await answer.content.read(1 << 16):
                    pass
                counts["attack_requests"] += 1
                if answer.status >= 500:
                    counts["server_errors_5xx"] += 1
        except (aiohttp.ClientError, TimeoutError):
            counts["attack_failures"] += 1


async def attack(plan: dict[str, Any], stop: Any) -> dict[str, int]:
    counts = dict.fromkeys(
        ("attack_requests", "server_errors_5xx", "attack_failures", "slow_connections"), 0
    )
    deadline = time.monotonic() + plan["seconds"]

    def running() -> bool:
        return not stop.is_set() and time.monotonic() < deadline

    host, port = plan["host"], plan["port"]
    big_int = [big_rational_envelope(), bignum_envelope()]
    deep = [nested_json(100_000), nested_json(2000)]
    huge_seq = [bytes.fromhex(h) for h in plan["huge_seq"]]
    seq_i = iter(range(10**9))
    auth = {"Authorization": f"Bearer {plan['attacker_token']}"}
    exporter = {"Authorization": f"Bearer {plan['exporter_token']}"}
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(plan["url"], timeout=timeout) as http:
        makers = {
            "bigint": lambda: ("POST", "/v1/batches", big_int[next(seq_i) % 2], auth),
            "hugeseq": lambda: ("POST", "/v1/batches", huge_seq[next(seq_i) % 50], auth),
            "deepjson": lambda: ("PUT", "/v1/profile", deep[next(seq_i) % 2], auth),
            "export": lambda: ("GET", "/v1/export", None, exporter),
        }
        kinds = plan["attacks"]
        tasks = [
            asyncio.create_task(_requester(http, running, counts, make))
            for kind, make in makers.items()
            if kind in kinds
        ]
        if "slow" in kinds:
            tasks += [
                asyncio.create_task(_slow_client(host, port, running, counts))
                for _ in range(plan["slow_clients"])
            ]
        await asyncio.gather(*tasks)
    return counts


def _attack_process(plan: dict[str, Any], stop: Any, out: Any) -> None:
    # On a network the attacker burns its own machine's CPU, not the ingest's; on one
    # machine, a lower priority keeps its client-side work from standing in for that.
    os.nice(10)
    out.send(asyncio.run(attack(plan, stop)))


# -- the run ----------------------------------------------------------------------------------


async def prepare(url: str, public_key: x25519.X25519PublicKey, args: Any) -> dict[str, Any]:
    """Accounts for the good uploader, the attacker and the exporter, and what they send."""
    good, attacker, exporter = Band(1), Band(2), Band(3)
    async with aiohttp.ClientSession(url, timeout=aiohttp.ClientTimeout(total=120)) as http:
        for band in (good, attacker, exporter):
            await band.register(http)
        # the exporter's account holds --export-records records
        per = 500
        for records in hr_batches(args.export_records // per, per):
            envelope = exporter.seal(records, public_key)
            async with http.post("/v1/batches", data=envelope, headers=exporter.auth) as answer:
                if answer.status != 200:
                    raise SystemExit(f"filling the exporter failed: {answer.status}")
            await asyncio.sleep(0.05)  # within the per-band rate limit
        # the attacker stores seq 2**40, erases it, then sends seqs 0 and 2**40 forever
        template = realistic_records(StreamId.HR_SAMPLES, 2, seed=3)
        far = [StoredRecord(StreamId.HR_SAMPLES, FAR_SEQ, template[1].record)]
        async with http.post(
            "/v1/batches", data=attacker.seal(far, public_key), headers=attacker.auth
        ) as answer:
            assert answer.status == 200, answer.status
        async with http.delete("/v1/account/data", headers=attacker.auth) as answer:
            assert answer.status == 200, answer.status
        span = [
            StoredRecord(StreamId.HR_SAMPLES, 0, template[0].record),
            StoredRecord(StreamId.HR_SAMPLES, FAR_SEQ, template[1].record),
        ]
        huge_seq = [attacker.seal(span, public_key).hex() for _ in range(50)]
    batches = hr_batches(2 * args.good_batches, 100)
    envelopes = [good.seal(records, public_key) for records in batches]
    return {
        "good": good,
        "baseline": envelopes[: args.good_batches],
        "under_attack": envelopes[args.good_batches :],
        "attacker_token": attacker.token,
        "exporter_token": exporter.token,
        "huge_seq": huge_seq,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--good-batches", type=int, default=150)
    parser.add_argument("--slow-clients", type=int, default=400)
    parser.add_argument("--export-records", type=int, default=60_000)
    parser.add_argument("--interval-ms", type=float, default=50.0, help="the uploader's pace")
    parser.add_argument("--max-attack-s", type=float, default=60.0)
    parser.add_argument(
        "--attacks",
        default=",".join(ATTACKS),
        help=f"comma-separated subset of {','.join(ATTACKS)}",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        server = subprocess.Popen(
            [*SERVE, "--db", str(Path(tmp) / "ingest.sqlite3")],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            cwd=tmp,
        )
        try:
            assert server.stdout is not None
            line = server.stdout.readline().decode()
            url = line.split("serving on ")[1].split()[0]
            host, port = url.removeprefix("http://").rsplit(":", 1)
            result = asyncio.run(_run(url, host, int(port), server.pid, args))
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(json.dumps(result))


async def _run(url: str, host: str, port: int, pid: int, args: Any) -> dict[str, Any]:
    async with aiohttp.ClientSession(url) as http, http.get("/v1/keys") as answer:
        published = (await answer.json())["keys"][0]["public_key"]
    import base64

    raw = base64.urlsafe_b64decode(published + "=" * (-len(published) % 4))
    public_key = x25519.X25519PublicKey.from_public_bytes(raw)
    plan = await prepare(url, public_key, args)
    good: Band = plan["good"]

    interval_s = args.interval_ms / 1000
    baseline, base_errors = await good_phase(url, good, plan["baseline"], interval_s)
    rss_before = rss_mb(pid)
    attack_plan = {
        "url": url,
        "host": host,
        "port": port,
        "seconds": args.max_attack_s,
        "slow_clients": args.slow_clients,
        "attacker_token": plan["attacker_token"],
        "exporter_token": plan["exporter_token"],
        "huge_seq": plan["huge_seq"],
        "attacks": args.attacks.split(","),
    }
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    stop = context.Event()
    attacker = context.Process(
        target=_attack_process, args=(attack_plan, stop, sender), daemon=True
    )
    attacker.start()
    await asyncio.sleep(3.0)  # let the slow clients pile up and the attack get going
    t0 = time.perf_counter()
    under, attack_errors = await good_phase(url, good, plan["under_attack"], interval_s)
    good_s = time.perf_counter() - t0
    rss_peak = rss_mb(pid)
    stop.set()  # the phase is over: the attacker stops with it
    counts = await asyncio.to_thread(lambda: receiver.recv() if receiver.poll(120) else {})
    attacker.join(timeout=30)
    base_p99, under_p99 = p99(baseline), p99(under)
    return {
        "good_p99_ms": round(under_p99, 2),
        "good_p99_ratio": round(under_p99 / base_p99, 2),
        "baseline_p99_ms": round(base_p99, 2),
        "good_p50_ms": round(statistics.median(under), 2),
        "good_requests": len(under),
        "good_phase_s": round(good_s, 2),
        "attack_requests": counts.get("attack_requests", 0) + counts.get("slow_connections", 0),
        "attack_http_requests": counts.get("attack_requests", 0),
        "slow_connections": counts.get("slow_connections", 0),
        "attack_failures": counts.get("attack_failures", 0),
        "server_errors_5xx": counts.get("server_errors_5xx", 0) + base_errors + attack_errors,
        "rss_growth_mb": round(rss_peak - rss_before, 1),
    }


if __name__ == "__main__":
    main()
