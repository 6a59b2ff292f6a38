"""The simulated band: firmware, flash, consent and profile stores, identity, battery, and the
band's GATT endpoint.

The band consumes signals (from :mod:`device_sim.person` or a trace) and talks to the air
through :mod:`device_sim.radio`; it never imports the phone side (:mod:`device_sim.bleak_backend`).
"""
