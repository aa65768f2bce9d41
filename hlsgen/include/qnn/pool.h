// Pooling on integer codes, channels last (the Pool op): the max or the sum of each window.
//
//   y[oh][ow][c] = max / sum over kh < kernel_h, kw < kernel_w of x[oh*sh + kh][ow*sw + kw][c]
//
// A sum's type holds kernel_h * kernel_w times the input's range (interval analysis), so it
// never wraps; an average pool's division is a Requant after it. No padding (a Pad in front).
// Config C: in_h, in_w, channels, out_h, out_w, kernel_h, kernel_w, stride_h, stride_w,
// maximum (true: max, false: sum), input_bits, input_signed, output_bits, output_signed.
// io parallel: unrolled; io stream: one input pixel per step at II = 1 (qnn::sliding_window).
#ifndef QNN_POOL_H
#define QNN_POOL_H

#include "portability.h"
#include "stage.h"
#include "window.h"

namespace qnn {

template <class C> struct pool {
    typedef int_t<C::input_bits, C::input_signed> input_t;
    typedef int_t<C::output_bits, C::output_signed> output_t;
    static const unsigned positions = C::out_h * C::out_w;
    static const unsigned in_size = C::channels, out_size = C::channels;
    static const unsigned tokens = positions, steps = C::in_h * C::in_w, ii = 1;
    typedef sliding_window<input_t, C::in_h, C::in_w, C::channels, C::kernel_h, C::kernel_w, C::stride_h, C::stride_w>
        window_t;
    typedef window_t state;

    template <class Field> static void pixel(const Field &field, output_t y[C::channels]) {
        QNN_INLINE
    QNN_LOOP_UNROLL
    QNN_LABEL(channels)
        for (unsigned c = 0; c < C::channels; c++) {
            QNN_UNROLL
            output_t result = field(0, 0, c);
        QNN_LOOP_UNROLL
            for (unsigned k = 1; k < C::kernel_h * C::kernel_w; k++) {
                QNN_UNROLL
                const input_t value = field(k / C::kernel_w, k % C::kernel_w, c);  // constants once unrolled
                if (C::maximum) {
                    if (output_t(value) > result) result = value;
                } else {
                    result += value;
                }
            }
            y[c] = result;
        }
    }

    static void array(const input_t x[C::in_h * C::in_w * C::channels], output_t y[positions * C::channels]) {
        QNN_INLINE
    QNN_LOOP_UNROLL
        for (unsigned oh = 0; oh < C::out_h; oh++) {
            QNN_UNROLL
        QNN_LOOP_UNROLL
            for (unsigned ow = 0; ow < C::out_w; ow++) {
                QNN_UNROLL
                image_field<input_t, C::in_w, C::channels> field = {x, oh * C::stride_h, ow * C::stride_w};
                pixel(field, &y[(oh * C::out_w + ow) * C::channels]);
            }
        }
    }

    static void step(state &window, stream<vec<input_t, C::channels> > &in, stream<vec<output_t, C::channels> > &out) {
        QNN_INLINE
        window_step<pool>(window, in, out);
    }
};

}  // namespace qnn

#endif
