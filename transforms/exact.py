"""Exact arithmetic for the float parts of a QONNX graph.

Every float32 (and float64) constant is a dyadic rational, so `Fraction(value)` is its exact
value, and sums, products and quotients of them are exact rationals. A BatchNormalization
divides by sqrt(var + eps), which is irrational in general: its results are kept exactly as
p + q * sqrt(d) (`Surd`, rationals p, q, d) and compared with rationals through squares.
That is enough to decide exactly, for an integer accumulator code a, which output code the
QONNX graph's quantizer gives - the question thresholds and multipliers must answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction


def exact(value) -> Fraction:
    return value if isinstance(value, Fraction) else Fraction(float(value))


@dataclass(frozen=True)
class Surd:
    """p + q * sqrt(d), d > 0 rational."""

    p: Fraction
    q: Fraction
    d: Fraction

    def __add__(self, other):
        other = _as_surd(other, self.d)
        return Surd(self.p + other.p, self.q + other.q, self.d)

    __radd__ = __add__

    def __sub__(self, other):
        other = _as_surd(other, self.d)
        return Surd(self.p - other.p, self.q - other.q, self.d)

    def __rsub__(self, other):
        return _as_surd(other, self.d) - self

    def __mul__(self, c: Fraction):
        return Surd(self.p * c, self.q * c, self.d)

    __rmul__ = __mul__

    def __truediv__(self, c: Fraction):
        return Surd(self.p / c, self.q / c, self.d)

    def sign(self) -> int:
        """Exact sign of p + q sqrt(d)."""
        if self.q == 0:
            return (self.p > 0) - (self.p < 0)
        p_sign, q_sign = (self.p > 0) - (self.p < 0), 1 if self.q > 0 else -1
        if p_sign == 0 or p_sign == q_sign:
            return q_sign
        # opposite signs: compare p^2 with q^2 d
        difference = self.p * self.p - self.q * self.q * self.d
        if difference == 0:
            return 0
        return p_sign if difference > 0 else q_sign

    def __float__(self) -> float:
        return float(self.p) + float(self.q) * math.sqrt(float(self.d))


def _as_surd(value, d: Fraction) -> Surd:
    return value if isinstance(value, Surd) else Surd(exact(value), Fraction(0), d)


def sign(value) -> int:
    if isinstance(value, Surd):
        return value.sign()
    return (value > 0) - (value < 0)


def compare(value, bound: Fraction) -> int:
    """-1, 0 or 1 as value <, == or > bound, exactly."""
    return sign(value - bound)


def maximum(value, bound: Fraction):
    return value if compare(value, bound) >= 0 else bound


def minimum(value, bound: Fraction):
    return value if compare(value, bound) <= 0 else bound


def sqrt_of(d: Fraction):
    """sqrt(d) exactly: a Fraction when d is a perfect square of a rational, else a Surd."""
    numerator, denominator = d.numerator, d.denominator
    root_n, root_d = math.isqrt(numerator), math.isqrt(denominator)
    if root_n * root_n == numerator and root_d * root_d == denominator:
        return Fraction(root_n, root_d)
    return Surd(Fraction(0), Fraction(1), d)


@dataclass(frozen=True)
class Boundary:
    """rounding(y) >= k  <=>  y > value (strict) or y >= value."""

    value: Fraction
    strict: bool

    def reached(self, y) -> bool:
        c = compare(y, self.value)
        return c > 0 or (c == 0 and not self.strict)


def boundary(k: int, mode: str) -> Boundary:
    """The boundary of level k for qonnx's rounding modes (ROUND is half to even)."""
    half = Fraction(k) - Fraction(1, 2)
    if mode in ("ROUND", "HALF_EVEN"):
        return Boundary(half, strict=k % 2 != 0)
    if mode == "FLOOR":
        return Boundary(Fraction(k), False)
    if mode == "CEIL":
        return Boundary(Fraction(k - 1), True)
    if mode == "DOWN":  # toward zero
        return Boundary(Fraction(k), False) if k >= 1 else Boundary(Fraction(k - 1), True)
    if mode == "UP":  # away from zero
        return Boundary(Fraction(k - 1), True) if k >= 1 else Boundary(Fraction(k), False)
    if mode == "HALF_UP":  # ties away from zero
        return Boundary(half, strict=k <= 0)
    if mode == "HALF_DOWN":  # ties toward zero
        return Boundary(half, strict=k >= 1)
    raise ValueError(mode)
