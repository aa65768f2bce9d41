"""Sane limits, in one place: what `load`, the options and the lowering refuse before allocating.

Each limit is far beyond what a real-time network needs and far below what would exhaust
memory or break exactness (int64 codes, C++ integer literals, float64 tables).
"""

MAX_QUANT_BITS = 32  # bit width a quantizer may ask for
MAX_EDGE_BITS = 64  # width of any tensor type in the hardware dialect (accumulators included)
MAX_CONSTANT_BITS = 62  # integer constants (weights, thresholds, multipliers): int64 and C++ literals
MAX_INITIALIZER_ELEMENTS = 1 << 26  # one constant tensor
MAX_SAMPLE_ELEMENTS = 1 << 24  # one tensor, per sample (the batch dimension excluded)
MAX_NODES = 100_000
MAX_TABLE_ENTRIES = 1 << 16  # softmax and activation tables
MAX_ACTIVATION_TABLE_BITS = 16  # an activation table has at most 2**16 entries per channel
MAX_THRESHOLD_BITS = 10  # outputs this wide or narrower may use thresholds (2**10 - 1 per channel)
MAX_MULTIPLIER_BITS = 62  # --multiplier-bits: a cap on requantization multipliers (int64 constants)
MAX_SOFTMAX_EXP_BITS = 24
MAX_FRAC_BITS = 32  # fraction bits an option may ask for (output, softmax)
# A quantizer scale must lie in [2**MIN_SCALE_EXPONENT, 2**MAX_SCALE_EXPONENT]: a float32
# denormal (below 2**-126) or 1e-30 is a broken export, not a quantizer.
MIN_SCALE_EXPONENT, MAX_SCALE_EXPONENT = -64, 64
