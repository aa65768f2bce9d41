"""The arithmetic behind lower-requant: thresholds, exact multipliers, exact outputs, tables.

Notation: an input code a in [low, high] of channel c is worth a * step_c (exact); the float
chain maps that to a real value v (float_chain); the terminating quantizer maps v to an output
code q. Everything here decides q(a) exactly, or says it cannot.

Exact multiplier (the constant-division argument). When the chain is clamp(alpha v + beta) with
exact rationals, y(a) = v / s_out = (N a + C) / E with integers N, C and E > 0 (one common
denominator). A quantizer's rounding is floor(y + d) with d = 0 (FLOOR), 1/2 (ROUND, away from
ties) or 1 - 1/E (CEIL), that is floor((N a + C') / E) with an integer C'. With M = round(N 2**S / E)
and O chosen so that the error e(a) = (a M + O) / 2**S - (N a + C') / E is >= 0 at the smaller
end of [low, high], e is linear in a and stays in [0, 1/E) on the whole interval once
2**S > E * (|a|-range / 2 + 1) (checked exactly at both ends): then floor((a M + O) / 2**S)
= floor((N a + C') / E) for every a, because (N a + C') / E is a multiple of 1/E. Ties of ROUND
(y exactly k + 1/2) are where floor(y + 1/2) and half-to-even differ: when y is dyadic (E a power
of two) the multiplier is exact (M / 2**S = N / E), so the kernel's own half-to-even rounding
decides them; otherwise a tie in the interval makes this method decline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from qonnx_ir.limits import MAX_CONSTANT_BITS

from . import float_chain

LIMIT = 2**MAX_CONSTANT_BITS
MAX_SHIFT = 120  # below the Requant attribute's limit, so a kernel's shift stays a plain constant


def levels_of(out_type) -> np.ndarray:
    """The output codes thresholds count to: every code above the lowest (bipolar: +1)."""
    if out_type.bipolar:
        return np.array([1])
    return np.arange(out_type.min_code + 1, out_type.max_code + 1)


def thresholds(ops, quantize, reached, out_type, step: np.ndarray, low: int, high: int) -> tuple[np.ndarray, int]:
    """T[c, k] = the smallest code whose output is >= level k; (T, number of corrections).

    A binary search on the float64 chain first, then, where the chain is exactly computable,
    every threshold checked exactly (its code reaches the level, the one below does not) and
    moved where float64 was wrong. Channels must be non-decreasing.
    """
    levels = levels_of(out_type)
    channels = len(step)
    shape = (channels, len(levels))
    lo = np.full(shape, low, dtype=np.int64)
    hi = np.full(shape, high + 1, dtype=np.int64)  # high + 1: the level is never reached
    column = step[:, None]
    while np.any(lo < hi):
        mid = (lo + hi) // 2
        values = float_chain.evaluate(ops, (mid * column).T).T if ops else mid * column
        hit = quantize(values) >= levels[None, :]
        hi = np.where(hit & (lo < hi), mid, hi)
        lo = np.where(~hit & (lo < hi), mid + 1, lo)
    corrections = 0
    steps = [Fraction(float(s)) for s in step]

    def exact_hit(c: int, a: int, k: int):
        if a > high:
            return True  # the sentinel high + 1: "never reached"
        value = float_chain.exact_value(ops, c, a * steps[c])
        return None if value is None else reached(value, int(k))

    for c in range(channels):
        for j, k in enumerate(levels):
            t = int(lo[c, j])
            if exact_hit(c, t, k) is None:
                return lo, corrections  # a transcendental chain: float64 is its definition here
            while not exact_hit(c, t, k):
                t += 1
            while t > low and exact_hit(c, t - 1, k):
                t -= 1
            if t != lo[c, j]:
                corrections += 1
                lo[c, j] = t
    return np.maximum.accumulate(lo, axis=1), corrections


@dataclass
class Multiplier:
    """Per channel: q = clip(floor((a * multiplier + offset) / 2**shift)) (or half to even)."""

    multiplier: list[int]
    offset: list[int]
    shift: list[int]
    half_even: bool
    clip: tuple[int, int] | None

    @property
    def multiplier_bits(self) -> int:
        return max(abs(m) for m in self.multiplier).bit_length() + 1

    @property
    def offset_bits(self) -> int:
        return max(max(abs(o) for o in self.offset), 1).bit_length() + 1


def _rounded_code(value: Fraction, mode: str) -> int:
    """qonnx's rounding of an exact rational."""
    floor = math.floor(value)
    if mode == "FLOOR":
        return floor
    if mode == "CEIL":
        return math.ceil(value)
    half = value - floor
    if half > Fraction(1, 2) or (half == Fraction(1, 2) and floor % 2 == 1):
        return floor + 1
    return floor


