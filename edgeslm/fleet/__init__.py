"""Fleets: several models exported to several targets across CI runners.

``spec.py`` reads a fleet file (FLEET.toml) into frozen records and the jobs it makes, one ``edgeslm export`` per
(model, target[, recipe]) with a stable name; ``matrix.py`` writes those jobs in the form a CI engine's matrix
takes (GitHub Actions ``strategy.matrix``, GitLab ``parallel:matrix``). Each job writes ``reports/<job>``;
``edgeslm gate`` and ``edgeslm report`` read the union (edgeslm/reports/fleet.py). Torch-free.
"""
