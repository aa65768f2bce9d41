// The toy op's kernel (what would be hlsgen/include/qnn/negate.h): y = -x per value.
// Config C: n (values per token), tokens, input_bits, input_signed, output_bits, output_signed.
#ifndef QNN_NEGATE_H
#define QNN_NEGATE_H

#include "portability.h"
#include "stage.h"

namespace qnn {

template <class C> struct negate : map_kernel<negate<C> > {
    typedef int_t<C::input_bits, C::input_signed> input_t;
    typedef int_t<C::output_bits, C::output_signed> output_t;
    static const unsigned in_size = C::n, out_size = C::n, tokens = C::tokens, steps = C::tokens, ii = 1;

    static void run(const input_t x[C::n], output_t y[C::n]) {
        QNN_INLINE
    QNN_LOOP_UNROLL
        for (unsigned j = 0; j < C::n; j++) {
            QNN_UNROLL
            y[j] = output_t(-x[j]);
        }
    }
};

}  // namespace qnn

#endif