def exact_multiplier(affines, steps: list[Fraction], scale: Fraction, mode: str, low: int, high: int,
                     out_min: int, out_max: int) -> Multiplier | None:
    """The exact multiplier for clamp(alpha v + beta, lo, hi) followed by Quant(scale, mode), or None."""
    if mode not in ("ROUND", "HALF_EVEN", "FLOOR", "CEIL"):
        return None
    lines = []  # per channel: y = (n a + constant) / denominator
    for c, affine in enumerate(affines):
        slope, intercept = affine.alpha * steps[c] / scale, affine.beta / scale
        denominator = math.lcm(slope.denominator, intercept.denominator)
        lines.append((int(slope * denominator), int(intercept * denominator), denominator))
    dyadic = [d & (d - 1) == 0 for _, _, d in lines]
    half_even = mode in ("ROUND", "HALF_EVEN") and all(dyadic) and all(
        abs(n) < LIMIT and abs(constant) < LIMIT for n, constant, _ in lines)
    multipliers, offsets, shifts = [], [], []
    for n, constant, denominator in lines:
        if half_even:  # y is dyadic: represent it exactly, the kernel rounds half to even
            multipliers.append(n), offsets.append(constant), shifts.append(denominator.bit_length() - 1)
            continue
        if mode in ("ROUND", "HALF_EVEN"):
            if _has_tie(n, constant, denominator, low, high):
                return None  # floor(y + 1/2) would round that tie up, half to even may not
            n, constant, denominator = 2 * n, 2 * constant + denominator, 2 * denominator  # floor(y + 1/2)
        elif mode == "CEIL":
            constant += denominator - 1
        found = _floor_multiplier(n, constant, denominator, low, high)
        if found is None:
            return None
        multipliers.append(found[0]), offsets.append(found[1]), shifts.append(found[2])
    if any(abs(v) >= LIMIT for v in (*multipliers, *offsets)) or max(shifts) > MAX_SHIFT:
        return None
    # a Relu / Clip before the quantizer: the same output codes for every channel, or no multiplier
    bounds = set()
    for affine in affines:
        low_code = out_min if affine.low is None else max(out_min, _rounded_code(affine.low / scale, mode))
        high_code = out_max if affine.high is None else min(out_max, _rounded_code(affine.high / scale, mode))
        bounds.add((low_code, high_code))
    if len(bounds) > 1:
        return None
    (clip,) = bounds
    return Multiplier(multipliers, offsets, shifts, half_even, None if clip == (out_min, out_max) else clip)


