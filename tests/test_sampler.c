// test_sampler: the sampling rules (temperature, top-k, top-p, greedy) on known distributions, and generation on
// a random-weights model: with the grammar mask every document decodes with zero skipped tokens (without it they
// do not, so the check can fail); the same seed gives the same tokens, in any batch.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "decode.h"
#include "hg.h"
#include "midi.h"
#include "remi.h"
#include "sampler.h"
#include "util.h"

#define NV REMI_VOCAB_SIZE

static void test_pick(void)
{
    float logits[NV], scratch[2 * NV];
    int order[NV];
    for (int v = 0; v < NV; v++) logits[v] = -INFINITY;
    // allowed: 10 -> log 0.5, 11 -> log 0.3, 12 -> log 0.2
    logits[10] = logf(0.5f), logits[11] = logf(0.3f), logits[12] = logf(0.2f);
    SampleOpts o = {.temperature = 1, .top_k = 0, .top_p = 1};
    long count[3] = {0}, masked = 0;
    const int n = 100000;
    for (int i = 0; i < n; i++) {
        int t = sample_pick(logits, NV, &o, (i + 0.5) / n, scratch, order); // a uniform grid of u
        if (t >= 10 && t <= 12) count[t - 10]++;
        else masked++;
    }
    CHECK(masked == 0, "picked a masked token %ld times", masked);
    CHECK(labs(count[0] - 50000) <= 2 && labs(count[1] - 30000) <= 2 && labs(count[2] - 20000) <= 2,
          "softmax shares %ld %ld %ld", count[0], count[1], count[2]);
    // top-k 2 renormalises over {10, 11}: 0.625 / 0.375
    o.top_k = 2;
    memset(count, 0, sizeof count);
    for (int i = 0; i < n; i++) count[sample_pick(logits, NV, &o, (i + 0.5) / n, scratch, order) - 10]++;
    CHECK(count[2] == 0 && labs(count[0] - 62500) <= 2, "top-k 2: %ld %ld %ld", count[0], count[1], count[2]);
    // top-p 0.75: the smallest prefix reaching 0.75 is {10, 11}; top-p 0.5 is {10}
    o.top_k = 0, o.top_p = 0.75;
    memset(count, 0, sizeof count);
    for (int i = 0; i < n; i++) count[sample_pick(logits, NV, &o, (i + 0.5) / n, scratch, order) - 10]++;
    CHECK(count[2] == 0 && labs(count[0] - 62500) <= 2, "top-p 0.75: %ld %ld %ld", count[0], count[1], count[2]);
    o.top_p = 0.5;
    CHECK(sample_pick(logits, NV, &o, 0.99, scratch, order) == 10, "top-p 0.5 keeps only the best");
    // temperature 0 is greedy; a high temperature flattens towards uniform
    o.top_p = 1, o.temperature = 0;
    CHECK(sample_pick(logits, NV, &o, 0.99, scratch, order) == 10, "greedy");
    o.temperature = 1000;
    memset(count, 0, sizeof count);
    for (int i = 0; i < n; i++) count[sample_pick(logits, NV, &o, (i + 0.5) / n, scratch, order) - 10]++;
    CHECK(labs(count[2] - n / 3) < 200, "temperature 1000 is near uniform: %ld", count[2]);
    // nothing to draw is -1, never an index outside the candidates (issue 13: order[keep - 1] with keep 0)
    float bad[NV];
    for (int k = 0; k < 3; k++) {
        o.temperature = 1, o.top_k = 2, o.top_p = 0.9;
        for (int v = 0; v < NV; v++) bad[v] = -INFINITY;
        if (k == 1) bad[3] = NAN, bad[4] = 1.0f;
        if (k == 2) bad[5] = INFINITY, bad[6] = 1.0f;
        CHECK(sample_pick(bad, NV, &o, 0.5, scratch, order) == -1, "case %d: nothing to draw gives -1", k);
        o.temperature = 0;
        CHECK(sample_pick(bad, NV, &o, 0.5, scratch, order) == -1, "case %d greedy: nothing to draw gives -1", k);
    }
}

static void test_generate(void)
{
    static HgLevel valley = {.n_layers = 1};
    HgConfig cfg = {.V = NV, .C = 32, .NH = 2, .F = 64, .L = 64, .linear = 1, .attn_resampling = 1,
                    .save_updown_hidden = 1, .top = {.pre = 1, .post = 1, .s = 2, .valley = &valley}};
    HgModel m;
    char err[ERR_MAX];
    if (hg_build(&m, &cfg, err) < 0) {
        CHECK(0, "hg_build: %s", err);
        return;
    }
    hg_init_weights(&m, 3);
    const int B = 8, N = 200; // 200 new tokens: past the 64-token window, so the decoder slides
    Decoder *d = dec_new(&m, B, NULL, err);
    CHECK(d != NULL, "dec_new: %s", err);
    if (!d) return;
    int32_t prompt[8], *out = xmalloc((size_t)B * N * sizeof *out), *again = xmalloc((size_t)B * N * sizeof *out);
    int n_out[8], n_again[8];
    for (int b = 0; b < B; b++) prompt[b] = REMI_BOS;
    long skipped_masked = 0, skipped_free = 0, tokens = 0;
    for (int round = 0; round < 4; round++)
        for (int grammar = 1; grammar >= 0; grammar--) {
            SampleOpts o = {.temperature = 1, .top_k = 0, .top_p = 1, .grammar = grammar, .seed = (uint64_t)round};
            CHECK(sample_generate(d, B, prompt, 1, N, &o, out, n_out, err) == 0, "generate: %s", err);
            for (int b = 0; b < B; b++) {
                Score s;
                size_t sk;
                remi_decode(out + (size_t)b * N, (size_t)n_out[b], &s, &sk);
                score_free(&s);
                if (grammar) skipped_masked += (long)sk, tokens += n_out[b];
                else skipped_free += (long)sk;
            }
        }
    CHECK(skipped_masked == 0 && tokens > 1000, "with the grammar: %ld of %ld tokens skipped", skipped_masked, tokens);
    CHECK(skipped_free > 0, "without the grammar nothing was skipped: the check above would be blind");
    // the same seed, the same tokens; item b's tokens do not depend on the batch size
    SampleOpts o = {.temperature = 0.9, .top_k = 50, .top_p = 0.95, .grammar = 1, .seed = 11};
    sample_generate(d, B, prompt, 1, N, &o, out, n_out, err);
    sample_generate(d, B, prompt, 1, N, &o, again, n_again, err);
    CHECK(memcmp(out, again, (size_t)B * N * sizeof *out) == 0 && memcmp(n_out, n_again, sizeof n_out) == 0, "seed");
    Decoder *d1 = dec_new(&m, 1, NULL, err);
    sample_generate(d1, 1, prompt, 1, N, &o, again, n_again, err);
    CHECK(n_again[0] == n_out[0] && memcmp(out, again, (size_t)N * sizeof *out) == 0, "item 0 alone differs from in a batch");
    dec_free(d1), dec_free(d);
    free(out), free(again);
    hg_free(&m);
}

int main(void)
{
    util_init("test_sampler");
    test_pick();
    test_generate();
    return check_done();
}
