"""Fixed-point types (qonnx_ir.types) and exact rounded division (qonnx_ir.integers).

Expected values come from first principles: two's complement ranges written out, brute-force
searches over widths, and Python's exact rationals (`fractions.Fraction`, whose `round` is
half to even and whose `math.floor` is exact) for the divisions.
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest

from qonnx_ir import integers
from qonnx_ir.errors import QonnxError
from qonnx_ir.types import BIPOLAR, FixedType, Rounding, Saturation, check_bit_width, quant_type

# -- spelling -----------------------------------------------------------------------


def _all_types():
    for width, int_bits, signed, rounding, saturation in itertools.product(
        (1, 2, 7, 16, 33, 64), (-3, 0, 1, 6, 16, 70), (True, False), Rounding, Saturation
    ):
        yield FixedType(width, int_bits, signed, rounding, saturation)


def test_str_parse_round_trip_for_every_mode_combination():
    types = list(_all_types())
    assert len(types) == 6 * 6 * 2 * 2 * 3
    for fixed in types:
        assert FixedType.parse(str(fixed)) == fixed, str(fixed)
    assert FixedType.parse(str(BIPOLAR)) == BIPOLAR
    assert str(BIPOLAR) == "bipolar"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("fixed<16,6>", FixedType(16, 6, True)),
        ("ufixed<8,0,TRN,WRAP>", FixedType(8, 0, False, Rounding.TRN, Saturation.WRAP)),
        ("ufixed<8,0,WRAP,TRN>", FixedType(8, 0, False, Rounding.TRN, Saturation.WRAP)),  # modes in any order
        ("fixed<10,-2,SAT_SYM>", FixedType(10, -2, True, saturation=Saturation.SAT_SYM)),
        ("int<8>", FixedType(8, 8, True)),
        ("uint<3>", FixedType(3, 3, False)),
        (" fixed< 4 , 2 > ", FixedType(4, 2, True)),
    ],
)
def test_parse_accepts_documented_spellings(text, expected):
    assert FixedType.parse(text) == expected


def test_str_spells_defaults_short_and_extras_in_order():
    assert str(FixedType(16, 6, True)) == "fixed<16,6>"
    assert str(FixedType(8, 0, False, Rounding.TRN, Saturation.WRAP)) == "ufixed<8,0,TRN,WRAP>"
    assert str(FixedType(8, 8, True, saturation=Saturation.SAT_SYM)) == "fixed<8,8,SAT_SYM>"


@pytest.mark.parametrize(
    "text",
    ["", "fixed<16>", "fixed<16,6,7>", "int<8,2>", "fixed<a,b>", "float<8,2>", "fixed<8,2,ROUND>", "fixed<8,2>x",
     "fixed<0,0>", "fixed<-4,2>"],
)
def test_parse_rejects_malformed_types_with_qonnx_error(text):
    with pytest.raises(QonnxError):
        FixedType.parse(text)


# -- code ranges ----------------------------------------------------------------------


@pytest.mark.parametrize("width", [1, 2, 3, 8, 16, 31, 32, 40, 63])
def test_code_ranges_are_twos_complement_and_unsigned(width):
    assert (FixedType(width, 0, True).min_code, FixedType(width, 0, True).max_code) == (-(2 ** (width - 1)), 2 ** (width - 1) - 1)
    assert (FixedType(width, 0, False).min_code, FixedType(width, 0, False).max_code) == (0, 2**width - 1)


@pytest.mark.parametrize("width", [2, 3, 8, 16, 32])
def test_narrow_ranges_follow_qonnx(width):
    # qonnx min_int/max_int with narrow=True: signed drops the most negative code,
    # unsigned drops the top code.
    signed = FixedType(width, 0, True, saturation=Saturation.SAT_SYM)
    unsigned = FixedType(width, 0, False, saturation=Saturation.SAT_SYM)
    assert (signed.min_code, signed.max_code) == (-(2 ** (width - 1)) + 1, 2 ** (width - 1) - 1)
    assert (unsigned.min_code, unsigned.max_code) == (0, 2**width - 2)


def test_bipolar_codes_are_minus_one_and_one():
    assert (BIPOLAR.min_code, BIPOLAR.max_code) == (-1, 1)
    assert BIPOLAR.width == 1 and BIPOLAR.bipolar


@pytest.mark.parametrize("width, int_bits, lsb", [(16, 6, 2.0**-10), (8, 0, 2.0**-8), (8, 8, 1.0), (4, 6, 4.0), (6, -2, 2.0**-8)])
def test_lsb_is_two_to_the_int_bits_minus_width(width, int_bits, lsb):
    assert FixedType(width, int_bits, True).lsb == lsb
    assert FixedType(width, int_bits, True).frac_bits == width - int_bits


def test_width_below_one_is_rejected():
    with pytest.raises(QonnxError):
        FixedType(0, 0, True)


# -- for_range: narrowest container, by brute force -------------------------------


def _contains(width: int, signed: bool, low: int, high: int) -> bool:
    if signed:
        return -(2 ** (width - 1)) <= low and high <= 2 ** (width - 1) - 1
    return 0 <= low and high <= 2**width - 1


def _narrowest_width(low: int, high: int) -> int:
    return min(width for width in range(1, 80) for signed in (True, False) if _contains(width, signed, low, high))


def test_for_range_is_minimal_and_sufficient_exhaustively_for_small_ranges():
    for low in range(-70, 71):
        for high in range(low, 71):
            fixed = FixedType.for_range(low, high, 3)
            assert fixed.min_code <= low and high <= fixed.max_code
            assert fixed.width == _narrowest_width(low, high), (low, high, fixed)
            assert fixed.signed == (low < 0)
            assert fixed.int_bits == fixed.width - 3
            assert fixed.saturation is Saturation.WRAP  # sized by interval analysis: never overflows


def test_for_range_at_power_of_two_edges_and_wide_ranges():
    rng = np.random.default_rng(7)
    edges = [0, 1]
    for k in range(1, 64):
        edges += [2**k - 1, 2**k, -(2**k), -(2**k) + 1] + ([2**k + 1, -(2**k) - 1] if k < 63 else [])
    values = edges + [int(v) for v in rng.integers(-(2**62), 2**62, 200)]
    for _ in range(3000):
        low, high = sorted(int(v) for v in rng.choice(values, 2))
        frac_bits = int(rng.integers(-4, 20))
        if _narrowest_width(low, high) > 64:
            with pytest.raises(QonnxError, match="more than 64"):
                FixedType.for_range(low, high, frac_bits)
            continue
        fixed = FixedType.for_range(low, high, frac_bits)
        assert fixed.width == _narrowest_width(low, high), (low, high)
        assert fixed.min_code <= low and high <= fixed.max_code
        assert fixed.frac_bits == frac_bits


@pytest.mark.parametrize("low, high", [(0, 2**64), (-(2**63) - 1, 0), (-(2**70), 2**70)])
def test_for_range_refuses_more_than_64_bits(low, high):
    """A bias of 1e30 on a fine grid must not become a 110-bit accumulator silently."""
    with pytest.raises(QonnxError, match="more than 64"):
        FixedType.for_range(low, high, 0)


# -- quant_type: a qonnx Quant's output type ------------------------------------------


@pytest.mark.parametrize("bits", [2, 4, 8, 16, 32])
@pytest.mark.parametrize("exponent", [-12, -5, 0, 3])
@pytest.mark.parametrize("signed", [True, False])
def test_quant_type_power_of_two_scale_is_exact_fixed_point(bits, exponent, signed):
    scale = 2.0**exponent
    fixed, gain = quant_type(bits, signed, False, "ROUND", scale, "q")
    assert gain == 1.0
    assert fixed.lsb == scale  # code * lsb is the real value: no multiplier anywhere
    assert (fixed.width, fixed.signed) == (bits, signed)
    assert (fixed.min_code, fixed.max_code) == ((-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1))
    assert fixed.rounding is Rounding.CONV and fixed.saturation is Saturation.SAT


@pytest.mark.parametrize("scale", [0.3, 0.1, 3.0, 2.0**-4 * 1.5, float(np.nextafter(np.float32(2.0**-7), np.float32(1)))])
def test_quant_type_other_scales_keep_integer_codes_and_carry_the_scale_as_gain(scale):
    fixed, gain = quant_type(6, True, False, "ROUND", scale, "q")
    assert fixed == FixedType(6, 6, True)  # lsb 1: the codes themselves
    assert gain == scale
    assert fixed.lsb * gain == scale


def test_quant_type_narrow_floor_and_bipolar():
    narrow, _ = quant_type(4, True, True, "ROUND", 0.25, "q")
    assert (narrow.min_code, narrow.max_code, narrow.saturation) == (-7, 7, Saturation.SAT_SYM)
    unsigned_narrow, _ = quant_type(4, False, True, "ROUND", 0.25, "q")
    assert (unsigned_narrow.min_code, unsigned_narrow.max_code) == (0, 14)
    floor, _ = quant_type(4, True, False, "FLOOR", 0.25, "q")
    assert floor.rounding is Rounding.TRN
    bipolar, gain = quant_type(1, True, False, "ROUND", 0.7, "q")  # qonnx: signed 1-bit Quant is +-scale
    assert bipolar == BIPOLAR and gain == 0.7
    unsigned_one_bit, gain = quant_type(1, False, False, "ROUND", 1.0, "q")
    assert (unsigned_one_bit.min_code, unsigned_one_bit.max_code, gain) == (0, 1, 1.0)


def test_quant_type_rejects_unsupported_rounding_naming_the_node():
    with pytest.raises(QonnxError, match="CEIL") as error:
        quant_type(4, True, False, "CEIL", 0.25, "my_quant")
    assert error.value.node == "my_quant"


@pytest.mark.parametrize("bits", [0, 33, 2.5, -1, 1000])
def test_check_bit_width_rejects_zero_fractional_and_absurd_widths(bits):
    with pytest.raises(QonnxError) as error:
        check_bit_width(bits, "quant_node")
    assert error.value.node == "quant_node"
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("bits", [1, 2.0, 8, 32])
def test_check_bit_width_accepts_whole_numbers_1_to_32(bits):
    assert check_bit_width(bits, "q") == int(bits)
    assert isinstance(check_bit_width(bits, "q"), int)


# -- divide_rounded: exact, in all three representations ------------------------------


def _exact(numerator: int, shift: int, half_even: bool) -> int:
    value = Fraction(numerator) / Fraction(2) ** shift  # negative shift: an exact multiplication
    return round(value) if half_even else math.floor(value)  # Fraction.__round__ is half to even


def _check_against_fractions(numerators, shifts, bound):
    """numerators (rows, channels) as Python ints; shifts (channels,) broadcast over the last axis."""
    rows, channels = len(numerators), len(numerators[0])
    kind = integers.representation(bound)
    array = np.array(numerators, dtype=object if kind is object else np.int64)
    checked = 0
    for half_even in (True, False):
        result = integers.divide_rounded(array, np.array(shifts, dtype=np.int64), half_even, bound)
        assert result.shape == (rows, channels)
        for i in range(rows):
            for j in range(channels):
                expected = _exact(int(numerators[i][j]), int(shifts[j]), half_even)
                assert int(result[i][j]) == expected, (numerators[i][j], shifts[j], half_even, result[i][j])
                assert result[i][j] == expected  # no float rounding hides in the conversion above
                checked += 1
    return checked


def _random_numerators(rng, rows, shifts, magnitude_bits):
    """Python ints of up to magnitude_bits bits, reduced so that numerator * 2**-shift stays in range;
    a third of them sit exactly on a half (ties) and a third one off a half."""
    out = []
    for _ in range(rows):
        row = []
        for shift in shifts:
            limit = magnitude_bits - max(0, -shift)
            value = int(rng.integers(0, 2**62)) * (2**64) + int(rng.integers(0, 2**62))
            value %= 2**limit
            if shift > 0:
                kind = int(rng.integers(0, 3))
                value = (value >> shift << shift) + (kind > 0) * (1 << (shift - 1)) + (kind == 2) * int(rng.choice([-1, 1]))
            row.append(value if rng.random() < 0.5 else -value)
        out.append(row)
    return out


@pytest.mark.parametrize(
    "path, magnitude_bits, bound",
    [
        ("float32", 23, 2**24 - 1),  # float32 path: every value below 2**24
        ("float64", 52, 2**53 - 1),  # float64 path: every value below 2**53
        ("int64", 61, 2**62 - 1),  # int64 path: above 2**53, below 2**62
        ("object", 100, 2**101),  # Python integers
    ],
)
def test_divide_rounded_matches_exact_rationals(path, magnitude_bits, bound):
    assert integers.representation(bound) is {"float32": np.float32, "float64": np.float64, "int64": np.int64, "object": object}[path]
    rng = np.random.default_rng({"float32": 0, "float64": 1, "int64": 2, "object": 3}[path])
    checked = 0
    for shifts in ([1, 2, 3, 17, 40], [-1, -3, 0, 5, 9], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1], [-7, 30, 45, 12, 2]):
        shifts = [s for s in shifts if s < magnitude_bits - 2]
        numerators = _random_numerators(rng, 60, shifts, magnitude_bits)
        checked += _check_against_fractions(numerators, shifts, bound)
    assert checked > 2000


@pytest.mark.parametrize("bound", [2**20, 2**40, 2**60, 2**70])
def test_divide_rounded_ties_go_to_even_and_floor_goes_down(bound):
    # (n, shift, half-even, floor): hand arithmetic
    cases = [(5, 1, 2, 2), (7, 1, 4, 3), (-5, 1, -2, -3), (-7, 1, -4, -4), (6, 2, 2, 1), (10, 2, 2, 2),
             (-6, 2, -2, -2), (-10, 2, -2, -3), (3, 1, 2, 1), (-3, 1, -2, -2), (1, 1, 0, 0), (-1, 1, 0, -1),
             (9, 2, 2, 2), (-9, 2, -2, -3), (0, 5, 0, 0), (3, -2, 12, 12), (-3, -2, -12, -12)]
    for n, shift, half_even, floor in cases:
        for expected, mode in ((half_even, True), (floor, False)):
            result = integers.divide_rounded(np.array([[n]]), np.array([shift]), mode, bound)
            assert int(result[0, 0]) == expected, (n, shift, mode, bound)


def test_divide_rounded_object_path_is_exact_beyond_int64():
    big = [[3 * 2**80 + 2**39, -(3 * 2**80 + 2**39)], [2**90 + 2**39 + 1, -(2**90 + 2**39 + 1)]]
    result = integers.divide_rounded(np.array(big, dtype=object), np.array([40, 40]), True, 2**91)
    assert [[int(v) for v in row] for row in result] == [[3 * 2**40, -3 * 2**40], [2**50 + 1, -(2**50 + 1)]]


def test_divide_rounded_by_matches_exact_rationals():
    rng = np.random.default_rng(3)
    numerators = rng.integers(-(2**40), 2**40, (400, 5))
    divisors = rng.integers(1, 2**20, (400, 1))
    numerators[:100] = divisors[:100] * rng.integers(-1000, 1000, (100, 5)) + divisors[:100] // 2 * (divisors[:100] % 2 == 0)
    result = integers.divide_rounded_by(numerators, divisors)
    for i in range(400):
        for j in range(5):
            assert int(result[i, j]) == round(Fraction(int(numerators[i, j]), int(divisors[i, 0])))
