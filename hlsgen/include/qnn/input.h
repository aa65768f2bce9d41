// The design's input (the InputQuant op): fixed-point values at the port -> integer codes.
//
// The float pre-ops and the quantizer of InputQuant happen before the design, where the
// data is produced; the port already carries q * lsb in q's fixed-point type, and this
// kernel takes its raw bits. Config C: n (values per token), tokens, output_bits,
// output_signed, port_t (the backend's ap_fixed / ac_fixed type of the port).
#ifndef QNN_INPUT_H
#define QNN_INPUT_H

#include "portability.h"
#include "stage.h"

namespace qnn {

template <class C> struct input_codes : map_kernel<input_codes<C> > {
    typedef typename C::port_t input_t;
    typedef int_t<C::output_bits, C::output_signed> output_t;
    static const unsigned in_size = C::n, out_size = C::n, tokens = C::tokens, steps = C::tokens, ii = 1;

    static void run(const input_t x[C::n], output_t y[C::n]) {
        QNN_INLINE
    QNN_LOOP_UNROLL
    QNN_LABEL(values)
        for (unsigned j = 0; j < C::n; j++) {
            QNN_UNROLL
            y[j] = to_code<output_t>(x[j]);
        }
    }
};

}  // namespace qnn

#endif
