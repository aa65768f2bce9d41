// Softmax by table, on integer codes (the Softmax op of the hardware dialect).
//
//   d_j = max(x) - x_j;  i_j = 0 if d_j == 0 else min(((d_j - 1) >> table_shift) + 1, table_size - 1)
//   e_j = exp_table[i_j];  y_j = round_half_even(e_j * 2^out_frac / sum(e)), saturated to out_max
//
// exp_table[0] = 2^exp_bits exactly, so the largest input always gets the largest output.
// Config C: n, input_t, output_t, distance_t (holds max - min), exp_t, sum_t, wide_t
// (holds e * 2^out_frac), exp_store_t (C integer type of the table), table_size,
// table_shift, out_frac, out_max.
#ifndef QNN_SOFTMAX_H
#define QNN_SOFTMAX_H

#include "portability.h"

namespace qnn {

template <class C>
void softmax_table(const typename C::input_t x[C::n], typename C::output_t y[C::n],
                   const typename C::exp_store_t exp_table[C::table_size]) {
    QNN_INLINE
    typename C::input_t largest = x[0];
QNN_LABEL(find_max)
    for (unsigned j = 1; j < C::n; j++) {
        QNN_UNROLL
        if (x[j] > largest) largest = x[j];
    }
    typename C::exp_t exps[C::n];
    QNN_PARTITION(exps)
    typename C::sum_t total = 0;
QNN_LABEL(lookup)
    for (unsigned j = 0; j < C::n; j++) {
        QNN_UNROLL
        typename C::distance_t distance = typename C::distance_t(largest) - typename C::distance_t(x[j]);
        unsigned index = 0;
        if (distance != 0) {
            typename C::distance_t step = ((distance - 1) >> C::table_shift) + 1;
            index = (step >= typename C::distance_t(C::table_size - 1)) ? C::table_size - 1 : unsigned(step.to_uint());
        }
        exps[j] = typename C::exp_t(exp_table[index]);
        total += exps[j];
    }
QNN_LABEL(divide)
    for (unsigned j = 0; j < C::n; j++) {
        QNN_UNROLL
        typename C::wide_t numerator = typename C::wide_t(exps[j]) << C::out_frac;
        typename C::wide_t quotient = numerator / total;
        typename C::wide_t twice_remainder = (numerator - quotient * total) << 1;
        if (twice_remainder > total || (twice_remainder == total && (quotient & 1) != 0)) quotient = quotient + 1;
        if (quotient > typename C::wide_t(C::out_max)) quotient = C::out_max;
        y[j] = typename C::output_t(quotient);
    }
}

}  // namespace qnn

#endif