def _has_tie(n: int, constant: int, denominator: int, low: int, high: int) -> bool:
    """Is (n a + constant) / denominator exactly k + 1/2 for some integer a in [low, high]?
    That is 2 n a = (2k + 1) d - 2 c: a solution of 2 n a = -2 c (mod d) with the quotient odd."""
    modulus = 2 * denominator
    target = (denominator - 2 * constant) % modulus  # 2 n a + 2 c = d (mod 2d)
    g = math.gcd(2 * n, modulus)
    if target % g:
        return False
    period = modulus // g
    first = (target // g) * pow((2 * n // g) % period, -1, period) % period if period > 1 else 0
    start = low + ((first - low) % period)
    return start <= high


def min_mod_linear(count: int, modulus: int, slope: int, start: int) -> int:
    """min over 0 <= x < count of (slope x + start) mod modulus, in O(log modulus) steps.

    Within a run without wrap-around the values only grow, so the minimum is the first value
    (start) or a value just after a wrap. After the k-th of the K wraps the value is
    (start - k modulus) mod slope; taking them for k = K, K-1, ..., 1 they are
    (start - K modulus + j modulus) mod slope for j = 0..K-1: the same problem with
    (modulus, slope) -> (slope, modulus mod slope), as in Euclid's algorithm.
    """
    best = modulus
    while count > 0:
        slope %= modulus
        start %= modulus
        best = min(best, start)
        if slope == 0:
            break
        wraps = (slope * (count - 1) + start) // modulus
        count, start, slope, modulus = wraps, start - wraps * modulus, modulus, slope
    return best


def _floor_multiplier(n: int, constant: int, denominator: int, low: int, high: int):
    """(M, O, S) with floor((a M + O) / 2**S) == floor((n a + constant) / denominator) on [low, high].

    floor(y + e) == floor(y) while 0 <= e < (the distance from y up to the next integer); the
    smallest such distance over the interval, gap / denominator, is found exactly
    (min_mod_linear), and e(a) = (a M + O) / 2**S - y(a) is linear, so checking it at both
    ends proves every code in between.
    """
    target_slope, target_offset = Fraction(n, denominator), Fraction(constant, denominator)
    span = high - low
    # distance up to the next integer, times denominator: ((-(n a + constant) - 1) mod d) + 1, a = low + x
    gap = min_mod_linear(span + 1, denominator, -n, -(n * low) - constant - 1) + 1
    bound = Fraction(gap, denominator)
    start = max(0, math.ceil(math.log2((span // 2 + 1) / bound)) if bound < 1 else (span // 2 + 1).bit_length())
    for shift in range(start, start + 8):
        scale = 2**shift
        multiplier = round(target_slope * scale)
        error_slope = Fraction(multiplier, scale) - target_slope
        smallest = min(error_slope * low, error_slope * high)
        offset = math.ceil((target_offset - smallest) * scale)
        ends = [Fraction(multiplier * a + offset, scale) - (target_slope * a + target_offset) for a in (low, high)]
        if min(ends) >= 0 and max(ends) < bound:
            return multiplier, offset, shift
    return None


def exact_output(affines, steps: list[Fraction], low: int, high: int):
    """An output with no quantizer, exact: (M, O, fraction bits P, clip in codes) with
    code = a M + O worth 2**-P, when every alpha step and beta are dyadic; else None."""
    slopes = [a.alpha * s for a, s in zip(affines, steps)]
    values = [*slopes, *(a.beta for a in affines), *(b for a in affines for b in (a.low, a.high) if b is not None)]
    if any(v.denominator & (v.denominator - 1) for v in values):
        return None
    frac = max(v.denominator.bit_length() - 1 for v in values)
    multipliers = [int(s * 2**frac) for s in slopes]
    offsets = [int(a.beta * 2**frac) for a in affines]
    if any(abs(v) >= LIMIT for v in (*multipliers, *offsets)):
        return None
    codes = [m * a + o for m, o in zip(multipliers, offsets) for a in (low, high)]
    lows = [int(a.low * 2**frac) for a in affines if a.low is not None]
    highs = [int(a.high * 2**frac) for a in affines if a.high is not None]
    clip = (min(lows) if lows and len(lows) == len(affines) else None, max(highs) if highs and len(highs) == len(affines)
            else None)
    return multipliers, offsets, frac, (min(codes), max(codes)), clip


def table(ops, end, step: np.ndarray, low: int, high: int, shift: int = 0) -> tuple[np.ndarray, int]:
    """(output codes for every input code (shift 0) or every 2**shift codes (their middle code), the
    number of entries exact arithmetic corrected). Computed in float64, then every entry of a chain
    without transcendental functions is checked exactly against the quantizer and fixed if float64
    was wrong; a transcendental chain is defined by its float64 evaluation."""
    codes = np.arange(low, high + 1, 1 << shift, dtype=np.int64)
    if shift:
        codes = np.minimum(codes + ((1 << shift) - 1) // 2, high)
    values = float_chain.evaluate(ops, codes[:, None] * step[None, :])
    entries = end.quantize(values).T.astype(np.int64)  # (channels, entries)
    steps = [Fraction(float(s)) for s in step]
    if float_chain.exact_value(ops, 0, Fraction(0)) is None:
        return entries, 0
    out, levels = end.out_type, levels_of(end.out_type)
    corrections = 0
    for c in range(entries.shape[0]):
        for index, code in enumerate(codes):
            value = float_chain.exact_value(ops, c, int(code) * steps[c])
            entry = int(entries[c, index])
            above = entry + out.code_step
            if (entry == out.min_code or end.reached(value, entry)) and (above > out.max_code
                                                                            or not end.reached(value, above)):
                continue
            reached = [end.reached(value, int(k)) for k in levels]  # rare: float64 fell on the wrong side
            entries[c, index] = out.min_code + out.code_step * sum(reached)
            corrections += 1
    return entries, corrections


def table_error(ops, quantize, step: np.ndarray, low: int, high: int, shift: int, entries: np.ndarray) -> int:
    """Largest |table - float64 chain| in output codes over every input code of a segmented table."""
    worst = 0
    for start in range(low, high + 1, 1 << 20):  # a million codes at a time
        codes = np.arange(start, min(start + (1 << 20), high + 1), dtype=np.int64)
        truth = quantize(float_chain.evaluate(ops, codes[:, None] * step[None, :])).T
        index = (codes - low) >> shift
        worst = max(worst, int(np.max(np.abs(truth - entries[:, index]))))
    return worst
