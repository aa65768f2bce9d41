// Dense layer on integer codes: acc[o] = bias[o] + sum_i x[i] * w[i][o], exactly.
//
// Config (static members of a struct C):
//   n_in, n_out       layer shape; weights are stored row-major: w[i * n_out + o]
//   reuse_factor      R: each multiplier is used R times; R = 1 is fully parallel
//   input_t, weight_t, bias_t, accum_t
//                     code types; accum_t is sized by interval analysis, so it never wraps
//   weight_store_t, bias_store_t
//                     plain C integer types the constant arrays are stored in (they compile
//                     instantly; each value is converted to its code type where it is used)
//   product           policy: multiply, xnor (both operands bipolar) or sign_select
//                     (bipolar weights): how one x*w term is formed
// Zero weights are skipped: with constant weights the tool removes their multipliers.
#ifndef QNN_DENSE_H
#define QNN_DENSE_H

#include "portability.h"

namespace qnn {

// One term x*w with a real multiplier.
struct multiply {
    template <class Acc, class X, class W> static Acc term(const X &x, const W &w) { return Acc(x * w); }
};

// Both operands bipolar (codes -1/+1): the product is +1 when the signs agree (XNOR).
struct xnor {
    template <class Acc, class X, class W> static Acc term(const X &x, const W &w) {
        return ((x < 0) == (w < 0)) ? Acc(1) : Acc(-1);
    }
};

// Bipolar weights (-1/+1): add or subtract the input, no multiplier.
struct sign_select {
    template <class Acc, class X, class W> static Acc term(const X &x, const W &w) {
        return (w < 0) ? Acc(-Acc(x)) : Acc(x);
    }
};

template <class C>
void dense(const typename C::input_t x[C::n_in], typename C::accum_t acc[C::n_out],
           const typename C::weight_store_t weights[C::n_in * C::n_out],
           const typename C::bias_store_t bias[C::n_out]) {
    QNN_INLINE
    static const unsigned total = C::n_in * C::n_out;
    static const unsigned per_round = (total + C::reuse_factor - 1) / C::reuse_factor;  // multipliers
    typename C::accum_t partial[C::n_out];
    QNN_PARTITION(partial)
QNN_LABEL(init)
    for (unsigned o = 0; o < C::n_out; o++) {
        QNN_UNROLL
        partial[o] = (long long)bias[o];
    }
    // invariant: after round r, partial[o] holds the bias plus every term k < (r + 1) * per_round
QNN_LABEL(rounds)
    for (unsigned r = 0; r < C::reuse_factor; r++) {
        QNN_PIPELINE(1)
    QNN_LABEL(lanes)
        for (unsigned m = 0; m < per_round; m++) {
            QNN_UNROLL
            const unsigned k = r * per_round + m;  // invariant: k = i * n_out + o
            if (k < total && weights[k] != 0) {
                const unsigned i = k / C::n_out, o = k % C::n_out;
                partial[o] += C::product::template term<typename C::accum_t>(x[i], typename C::weight_t((long long)weights[k]));
            }
        }
    }
QNN_LABEL(copy)
    for (unsigned o = 0; o < C::n_out; o++) {
        QNN_UNROLL
        acc[o] = partial[o];
    }
}

}  // namespace qnn

#endif
