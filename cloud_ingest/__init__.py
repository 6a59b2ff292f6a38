"""The reference KME Smart cloud ingest: verify, deduplicate and store sealed batches."""
