"""The simulated wearer: a seeded person model (schedule, heart rate, sleep, movement) that
produces ground truth, and the sensors that turn truth into raw signals.

The person never imports the band: the band consumes signals, whatever produced them.
"""
