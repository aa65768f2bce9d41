// Nearest-neighbour upsampling (the Upsample op), channels last.
//
//   y[h][w][c] = x[h / scale_h][w / scale_w][c]
//
// io parallel: wiring (qnn::gather_image). io stream: one output pixel per step; a new input
// pixel is read at the first of its scale_w copies in the first of its scale_h rows and kept in
// a row buffer for the other copies (positions counted, no division). Config C: in_h, in_w,
// channels, scale_h, scale_w, input_bits, input_signed.
#ifndef QNN_UPSAMPLE_H
#define QNN_UPSAMPLE_H

#include "portability.h"
#include "stage.h"

namespace qnn {

template <class C> struct upsample {
    typedef int_t<C::input_bits, C::input_signed> input_t;
    typedef input_t output_t;
    static const unsigned out_h = C::in_h * C::scale_h, out_w = C::in_w * C::scale_w;
    static const unsigned in_size = C::channels, out_size = C::channels;
    static const unsigned tokens = out_h * out_w, steps = out_h * out_w, ii = 1;

    struct state {
        vec<input_t, C::channels> row[C::in_w];
        unsigned column, copy_w, copy_h;  // input column; which copy of it, of its row
        state() : column(0), copy_w(0), copy_h(0) {}
    };

    static output_t source(const input_t x[], unsigned h, unsigned w, unsigned c) {
        QNN_INLINE
        return x[((h / C::scale_h) * C::in_w + w / C::scale_w) * C::channels + c];
    }

    static void array(const input_t x[C::in_h * C::in_w * C::channels], output_t y[out_h * out_w * C::channels]) {
        QNN_INLINE
        gather_image<upsample>(x, y);
    }

    static void step(state &s, stream<vec<input_t, C::channels> > &in, stream<vec<output_t, C::channels> > &out) {
        QNN_INLINE
        if (s.copy_h == 0 && s.copy_w == 0) s.row[s.column] = in.read();
        out.write(s.row[s.column]);
        if (s.copy_w + 1 < C::scale_w) {
            s.copy_w = s.copy_w + 1;
        } else {
            s.copy_w = 0;
            if (s.column + 1 < C::in_w) {
                s.column = s.column + 1;
            } else {
                s.column = 0;
                s.copy_h = (s.copy_h + 1 == C::scale_h) ? 0 : s.copy_h + 1;
            }
        }
    }
};

}  // namespace qnn

#endif
