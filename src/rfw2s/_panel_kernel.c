/* The CPU's symmetric product over one stored upper panel of a kernel, both of its products
 * in one pass (rfw2s.curves.dense_matvec calls it through ctypes, which releases the GIL, so
 * the product's workers run it in parallel; it needs no Python headers).
 *
 * A panel is G[r0:r0+rows, r0:r0+width] of a symmetric G, row-major with row stride ld: its
 * first `rows` columns are the diagonal block, stored whole; the rest lies above the
 * diagonal. For X and Y (M x p, row-major, p a multiple of GROUP) it adds
 *     Y[r0 + i] += sum_c panel[i][c] X[r0 + c]                  (every column)
 *     Y[r0 + c] += sum_i panel[i][c] X[r0 + i]                  (columns c >= rows only)
 * so each stored element is read from memory once and used for both of its products. BLAS
 * cannot: its two products are two calls, each packing the panel (OpenBLAS, 16 vectors: 1.7x
 * one streaming pass over the panels; this kernel: about 1x, bench/benchmark.py --symmetric).
 *
 * Register tile: STRIP rows of the panel against GROUP columns of X. The STRIP x GROUP row
 * sums and the strip's rows of X stay in registers while the strip walks its columns, each
 * column's X and Y rows touched once; the strip (STRIP x chunk elements) stays in L1 while
 * the GROUP-wide column groups of X take their turns. */
#include <stddef.h>

#define STRIP 4
#define GROUP 8

/* Compiled for AVX-512, AVX2 and baseline x86-64, the best chosen when the library loads. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CLONES
#endif
/* Inlined where its row count and side are constants, so that the hot loop has no branch. */
#if defined(__GNUC__)
#define INLINE static inline __attribute__((always_inline))
#else
#define INLINE static inline
#endif

/* Four doubles (GCC/Clang vector extension): one AVX2 register (or half an AVX-512 one on
 * AVX-512 machines, two SSE2 ones); wider values are split badly by GCC on AVX2 (30x slower).
 * `unaligned` reads and writes them at any double's address. A group is VECS of them. */
typedef double vec __attribute__((vector_size(32)));
typedef double unaligned __attribute__((vector_size(32), aligned(8)));
#define VECS (GROUP / 4)

INLINE void strip_product(const double *strip, ptrdiff_t ld, int strip_rows, ptrdiff_t c0, ptrdiff_t c1,
                          int above_diagonal, const double *x_rows, const double *x_cols, double *y_rows,
                          double *y_cols, ptrdiff_t p) {
    vec sums[STRIP][VECS], x_strip[STRIP][VECS];
    for (int k = 0; k < STRIP; k++)
        for (int v = 0; v < VECS; v++) {
            sums[k][v] = (vec){0};
            x_strip[k][v] = k < strip_rows ? *(const unaligned *)(x_rows + k * p + 4 * v) : (vec){0};
        }
    for (ptrdiff_t c = c0; c < c1; c++) {
        vec x_c[VECS];
        for (int v = 0; v < VECS; v++) x_c[v] = *(const unaligned *)(x_cols + c * p + 4 * v);
        double element[STRIP];
        for (int k = 0; k < STRIP; k++) element[k] = k < strip_rows ? strip[k * ld + c] : 0.0;
        for (int k = 0; k < STRIP; k++)
            for (int v = 0; v < VECS; v++) sums[k][v] += element[k] * x_c[v];
        if (above_diagonal)
            for (int v = 0; v < VECS; v++) {
                vec column = element[0] * x_strip[0][v];
                for (int k = 1; k < STRIP; k++) column += element[k] * x_strip[k][v];
                *(unaligned *)(y_cols + c * p + 4 * v) += column;
            }
    }
    for (int k = 0; k < strip_rows; k++)
        for (int v = 0; v < VECS; v++) *(unaligned *)(y_rows + k * p + 4 * v) += sums[k][v];
}

/* Columns go in chunks of at most `chunk`, so that the chunk's rows of X and Y stay in cache over
 * the panel's strips; a chunk ends at the diagonal block's edge. */
CLONES void panel_product(const double *panel, ptrdiff_t rows, ptrdiff_t width, ptrdiff_t ld, ptrdiff_t r0,
                          const double *X, double *Y, ptrdiff_t p, ptrdiff_t chunk) {
    const double *x = X + r0 * p;
    double *y = Y + r0 * p;
    for (ptrdiff_t c0 = 0, c1; c0 < width; c0 = c1) {
        ptrdiff_t end = c0 < rows ? rows : width;
        c1 = c0 + chunk < end ? c0 + chunk : end;
        int above = c0 >= rows;
        for (ptrdiff_t r = 0; r < rows; r += STRIP) {
            int strip_rows = rows - r < STRIP ? (int)(rows - r) : STRIP;
            const double *strip = panel + r * ld;
            for (ptrdiff_t g = 0; g < p; g += GROUP) {
                const double *x_rows = x + r * p + g, *x_cols = x + g;
                double *y_rows = y + r * p + g, *y_cols = y + g;
                if (strip_rows == STRIP && above)
                    strip_product(strip, ld, STRIP, c0, c1, 1, x_rows, x_cols, y_rows, y_cols, p);
                else if (strip_rows == STRIP)
                    strip_product(strip, ld, STRIP, c0, c1, 0, x_rows, x_cols, y_rows, y_cols, p);
                else
                    strip_product(strip, ld, strip_rows, c0, c1, above, x_rows, x_cols, y_rows, y_cols, p);
            }
        }
    }
}

int panel_group(void) { return GROUP; }

/* Bumped with any change of panel_product's arguments: a library left from an older build
 * (the editable install does not rebuild it on a pull) is then not called. */
int panel_abi(void) { return 1; }

/* Whether this CPU runs one of the vector clones (x86-64-v3 or better: AVX2 and FMA;
 * measured: about one streaming pass). The baseline clone and other architectures are 10x
 * slower than BLAS: there the product runs on BLAS. */
int panel_vectorised(void) {
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("x86-64-v3");  /* exactly what selects the v3 clone */
#else
    return 0;
#endif
}
