// bench/score: evaluate.c's scoring of one batch of rows (ops.h score_rows: each row's log-sum-exp in double and its
// argmax) on the host, the loop validation and eval ran on the CPU for every batch until the twenty-eighth session,
// also with the model on a GPU (docs/gpu.md, section 7, "Scoring on the GPU"). Rows of V 348 logits drawn in
// [-10, 10), ROWS rows (default 4,096: batch 8 x 512), median of RUNS (default 5) after one warm-up; then the time of
// TARGETS rows (default 331,237: POP909's validation targets) at that rate.
// Usage: bench/score [RUNS [ROWS [TARGETS]]]  (build: make build/rel/bench/score)
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "util.h"

int main(int argc, char **argv)
{
    util_init(argv[0]);
    if (argc > 4 || (argc > 1 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0))) {
        printf("Usage: bench/score [RUNS [ROWS [TARGETS]]]\n");
        return argc > 4 ? 2 : 0;
    }
    int runs = argc > 1 ? (int)parse_long("RUNS", argv[1], 1, 1000) : 5;
    int rows = argc > 2 ? (int)parse_long("ROWS", argv[2], 1, 1 << 20) : 4096;
    long targets = argc > 3 ? parse_long("TARGETS", argv[3], 1, 1L << 40) : 331237;
    const int V = 348;
    float *logits = xmalloc((size_t)rows * V * sizeof *logits);
    int32_t *tgt = xmalloc((size_t)rows * sizeof *tgt), *best = xmalloc((size_t)rows * sizeof *best);
    double *nll = xmalloc((size_t)rows * sizeof *nll), *t = xmalloc((size_t)(runs + 1) * sizeof *t), sink = 0;
    uint64_t s = 1;
    for (size_t i = 0; i < (size_t)rows * V; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        logits[i] = (float)((double)(s >> 11) * 0x1p-53 * 20.0 - 10.0);
    }
    for (int i = 0; i < rows; i++) tgt[i] = 1 + i % (V - 1);
    for (int r = 0; r <= runs; r++) { // run 0: the warm-up
        double t0 = now_s();
        score_rows(nll, best, logits, tgt, rows, V);
        t[r] = now_s() - t0;
        sink += nll[r % rows];
    }
    double med = median_sort(t + 1, runs);
    printf("score_rows: %d rows of %d logits: %.2f ms (median of %d); %ld rows: %.2f s (checksum %.3f)\n", rows, V,
           1e3 * med, runs, targets, med * (double)targets / rows, sink);
    free(logits), free(tgt), free(best), free(nll), free(t);
    return 0;
}
