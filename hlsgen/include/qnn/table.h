// Table lookup on integer codes (the Table op): activation functions between quantizers.
//
//   i = (min(max(x, offset), offset + (size << shift) - 1) - offset) >> shift;   y = table[row(j)][i]
//
// Config C: n (channels per token), tokens, size, rows (1: one row for all channels, else n),
// offset, shift, input_bits, input_signed, output_bits, output_signed, table_store_t.
// One ROM read per value; io stream: II = 1 per token.
#ifndef QNN_TABLE_H
#define QNN_TABLE_H

#include "portability.h"
#include "stage.h"

namespace qnn {

template <class C> struct table_lookup : elementwise<C, table_lookup<C> > {
    typedef elementwise<C, table_lookup<C> > base;
    typedef typename base::input_t input_t;
    typedef typename base::output_t output_t;
    // the index: one bit more than the input, so x - offset never overflows
    typedef int_t<C::input_bits + 2, true> wide_t;

    static void run(const input_t x[C::n], output_t y[C::n], const typename C::table_store_t table[]) {
        QNN_INLINE
    QNN_LOOP_UNROLL
    QNN_LABEL(channels)
        for (unsigned j = 0; j < C::n; j++) {
            QNN_UNROLL
            wide_t v = wide_t(x[j]);
            const long long first = C::offset, last = C::offset + ((long long)C::size << C::shift) - 1;
            if (v < wide_t(first)) v = wide_t(first);
            if (v > wide_t(last)) v = wide_t(last);
            const unsigned index = unsigned(((v - wide_t(first)) >> C::shift).to_int64());
            const unsigned row = C::rows == 1 ? 0 : j;
            y[j] = output_t((long long)table[row * C::size + index]);
        }
    }
};

}  // namespace qnn

#endif
