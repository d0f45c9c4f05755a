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

#define EM_MM_WRAP(name, family, arg)                                                      \
    static void name(int64_t n, const void *w, size_t wrow, int r0, int r1, const void *x, \
                     size_t xcol, int ncols, float *y, int ldy) {                          \
        family(arg, n, w, wrow, r0, r1, x, xcol, ncols, y, ldy);                           \
    }

#endif
