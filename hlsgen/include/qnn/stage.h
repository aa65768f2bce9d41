// The generic ways a kernel becomes part of a design, written once for every kernel.
//
// A map kernel K computes one output token from one input token:
//     K::input_t, K::output_t          element types of the tokens
//     K::in_size, K::out_size          elements per token
//     K::tokens                        tokens per sample (1 for a vector; H*W for an image)
//     K::ii                            initiation interval K asks for, cycles per token
//     static void run(const input_t x[in_size], output_t y[out_size], constants...)
//
// map_array runs it over a whole sample held in arrays (io parallel); map_token handles one
// token of a stream (io stream).
#ifndef QNN_STAGE_H
#define QNN_STAGE_H

#include "portability.h"

namespace qnn {

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

// One token of an io-stream stage: read it, compute, write. The generated firmware wraps it
// in each layer's stage function, a loop over K::tokens pipelined at the layer's II (the II
// is written there as a literal: Catapult's pipeline pragma takes no expressions).
template <class K, class... Constants>
inline void map_token(stream<vec<typename K::input_t, K::in_size> > &in,
                      stream<vec<typename K::output_t, K::out_size> > &out, const Constants &... constants) {
    vec<typename K::input_t, K::in_size> x = in.read();
    vec<typename K::output_t, K::out_size> y;
    K::run(x.data, y.data, constants...);
    out.write(y);
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
