// Padding on integer codes, channels last (the Pad op): a border of `value` around the image.
//
// Config C: in_h, in_w, channels, top, left, bottom, right, value, input_bits, input_signed.
// io parallel: wiring (qnn::gather_image).
// io stream: one output pixel per step (in_h + top + bottom) * (in_w + left + right) steps;
// inside the border it reads the next input pixel, on it writes `value`. Positions are counted.
#ifndef QNN_PAD_H
#define QNN_PAD_H

#include "portability.h"
#include "stage.h"

namespace qnn {

template <class C> struct pad {
    typedef int_t<C::input_bits, C::input_signed> input_t;
    typedef input_t output_t;
    static const unsigned out_h = C::in_h + C::top + C::bottom, out_w = C::in_w + C::left + C::right;
    static const unsigned in_size = C::channels, out_size = C::channels;
    static const unsigned tokens = out_h * out_w, steps = out_h * out_w, ii = 1;

    struct state {
        unsigned h, w;
        state() : h(0), w(0) {}
    };

    static bool inside(unsigned h, unsigned w) {  // (h, w) of the output is inside the border
        QNN_INLINE
        return h >= C::top && h < C::top + C::in_h && w >= C::left && w < C::left + C::in_w;
    }

    static output_t source(const input_t x[], unsigned h, unsigned w, unsigned c) {
        QNN_INLINE
        return inside(h, w) ? x[((h - C::top) * C::in_w + (w - C::left)) * C::channels + c] : output_t(C::value);
    }

    static void array(const input_t x[C::in_h * C::in_w * C::channels], output_t y[out_h * out_w * C::channels]) {
        QNN_INLINE
        gather_image<pad>(x, y);
    }

    static void step(state &position, stream<vec<input_t, C::channels> > &in, stream<vec<output_t, C::channels> > &out) {
        QNN_INLINE
        vec<output_t, C::channels> y;
        if (inside(position.h, position.w)) {
            y = in.read();
        } else {
        QNN_LOOP_UNROLL
            for (unsigned c = 0; c < C::channels; c++) {
                QNN_UNROLL
                y.data[c] = output_t(C::value);
            }
        }
        out.write(y);
        if (position.w + 1 == out_w) {
            position.w = 0;
            position.h = (position.h + 1 == out_h) ? 0 : position.h + 1;
        } else {
            position.w = position.w + 1;
        }
    }
};

}  // namespace qnn

#endif
