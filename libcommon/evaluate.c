// evaluate: held-out likelihood by token type and the prompt-continuation study (see evaluate.h).
#include "evaluate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "grammar.h"
#include "ops.h"
#include "stats.h"
#include "util.h"

const char *const evaluate_feature_names[EF_N] = {"pitch_class_kl", "duration_kl", "velocity_kl", "chord_kl",
                                                  "note_density_diff", "polyphony_diff", "pitch_range_diff"};

int evaluate_likelihood(HgModel *m, const DataSet *ds, volatile sig_atomic_t *stop, EvalLikelihood *out)
{
    int B = m->B, T = m->T;
    int32_t *win = xmalloc((size_t)B * (T + 1) * sizeof *win), *inp = xmalloc((size_t)B * T * sizeof *inp);
    int32_t *tgt = xmalloc((size_t)B * T * sizeof *tgt), *best = xmalloc((size_t)B * T * sizeof *best);
    double *nll = xmalloc((size_t)B * T * sizeof *nll);
    double sum = 0, tsum[EVAL_N_TYPES] = {0};
    long n = 0, right = 0, tn[EVAL_N_TYPES] = {0}, tright[EVAL_N_TYPES] = {0};
    int rc = 0;
    // HMT_EVAL_HOST_SCORE=1: the rows scored on the host from a copy of the logits, as before the twenty-eighth
    // session (bench/gpu_score.sh measures the two against each other; the same numbers within a few ulps)
    const char *hs = getenv("HMT_EVAL_HOST_SCORE");
    int host_score = hs && strcmp(hs, "1") == 0;
    memset(out, 0, sizeof *out);
    for (int64_t k0 = 0; k0 < ds->n_eval && rc == 0; k0 += B) {
        if (stop && *stop) {
            rc = -1;
            break;
        }
        for (int b = 0; b < B; b++) {
            int32_t *w = win + (size_t)b * (T + 1);
            if (k0 + b < ds->n_eval) data_eval_window(ds, k0 + b, w);
            else for (int t = 0; t <= T; t++) w[t] = REMI_PAD;
            for (int t = 0; t < T; t++) inp[b * T + t] = w[t], tgt[b * T + t] = w[t + 1];
        }
        hg_forward(m, inp, 0, 0);
        // -log softmax(row)[target] = logsumexp(row) - row[target] in double, and the argmax, row by row (ops.h
        // score_rows; on a GPU there, so only these numbers cross the bus)
        if (host_score) score_rows(nll, best, hg_logits_host(m), tgt, B * T, m->cfg.V);
        else hg_score(m, tgt, nll, best);
        for (int i = 0; i < B * T; i++) {
            if (tgt[i] == REMI_PAD) continue;
            if (best[i] < 0) { // a NaN or an infinity in the row
                out->bad_window = k0 + i / T;
                rc = -2;
                break;
            }
            int ty = (int)remi_token_type(tgt[i]);
            sum += nll[i], n++, right += best[i] == tgt[i];
            tsum[ty] += nll[i], tn[ty]++, tright[ty] += best[i] == tgt[i];
        }
    }
    free(win), free(inp), free(tgt), free(best), free(nll);
    if (rc < 0) return rc;
    if (n == 0) return -1;
    out->n = n, out->loss = sum / (double)n, out->perplexity = exp(out->loss), out->accuracy = (double)right / (double)n;
    for (int t = 0; t < EVAL_N_TYPES; t++) {
        out->type_n[t] = tn[t];
        out->type_loss[t] = tn[t] ? tsum[t] / (double)tn[t] : NAN;
        out->type_accuracy[t] = tn[t] ? (double)tright[t] / (double)tn[t] : NAN;
    }
    return 0;
}

