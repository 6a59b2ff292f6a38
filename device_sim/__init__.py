"""The simulated KME Smart band: clock, person model, sensors, firmware, flash, radio."""
