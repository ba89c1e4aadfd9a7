"""Exceptions raised by fxbn."""


class InfeasibleError(ValueError):
    """No exact fixed-point parameters exist for a channel under the requested rounding and limits.

    The message names the channel and the reason: exact ties that round in both directions (an example input is
    given), or the smallest accumulator / multiplier width that would work.
    """
