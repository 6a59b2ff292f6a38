"""``kmeband validate``: the firmware's estimates scored against a reference.

- :mod:`~device_sim.validate.metrics`: agreement metrics (MAE, MAPE, Bland–Altman, harmonic
  lock, epoch accuracy, sensitivity, specificity, Cohen's kappa), plain numpy.
- :mod:`~device_sim.validate.reference`: labels files and a simulated trace's truth.
- :mod:`~device_sim.validate.compare`: a firmware run paired with a reference.
- :mod:`~device_sim.validate.plot`: the PNG (matplotlib, the ``report`` extra).
"""
