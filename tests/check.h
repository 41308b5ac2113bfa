// check: the few macros every C test uses. Each CHECK counts one pass or one failure (printed with its place), or,
// while check_skipping is set (a test whose hardware is absent, e.g. no GPU), one skip without evaluating anything;
// check_done() prints "N passed, N failed, N skipped" and gives the exit status. Header-only, for tests.
#ifndef CHECK_H
#define CHECK_H

#include <stdio.h>
#include <stdlib.h>

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

// Directory of the shared data (env SHARED, default ../shared).
static inline const char *check_shared(void)
{
    const char *s = getenv("SHARED");
    return s && *s ? s : "../shared";
}

#endif
