// Joins of branches, channels last: Add (the Add op) and Concat (the Concat op).
//
//   add:    y[j] = a[j] << shift_a + b[j] << shift_b           (binary points aligned: exact)
//   concat: y[p] = (x0[p] << shift_0, x1[p] << shift_1, ...)  per position p, channels side by side
//
// Config C (add): n (channels per token), tokens, a_bits, a_signed, b_bits, b_signed,
// output_bits, output_signed, shift_a, shift_b.
// Config C (concat): tokens, c0..c3 (channels of each input; 0 for the inputs it does not have),
// shift0..shift3, output_bits, output_signed. Two to four inputs.
// io stream: one token of each input in, one out, per step (II = 1).
#ifndef QNN_JOIN_H
#define QNN_JOIN_H

#include "portability.h"
#include "stage.h"

namespace qnn {

template <class C> struct add {
    typedef int_t<C::a_bits, C::a_signed> a_t;
    typedef int_t<C::b_bits, C::b_signed> b_t;
    typedef int_t<C::output_bits, C::output_signed> output_t;
    typedef a_t input_t;
    static const unsigned in_size = C::n, out_size = C::n, tokens = C::tokens, steps = C::tokens, ii = 1;
    typedef no_state state;

    static void run(const a_t a[C::n], const b_t b[C::n], output_t y[C::n]) {
        QNN_INLINE
    QNN_LOOP_UNROLL
    QNN_LABEL(channels)
        for (unsigned j = 0; j < C::n; j++) {
            QNN_UNROLL
            y[j] = (output_t(a[j]) << C::shift_a) + (output_t(b[j]) << C::shift_b);
        }
    }

    static void array(const a_t a[C::tokens * C::n], const b_t b[C::tokens * C::n], output_t y[C::tokens * C::n]) {
        QNN_INLINE
    QNN_LOOP_UNROLL
        for (unsigned t = 0; t < C::tokens; t++) {
            QNN_UNROLL
            run(&a[t * C::n], &b[t * C::n], &y[t * C::n]);
        }
    }

    static void step(state &, stream<vec<a_t, C::n> > &a, stream<vec<b_t, C::n> > &b, stream<vec<output_t, C::n> > &out) {
        QNN_INLINE
        const vec<a_t, C::n> x = a.read();
        const vec<b_t, C::n> z = b.read();
        vec<output_t, C::n> y;
        run(x.data, z.data, y.data);
        out.write(y);
    }
};

template <class C> struct concat {
    typedef int_t<C::output_bits, C::output_signed> output_t;
    static const unsigned out_size = C::c0 + C::c1 + C::c2 + C::c3;
    static const unsigned tokens = C::tokens, steps = C::tokens, ii = 1;
    typedef no_state state;

    template <unsigned Offset, unsigned N, int Shift, class X>
    static void place(const X x[], output_t y[out_size]) {
        QNN_INLINE
    QNN_LOOP_UNROLL
        for (unsigned j = 0; j < N; j++) {
            QNN_UNROLL
            y[Offset + j] = output_t(x[j]) << Shift;
        }
    }

    // One output token from a token of each input: input i's channels from c0 + ... + c(i-1) on.
    // A concat of fewer than four inputs passes its last input again for the missing ones: their
    // c_i = 0, so nothing of them is read.
    template <class X0, class X1, class X2, class X3>
    static void token(const X0 x0[], const X1 x1[], const X2 x2[], const X3 x3[], output_t y[out_size]) {
        QNN_INLINE
        place<0, C::c0, C::shift0>(x0, y);
        place<C::c0, C::c1, C::shift1>(x1, y);
        place<C::c0 + C::c1, C::c2, C::shift2>(x2, y);
        place<C::c0 + C::c1 + C::c2, C::c3, C::shift3>(x3, y);
    }

    template <class X0, class X1, class X2, class X3>
    static void array(const X0 x0[], const X1 x1[], const X2 x2[], const X3 x3[], output_t y[]) {
        QNN_INLINE
    QNN_LOOP_UNROLL
        for (unsigned t = 0; t < C::tokens; t++) {
            QNN_UNROLL
            token(&x0[t * C::c0], &x1[t * C::c1], &x2[t * C::c2], &x3[t * C::c3], &y[t * out_size]);
        }
    }

    template <class X0, class X1, class X2>
    static void array(const X0 x0[], const X1 x1[], const X2 x2[], output_t y[]) {
        QNN_INLINE
        array(x0, x1, x2, x2, y);
    }

    template <class X0, class X1> static void array(const X0 x0[], const X1 x1[], output_t y[]) {
        QNN_INLINE
        array(x0, x1, x1, x1, y);
    }

    template <class X0, class X1, class X2, class X3>
    static void write_token(stream<vec<output_t, out_size> > &out, const X0 x0[], const X1 x1[], const X2 x2[],
                            const X3 x3[]) {
        QNN_INLINE
        vec<output_t, out_size> y;
        token(x0, x1, x2, x3, y.data);
        out.write(y);
    }

    template <class S0, class S1>
    static void step(state &, S0 &x0, S1 &x1, stream<vec<output_t, out_size> > &out) {
        QNN_INLINE
        const auto t0 = x0.read();
        const auto t1 = x1.read();
        write_token(out, t0.data, t1.data, t1.data, t1.data);
    }

    template <class S0, class S1, class S2>
    static void step(state &, S0 &x0, S1 &x1, S2 &x2, stream<vec<output_t, out_size> > &out) {
        QNN_INLINE
        const auto t0 = x0.read();
        const auto t1 = x1.read();
        const auto t2 = x2.read();
        write_token(out, t0.data, t1.data, t2.data, t2.data);
    }

    template <class S0, class S1, class S2, class S3>
    static void step(state &, S0 &x0, S1 &x1, S2 &x2, S3 &x3, stream<vec<output_t, out_size> > &out) {
        QNN_INLINE
        const auto t0 = x0.read();
        const auto t1 = x1.read();
        const auto t2 = x2.read();
        const auto t3 = x3.read();
        write_token(out, t0.data, t1.data, t2.data, t3.data);
    }
};

}  // namespace qnn

#endif
