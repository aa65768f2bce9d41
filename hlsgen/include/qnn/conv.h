// Convolution on integer codes, channels last (the Conv op): 1-D convolutions are images of one row.
//
//   acc[oh][ow][o] = bias[o] + sum_{kh, kw, c} x[oh*sh + kh*dh][ow*sw + kw*dw][g*Cg + c] * w[kh][kw][c][o]
//
// with g = o / (O / groups), Cg = C / groups; no padding (a Pad in front does it).
// Config C: in_h, in_w, channels, out_h, out_w, out_channels, kernel_h, kernel_w, stride_h,
// stride_w, dilation_h, dilation_w, groups; reuse_factor R, parallelization P (io parallel:
// output positions computed at once, P = out_h * out_w for all), nonzero_weights;
// input_bits, input_signed, input_bipolar; weight_bits, weight_signed, weight_bipolar;
// accum_bits, accum_signed (sized by interval analysis); weight_store_t, bias_store_t.
// Weights are stored [kh][kw][c][o], row-major.
//
// io parallel: every loop unrolled with constant indices; the function is pipelined at
// II = R * ceil(positions / P) and its multipliers capped at ceil(nonzero * P / R).
// io stream: one input pixel per step at II = R; after each pixel that completes a window
// (qnn::sliding_window) one output pixel, every output channel's sum unrolled, multipliers
// capped at ceil(nonzero / R).
#ifndef QNN_CONV_H
#define QNN_CONV_H

#include "dense.h"
#include "portability.h"
#include "stage.h"
#include "window.h"

namespace qnn {

template <class C> struct conv {
    typedef int_t<C::input_bits, C::input_signed> input_t;
    typedef int_t<C::weight_bits, C::weight_signed> weight_t;
    typedef int_t<C::accum_bits, C::accum_signed> output_t;
    typedef typename product_policy<C::input_bipolar, C::weight_bipolar>::type product;
    static const unsigned reach_h = (C::kernel_h - 1) * C::dilation_h + 1, reach_w = (C::kernel_w - 1) * C::dilation_w + 1;
    static const unsigned group_in = C::channels / C::groups, group_out = C::out_channels / C::groups;
    static const unsigned positions = C::out_h * C::out_w;
    static const unsigned in_size = C::channels, out_size = C::out_channels;
    static const unsigned tokens = positions, steps = C::in_h * C::in_w, ii = C::reuse_factor;
    static const unsigned parallel = C::parallelization ? C::parallelization : positions;
    static const unsigned rounds = ceil_div(positions, parallel);
    static const unsigned parallel_ii = C::reuse_factor * rounds;
    static const unsigned parallel_multiplier_limit = ceil_div((unsigned long long)C::nonzero_weights * parallel,
                                                               C::reuse_factor);
    static const unsigned stream_multiplier_limit = ceil_div(C::nonzero_weights, C::reuse_factor);
    static_assert(C::channels % C::groups == 0 && C::out_channels % C::groups == 0, "groups divide the channels");
    static_assert(C::accum_bits >= 1 && C::accum_bits <= 64, "accumulators are sized to 1..64 bits");
    typedef sliding_window<input_t, C::in_h, C::in_w, C::channels, reach_h, reach_w, C::stride_h, C::stride_w> window_t;
    typedef window_t state;

    // One output pixel from its receptive field: pixel (r, k) of the field at field(r, k, c).
    template <class Field>
    static void pixel(const Field &field, output_t acc[C::out_channels], const typename C::weight_store_t weights[],
                      const typename C::bias_store_t bias[]) {
        QNN_INLINE
    QNN_LOOP_UNROLL
    QNN_LABEL(outputs)
        for (unsigned o = 0; o < C::out_channels; o++) {
            QNN_UNROLL
            const unsigned g = o / group_out;  // constant once unrolled
            output_t sum = (long long)bias[o];
            // invariant: sum = bias[o] + the terms of the kernel positions and channels before
        QNN_LOOP_UNROLL
            for (unsigned kh = 0; kh < C::kernel_h; kh++) {
                QNN_UNROLL
            QNN_LOOP_UNROLL
                for (unsigned kw = 0; kw < C::kernel_w; kw++) {
                    QNN_UNROLL
                QNN_LOOP_UNROLL
                    for (unsigned c = 0; c < group_in; c++) {
                        QNN_UNROLL
                        const long long w = weights[((kh * C::kernel_w + kw) * group_in + c) * C::out_channels + o];
                        if (w != 0) {
                            sum += product::template term<output_t>(
                                field(kh * C::dilation_h, kw * C::dilation_w, g * group_in + c), weight_t(w));
                        }
                    }
                }
            }
            acc[o] = sum;
        }
    }

    static void array(const input_t x[C::in_h * C::in_w * C::channels], output_t acc[positions * C::out_channels],
                      const typename C::weight_store_t weights[], const typename C::bias_store_t bias[]) {
        QNN_FUNCTION_PIPELINE(parallel_ii)
        QNN_LIMIT_MULTIPLIERS(parallel_multiplier_limit)
    QNN_LOOP_UNROLL
    QNN_LABEL(rows)
        for (unsigned oh = 0; oh < C::out_h; oh++) {
            QNN_UNROLL
        QNN_LOOP_UNROLL
        QNN_LABEL(columns)
            for (unsigned ow = 0; ow < C::out_w; ow++) {
                QNN_UNROLL
                image_field<input_t, C::in_w, C::channels> field = {x, oh * C::stride_h, ow * C::stride_w};
                pixel(field, &acc[(oh * C::out_w + ow) * C::out_channels], weights, bias);
            }
        }
    }

    static void step(state &window, stream<vec<input_t, C::channels> > &in, stream<vec<output_t, C::out_channels> > &out,
                     const typename C::weight_store_t weights[], const typename C::bias_store_t bias[]) {
        QNN_INLINE
        QNN_LIMIT_MULTIPLIERS(stream_multiplier_limit)
        window_step<conv>(window, in, out, weights, bias);
    }
};

}  // namespace qnn

#endif
