// Flatten (the Flatten op): channels-last tokens -> one vector in PyTorch's order (channels first).
//
//   y[c * P + p] = x[p][c]          P = positions (pixels), p = h * W + w
//
// io parallel: wiring. io stream: one input pixel per step; the vector is written after the
// last pixel of the image (the position is counted). Config C: positions, channels,
// input_bits, input_signed.
#ifndef QNN_FLATTEN_H
#define QNN_FLATTEN_H

#include "portability.h"
#include "stage.h"

namespace qnn {

template <class C> struct flatten {
    typedef int_t<C::input_bits, C::input_signed> input_t;
    typedef input_t output_t;
    static const unsigned in_size = C::channels, out_size = C::positions * C::channels;
    static const unsigned tokens = 1, steps = C::positions, ii = 1;

    struct state {
        output_t vector[C::positions * C::channels];
        unsigned position;
        state() : position(0) {}
    };

    static void array(const input_t x[C::positions * C::channels], output_t y[C::positions * C::channels]) {
        QNN_INLINE
    QNN_LOOP_UNROLL
        for (unsigned p = 0; p < C::positions; p++) {
            QNN_UNROLL
        QNN_LOOP_UNROLL
            for (unsigned c = 0; c < C::channels; c++) {
                QNN_UNROLL
                y[c * C::positions + p] = x[p * C::channels + c];
            }
        }
    }

    static void step(state &s, stream<vec<input_t, C::channels> > &in, stream<vec<output_t, out_size> > &out) {
        QNN_INLINE
        QNN_PARTITION(s.vector)
        const vec<input_t, C::channels> x = in.read();
    QNN_LOOP_UNROLL
        for (unsigned c = 0; c < C::channels; c++) {
            QNN_UNROLL
            s.vector[c * C::positions + s.position] = x.data[c];
        }
        if (s.position + 1 == C::positions) {
            vec<output_t, out_size> y;
        QNN_LOOP_UNROLL
            for (unsigned j = 0; j < out_size; j++) {
                QNN_UNROLL
                y.data[j] = s.vector[j];
            }
            out.write(y);
            s.position = 0;
        } else {
            s.position = s.position + 1;
        }
    }
};

}  // namespace qnn

#endif
