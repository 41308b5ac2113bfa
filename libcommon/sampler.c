// sampler: temperature / top-k / top-p sampling with the grammar mask on the decoder (see sampler.h).
#include "sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "grammar.h"
#include "remi.h"
#include "util.h"

double sample_uniform(uint64_t key, uint64_t i) { return (double)(splitmix64(key ^ splitmix64(i)) >> 11) * 0x1.0p-53; }

static const float *sort_key; // qsort has no context argument; the sampler is single-threaded
static int by_prob_desc(const void *a, const void *b)
{
    float x = sort_key[*(const int *)a], y = sort_key[*(const int *)b];
    if (x != y) return x > y ? -1 : 1;
    return *(const int *)a - *(const int *)b; // ties by id: a stable, platform-independent order
}

int sample_pick(const float *logits, int V, const SampleOpts *o, double u, float *scratch, int *order)
{
    int best = -1;
    for (int v = 0; v < V; v++) {
        if (logits[v] == -INFINITY) continue;
        if (!isfinite(logits[v])) return -1; // NaN or +inf: no distribution to draw from
        if (best < 0 || logits[v] > logits[best]) best = v;
    }
    if (best < 0) return -1; // nothing allowed (the grammar always leaves a token, so a bug or a bad model)
    if (o->temperature <= 0) return best;
    // softmax of logits / temperature, in double for the normalisation
    float *p = scratch;
    double sum = 0;
    int n = 0;
    for (int v = 0; v < V; v++) {
        p[v] = logits[v] == -INFINITY ? 0.0f : (float)exp((logits[v] - logits[best]) / o->temperature);
        if (p[v] > 0) order[n++] = v;
        sum += p[v];
    }
    sort_key = p;
    qsort(order, (size_t)n, sizeof *order, by_prob_desc);
    // keep the top k, then the smallest prefix whose mass reaches top_p
    int keep = o->top_k > 0 && o->top_k < n ? o->top_k : n;
    double mass = 0, kept = 0;
    for (int i = 0; i < keep; i++) kept += p[order[i]];
    if (o->top_p < 1) {
        for (int i = 0; i < keep; i++) {
            mass += p[order[i]] / sum;
            if (mass >= o->top_p) {
                keep = i + 1;
                break;
            }
        }
        kept = 0;
        for (int i = 0; i < keep; i++) kept += p[order[i]];
    }
    if (keep < 1) return best; // unreachable: best's own weight is exp(0) = 1 > 0, so n >= 1
    double x = u * kept, acc = 0;
    for (int i = 0; i < keep; i++) {
        acc += p[order[i]];
        if (x < acc) return order[i];
    }
    return order[keep - 1];
}

// the draw inputs of the decoder's next call (dec_draw_mask, dec_draw_index): each item's allowed tokens as bits
static void draw_inputs(Decoder *d, const GrammarState *g, int B, int grammar, uint64_t index)
{
    int W = dec_mask_words(d);
    uint32_t *mask = dec_draw_mask(d);
    uint8_t allowed[REMI_VOCAB_SIZE];
    memset(allowed, 1, sizeof allowed);
    for (int b = 0; b < B; b++) {
        if (grammar) grammar_allowed(&g[b], allowed);
        uint32_t *row = mask + (size_t)b * W;
        memset(row, 0, (size_t)W * sizeof *row);
        for (int v = 0; v < REMI_VOCAB_SIZE && v < 32 * W; v++)
            if (allowed[v]) row[v / 32] |= 1u << (v % 32);
    }
    dec_draw_index(d, index);
}

