// Moving vectors in and out of a design: interface fixed-point values <-> integer codes,
// and the io-stream stages (one token = one whole layer vector per sample).
#ifndef QNN_IO_H
#define QNN_IO_H

#include "dense.h"
#include "portability.h"
#include "requant.h"
#include "softmax.h"

namespace qnn {

template <unsigned N, class Fixed, class Code> void fixed_to_codes(const Fixed in[N], Code out[N]) {
    QNN_INLINE
    for (unsigned j = 0; j < N; j++) {
        QNN_UNROLL
        out[j] = to_code<Code>(in[j]);
    }
}

template <unsigned N, class Code, class Fixed> void codes_to_fixed(const Code in[N], Fixed out[N]) {
    QNN_INLINE
    for (unsigned j = 0; j < N; j++) {
        QNN_UNROLL
        out[j] = from_code<Fixed>(in[j]);
    }
}

// ---- io stream: each stage reads one vector, computes, writes one vector ---------

QNN_BLOCK
template <unsigned N, class Fixed, class Code>
void fixed_to_codes_stage(stream<vec<Fixed, N> > &in, stream<vec<Code, N> > &out) {
    vec<Fixed, N> x = stream_read(in);
    vec<Code, N> y;
    fixed_to_codes<N>(x.data, y.data);
    stream_write(out, y);
}

QNN_BLOCK
template <unsigned N, class Code, class Fixed>
void codes_to_fixed_stage(stream<vec<Code, N> > &in, stream<vec<Fixed, N> > &out) {
    vec<Code, N> x = stream_read(in);
    vec<Fixed, N> y;
    codes_to_fixed<N>(x.data, y.data);
    stream_write(out, y);
}

QNN_BLOCK
template <class C>
void dense_stage(stream<vec<typename C::input_t, C::n_in> > &in, stream<vec<typename C::accum_t, C::n_out> > &out,
                 const typename C::weight_store_t weights[C::n_in * C::n_out],
                 const typename C::bias_store_t bias[C::n_out]) {
    vec<typename C::input_t, C::n_in> x = stream_read(in);
    vec<typename C::accum_t, C::n_out> y;
    dense<C>(x.data, y.data, weights, bias);
    stream_write(out, y);
}

QNN_BLOCK
template <class C>
void requant_shift_stage(stream<vec<typename C::input_t, C::n> > &in, stream<vec<typename C::output_t, C::n> > &out,
                         const int shift[C::n]) {
    vec<typename C::input_t, C::n> x = stream_read(in);
    vec<typename C::output_t, C::n> y;
    requant_shift<C>(x.data, y.data, shift);
    stream_write(out, y);
}

QNN_BLOCK
template <class C>
void requant_multiply_shift_stage(stream<vec<typename C::input_t, C::n> > &in,
                                  stream<vec<typename C::output_t, C::n> > &out, const int shift[C::n],
                                  const typename C::multiplier_store_t multiplier[C::n],
                                  const typename C::offset_store_t offset[C::n]) {
    vec<typename C::input_t, C::n> x = stream_read(in);
    vec<typename C::output_t, C::n> y;
    requant_multiply_shift<C>(x.data, y.data, shift, multiplier, offset);
    stream_write(out, y);
}

QNN_BLOCK
template <class C>
void requant_thresholds_stage(stream<vec<typename C::input_t, C::n> > &in,
                              stream<vec<typename C::output_t, C::n> > &out,
                              const typename C::threshold_store_t thresholds[C::n * C::levels]) {
    vec<typename C::input_t, C::n> x = stream_read(in);
    vec<typename C::output_t, C::n> y;
    requant_thresholds<C>(x.data, y.data, thresholds);
    stream_write(out, y);
}

QNN_BLOCK
template <class C>
void softmax_table_stage(stream<vec<typename C::input_t, C::n> > &in, stream<vec<typename C::output_t, C::n> > &out,
                         const typename C::exp_store_t exp_table[C::table_size]) {
    vec<typename C::input_t, C::n> x = stream_read(in);
    vec<typename C::output_t, C::n> y;
    softmax_table<C>(x.data, y.data, exp_table);
    stream_write(out, y);
}

}  // namespace qnn

#endif
