"""Lot arithmetic: rounding volumes to a symbol's step, and the partial-close policy.

Pure functions in ``Decimal`` so that 0.1 + 0.2 never becomes a 10014
(invalid volume). Shared by the rules (deciding) and the broker adapter (sending).
"""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal


def _dec(x: float) -> Decimal:
    return Decimal(repr(float(x)))


def round_down(volume: float, step: float) -> float:
    """Round ``volume`` down to a whole number of ``step``s."""
    if step <= 0:
        return float(volume)
    d, s = _dec(volume), _dec(step)
    steps = (d / s).quantize(Decimal(1), rounding=ROUND_DOWN)
    return float(steps * s)


def partial_volume(open_volume: float, requested: float, *, volume_min: float, volume_step: float) -> float | None:
    """The volume to send for a partial close of ``requested`` lots out of ``open_volume``.

    Policy (the simulator enforces the same): round down to the step, never
    above the open volume; if what would remain is below ``volume_min`` the
    close is reduced so that the remainder stays tradeable. Returns ``None``
    when no valid partial close exists (the position is already at the minimum,
    or the request rounds to less than ``volume_min``). A request for the whole
    volume or more is a full close and returns ``open_volume``.
    """
    if requested >= open_volume - 1e-12:
        return float(open_volume)
    v = round_down(min(requested, open_volume), volume_step)
    if v < volume_min - 1e-12:
        return None
    remainder = float(_dec(open_volume) - _dec(v))
    if 0 < remainder < volume_min - 1e-12:
        v = round_down(float(_dec(open_volume) - _dec(volume_min)), volume_step)
        if v < volume_min - 1e-12:
            return None
    return v


def percent_of(open_volume: float, percent: float, *, volume_min: float, volume_step: float) -> float | None:
    """``partial_volume`` for ``percent`` % of the open volume (100 % is a full close)."""
    return partial_volume(
        open_volume, open_volume * percent / 100.0, volume_min=volume_min, volume_step=volume_step
    )
