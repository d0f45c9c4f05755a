/* tests/test.h: the whole test harness. Each test binary is a main() that calls RUN(name)
 * for each TEST(name) and returns test_done(), which prints the closing line
 * "N passed, N failed, N skipped". A test passes when none of its CHECKs failed; it is
 * skipped when it calls SKIP() (missing fixture) before failing anything. */
#ifndef EMBER_TEST_H
#define EMBER_TEST_H
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int t_pass, t_fail, t_skip;
static int t_cur_fail __attribute__((unused)), t_cur_skip __attribute__((unused));

#define TEST(name) static void name(void)
#define RUN(name) do { t_cur_fail = 0; t_cur_skip = 0; name();                  \
        if (t_cur_fail) { t_fail++; printf("FAIL %s\n", #name); }              \
        else if (t_cur_skip) { t_skip++; }                                      \
        else { t_pass++; printf("ok %s\n", #name); } fflush(stdout); } while (0)
#define CHECK(c) do { if (!(c)) { t_cur_fail++;                                  \
        printf("  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #c); } } while (0)
#define CHECKF(c, ...) do { if (!(c)) { t_cur_fail++;                            \
        printf("  %s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #c);          \
        printf(__VA_ARGS__); printf("\n"); } } while (0)
#define CHECK_NEAR(a, b, tol) do { double a_ = (a), b_ = (b);                    \
        if (!(fabs(a_ - b_) <= (tol))) { t_cur_fail++;                          \
        printf("  %s:%d: %s = %g, %s = %g, |diff| %g > %g\n", __FILE__, __LINE__,\
               #a, a_, #b, b_, fabs(a_ - b_), (double)(tol)); } } while (0)
#define SKIP(...) do { t_cur_skip = 1; printf("skipped: "); printf(__VA_ARGS__);  \
        printf("\n"); return; } while (0)
/* For tests of optional extras (large real models a user fetches on purpose): CI's clean
 * clone fails on a plain SKIP, never on this one. */
#define SKIP_OPTIONAL(...) do { t_cur_skip = 1; printf("skipped (optional): ");         \
        printf(__VA_ARGS__); printf("\n"); return; } while (0)

static int test_done(void) {
    printf("%d passed, %d failed, %d skipped\n", t_pass, t_fail, t_skip);
    return t_fail ? 1 : 0;
}

/* Fixture root: $EMBER_FIXTURES or ../shared/fixtures (tests run from the repo root). */
__attribute__((unused)) static const char *fixture_path(const char *rel) {
    static char buf[8][1024];
    static int slot;
    const char *root = getenv("EMBER_FIXTURES");
    if (!root || !*root) root = "../shared/fixtures";
    char *b = buf[slot++ & 7];
    snprintf(b, sizeof buf[0], "%s/%s", root, rel);
    return b;
}

__attribute__((unused)) static int file_exists(const char *p) {
    FILE *f = fopen(p, "rb");
    if (f) fclose(f);
    return f != NULL;
}

/* Reads a whole file; NULL if absent. Caller frees. */
__attribute__((unused)) static unsigned char *read_file(const char *p, size_t *n) {
    FILE *f = fopen(p, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *d = malloc(sz > 0 ? (size_t)sz + 1 : 1);
    if (d && sz > 0 && fread(d, 1, (size_t)sz, f) != (size_t)sz) { free(d); d = NULL; }
    if (d) d[sz > 0 ? sz : 0] = 0;
    fclose(f);
    if (n) *n = sz > 0 ? (size_t)sz : 0;
    return d;
}
#endif
