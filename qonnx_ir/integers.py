"""Exact integer arithmetic on numpy arrays, as fast as the value ranges allow.

Every function takes a *static* bound on the magnitude of the values it will produce
and picks the representation: float32 or float64 (BLAS, exact while every value and
partial sum stays below 2**24 or 2**53), int64 (below 2**62) or Python integers (object
arrays, slow but never wrong). Nothing here ever wraps silently.
"""

from __future__ import annotations

import numpy as np

FLOAT32_EXACT = 2**24
FLOAT_EXACT = 2**53
INT64_SAFE = 2**62


def representation(bound: int) -> type:
    if bound < FLOAT32_EXACT:
        return np.float32
    if bound < FLOAT_EXACT:
        return np.float64
    if bound < INT64_SAFE:
        return np.int64
    return object


def as_repr(values: np.ndarray, kind: type) -> np.ndarray:
    if kind is object:
        return np.array([int(v) for v in np.ravel(values)], dtype=object).reshape(np.shape(values))
    return values.astype(kind, copy=False)


def matmul(x: np.ndarray, weight: np.ndarray, bound: int) -> np.ndarray:
    """x @ weight exactly, given bound >= sum_i |x_i| |w_ij| for every output.

    Every partial sum is an integer of magnitude <= bound, so float32 BLAS is exact
    below 2**24 and float64 below 2**53, whatever order the BLAS adds in.
    """
    kind = representation(bound)
    return as_repr(x, kind) @ as_repr(weight, kind)


def divide_rounded(numerator: np.ndarray, shift: np.ndarray, half_even: bool, bound: int) -> np.ndarray:
    """round(numerator / 2**shift) exactly; half to even, or floor when not half_even.

    shift broadcasts over the last axis and may be negative (an exact multiplication).
    bound >= |numerator| and >= |numerator * 2**-shift| for negative shifts.
    """
    shift = np.asarray(shift, dtype=np.int64)
    if bound < FLOAT_EXACT:
        kind = representation(bound)
        factor = np.ldexp(1.0, -shift).astype(kind)
        scaled = np.asarray(numerator, dtype=kind) * factor  # exact: a power of two
        return np.round(scaled, out=scaled) if half_even else np.floor(scaled, out=scaled)
    kind = representation(bound)
    numerator = as_repr(np.asarray(numerator), kind)
    if kind is object:
        return _divide_rounded_python(numerator, np.broadcast_to(shift, numerator.shape), half_even)
    left = np.where(shift < 0, -shift, 0)
    right = np.where(shift > 0, shift, 0)
    numerator = numerator << left
    quotient = numerator >> right  # arithmetic shift: floor
    if half_even:
        remainder = numerator - (quotient << right)
        half = np.where(right > 0, np.left_shift(1, np.maximum(right - 1, 0)), 0)
        round_up = (right > 0) & ((remainder > half) | ((remainder == half) & (quotient & 1 == 1)))
        quotient = quotient + round_up
    return quotient


def _divide_rounded_python(numerator, shift, half_even):
    out = np.empty(numerator.shape, dtype=object)
    for index, (value, s) in enumerate(zip(numerator.ravel(), shift.ravel())):
        value, s = int(value), int(s)
        if s <= 0:
            out.flat[index] = value << -s
            continue
        quotient, remainder = value >> s, value & ((1 << s) - 1)
        half = 1 << (s - 1)
        if half_even and (remainder > half or (remainder == half and quotient & 1)):
            quotient += 1
        out.flat[index] = quotient
    return out


def divide_rounded_by(numerator: np.ndarray, divisor: np.ndarray) -> np.ndarray:
    """round_half_even(numerator / divisor) for non-negative integers below 2**52 held in float64.

    The float quotient is within one of the true one; the exact remainder corrects it.
    """
    quotient = np.floor(numerator / divisor)
    remainder = numerator - quotient * divisor  # exact: every term is an integer below 2**53
    quotient = np.where(remainder < 0, quotient - 1, np.where(remainder >= divisor, quotient + 1, quotient))
    twice_remainder = 2 * (numerator - quotient * divisor)
    round_up = (twice_remainder > divisor) | ((twice_remainder == divisor) & (quotient % 2 == 1))
    return quotient + round_up
