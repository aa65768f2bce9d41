// The only backend-specific code of the kernel library: integer types, streams, pragmas.
//
// Select the backend with QNN_BACKEND_VITIS or QNN_BACKEND_CATAPULT (the generated
// firmware/qnn_backend.h does). Define QNN_PLAIN_CXX when compiling with a plain C++
// compiler (g++ for the C simulation): the HLS pragmas mean nothing there.
//
// The two tools want loop pragmas in different places, so every pipelined or unrolled loop
// carries both spellings; each expands to nothing on the other backend:
//
//     QNN_LOOP_PIPELINE(ii)              // Catapult: `#pragma hls_pipeline_init_interval ii`, before the loop
//     for (...) {
//         QNN_PIPELINE(ii)               // Vitis: `#pragma HLS PIPELINE II=ii`, first in the body
//
//     QNN_LOOP_UNROLL                    // Catapult: `#pragma hls_unroll yes`, before the loop
//     for (...) {
//         QNN_UNROLL                     // Vitis: `#pragma HLS UNROLL`, first in the body
//
// QNN_FUNCTION_PIPELINE(ii) pipelines a whole function body (Vitis); Catapult pipelines the
// loop that calls it. QNN_LIMIT_MULTIPLIERS(n) caps the multipliers of a function (Vitis
// ALLOCATION); Catapult shares operators by itself to meet the II of the enclosing loop.
// Code is C++14: both tools' front ends accept it.
#ifndef QNN_PORTABILITY_H
#define QNN_PORTABILITY_H

#if defined(QNN_BACKEND_VITIS)
#include <ap_fixed.h>
#include <ap_int.h>
#include <hls_stream.h>
#elif defined(QNN_BACKEND_CATAPULT)
#include <ac_channel.h>
#include <ac_fixed.h>
#include <ac_int.h>
#else
#error "define QNN_BACKEND_VITIS or QNN_BACKEND_CATAPULT (see firmware/qnn_backend.h)"
#endif

#define QNN_STRINGIFY(x) #x
#if defined(QNN_PLAIN_CXX)
#define QNN_PRAGMA(x)
#define QNN_LABEL(name)  // loop labels only name loops in the HLS tool's reports
#else
#define QNN_PRAGMA(x) _Pragma(QNN_STRINGIFY(x))
#define QNN_LABEL(name) name:
#endif

namespace qnn {

#if defined(QNN_BACKEND_VITIS)
template <int W, bool Signed> struct int_type { typedef ap_int<W> type; };
template <int W> struct int_type<W, false> { typedef ap_uint<W> type; };
template <class T> using stream = hls::stream<T>;

// The code (raw bits) of a fixed-point value, and back: no rounding, no scaling.
template <class Code, class Fixed> inline Code to_code(const Fixed &value) {
    Code code = 0;
    code.range(Fixed::width - 1, 0) = value.range(Fixed::width - 1, 0);
    return code;
}
template <class Fixed, class Code> inline Fixed from_code(const Code &code) {
    Fixed value = 0;
    value.range(Fixed::width - 1, 0) = code.range(Fixed::width - 1, 0);
    return value;
}

#define QNN_LOOP_PIPELINE(ii)
#define QNN_PIPELINE(ii) QNN_PRAGMA(HLS PIPELINE II = ii)
#define QNN_FUNCTION_PIPELINE(ii) QNN_PRAGMA(HLS PIPELINE II = ii)
#define QNN_LOOP_UNROLL
#define QNN_UNROLL QNN_PRAGMA(HLS UNROLL)
#define QNN_INLINE QNN_PRAGMA(HLS INLINE)
#define QNN_LIMIT_MULTIPLIERS(n) QNN_PRAGMA(HLS ALLOCATION operation instances = mul limit = n)
#define QNN_PARTITION(var) QNN_PRAGMA(HLS ARRAY_PARTITION variable = var complete)
#define QNN_PARTITION_DIM(var, d) QNN_PRAGMA(HLS ARRAY_PARTITION variable = var complete dim = d)
#define QNN_WEIGHTS_IN_REGISTERS(var) QNN_PRAGMA(HLS ARRAY_PARTITION variable = var complete)
// A ROM of words of `per_word` weights: one word per cycle feeds `per_word` multipliers, so R
// reads (R = the layer's reuse factor) deliver all its weights and the layer keeps II = R.
#define QNN_WEIGHTS_IN_ROM(var, per_word) \
    QNN_PRAGMA(HLS BIND_STORAGE variable = var type = rom_1p impl = bram) \
    QNN_PRAGMA(HLS ARRAY_RESHAPE variable = var cyclic factor = per_word)
#define QNN_DATAFLOW QNN_PRAGMA(HLS DATAFLOW)
#define QNN_STREAM_DEPTH(var, n) QNN_PRAGMA(HLS STREAM variable = var depth = n)
#define QNN_BLOCK
#define QNN_TOP
#define QNN_CHANNEL_STORAGE

#else  // Catapult

template <int W, bool Signed> struct int_type { typedef ac_int<W, Signed> type; };
template <class T> using stream = ac_channel<T>;

template <class Code, class Fixed> inline Code to_code(const Fixed &value) {
    Code code = 0;
    code.set_slc(0, value.template slc<Fixed::width>(0));
    return code;
}
template <class Fixed, class Code> inline Fixed from_code(const Code &code) {
    Fixed value = 0;
    value.set_slc(0, code.template slc<Fixed::width>(0));
    return value;
}

#define QNN_LOOP_PIPELINE(ii) QNN_PRAGMA(hls_pipeline_init_interval ii)
#define QNN_PIPELINE(ii)
#define QNN_FUNCTION_PIPELINE(ii)
#define QNN_LOOP_UNROLL QNN_PRAGMA(hls_unroll yes)
#define QNN_UNROLL
#define QNN_INLINE
#define QNN_LIMIT_MULTIPLIERS(n)
#define QNN_PARTITION(var)
#define QNN_PARTITION_DIM(var, d)
#define QNN_WEIGHTS_IN_REGISTERS(var)
#define QNN_WEIGHTS_IN_ROM(var, per_word)  // Catapult: constant arrays above its memory-map threshold become ROMs
#define QNN_DATAFLOW
#define QNN_STREAM_DEPTH(var, n)
#define QNN_BLOCK QNN_PRAGMA(hls_design)
#define QNN_TOP QNN_PRAGMA(hls_design top)
#define QNN_CHANNEL_STORAGE static  // Catapult keeps channels between blocks of the hierarchy static
#endif

// int_t<W, Signed>: the integer code type of W bits (ap_int/ap_uint or ac_int).
template <int W, bool Signed> using int_t = typename int_type<W, Signed>::type;

// A token of an io-stream design: the values of one position (a whole vector for (F,)
// edges, one pixel's channels for (H, W, C) edges).
template <class T, unsigned N> struct vec {
    T data[N];
};

// Compile-time helpers for the widths the kernels derive.
constexpr int max_of(int a, int b) { return a > b ? a : b; }
constexpr int ceil_log2(unsigned long long n) { return n <= 1 ? 0 : 1 + ceil_log2((n + 1) / 2); }
constexpr unsigned ceil_div(unsigned long long a, unsigned long long b) { return unsigned((a + b - 1) / b); }

}  // namespace qnn

#endif
