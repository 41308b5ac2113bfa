// test_decode: incremental decoding (decode.c) against the full forward (hg_forward, train = 0) for every
// configuration kind, B 1 and 3: at every step the logits for the next position equal the full forward's over the
// same window (from empty, after an odd-length prefill in small passes, after a full-window prefill, after two
// prefills in a row, and across two slides of the window). Also: a perturbed valley weight is seen (the comparison
// is not blind to the valley), the logits are the same bytes on 1, 2 and 3 threads, and bad calls are refused.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "decode.h"
#include "hg.h"
#include "ops.h"
#include "util.h"

typedef struct Kind {
    const char *name;
    int plain_layers;           // > 0: a baseline block
    int pre, post, s, valley_n; // hourglass with a plain valley
    int nested;                 // [pre, [1, valley_n, 1], post] (1) or [pre, [1, valley_n, 0], post] (2), s at both
    int linear, attn;
} Kind;

static const Kind kinds[] = {
    {"baseline", 2, 0, 0, 0, 0, 0, 0, 0},
    {"naive", 0, 1, 1, 2, 1, 0, 0, 0},
    {"linear", 0, 1, 1, 2, 1, 0, 1, 0},
    {"naive_attn", 0, 1, 1, 2, 1, 0, 0, 1},
    {"linear_attn", 0, 1, 1, 2, 1, 0, 1, 1},
    {"nested [1,[1,1,1],1] s 2,2", 0, 1, 1, 2, 1, 1, 1, 1},
    {"nested naive [2,[1,1,0],1] s 2,2", 0, 2, 1, 2, 1, 2, 0, 0},
    {"s 3", 0, 1, 1, 3, 1, 0, 1, 1},
    {"s 3 naive", 0, 1, 2, 3, 2, 0, 0, 0},
};

#define L_TEST 13 // odd, so every level's length is ragged somewhere
#define V_TEST 20
#define TOL 1e-4 // max abs logit difference, relative to max(1, the largest |logit|)

static uint64_t rs = 11;
static float frand(void) // uniform in [-1, 1)
{
    rs = rs * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((double)(rs >> 11) * 0x1p-53 * 2 - 1);
}
static int32_t rand_tok(void) { return (int32_t)(1 + (int)((frand() + 1) * 0.5f * (V_TEST - 1))) % V_TEST; }

static HgLevel valley_inner, valley_mid;

// Kind k at width C (NH 2, F 2C): random weights, sharpened as below
static void build(HgModel *m, const Kind *k, int C)
{
    HgConfig c = {.V = V_TEST, .C = C, .NH = 2, .F = 2 * C, .L = L_TEST, .linear = k->linear, .attn_resampling = k->attn};
    if (k->plain_layers) {
        c.top.n_layers = k->plain_layers;
    } else {
        valley_inner = (HgLevel){.n_layers = k->valley_n};
        if (k->nested) {
            valley_mid = (HgLevel){.pre = 1, .post = k->nested == 1, .s = k->s, .valley = &valley_inner};
            c.top = (HgLevel){.pre = k->pre, .post = k->post, .s = k->s, .valley = &valley_mid};
        } else {
            c.top = (HgLevel){.pre = k->pre, .post = k->post, .s = k->s, .valley = &valley_inner};
        }
    }
    char err[ERR_MAX];
    CHECK(hg_build(m, &c, err) == 0, "%s: build: %s", k->name, err);
    hg_init_weights(m, 4321);
    // Sharper attention than the init gives (q.k and the relative term both matter, softmax far from uniform),
    // and LayerNorms away from 1/0, so a wrong key set or a wrong row shows in the logits.
    for (int i = 0; i < m->n_params; i++) {
        const HgParam *p = &m->params[i];
        float *w = m->w + p->offset, mul = 1.0f;
        if (strstr(p->name, "in_proj_weight")) mul = 3.0f;
        else if (strstr(p->name, ".Er")) mul = 40.0f;
        for (size_t j = 0; j < p->size; j++) w[j] *= mul;
        if (strstr(p->name, "norm") || strstr(p->name, "bias"))
            for (size_t j = 0; j < p->size; j++) w[j] += 0.3f * frand();
    }
}

