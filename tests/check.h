// check: the few macros every C test uses. Each CHECK counts one pass or one failure (printed with its place), or,
// while check_skipping is set (a test whose hardware is absent, e.g. no GPU), one skip without evaluating anything;
// check_done() prints "N passed, N failed, N skipped" and gives the exit status. Header-only, for tests.
#ifndef CHECK_H
#define CHECK_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_passed, check_failed, check_skipped;
static int check_skipping; // nonzero: CHECKs count as skipped and evaluate neither condition nor message

#define CHECK(cond, ...)                                                                                               \
    do {                                                                                                               \
        if (check_skipping) {                                                                                          \
            check_skipped++;                                                                                           \
        } else if (cond) {                                                                                             \
            check_passed++;                                                                                            \
        } else {                                                                                                       \
            check_failed++;                                                                                            \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                                       \
            fprintf(stderr, __VA_ARGS__);                                                                              \
            fputc('\n', stderr);                                                                                       \
        }                                                                                                              \
    } while (0)

static inline int check_done(void)
{
    printf("%d passed, %d failed, %d skipped\n", check_passed, check_failed, check_skipped);
    return check_failed ? 1 : 0;
}

// Sections of a test named on its command line (e.g. `test_cuda_ops attention` under a sanitizer): check_select
// takes the arguments and the test's section names, and exits 2 with one line listing them when an argument names
// none; check_want(name) is 1 when no section was named or this one was.
static int check_n_want;
static char **check_wanted;
static inline void check_select(int argc, char **argv, const char *const *names, int n)
{
    for (int a = 1; a < argc; a++) {
        int i = 0;
        while (i < n && strcmp(argv[a], names[i]) != 0) i++;
        if (i < n) continue;
        fprintf(stderr, "%s: no section '%s' (sections:", argv[0], argv[a]);
        for (i = 0; i < n; i++) fprintf(stderr, "%s %s", i ? "," : "", names[i]);
        fprintf(stderr, ")\n");
        exit(2);
    }
    check_n_want = argc - 1, check_wanted = argv + 1;
}
static inline int check_want(const char *name)
{
    for (int i = 0; i < check_n_want; i++)
        if (strcmp(check_wanted[i], name) == 0) return 1;
    return check_n_want == 0;
}

// x rounded to bfloat16 (nearest even; the high 16 bits), as the GPU's conversions for --precision bf16 and the
// decoder's bf16 weights
static inline float check_bf16_round(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    memcpy(&x, &u, 4);
    return x;
}

// Directory of the shared data (env SHARED, default ../shared).
static inline const char *check_shared(void)
{
    const char *s = getenv("SHARED");
    return s && *s ? s : "../shared";
}

#endif
