"""Integrations with training frameworks (imported on demand, so their packages stay optional).

* :mod:`infoflow.integrations.lightning` -- :class:`~infoflow.integrations.lightning.InfoflowCallback`,
  a Lightning callback recording MI of every probe layer at logged epochs (``pip install infoflow[lightning]``).

For a plain PyTorch loop use :class:`infoflow.api.Tracker`.
"""
