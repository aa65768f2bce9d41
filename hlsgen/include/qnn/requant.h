// Requantization of integer codes, per channel j (the Requant op of the hardware dialect).
//
//   shift:          q = sat(round(x / 2^shift[j]))
//   multiply_shift: q = sat(round((x * multiplier[j] + offset[j]) / 2^shift[j]))
//   thresholds:     q = out_min + #{k : x >= thresholds[j][k]}   (bipolar: -1 + 2 * #{...})
// then relu: q = max(q, 0). round is half to even (RND_CONV) or floor (TRN); a negative
// shift multiplies by 2^-shift. Rounding is written out here once, on integers, so both
// backends compute the same bits; no vendor cast semantics are involved.
//
// Config C: n, input_t, output_t, wide_t (holds x * multiplier + offset and its left
// shift), multiplier_t, threshold_t (one bit wider than input_t: a threshold above every
// input means "never"), half_even, relu, bipolar (bools), out_min, out_max, levels
// (thresholds per channel); multiplier_store_t, offset_store_t, threshold_store_t are the
// plain C integer types the constant arrays are stored in.
#ifndef QNN_REQUANT_H
#define QNN_REQUANT_H

#include "portability.h"

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

template <class C, class Wide> inline typename C::output_t saturate_relu(Wide q) {
    if (q < Wide(C::out_min)) q = Wide(C::out_min);
    if (q > Wide(C::out_max)) q = Wide(C::out_max);
    if (C::relu && q < 0) q = 0;
    return typename C::output_t(q);
}

template <class C>
void requant_shift(const typename C::input_t x[C::n], typename C::output_t y[C::n], const int shift[C::n]) {
    QNN_INLINE
QNN_LABEL(channels)
    for (unsigned j = 0; j < C::n; j++) {
        QNN_UNROLL
        typename C::wide_t t = x[j];
        y[j] = saturate_relu<C>(shift_round(t, shift[j], C::half_even));
    }
}

template <class C>
void requant_multiply_shift(const typename C::input_t x[C::n], typename C::output_t y[C::n], const int shift[C::n],
                            const typename C::multiplier_store_t multiplier[C::n],
                            const typename C::offset_store_t offset[C::n]) {
    QNN_INLINE
QNN_LABEL(channels)
    for (unsigned j = 0; j < C::n; j++) {
        QNN_UNROLL
        typename C::wide_t t = typename C::wide_t(x[j]) * typename C::multiplier_t(multiplier[j]) +
                               typename C::wide_t(offset[j]);
        if (C::bipolar) {
            y[j] = (t >= 0) ? typename C::output_t(1) : typename C::output_t(-1);
        } else {
            y[j] = saturate_relu<C>(shift_round(t, shift[j], C::half_even));
        }
    }
}

template <class C>
void requant_thresholds(const typename C::input_t x[C::n], typename C::output_t y[C::n],
                        const typename C::threshold_store_t thresholds[C::n * C::levels]) {
    QNN_INLINE
QNN_LABEL(channels)
    for (unsigned j = 0; j < C::n; j++) {
        QNN_UNROLL
        int count = 0;
    QNN_LABEL(levels)
        for (unsigned k = 0; k < C::levels; k++) {
            QNN_UNROLL
            count += (typename C::threshold_t(x[j]) >= typename C::threshold_t(thresholds[j * C::levels + k])) ? 1 : 0;
        }
        long long q = C::bipolar ? 2 * count - 1 : C::out_min + count;
        if (C::relu && q < 0) q = 0;
        y[j] = typename C::output_t(q);
    }
}

}  // namespace qnn

#endif
