// Requantization of integer codes, per channel j (the Requant op of the hardware dialect).
//
//   requant_shift:          q = sat(round(x / 2^shift[j]))
//   requant_multiply_shift: q = sat(round((x * multiplier[j] + offset[j]) / 2^shift[j]))
//   requant_thresholds:     q = type_min + code_step * #{k : x >= thresholds[j][k]}
// then q is clamped to [out_min, out_max] (the type's range narrowed by a Relu or Clip).
// round is half to even (half_even) or floor; a negative shift multiplies by 2^-shift. Rounding is written out here once, on integers, so both backends
// compute the same bits; no vendor cast semantics are involved.
//
// Config C (the generator writes): n (channels per token), tokens (tokens per sample),
// input_bits, input_signed, output_bits, output_signed, half_even, out_min, out_max;
// shift kernels: max_left_shift (largest -shift, or 0), multiplier_bits, offset_bits;
// thresholds: levels, code_step (2 for bipolar outputs), type_min (the type's lowest code),
// threshold_rows (1: one row for all channels, else n); *_store_t: plain C integer types.
#ifndef QNN_REQUANT_H
#define QNN_REQUANT_H

#include "portability.h"
#include "stage.h"

namespace qnn {

// round(t / 2^s) exactly; t is wide enough for t << -s when s < 0.
template <class Wide> inline Wide shift_round(Wide t, int s, bool half_even) {
    if (s <= 0) return Wide(t << (-s));
    Wide quotient = t >> s;  // arithmetic shift: floor
    if (half_even) {
        Wide remainder = t - Wide(quotient << s);
        Wide half = Wide(1) << (s - 1);
        if (remainder > half || (remainder == half && (quotient & 1) != 0)) quotient = quotient + 1;
    }
    return quotient;
}

template <class C, class K> struct requant_base : elementwise<C, K> {
    typedef typename elementwise<C, K>::output_t output_t;

    template <class Wide> static output_t saturate_relu(Wide q) {
        if (q < Wide(C::out_min)) q = Wide(C::out_min);
        if (q > Wide(C::out_max)) q = Wide(C::out_max);
        return output_t(q);
    }
};

template <class C> struct requant_shift : requant_base<C, requant_shift<C> > {
    typedef requant_base<C, requant_shift<C> > base;
    // x shifted left by up to max_left_shift, plus a sign bit
    static const int wide_bits = C::input_bits + C::max_left_shift + 1;
    typedef int_t<wide_bits, true> wide_t;

    static void run(const typename base::input_t x[C::n], typename base::output_t y[C::n], const int shift[]) {
        QNN_INLINE
    QNN_LOOP_UNROLL
    QNN_LABEL(channels)
        for (unsigned j = 0; j < C::n; j++) {
            QNN_UNROLL
            y[j] = base::saturate_relu(shift_round(wide_t(x[j]), shift[j], C::half_even));
        }
    }
};

template <class C> struct requant_multiply_shift : requant_base<C, requant_multiply_shift<C> > {
    typedef requant_base<C, requant_multiply_shift<C> > base;
    // x * multiplier + offset, shifted left by up to max_left_shift, plus a sign bit
    static const int wide_bits = max_of(C::input_bits + C::multiplier_bits, C::offset_bits) + 1 + C::max_left_shift + 1;
    static_assert(wide_bits <= 128, "requantization products stay narrow");
    typedef int_t<wide_bits, true> wide_t;
    typedef int_t<C::multiplier_bits, true> multiplier_t;

    static void run(const typename base::input_t x[C::n], typename base::output_t y[C::n], const int shift[],
                    const typename C::multiplier_store_t multiplier[], const typename C::offset_store_t offset[]) {
        QNN_INLINE
    QNN_LOOP_UNROLL
    QNN_LABEL(channels)
        for (unsigned j = 0; j < C::n; j++) {
            QNN_UNROLL
            wide_t t = wide_t(x[j]) * multiplier_t((long long)multiplier[j]) + wide_t((long long)offset[j]);
            y[j] = base::saturate_relu(shift_round(t, shift[j], C::half_even));
        }
    }
};

template <class C> struct requant_thresholds : requant_base<C, requant_thresholds<C> > {
    typedef requant_base<C, requant_thresholds<C> > base;
    // thresholds lie in [min, max + 1] of the input: one bit more than the input, signed
    typedef int_t<C::input_bits + 1, true> threshold_t;
    typedef int_t<ceil_log2(C::levels + 1) + 1, false> count_t;

    static void run(const typename base::input_t x[C::n], typename base::output_t y[C::n],
                    const typename C::threshold_store_t thresholds[]) {
        QNN_INLINE
    QNN_LOOP_UNROLL
    QNN_LABEL(channels)
        for (unsigned j = 0; j < C::n; j++) {
            QNN_UNROLL
            const unsigned row = C::threshold_rows == 1 ? 0 : j;
            count_t count = 0;
        QNN_LOOP_UNROLL
        QNN_LABEL(levels)
            for (unsigned k = 0; k < C::levels; k++) {
                QNN_UNROLL
                if (threshold_t(x[j]) >= threshold_t((long long)thresholds[row * C::levels + k])) count = count + 1;
            }
            long long q = C::type_min + C::code_step * (long long)count.to_int();
            if (q < C::out_min) q = C::out_min;
            if (q > C::out_max) q = C::out_max;
            y[j] = typename base::output_t(q);
        }
    }
};

}  // namespace qnn

#endif
