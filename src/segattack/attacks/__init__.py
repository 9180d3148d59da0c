"""Attacks on frozen segmentation models: the spec (``spec.py``), the objective and the loops
(``objective.py``, ``loop.py``), the Lightning module (``module.py``) and the run (``task.py``);
docs/design.md, "Attacks". Import the modules themselves (e.g. ``segattack.attacks.loop``)."""
