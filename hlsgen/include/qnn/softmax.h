// Softmax by table, on integer codes (the Softmax op of the hardware dialect).
//
//   d_j = max(x) - x_j;  i_j = min(ceil(d_j / 2^table_shift), table_size - 1);  e_j = exp_table[i_j]
//   S = sum(e);  r = floor(2^K / S) with K = exp_bits + out_frac + guard_bits   (one divider)
//   y_j = min(out_max, (e_j * r + 2^(K - out_frac - 1)) >> (K - out_frac))      (n multipliers)
//
// exp_table[0] = 2^exp_bits exactly, so the largest input always gets the largest output,
// and S >= 2^exp_bits bounds r below 2^(out_frac + guard_bits + 1).
// Config C: n, input_bits, input_signed, output_bits, table_size, table_shift, exp_bits,
// guard_bits, out_frac, out_max, exp_store_t (C integer type of the table).
#ifndef QNN_SOFTMAX_H
#define QNN_SOFTMAX_H

#include "portability.h"
#include "stage.h"

namespace qnn {

template <class C> struct softmax_table : map_kernel<softmax_table<C> > {
    typedef int_t<C::input_bits, C::input_signed> input_t;
    typedef int_t<C::output_bits, false> output_t;
    static const unsigned in_size = C::n, out_size = C::n, tokens = 1, steps = 1, ii = 1;

    static const int reciprocal_shift = C::exp_bits + C::out_frac + C::guard_bits;  // K
    static const int drop = reciprocal_shift - C::out_frac;                        // K - out_frac >= 1
    typedef int_t<C::input_bits + 1, true> distance_t;                               // max(x) - x_j >= 0
    typedef int_t<C::exp_bits + 1, false> exp_t;                                     // 0 .. 2^exp_bits
    typedef int_t<C::exp_bits + 1 + ceil_log2(C::n), false> sum_t;                   // n entries
    typedef int_t<reciprocal_shift + 1, false> numerator_t;                          // 2^K
    typedef int_t<C::out_frac + C::guard_bits + 1, false> reciprocal_t;              // r <= 2^(K - exp_bits)
    typedef int_t<reciprocal_shift + 2, false> product_t;                            // e r + 2^(drop-1) <= 2^K + ...
    static_assert(drop >= 1, "the reciprocal carries guard bits");

    static void run(const input_t x[C::n], output_t y[C::n], const typename C::exp_store_t exp_table[]) {
        QNN_INLINE
        input_t largest = x[0];
    QNN_LOOP_UNROLL
    QNN_LABEL(find_max)
        for (unsigned j = 1; j < C::n; j++) {
            QNN_UNROLL
            if (x[j] > largest) largest = x[j];
        }
        exp_t exps[C::n];
        QNN_PARTITION(exps)
        sum_t total = 0;
    QNN_LOOP_UNROLL
    QNN_LABEL(lookup)
        for (unsigned j = 0; j < C::n; j++) {
            QNN_UNROLL
            distance_t distance = distance_t(largest) - distance_t(x[j]);
            unsigned index = 0;
            if (distance != 0) {
                const distance_t step = ((distance - 1) >> C::table_shift) + 1;  // ceil(d / 2^table_shift)
                const long long wide_step = step.to_int64();
                index = wide_step >= (long long)(C::table_size - 1) ? C::table_size - 1 : unsigned(wide_step);
            }
            exps[j] = exp_t((long long)exp_table[index]);
            total += exps[j];
        }
        const reciprocal_t reciprocal = reciprocal_t(numerator_t(numerator_t(1) << reciprocal_shift) / total);
    QNN_LOOP_UNROLL
    QNN_LABEL(scale)
        for (unsigned j = 0; j < C::n; j++) {
            QNN_UNROLL
            product_t scaled = (product_t(exps[j]) * reciprocal + (product_t(1) << (drop - 1))) >> drop;
            y[j] = scaled > product_t(C::out_max) ? output_t(C::out_max) : output_t(scaled);
        }
    }
};

}  // namespace qnn

#endif
