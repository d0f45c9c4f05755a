/* tile_driver.h: the ISA-neutral driver shapes of the matmul kernels, written once and
 * compiled into each ISA file with that file's flags.
 *
 * The column switches take the name of a function-like macro TILE that the caller defines
 * just before (and #undefs after); it is expanded once per width with the column count as
 * a literal, so the always-inlined tile behind it sees a compile-time constant: its loops
 * over columns unroll and its accumulators stay in registers, one copy per width.
 *   EM_COLS_1_8(n, TILE)          TILE(1) .. TILE(7) for n = 1..7, TILE(8) for any other n
 *   EM_COLS_1_8_ONLY(n, TILE)     TILE(1) .. TILE(8) for n = 1..8, nothing otherwise
 *   EM_COLS_1_4(n, TILE)          TILE(1) .. TILE(3) for n = 1..3, TILE(4) otherwise
 *   EM_COLS_1_8_R / EM_COLS_1_4_R (n, TILE, R): the same with a two-argument TILE(R, C),
 *                                 R rows by C columns
 *
 * EM_MM_WRAP(name, family, arg) defines the kernels.h matmul slot `name` as a call of the
 * file's inline driver `family` with a leading argument (the weight type, or a flag). */
#ifndef EMBER_TILE_DRIVER_H
#define EMBER_TILE_DRIVER_H
#include <stddef.h>
#include <stdint.h>

#define EM_COLS_1_8(n, TILE) \
    switch (n) {             \
    case 1: TILE(1); break;  \
    case 2: TILE(2); break;  \
    case 3: TILE(3); break;  \
    case 4: TILE(4); break;  \
    case 5: TILE(5); break;  \
    case 6: TILE(6); break;  \
    case 7: TILE(7); break;  \
    default: TILE(8); break; \
    }

#define EM_COLS_1_8_ONLY(n, TILE) \
    switch (n) {                  \
    case 1: TILE(1); break;       \
    case 2: TILE(2); break;       \
    case 3: TILE(3); break;       \
    case 4: TILE(4); break;       \
    case 5: TILE(5); break;       \
    case 6: TILE(6); break;       \
    case 7: TILE(7); break;       \
    case 8: TILE(8); break;       \
    default: break;               \
    }

#define EM_COLS_1_4(n, TILE) \
    switch (n) {             \
    case 1: TILE(1); break;  \
    case 2: TILE(2); break;  \
    case 3: TILE(3); break;  \
    default: TILE(4); break; \
    }

#define EM_COLS_1_8_R(n, TILE, R) \
    switch (n) {                  \
    case 1: TILE(R, 1); break;    \
    case 2: TILE(R, 2); break;    \
    case 3: TILE(R, 3); break;    \
    case 4: TILE(R, 4); break;    \
    case 5: TILE(R, 5); break;    \
    case 6: TILE(R, 6); break;    \
    case 7: TILE(R, 7); break;    \
    default: TILE(R, 8); break;   \
    }

#define EM_COLS_1_4_R(n, TILE, R) \
    switch (n) {                  \
    case 1: TILE(R, 1); break;    \
    case 2: TILE(R, 2); break;    \
    case 3: TILE(R, 3); break;    \
    default: TILE(R, 4); break;   \
    }

/* EM_DEFINE_MM_FP(name) defines the always-inlined float-weight driver name(type, n, w,
 * wrow, r0, r1, x, xcol, ncols, y, ldy) over the file's own
 * fp_tile(type, R, C, n, w, wrow, x, xcol, y, ldy), which must be defined before it is
 * expanded. Decode takes 4 rows side by side; wider calls go in groups of up to 4 columns
 * times 2 rows, so the group's activation columns stay in L1 while the rows stream past
 * (8 columns of a long f32 row would not fit). */
#define EM_FP_TILE_(R, C) fp_tile(type, R, C, n, wc + (size_t)r * wrow, wrow, xg, xcol, yg + r, ldy)
#define EM_DEFINE_MM_FP(name)                                                                           \
    static inline __attribute__((always_inline)) void name(const int type, int64_t n, const void *w,   \
                                                           size_t wrow, int r0, int r1, const void *x, \
                                                           size_t xcol, int ncols, float *y, int ldy) { \
        const char *wc = w, *xc = x;                                                                    \
        if (ncols == 1) {                                                                               \
            int r = r0;                                                                                 \
            for (; r + 4 <= r1; r += 4)                                                                 \
                fp_tile(type, 4, 1, n, wc + (size_t)r * wrow, wrow, xc, xcol, y + r, ldy);              \
            for (; r < r1; r++)                                                                         \
                fp_tile(type, 1, 1, n, wc + (size_t)r * wrow, wrow, xc, xcol, y + r, ldy);              \
            return;                                                                                     \
        }                                                                                               \
        for (int c0 = 0; c0 < ncols; c0 += 4) {                                                         \
            const int g = ncols - c0 < 4 ? ncols - c0 : 4;                                              \
            const char *xg = xc + (size_t)c0 * xcol;                                                    \
            float *yg = y + (size_t)c0 * ldy;                                                           \
            int r = r0;                                                                                 \
            for (; r + 2 <= r1; r += 2) {                                                               \
                EM_COLS_1_4_R(g, EM_FP_TILE_, 2);                                                       \
            }                                                                                           \
            for (; r < r1; r++) {                                                                       \
                EM_COLS_1_4_R(g, EM_FP_TILE_, 1);                                                       \
            }                                                                                           \
        }                                                                                               \
    }

#define EM_MM_WRAP(name, family, arg)                                                      \
    static void name(int64_t n, const void *w, size_t wrow, int r0, int r1, const void *x, \
                     size_t xcol, int ncols, float *y, int ldy) {                          \
        family(arg, n, w, wrow, r0, r1, x, xcol, ncols, y, ldy);                           \
    }

#endif