// ---- the generation study ----------------------------------------------------------------------------
// Features of the notes and chords of s from note index n0 and chord index c0 on (the continuation), with onsets
// rebased to the bar of its first event so that density counts the continuation's own bars.
static void continuation_features(const StatsSeq *s, size_t n0, size_t c0, StatsSeq *tmp, StatsFeatures *f)
{
    tmp->n_notes = s->n_notes - n0, tmp->n_chords = s->n_chords - c0;
    xgrow((void **)&tmp->notes, &tmp->cap_notes, tmp->n_notes, sizeof *tmp->notes);
    xgrow((void **)&tmp->chords, &tmp->cap_chords, tmp->n_chords, sizeof *tmp->chords);
    if (tmp->n_notes) memcpy(tmp->notes, s->notes + n0, tmp->n_notes * sizeof *tmp->notes);
    if (tmp->n_chords) memcpy(tmp->chords, s->chords + c0, tmp->n_chords * sizeof *tmp->chords);
    int64_t first = INT64_MAX;
    for (size_t i = 0; i < tmp->n_notes; i++) first = tmp->notes[i].onset < first ? tmp->notes[i].onset : first;
    for (size_t i = 0; i < tmp->n_chords; i++) first = tmp->chords[i].time < first ? tmp->chords[i].time : first;
    int64_t base = first == INT64_MAX ? 0 : first - first % REMI_TICKS_PER_BAR;
    for (size_t i = 0; i < tmp->n_notes; i++) tmp->notes[i].onset -= base;
    for (size_t i = 0; i < tmp->n_chords; i++) tmp->chords[i].time -= base;
    stats_features(tmp, f);
}

static void distances(const StatsFeatures *p, const StatsFeatures *c, double d[EF_N])
{
    d[EF_PITCH_CLASS] = stats_kl(p->pitch_class, c->pitch_class, STATS_N_PC, EVAL_KL_EPS);
    d[EF_DURATION] = stats_kl(p->duration, c->duration, STATS_N_DUR, EVAL_KL_EPS);
    d[EF_VELOCITY] = stats_kl(p->velocity, c->velocity, STATS_N_VEL, EVAL_KL_EPS);
    d[EF_CHORD] = stats_kl(p->chord, c->chord, STATS_N_CHORD, EVAL_KL_EPS);
    d[EF_DENSITY] = stats_abs_diff(p->notes_per_bar, c->notes_per_bar);
    d[EF_POLYPHONY] = stats_abs_diff(p->polyphony, c->polyphony);
    d[EF_RANGE] = stats_abs_diff(p->pitch_range, c->pitch_range);
}

// Pitched notes of f's source from n0 on whose pitch class is in key's scale; *total gets the pitched count.
static long in_key(const StatsSeq *s, size_t n0, int key, long *total)
{
    static const int major[12] = {1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1}, minor[12] = {1, 0, 1, 1, 0, 1, 0, 1, 1, 0, 1, 0};
    long in = 0;
    *total = 0;
    for (size_t i = n0; i < s->n_notes; i++) {
        if (s->notes[i].program < 0) continue; // drums have no pitch class
        int rel = ((s->notes[i].pitch - key % 12) % 12 + 12) % 12;
        in += key < 12 ? major[rel] : minor[rel];
        ++*total;
    }
    return in;
}

