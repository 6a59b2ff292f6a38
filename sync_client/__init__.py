"""The phone-side sync client: reaches bands only through bleak's public API."""