// The full forward's logits for the last position of win (B, n) -> ref (B, V)
static void reference(HgModel *m, const int32_t *win, int B, int n, float *ref)
{
    hg_alloc(m, B, n);
    hg_forward(m, win, 0, 1);
    for (int b = 0; b < B; b++)
        memcpy(ref + (size_t)b * V_TEST, m->logits + ((size_t)b * n + n - 1) * V_TEST, V_TEST * sizeof(float));
}

// max |got - ref| / max(1, max |ref|) over (B, V)
static double rel_diff(const float *got, const float *ref, int B)
{
    double d = 0, scale = 1;
    for (int i = 0; i < B * V_TEST; i++) {
        d = fmax(d, fabs((double)got[i] - ref[i]));
        scale = fmax(scale, fabs(ref[i]));
    }
    return d / scale;
}

// Window kept by the test itself: win (B, L) row-major, *n tokens. Mirrors decode.h's rule.
static void window_push(int32_t *win, int *n, const int32_t *tok, int B, int keep)
{
    if (*n == L_TEST) {
        for (int b = 0; b < B; b++) memmove(win + b * L_TEST, win + b * L_TEST + L_TEST - keep, keep * sizeof *win);
        *n = keep;
    }
    for (int b = 0; b < B; b++) win[b * L_TEST + *n] = tok[b];
    (*n)++;
}

static void packed(int32_t *out, const int32_t *win, int B, int n) // (B, L) -> (B, n)
{
    for (int b = 0; b < B; b++) memcpy(out + b * n, win + b * L_TEST, n * sizeof *out);
}

// Steps through n_steps random tokens after an optional prompt, comparing every step. Returns the worst error.
static double run_case(HgModel *m, const Kind *k, int B, int prompt, const DecOpts *opts, int n_steps)
{
    char err[ERR_MAX];
    Decoder *d = dec_new(m, B, opts, err);
    CHECK(d != NULL, "%s: dec_new: %s", k->name, err);
    if (!d) return INFINITY;
    int keep = opts && opts->keep ? opts->keep : L_TEST / 2, n = 0;
    int32_t win[3 * L_TEST], flat[3 * L_TEST], tok[3];
    float ref[3 * V_TEST];
    double worst = 0;
    if (prompt) {
        for (int b = 0; b < B; b++)
            for (int i = 0; i < prompt; i++) flat[b * prompt + i] = win[b * L_TEST + i] = rand_tok();
        n = prompt;
        const float *got = dec_prefill(d, flat, prompt, err);
        CHECK(got != NULL, "%s: prefill %d: %s", k->name, prompt, err);
        if (!got) return INFINITY;
        reference(m, flat, B, n, ref);
        worst = fmax(worst, rel_diff(got, ref, B));
    }
    for (int step = 0; step < n_steps; step++) {
        for (int b = 0; b < B; b++) tok[b] = rand_tok();
        window_push(win, &n, tok, B, keep);
        const float *got = dec_step(d, tok, err);
        CHECK(got != NULL, "%s: step: %s", k->name, err);
        if (!got) break;
        packed(flat, win, B, n);
        reference(m, flat, B, n, ref);
        double e = rel_diff(got, ref, B);
        if (e > TOL) fprintf(stderr, "  %s B %d prompt %d: step %d (window %d): error %.3g\n", k->name, B, prompt,
                             step, n, e);
        worst = fmax(worst, e);
        CHECK(dec_len(d) == n, "%s: dec_len %d, want %d", k->name, dec_len(d), n);
        int same = 1;
        for (int b = 0; b < B; b++) same &= memcmp(dec_tokens(d) + b * L_TEST, win + b * L_TEST, n * sizeof *win) == 0;
        CHECK(same, "%s: dec_tokens differs from the window", k->name);
    }
    dec_free(d);
    return worst;
}

