// How a kernel becomes part of a design, written once for every kernel.
//
// Every kernel K (a struct templated on its config) offers two entry points:
//     K::array(inputs..., output, constants...)          io parallel: a whole sample in arrays
//     K::step(state, input streams..., output stream, constants...)
//                                                        io stream: one iteration of its stage
// and K::steps, the iterations of its stage per sample, and K::state, what the stage keeps
// between iterations (line buffers, counters; empty for most kernels). The generated firmware
// wraps step in a loop of K::steps iterations pipelined at the layer's II, one stage per layer.
//
// A map kernel computes one output token from one input token, the same way for each of
// K::tokens tokens (a vector is one token, an image one token per pixel); it provides
//     K::input_t, K::output_t, K::in_size, K::out_size, K::tokens, K::ii and
//     static void run(const input_t x[in_size], output_t y[out_size], constants...)
// and inherits array and step from map_kernel<K>; elementwise<C, K> adds the types and sizes of
// a map over the C::n values of each of C::tokens tokens.
//
// An image kernel that only moves codes (pad, upsample) builds its io-parallel output with
// gather_image<K>: output value (h, w, c) is K::source(x, h, w, c).
#ifndef QNN_STAGE_H
#define QNN_STAGE_H

#include "portability.h"

namespace qnn {

struct no_state {};

template <class K, class... Constants>
void map_array(const typename K::input_t x[K::tokens * K::in_size], typename K::output_t y[K::tokens * K::out_size],
               const Constants &... constants) {
    QNN_INLINE
QNN_LOOP_UNROLL
QNN_LABEL(tokens)
    for (unsigned t = 0; t < K::tokens; t++) {
        QNN_UNROLL
        K::run(&x[t * K::in_size], &y[t * K::out_size], constants...);
    }
}

template <class K, class... Constants>
inline void map_token(stream<vec<typename K::input_t, K::in_size> > &in,
                      stream<vec<typename K::output_t, K::out_size> > &out, const Constants &... constants) {
    vec<typename K::input_t, K::in_size> x = in.read();
    vec<typename K::output_t, K::out_size> y;
    K::run(x.data, y.data, constants...);
    out.write(y);
}

template <class K> struct map_kernel {
    typedef no_state state;

    template <class X, class Y, class... Constants>
    static void array(const X x[], Y y[], const Constants &... constants) {
        QNN_INLINE
        map_array<K>(x, y, constants...);
    }

    template <class In, class Out, class... Constants>
    static void step(state &, In &in, Out &out, const Constants &... constants) {
        QNN_INLINE
        map_token<K>(in, out, constants...);
    }
};

// A map kernel on the n values of each token, one token per step at II = 1 (config: n, tokens,
// input_bits, input_signed, output_bits, output_signed).
template <class C, class K> struct elementwise : map_kernel<K> {
    typedef int_t<C::input_bits, C::input_signed> input_t;
    typedef int_t<C::output_bits, C::output_signed> output_t;
    static const unsigned in_size = C::n, out_size = C::n, tokens = C::tokens, steps = C::tokens, ii = 1;
};

// io parallel of an image kernel that only moves codes: every output value is one input value or
// a constant, K::source(x, h, w, c) (indices constant once unrolled: wiring).
template <class K>
void gather_image(const typename K::input_t x[], typename K::output_t y[K::out_h * K::out_w * K::out_size]) {
    QNN_INLINE
QNN_LOOP_UNROLL
    for (unsigned h = 0; h < K::out_h; h++) {
        QNN_UNROLL
    QNN_LOOP_UNROLL
        for (unsigned w = 0; w < K::out_w; w++) {
            QNN_UNROLL
        QNN_LOOP_UNROLL
            for (unsigned c = 0; c < K::out_size; c++) {
                QNN_UNROLL
                y[(h * K::out_w + w) * K::out_size + c] = K::source(x, h, w, c);
            }
        }
    }
}

// Fan-out in io stream: every token of `in` goes to both outputs (a stream has one reader).
QNN_BLOCK
template <class Token, unsigned Tokens>
void clone_stage(stream<Token> &in, stream<Token> &first, stream<Token> &second) {
QNN_LOOP_PIPELINE(1)
QNN_LABEL(tokens)
    for (unsigned t = 0; t < Tokens; t++) {
        QNN_PIPELINE(1)
        Token token = in.read();
        first.write(token);
        second.write(token);
    }
}

// The design's output: integer codes -> the fixed-point values of the result port.
template <unsigned N, class Code, class Fixed> void codes_to_fixed(const Code in[N], Fixed out[N]) {
    QNN_INLINE
QNN_LOOP_UNROLL
    for (unsigned j = 0; j < N; j++) {
        QNN_UNROLL
        out[j] = from_code<Fixed>(in[j]);
    }
}

QNN_BLOCK
template <unsigned N, unsigned Tokens, class Code, class Fixed>
void codes_to_fixed_stage(stream<vec<Code, N> > &in, stream<vec<Fixed, N> > &out) {
QNN_LOOP_PIPELINE(1)
QNN_LABEL(tokens)
    for (unsigned t = 0; t < Tokens; t++) {
        QNN_PIPELINE(1)
        vec<Code, N> x = in.read();
        vec<Fixed, N> y;
        codes_to_fixed<N>(x.data, y.data);
        out.write(y);
    }
}

}  // namespace qnn

#endif
