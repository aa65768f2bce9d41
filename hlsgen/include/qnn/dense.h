// Dense layer on integer codes: acc[o] = bias[o] + sum_i x[i] * w[i][o], exactly (the Dense op).
//
// Config C (static members the generator writes):
//   n_in, n_out            layer shape; weights are row-major: w[i * n_out + o]
//   reuse_factor           R: each multiplier serves R products, the layer takes a new input
//                          every R cycles (II = R). Any R from 1 to n_in * n_out.
//   nonzero_weights        products that need a multiplier (zero weights are skipped)
//   input_bits, input_signed, input_bipolar     the input edge's codes
//   weight_bits, weight_signed, weight_bipolar  the weight constant's codes
//   accum_bits, accum_signed                    the output edge's codes (sized by interval
//                                               analysis: the sum never leaves its range)
//   weight_store_t, bias_store_t                plain C integer types of the constant arrays
//                                               (they compile instantly)
//
// Every loop is unrolled with constant indices, so with constant weights the tool sees
// n_in * n_out multiplications by constants (zero ones vanish); the function is pipelined
// at II = R and QNN_LIMIT_MULTIPLIERS caps the multipliers at ceil(nonzero / R), which makes
// the scheduler share each one over the R cycles. Partial sums start at the bias and each
// term's range contains 0, so every partial sum stays inside the final sum's range.
#ifndef QNN_DENSE_H
#define QNN_DENSE_H

#include "portability.h"
#include "stage.h"

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

template <bool InputBipolar, bool WeightBipolar> struct product_policy { typedef multiply type; };
template <bool InputBipolar> struct product_policy<InputBipolar, true> { typedef sign_select type; };
template <> struct product_policy<true, true> { typedef xnor type; };

template <class C> struct dense : map_kernel<dense<C> > {
    typedef int_t<C::input_bits, C::input_signed> input_t;
    typedef int_t<C::weight_bits, C::weight_signed> weight_t;
    typedef int_t<C::accum_bits, C::accum_signed> output_t;
    typedef typename product_policy<C::input_bipolar, C::weight_bipolar>::type product;
    static const unsigned in_size = C::n_in, out_size = C::n_out, tokens = 1, steps = 1, ii = C::reuse_factor;
    static const unsigned multiplier_limit = ceil_div(C::nonzero_weights, C::reuse_factor);
    static_assert(C::reuse_factor >= 1 && C::reuse_factor <= C::n_in * C::n_out,
                  "the reuse factor is between 1 and the layer's number of products");
    static_assert(C::accum_bits >= 1 && C::accum_bits <= 64, "accumulators are sized to 1..64 bits");

    static void run(const input_t x[C::n_in], output_t acc[C::n_out], const typename C::weight_store_t weights[],
                    const typename C::bias_store_t bias[]) {
        QNN_FUNCTION_PIPELINE(C::reuse_factor)
        QNN_LIMIT_MULTIPLIERS(multiplier_limit)
    QNN_LOOP_UNROLL
    QNN_LABEL(outputs)
        for (unsigned o = 0; o < C::n_out; o++) {
            QNN_UNROLL
            output_t sum = (long long)bias[o];
            // invariant: sum = bias[o] + the terms of the inputs before i
        QNN_LOOP_UNROLL
        QNN_LABEL(inputs)
            for (unsigned i = 0; i < C::n_in; i++) {
                QNN_UNROLL
                const long long w = weights[i * C::n_out + o];
                if (w != 0) sum += product::template term<output_t>(x[i], weight_t(w));
            }
            acc[o] = sum;
        }
    }
};

}  // namespace qnn

#endif
