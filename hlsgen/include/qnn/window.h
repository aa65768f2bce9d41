// The sliding window of an io-stream convolution or pooling: one pixel in per step.
//
// An image arrives row by row, one pixel (its C channels) per token. The window keeps
// ReachH x ReachW pixels (Reach = (kernel - 1) * dilation + 1) in registers and the
// ReachH - 1 rows above the current one in a line buffer, one memory word per column (all rows'
// pixels of a column side by side: one read and one write per step). Each step shifts the
// window one column left and loads the new column: the line buffer's pixels of this column
// and the new pixel; the line buffer's column moves up by one row.
//
// invariant (before a step at (h, w)): line[k][w'] holds pixel (h - ReachH + 1 + k, w') for
// w' >= w, and pixel (h - ReachH + 2 + k, w') for w' < w; win[r][ReachW - 1] is the pixel of
// row h - ReachH + 1 + r at column w - 1.
//
// push() returns true when the window holds the receptive field of an output pixel: at least
// ReachH rows and ReachW columns seen, on the stride's grid. Positions are counted, never
// divided, and every counter returns to 0 at the end of an image, so the next one starts clean.
//
// A window kernel K (conv, pool) computes an output pixel from a receptive field with
//     template <class Field> static void pixel(const Field &field, output_t y[out_size], constants...)
// where field(r, k, c) is channel c of the field's pixel (r, k): an image_field in io parallel,
// a window_field in io stream, where window_step<K> is one step of its stage.
#ifndef QNN_WINDOW_H
#define QNN_WINDOW_H

#include "portability.h"

namespace qnn {

template <class T, unsigned InH, unsigned InW, unsigned C, unsigned ReachH, unsigned ReachW, unsigned StrideH,
          unsigned StrideW>
struct sliding_window {
    typedef T value_type;
    static const unsigned lines = ReachH > 1 ? ReachH - 1 : 1;
    T line[lines][InW][C];
    T win[ReachH][ReachW][C];
    unsigned h, w, row_phase, col_phase;  // next pixel's position; its offsets on the stride grid

    sliding_window() : h(0), w(0), row_phase(0), col_phase(0) {}

    bool push(const T x[C]) {
        QNN_INLINE
        QNN_PARTITION(win)
        QNN_PARTITION_DIM(line, 1)
        QNN_PARTITION_DIM(line, 3)
    QNN_LOOP_UNROLL
    QNN_LABEL(shift)
        for (unsigned r = 0; r < ReachH; r++) {
            QNN_UNROLL
        QNN_LOOP_UNROLL
            for (unsigned k = 0; k + 1 < ReachW; k++) {
                QNN_UNROLL
            QNN_LOOP_UNROLL
                for (unsigned c = 0; c < C; c++) {
                    QNN_UNROLL
                    win[r][k][c] = win[r][k + 1][c];
                }
            }
        }
    QNN_LOOP_UNROLL
    QNN_LABEL(load)
        for (unsigned c = 0; c < C; c++) {
            QNN_UNROLL
        QNN_LOOP_UNROLL
            for (unsigned r = 0; r + 1 < ReachH; r++) {
                QNN_UNROLL
                win[r][ReachW - 1][c] = line[r][w][c];
                line[r][w][c] = (r + 2 < ReachH) ? line[r + 1][w][c] : x[c];
            }
            win[ReachH - 1][ReachW - 1][c] = x[c];
        }
        const bool ready = h + 1 >= ReachH && w + 1 >= ReachW && row_phase == 0 && col_phase == 0;
        if (w + 1 >= ReachW) col_phase = (col_phase + 1 == StrideW) ? 0 : col_phase + 1;
        if (w + 1 == InW) {
            w = 0;
            col_phase = 0;
            if (h + 1 >= ReachH) row_phase = (row_phase + 1 == StrideH) ? 0 : row_phase + 1;
            if (h + 1 == InH) {
                h = 0;
                row_phase = 0;
            } else {
                h = h + 1;
            }
        } else {
            w = w + 1;
        }
        return ready;
    }
};

// The receptive field of an output pixel in a whole image of width InW, C channels: its top left
// pixel is (top, left).
template <class T, unsigned InW, unsigned C> struct image_field {
    const T *x;
    unsigned top, left;
    T operator()(unsigned r, unsigned k, unsigned c) const { return x[((top + r) * InW + left + k) * C + c]; }
};

// The receptive field held by the sliding window.
template <class Window> struct window_field {
    const Window *window;
    typename Window::value_type operator()(unsigned r, unsigned k, unsigned c) const { return window->win[r][k][c]; }
};

// One step of a window kernel's stage: the next input pixel into K::window_t, and when that
// completes a receptive field, the output pixel K::pixel computes from it.
template <class K, class... Constants>
inline void window_step(typename K::window_t &window, stream<vec<typename K::input_t, K::in_size> > &in,
                        stream<vec<typename K::output_t, K::out_size> > &out, const Constants &... constants) {
    QNN_INLINE
    const vec<typename K::input_t, K::in_size> x = in.read();
    if (window.push(x.data)) {
        vec<typename K::output_t, K::out_size> y;
        window_field<typename K::window_t> field = {&window};
        K::pixel(field, y.data, constants...);
        out.write(y);
    }
}

}  // namespace qnn

#endif