int sample_generate(Decoder *d, int B, const int32_t *prompt, int P, int n_new, const SampleOpts *o, int32_t *out,
                    int *n_out, char *err)
{
    const int V = REMI_VOCAB_SIZE;
    GrammarState *g = xcalloc((size_t)B, sizeof *g);
    int32_t *tok = xmalloc((size_t)B * sizeof *tok);
    int *done = xcalloc((size_t)B, sizeof *done), *complete = xcalloc((size_t)B, sizeof *complete), *order = xmalloc((size_t)V * sizeof *order);
    float *logit = xmalloc((size_t)V * sizeof *logit), *scratch = xmalloc(2 * (size_t)V * sizeof *scratch);
    int rc = 0;
    for (int b = 0; b < B; b++) {
        grammar_init(&g[b]);
        grammar_push_all(&g[b], prompt + (size_t)b * P, (size_t)P);
        n_out[b] = 0;
    }
    for (size_t i = 0; i < (size_t)B * n_new; i++) out[i] = REMI_PAD;
    // on a GPU the decoder draws too (dec_draw_set): the same tokens from the same logits, without the host's pass
    // over them (HMT_GPU_DECODE_DRAW=0: drawn here, as on the CPU)
    uint64_t *keys = xmalloc((size_t)B * sizeof *keys);
    for (int b = 0; b < B; b++)
        keys[b] = splitmix64(o->seed) ^ (o->streams ? o->streams[b] : (uint64_t)b) * 0x9e3779b97f4a7c15ULL;
    const char *env = getenv("HMT_GPU_DECODE_DRAW");
    DecDraw dw = {o->temperature, o->top_k, o->top_p};
    int on_dev = !(env && strcmp(env, "0") == 0) && dec_draw_set(d, &dw, keys);
    if (on_dev) draw_inputs(d, g, B, o->grammar, 0);
    dec_reset(d);
    const float *logits = dec_prefill(d, prompt, P, err);
    int n_done = 0;
    for (int t = 0; t < n_new && logits && n_done < B; t++) {
        const int32_t *drawn = on_dev ? dec_drawn(d) : NULL;
        for (int b = 0; b < B; b++) {
            if (done[b]) {
                tok[b] = REMI_PAD;
                continue;
            }
            const float *row = logits + (size_t)b * V;
            if (drawn ? drawn[b] == -2 : 1) // the device found a logit not finite; the host looks itself
                for (int v = 0; v < V; v++)
                    if (!isfinite(row[v])) {
                        err_set(err, "generation step %d, item %d: the logits are not finite (%g for token %d): "
                                     "a diverged or corrupt model", t + 1, b + 1, (double)row[v], v);
                        logits = NULL;
                        goto out;
                    }
            if (drawn) {
                tok[b] = drawn[b];
            } else {
                memcpy(logit, row, (size_t)V * sizeof *logit);
                if (o->grammar) grammar_mask_logits(&g[b], logit);
                tok[b] = sample_pick(logit, V, o, sample_uniform(keys[b], (uint64_t)t), scratch, order);
            }
            if (tok[b] < 0) {
                err_set(err, "step %d, item %d: no token can be drawn (every token masked)", t + 1, b + 1);
                logits = NULL;
                goto out;
            }
            grammar_push(&g[b], tok[b]);
            if (tok[b] == REMI_EOS) done[b] = 1, n_done++;
            else out[(size_t)b * n_new + t] = tok[b], n_out[b]++;
            if (grammar_is_allowed(&g[b], REMI_EOS)) complete[b] = n_out[b]; // a document may end here

        }
        if (n_done < B && t + 1 < n_new) {
            if (on_dev) draw_inputs(d, g, B, o->grammar, (uint64_t)t + 1);
            logits = dec_step(d, tok, err);
        }
    }
out:
    if (on_dev) dec_draw_set(d, NULL, NULL);
    free(keys);
    if (!logits) rc = -1;
    // stopped by n_new, not EOS: with the grammar, cut back to the last place a document may end (a whole note)
    for (int b = 0; b < B && rc == 0 && o->grammar; b++)
        if (!done[b] && n_out[b] > complete[b]) {
            for (int t = complete[b]; t < n_out[b]; t++) out[(size_t)b * n_new + t] = REMI_PAD;
            n_out[b] = complete[b];
        }
    free(complete), free(g), free(tok), free(done), free(order), free(logit), free(scratch);
    return rc;
}