int evaluate_generation(Decoder *d, const DataSet *ds, const EvalGenOpts *o, EvalGeneration *out, char *err)
{
    memset(out, 0, sizeof *out);
    const Shard *sh = &ds->shard;
    int P = o->prompt, C = o->continuation, B = o->batch;
    int64_t *docs = xmalloc((size_t)o->n_docs * sizeof *docs);
    int n = 0;
    for (int64_t i = 0; i < sh->n_docs && n < o->n_docs; i++)
        if (sh->offsets[i + 1] - sh->offsets[i] >= P + C) docs[n++] = i;
    if (n < 2) {
        free(docs);
        return err_set(err, "%d documents with >= %d tokens (prompt + continuation); the study needs 2", n, P + C);
    }
    double *dg = xmalloc((size_t)EF_N * n * sizeof *dg), *dor = xmalloc((size_t)EF_N * n * sizeof *dor);
    int32_t *prompt = xmalloc((size_t)B * (P + 1) * sizeof *prompt), *gen = xmalloc((size_t)B * C * sizeof *gen);
    int32_t *seq = xmalloc((size_t)(P + C) * sizeof *seq);
    int *n_out = xmalloc((size_t)B * sizeof *n_out);
    StatsSeq sp = {0}, sc = {0}, tmp = {0};
    long skipped = 0, kin_g = 0, kt_g = 0, kin_o = 0, kt_o = 0;
    int rc = 0;
    for (int c0 = 0; c0 < n && rc == 0; c0 += B) {
        for (int b = 0; b < B; b++) { // a short last batch repeats its first document (results unused)
            const uint16_t *tok = sh->tokens + sh->offsets[docs[c0 + b < n ? c0 + b : c0]];
            prompt[(size_t)b * (P + 1)] = REMI_BOS;
            for (int t = 0; t < P; t++) prompt[(size_t)b * (P + 1) + 1 + t] = tok[t];
        }
        SampleOpts so = o->sample;
        so.seed = o->sample.seed * 0x9e3779b97f4a7c15ULL + (uint64_t)c0; // a stream per batch
        if (sample_generate(d, B, prompt, P + 1, C, &so, gen, n_out, err) < 0) {
            rc = -1;
            break;
        }
        for (int b = 0; b < B && c0 + b < n; b++) {
            int i = c0 + b;
            const uint16_t *tok = sh->tokens + sh->offsets[docs[i]];
            for (int t = 0; t < P + C; t++) seq[t] = tok[t];
            stats_extract(seq, (size_t)P, &sp);
            StatsFeatures fp, fg, fo;
            continuation_features(&sp, 0, 0, &tmp, &fp); // the prompt itself
            size_t pn = sp.n_notes, pc = sp.n_chords;
            // the prompt's tokens up to its last complete note: what follows is the generation's to finish
            GrammarState gs;
            grammar_init(&gs);
            size_t whole = 0;
            for (int t = 0; t < P; t++)
                if (grammar_push(&gs, seq[t]), grammar_is_allowed(&gs, REMI_EOS)) whole = (size_t)t + 1;
            stats_extract(seq, whole, &sc);
            size_t pskip = sc.n_skipped;
            StatsKey key;
            stats_key(fp.pitch_class_dur, fp.pitch_class, &key);
            // prompt -> original continuation
            stats_extract(seq, (size_t)(P + C), &sc);
            continuation_features(&sc, pn, pc, &tmp, &fo);
            distances(&fp, &fo, &dor[(size_t)i * EF_N]);
            long t1;
            if (key.key >= 0) kin_o += in_key(&sc, pn, key.key, &t1), kt_o += t1;
            if (i < o->n_examples) {
                o->example_docs[i] = docs[i];
                for (int t = 0; t < P + C; t++) idbuf_push(&o->examples[2 * i], seq[t]);
            }
            // prompt -> generated
            memcpy(seq + P, gen + (size_t)b * C, (size_t)n_out[b] * sizeof *seq);
            if (i < o->n_examples)
                for (int t = 0; t < P + n_out[b]; t++) idbuf_push(&o->examples[2 * i + 1], seq[t]);
            stats_extract(seq, (size_t)(P + n_out[b]), &sc);
            continuation_features(&sc, pn, pc, &tmp, &fg);
            distances(&fp, &fg, &dg[(size_t)i * EF_N]);
            if (key.key >= 0) kin_g += in_key(&sc, pn, key.key, &t1), kt_g += t1;
            skipped += (long)(sc.n_skipped - pskip);
            out->n_generated += n_out[b];
        }
    }
    if (rc == 0) {
        out->n_docs = n;
        double *x = xmalloc((size_t)n * sizeof *x), *y = xmalloc((size_t)n * sizeof *y);
        for (int f = 0; f < EF_N && rc == 0; f++) {
            for (int i = 0; i < n; i++) {
                x[i] = dg[(size_t)i * EF_N + f], y[i] = dor[(size_t)i * EF_N + f];
                out->gen_mean[f] += x[i] / n, out->orig_mean[f] += y[i] / n;
            }
            StatsKs ks;
            if (stats_ks_2samp(x, (size_t)n, y, (size_t)n, STATS_KS_AUTO, &ks, err) < 0) rc = -1;
            out->ks_d[f] = ks.d, out->ks_p[f] = ks.p;
        }
        free(x), free(y);
        out->skipped_share = out->n_generated ? (double)skipped / (double)out->n_generated : 0;
        out->in_key_gen = kt_g ? (double)kin_g / (double)kt_g : NAN;
        out->in_key_orig = kt_o ? (double)kin_o / (double)kt_o : NAN;
    }
    stats_seq_free(&sp), stats_seq_free(&sc), stats_seq_free(&tmp);
    free(docs), free(dg), free(dor), free(prompt), free(gen), free(seq), free(n_out);
    return rc;
}
