"""``kmeband fleet``: many simulated bands, each with its own phone, syncing into an ingest.

:mod:`.schedule` says when each phone syncs (and when a wearer changes consent),
:mod:`.worker` runs a shard of bands in one process (created, simulated, synced and
released in waves, so memory stays bounded), :mod:`.accounting` proves the ingest holds
every record exactly once, and :mod:`.engine` shards the bands over local processes and
adds the results up. See docs/fleet.md.
"""
