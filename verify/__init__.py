"""verify: proofs that fxbn layers are exact for every input of their range.

- :mod:`verify.breakpoints`: breakpoint certificate (exact integer comparison at every level boundary), exact max
  error / mismatch count of any monotone map, shift-minimality certificate judged against the recorded
  ``layer.solve_options`` (common shift, acc_bits / max_multiplier_bits limits, decided exactly).
- :mod:`verify.smt`: z3 proof per channel on the concrete numbers, with the exact reference encoded from the
  layer's source parameters (QF_LIA; QF_NIA for the batchnorm square root, by squares).
- :mod:`verify.lemmas`: datapath lemmas in QF_BV at the kernel's widths.
- :mod:`verify.audit`: exact error of peer schemes (TFLite, PyTorch, ...); ``peer_apply`` for real activations.
- ``python -m verify``: the command line (exit codes 0 proved, 1 refuted, 2 unknown, 64 usage).

z3 is imported only when a z3 method runs.  fxbn never imports verify.
"""
from verify.run import PROVED, REFUTED, UNKNOWN, verify_layer

__all__ = ["verify_layer", "PROVED", "REFUTED", "UNKNOWN"]
