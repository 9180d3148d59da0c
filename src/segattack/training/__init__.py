"""Training and evaluating the segmentation networks: the Lightning module (``module.py``), the
run (``task.py``), evaluation of shipped weights (``evaluate.py``) and export (``export.py``);
docs/design.md, "Training". Import the modules themselves (e.g. ``segattack.training.task``)."""