// The deepest valley's final LayerNorm bias, or NULL for the baseline
static float *valley_norm_bias(HgModel *m, const Kind *k, size_t *size)
{
    const char *name = k->plain_layers ? NULL
                       : k->nested     ? "transformer.encoder.valley_transformer.valley_transformer.norm.bias"
                                       : "transformer.encoder.valley_transformer.norm.bias";
    int i = name ? hg_param_index(m, name) : -1;
    if (i < 0) return NULL;
    *size = m->params[i].size;
    return m->w + m->params[i].offset;
}

static void test_kind(const Kind *k)
{
    HgModel m;
    build(&m, k, 16);
    for (int B = 1; B <= 3; B += 2) {
        int slides = 2 * (L_TEST - L_TEST / 2) + 3; // past two slides of the window
        double e1 = run_case(&m, k, B, 0, NULL, L_TEST + slides);
        CHECK(e1 <= TOL, "%s B %d: from empty, max error %.3g (limit %g)", k->name, B, e1, TOL);
        DecOpts small = {.keep = 4, .chunk = 2}; // prefill in passes of 2 rows; slides keep 4
        double e2 = run_case(&m, k, B, 5, &small, L_TEST + 2 * (L_TEST - 4) - 5 + 2);
        CHECK(e2 <= TOL, "%s B %d: after a prefill of 5 in passes of 2, max error %.3g", k->name, B, e2);
        DecOpts big = {.keep = L_TEST - 1, .chunk = L_TEST}; // one full-window pass; slides keep L-1
        double e3 = run_case(&m, k, B, L_TEST, &big, 4);
        CHECK(e3 <= TOL, "%s B %d: after a full-window prefill, max error %.3g", k->name, B, e3);
        printf("%-34s B %d: max error %.2g (steps), %.2g (prefill 5), %.2g (prefill L)\n", k->name, B, e1, e2, e3);
    }
    { // two prefills in a row (4 then 5 tokens, passes of 3) equal one forward over the 9 tokens
        char err[ERR_MAX];
        int B = 3, n1 = 4, n2 = 5, n = n1 + n2;
        int32_t all[3 * 9], part1[3 * 4], part2[3 * 5];
        float ref[3 * V_TEST];
        for (int b = 0; b < B; b++)
            for (int i = 0; i < n; i++) {
                all[b * n + i] = rand_tok();
                if (i < n1) part1[b * n1 + i] = all[b * n + i];
                else part2[b * n2 + i - n1] = all[b * n + i];
            }
        Decoder *d = dec_new(&m, B, &(DecOpts){.chunk = 3}, err);
        const float *got = dec_prefill(d, part1, n1, err);
        got = got ? dec_prefill(d, part2, n2, err) : NULL;
        CHECK(got != NULL, "%s: two prefills: %s", k->name, err);
        reference(&m, all, B, n, ref);
        double e = got ? rel_diff(got, ref, B) : INFINITY;
        CHECK(e <= TOL, "%s: two prefills in a row, max error %.3g", k->name, e);
        dec_free(d);
    }
    // The comparison sees the valley: changing its last LayerNorm bias for the decoder only (LayerNorm weights are
    // read in place, at each call) moves the logits by far more than the tolerance.
    size_t nb = 0;
    float *bias = valley_norm_bias(&m, k, &nb);
    if (bias) {
        char err[ERR_MAX];
        int B = 1, n = L_TEST;
        int32_t tok[L_TEST];
        float ref[V_TEST];
        for (int i = 0; i < n; i++) tok[i] = rand_tok();
        reference(&m, tok, B, n, ref);
        Decoder *d = dec_new(&m, B, NULL, err);
        float save[64];
        for (size_t j = 0; j < nb && j < 64; j++) save[j] = bias[j], bias[j] += j % 2 ? 0.5f : -0.5f; // not constant:
        const float *got = dec_prefill(d, tok, n, err); // a LayerNorm downstream would remove a constant
        for (size_t j = 0; j < nb && j < 64; j++) bias[j] = save[j];
        double e = got ? rel_diff(got, ref, B) : 0;
        CHECK(e > 100 * TOL, "%s: a changed valley weight moved the logits by only %.3g", k->name, e);
        dec_free(d);
    }
    hg_free(&m);
}

