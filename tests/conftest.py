"""Hypothesis profiles: "ci" (default: derandomized, no deadline, modest example counts) and "thorough"
(select with FXBN_HYPOTHESIS_PROFILE=thorough)."""
import os
import pathlib

from hypothesis import HealthCheck, settings

settings.register_profile("ci", derandomize=True, deadline=None, max_examples=60, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", deadline=None, max_examples=2000, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("FXBN_HYPOTHESIS_PROFILE", "ci"))

# The shared real data (never copied into the repo); tests that need it skip cleanly without it.
DATA_DIR = pathlib.Path(os.environ.get("FXBN_DATA", pathlib.Path(__file__).resolve().parents[1] / ".." / "shared"
                                       / "data")).resolve()
