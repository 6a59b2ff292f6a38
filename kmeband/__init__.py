"""kmeband: a simulated KME Smart fitness band, its sync client and a reference cloud ingest.

The importable layers are top-level packages: ``protocol`` (pure codecs and sans-IO
machines), ``device_sim`` (the simulated band), ``sync_client`` (the phone side) and
``cloud_ingest`` (the reference cloud). This package only holds the command line that
wires them together.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("kmeband")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