// The same prefill (in passes of 4) and steps across two slides, on 1, 2 and 3 threads: identical logits. The test
// model is wide enough (C 64, F 128) that every linear layer splits into several column blocks.
static void test_threads(const Kind *k)
{
    HgModel m;
    char err[ERR_MAX];
    build(&m, k, 64);
    enum { B = 3, PROMPT = 7, STEPS = 2 * L_TEST };
    int32_t prompt[B * PROMPT], tok[STEPS][B];
    for (int i = 0; i < B * PROMPT; i++) prompt[i] = rand_tok();
    for (int i = 0; i < STEPS; i++)
        for (int b = 0; b < B; b++) tok[i][b] = rand_tok();
    static float logits[3][STEPS + 1][B * V_TEST];
    int saved = ops_threads();
    for (int t = 0; t < 3; t++) {
        ops_set_threads(t + 1);
        Decoder *d = dec_new(&m, B, &(DecOpts){.chunk = 4}, err);
        const float *got = d ? dec_prefill(d, prompt, PROMPT, err) : NULL;
        for (int i = 0; got && i <= STEPS; i++) {
            memcpy(logits[t][i], got, sizeof logits[t][i]);
            if (i < STEPS) got = dec_step(d, tok[i], err);
        }
        CHECK(got != NULL, "%s: %d threads: %s", k->name, t + 1, err);
        dec_free(d);
    }
    ops_set_threads(saved);
    CHECK(memcmp(logits[0], logits[1], sizeof logits[0]) == 0, "%s: 2 threads give other logits than 1", k->name);
    CHECK(memcmp(logits[0], logits[2], sizeof logits[0]) == 0, "%s: 3 threads give other logits than 1", k->name);
    hg_free(&m);
}

static void test_refusals(void)
{
    HgModel m;
    build(&m, &kinds[5], 16);
    char err[ERR_MAX];
    CHECK(dec_new(&m, 0, NULL, err) == NULL, "batch 0 accepted");
    CHECK(dec_new(&m, 1, &(DecOpts){.keep = L_TEST}, err) == NULL, "keep = L accepted");
    CHECK(dec_new(&m, 1, &(DecOpts){.chunk = L_TEST + 1}, err) == NULL, "chunk > L accepted");
    Decoder *d = dec_new(&m, 2, NULL, err);
    int32_t tok[2 * L_TEST + 2];
    for (int i = 0; i < 2 * L_TEST + 2; i++) tok[i] = 1 + i % (V_TEST - 1);
    CHECK(dec_prefill(d, tok, L_TEST + 1, err) == NULL, "a prefill past the window accepted");
    CHECK(dec_prefill(d, tok, 0, err) == NULL, "an empty prefill accepted");
    int32_t bad[2] = {3, V_TEST};
    CHECK(dec_step(d, bad, err) == NULL && dec_len(d) == 0, "token V accepted");
    bad[1] = -1;
    CHECK(dec_prefill(d, bad, 1, err) == NULL && dec_len(d) == 0, "token -1 accepted");
    CHECK(dec_prefill(d, tok, L_TEST, err) != NULL && dec_len(d) == L_TEST, "a full-window prefill refused: %s", err);
    CHECK(dec_prefill(d, tok, 1, err) == NULL, "a prefill into a full window accepted");
    CHECK(dec_step(d, tok, err) != NULL && dec_len(d) == L_TEST / 2 + 1, "the window did not slide");
    dec_reset(d);
    CHECK(dec_len(d) == 0, "dec_reset left %d tokens", dec_len(d));
    dec_free(d);
    hg_free(&m);
}

int main(void)
{
    for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++) test_kind(&kinds[i]);
    for (size_t i = 0; i < 5; i++) test_threads(&kinds[i]); // baseline, naive, linear, each +- attn
    test_refusals();
    return check_done();
}
