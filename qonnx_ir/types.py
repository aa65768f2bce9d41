"""Fixed-point types: the exact meaning of every integer in the hardware dialect.

A `FixedType` is the container of a tensor's integer codes, spelt like Vitis'
`ap_fixed<W, I, Q, O>`: `width` bits of which `int_bits` are left of the binary point
(the sign bit included when signed), so one code step (the lsb) is 2**(int_bits-width).
`rounding` and `saturation` say what happens when a wider value is cast INTO the type.
A 1-bit `bipolar` type holds the codes -1 and +1 (BipolarQuant).

A tensor whose quantizer scale is not a power of two keeps integer codes in a type with
lsb 1 and carries the remaining factor separately as its *gain* (see `qonnx_ir.hw`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from enum import Enum

from .errors import QonnxError
from .limits import MAX_EDGE_BITS, MAX_QUANT_BITS


class Rounding(str, Enum):
    CONV = "RND_CONV"  # round half to even: qonnx ROUND
    TRN = "TRN"  # floor: qonnx FLOOR


class Saturation(str, Enum):
    SAT = "SAT"
    SAT_SYM = "SAT_SYM"  # qonnx narrow=True: drops the most negative code (signed) or the top code (unsigned)
    WRAP = "WRAP"  # only for types sized by interval analysis, which never overflow


QONNX_ROUNDING = {"ROUND": Rounding.CONV, "FLOOR": Rounding.TRN}


@dataclass(frozen=True)
class FixedType:
    width: int
    int_bits: int
    signed: bool
    rounding: Rounding = Rounding.CONV
    saturation: Saturation = Saturation.SAT
    bipolar: bool = False

    def __post_init__(self):
        if not 1 <= self.width <= MAX_EDGE_BITS:
            raise QonnxError(f"fixed-point width must be 1..{MAX_EDGE_BITS}, got {self.width}")
        if abs(self.int_bits) > 4 * MAX_EDGE_BITS:
            raise QonnxError(f"fixed-point type with {self.int_bits} integer bits is beyond any sane scale")

    # -- what the codes mean ------------------------------------------------------
    @property
    def frac_bits(self) -> int:
        return self.width - self.int_bits

    @property
    def lsb(self) -> float:
        return math.ldexp(1.0, -self.frac_bits)

    @property
    def min_code(self) -> int:
        if self.bipolar:
            return -1
        if not self.signed:
            return 0
        low = -(1 << (self.width - 1))
        return low + 1 if self.saturation is Saturation.SAT_SYM else low

    @property
    def max_code(self) -> int:
        if self.bipolar:
            return 1
        top = (1 << (self.width - (1 if self.signed else 0))) - 1
        return top - 1 if (self.saturation is Saturation.SAT_SYM and not self.signed) else top

    @property
    def code_step(self) -> int:
        """Distance between neighbouring codes: 2 for bipolar (-1, +1), else 1."""
        return 2 if self.bipolar else 1

    @property
    def magnitude(self) -> int:
        """The largest |code|."""
        return max(abs(self.min_code), abs(self.max_code))

    def contains(self, low: int, high: int) -> bool:
        return self.min_code <= low and high <= self.max_code

    def with_(self, **changes) -> FixedType:
        return replace(self, **changes)

    # -- spelling -----------------------------------------------------------------
    def __str__(self) -> str:
        """`fixed<16,6>`; non-default rounding/saturation are appended: `ufixed<8,0,TRN,WRAP>`."""
        if self.bipolar:
            return "bipolar"
        kind = "fixed" if self.signed else "ufixed"
        extras = [m.value for m in (self.rounding, self.saturation) if m not in (Rounding.CONV, Saturation.SAT)]
        return f"{kind}<{','.join([str(self.width), str(self.int_bits)] + extras)}>"

    @classmethod
    def parse(cls, text: str) -> FixedType:
        """Inverse of `str()`; also accepts `int<8>`, `uint<8>` and modes in any order."""
        text = text.strip()
        if text == "bipolar":
            return BIPOLAR
        match = re.fullmatch(r"(u?)(fixed|int)<([^<>]*)>", text)
        fields = [f.strip() for f in match.group(3).split(",")] if match else []
        numbers = [f for f in fields if re.fullmatch(r"-?\d+", f)]
        modes = fields[len(numbers):]
        expected = 1 if (match and match.group(2) == "int") else 2
        if not match or len(numbers) != expected or fields[: len(numbers)] != numbers:
            raise QonnxError(f"cannot read fixed-point type '{text}' (expected e.g. fixed<16,6> or ufixed<8,0,TRN>)")
        width = int(numbers[0])
        int_bits = width if expected == 1 else int(numbers[1])
        rounding, saturation = Rounding.CONV, Saturation.SAT
        for mode in modes:
            if mode in Rounding._value2member_map_:
                rounding = Rounding(mode)
            elif mode in Saturation._value2member_map_:
                saturation = Saturation(mode)
            else:
                raise QonnxError(f"fixed-point type '{text}': unknown mode {mode!r}")
        return cls(width, int_bits, signed=not match.group(1), rounding=rounding, saturation=saturation)

    # -- construction -------------------------------------------------------------
    @classmethod
    def integer(cls, width: int, signed: bool, **kwargs) -> FixedType:
        return cls(width, width, signed, **kwargs)

    @classmethod
    def for_range(cls, low: int, high: int, frac_bits: int) -> FixedType:
        """The narrowest type holding every code in [low, high], lsb 2**-frac_bits.

        Sized by interval analysis, so it can never overflow: WRAP costs no logic.
        """
        low, high = int(low), int(high)
        signed = low < 0
        if signed:
            width = max((-low - 1).bit_length(), max(high, 0).bit_length()) + 1
        else:
            width = max(high.bit_length(), 1)
        if width > MAX_EDGE_BITS:
            raise QonnxError(f"values in [{low}, {high}] need a {width}-bit type (more than {MAX_EDGE_BITS}): "
                             "a constant of the model is absurdly large")
        return cls(width, width - frac_bits, signed, saturation=Saturation.WRAP)


BIPOLAR = FixedType(1, 1, True, bipolar=True)


def check_bit_width(bits: float, where: str) -> int:
    """Quantizer bit widths must be whole numbers in 1..32."""
    if not math.isfinite(bits) or bits != int(bits) or not 1 <= bits <= MAX_QUANT_BITS:
        raise QonnxError(f"bit width {bits:g} is not supported (must be a whole number 1..{MAX_QUANT_BITS})", node=where)
    return int(bits)


def power_of_two_exponent(value: float) -> int | None:
    """k if value == 2**k exactly, else None."""
    if value <= 0 or not math.isfinite(value):
        return None
    mantissa, exponent = math.frexp(value)
    return exponent - 1 if mantissa == 0.5 else None


def quant_type(bits: int, signed: bool, narrow: bool, rounding: str, scale: float, where: str) -> tuple[FixedType, float]:
    """The type of a qonnx Quant output with zero-point 0: (type, gain).

    A power-of-two scale 2**-f gives <bits, bits-f> and gain 1 (exact, no multiplier);
    any other scale gives an integer type and gain = scale.
    """
    if rounding not in QONNX_ROUNDING:
        raise QonnxError(
            f"rounding_mode {rounding} is not supported (supported: {', '.join(QONNX_ROUNDING)})", node=where
        )
    if bits == 1 and signed:  # qonnx: a signed 1-bit Quant is bipolar, +-scale
        return BIPOLAR, float(scale)
    saturation = Saturation.SAT_SYM if narrow else Saturation.SAT
    exponent = power_of_two_exponent(scale)
    int_bits = bits + exponent if exponent is not None else bits
    fixed = FixedType(bits, int_bits, signed, QONNX_ROUNDING[rounding], saturation)
    return fixed, (1.0 if exponent is not None else float(scale))

