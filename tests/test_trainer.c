// test_trainer: the pieces of a training step that are not the model. OneCycle, Adam and clipping against values
// printed by PyTorch 1.13 (torch.optim.lr_scheduler.OneCycleLR, torch.optim.Adam, clip_grad_norm_; the script is in
// the comment above each table). Training and evaluation windows on a hand-made shard: framing, no window crosses
// a document, every evaluation target is scored exactly once, starts are uniform, and everything is a function of
// the seed. The validation subset: fixed whatever the order or folder of the documents, growing with its budget,
// every target scored once. Augmentation of hand-made windows token by token (drums and chords stay, the offset
// clamped to the pitch range, velocities clipped), its draws a function of (seed, i). The trainer state reads back
// and refuses another config.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "config.h"
#include "data.h"
#include "optim.h"
#include "remi.h"
#include "shard.h"
#include "trainer.h"
#include "util.h"

static char dir[] = "/tmp/test_trainer.XXXXXX";

static void test_optim(void)
{
    // for i in range(10): lrs.append(opt.param_groups[0]['lr']); opt.step(); sched.step()
    // with OneCycleLR(opt, max_lr=3e-4, total_steps=10, pct_start=0.2, anneal_strategy='cos')
    const double want_lr[10] = {1.200000000000002e-05, 0.0003, 0.00028858197554897347, 0.00025606619291391336,
                                0.00020740288524470407, 0.0001500006, 9.259831475529596e-05, 4.393500708608659e-05,
                                1.1419224451026496e-05, 1.1999999999999998e-09};
    for (int i = 0; i < 10; i++) {
        double lr = onecycle_lr(i, 10, 3e-4, 0.2, 25, 1e4, 0);
        CHECK(fabs(lr - want_lr[i]) <= 1e-12 * want_lr[i] + 1e-20, "onecycle step %d: %.17g, PyTorch %.17g", i, lr, want_lr[i]);
    }
    // w = [0.5, -1, 2, 0]; Adam(lr=1e-2); for t in 1..5: w.grad = [0.1 t, -0.2, 3 / t, 1e-3]; opt.step()
    float w[4] = {0.5f, -1.0f, 2.0f, 0.0f}, m[4] = {0}, v[4] = {0};
    const float want_w[4] = {0.45149171352386475f, -0.9500000476837158f, 1.9559853076934814f, -0.049999501556158066f};
    AdamParams p = {1e-2, 0.9, 0.999, 1e-8, 0};
    for (int t = 1; t <= 5; t++) {
        float g[4] = {0.1f * (float)t, -0.2f, 3.0f / (float)t, 1e-3f};
        adam_step(w, g, m, v, 4, t, &p);
    }
    for (int i = 0; i < 4; i++) CHECK(fabsf(w[i] - want_w[i]) <= 2e-7f, "adam w[%d] %.9g, PyTorch %.9g", i, w[i], want_w[i]);
    // clip_grad_norm_([p], 0.5) with grad [3, 4]: returns 5, grad becomes [0.3, 0.4] (times 0.5 / (5 + 1e-6))
    float g[2] = {3, 4};
    double n = clip_grad_norm(g, 2, 0.5);
    CHECK(n == 5 && fabsf(g[0] - 0.2999999523162842f) <= 1e-7f && fabsf(g[1] - 0.3999999165534973f) <= 1e-7f,
          "clip: norm %g, g %.9g %.9g", n, g[0], g[1]);
    float h[2] = {0.1f, 0.1f};
    clip_grad_norm(h, 2, 0.5);
    CHECK(h[0] == 0.1f && h[1] == 0.1f, "clip scaled a small gradient");
    float bad[2] = {NAN, 1};
    CHECK(isnan(clip_grad_norm(bad, 2, 0.5)), "clip hides a nan");
}

// A shard of documents of lengths 1, 3, 10, 2, 40 with token ids 4 + (doc * 50 + i) % 300.
static const int doc_len[] = {1, 3, 10, 2, 40};
#define N_DOCS 5
static int tok_of(int d, int i) { return 4 + (d * 50 + i) % 300; }

static void write_shard(const char *path)
{
    OutFile *o = out_open(path);
    ShardWriter w;
    shard_writer_init(&w, o->fp, path);
    for (int d = 0; d < N_DOCS; d++) {
        int32_t ids[64];
        for (int i = 0; i < doc_len[d]; i++) ids[i] = tok_of(d, i);
        char name[16];
        snprintf(name, sizeof name, "doc%d", d);
        shard_writer_add(&w, name, ids, (size_t)doc_len[d]);
    }
    shard_writer_finish(&w, remi_vocab_hash(), REMI_VOCAB_SIZE);
    out_commit(o);
}

// Framed token at position p of document d (BOS doc EOS).
static int framed(int d, int p) { return p == 0 ? REMI_BOS : p <= doc_len[d] ? tok_of(d, p - 1) : REMI_EOS; }

static void test_windows(void)
{
    char path[256], err[ERR_MAX];
    snprintf(path, sizeof path, "%s/train.bin", dir);
    write_shard(path);
    const int L = 8;
    DataSet ds;
    CHECK(data_open(&ds, path, L, remi_vocab_hash() ^ 1, DATA_TRAIN | DATA_EVAL, err) < 0 && strstr(err, "another vocabulary"),
          "a shard of another vocabulary was accepted");
    if (data_open(&ds, path, L, remi_vocab_hash(), DATA_TRAIN | DATA_EVAL, err) < 0) {
        CHECK(0, "data_open: %s", err);
        return;
    }
    // starts: documents of framed length m <= 9 have one, longer ones m - 8 (12 -> 4, 42 -> 34)
    CHECK(ds.n_starts == 3 + 4 + 34, "n_starts %lld", (long long)ds.n_starts);
    // evaluation: every target of every document exactly once, in order
    long n_targets = 0;
    int next[N_DOCS] = {0}; // next framed position expected as a target, per document
    for (int d = 0; d < N_DOCS; d++) next[d] = 1;
    int32_t win[L + 1];
    int bad = 0;
    for (int64_t k = 0; k < ds.n_eval; k++) {
        data_eval_window(&ds, k, win);
        // find which document this window is from by its first token
        int d = -1, p0 = -1;
        for (int dd = 0; dd < N_DOCS && d < 0; dd++)
            for (int p = 0; p < doc_len[dd] + 2; p++)
                if (framed(dd, p) == win[0] && (p > 0 || next[dd] == 1) && p == next[dd] - 1) d = dd, p0 = p;
        if (d < 0) {
            bad++;
            continue;
        }
        for (int t = 1; t <= L; t++) {
            if (win[t] == REMI_PAD) {
                bad += p0 + t < doc_len[d] + 2; // a PAD only after EOS
                continue;
            }
            bad += win[t] != framed(d, p0 + t) || p0 + t != next[d];
            next[d]++, n_targets++;
        }
    }
    long want = 0;
    for (int d = 0; d < N_DOCS; d++) want += doc_len[d] + 1, bad += next[d] != doc_len[d] + 2;
    CHECK(bad == 0 && n_targets == want && ds.n_targets == want, "evaluation windows: %d bad, %ld targets of %ld", bad,
          n_targets, want);
    // training windows: a contiguous slice of one framed document, PAD only past its end; uniform starts
    long count[N_DOCS][64] = {{0}};
    const int n_draws = 41000;
    bad = 0;
    for (int i = 0; i < n_draws; i++) {
        data_train_window(&ds, 42, (uint64_t)i, NULL, win);
        int found = 0;
        for (int d = 0; d < N_DOCS && !found; d++)
            for (int p = 0; p + L < doc_len[d] + 2 + L && !found; p++) {
                int ok = 1;
                for (int t = 0; t <= L && ok; t++)
                    ok = p + t < doc_len[d] + 2 ? win[t] == framed(d, p + t) : win[t] == REMI_PAD;
                if (ok) found = 1, count[d][p]++;
            }
        bad += !found;
    }
    CHECK(bad == 0, "%d training windows are not a slice of one document", bad);
    // 41 starts, 1000 expected draws each: all within 5 sigma (about +-160)
    int off = 0;
    for (int d = 0; d < N_DOCS; d++)
        for (int p = 0; p < 64; p++)
            if (count[d][p] && labs(count[d][p] - 1000) > 160) off++;
    CHECK(off == 0 && count[4][33] > 0 && count[4][34] == 0 && count[0][0] > 0, "starts not uniform (%d off)", off);
    // a function of (seed, index): the same again, another seed differs
    int32_t a[L + 1], b[L + 1];
    data_train_window(&ds, 42, 1234, NULL, a);
    data_train_window(&ds, 42, 1234, NULL, b);
    CHECK(memcmp(a, b, sizeof a) == 0, "window not a function of (seed, index)");
    int differ = 0;
    for (int i = 0; i < 50; i++) {
        data_train_window(&ds, 42, (uint64_t)i, NULL, a);
        data_train_window(&ds, 43, (uint64_t)i, NULL, b);
        differ += memcmp(a, b, sizeof a) != 0;
    }
    CHECK(differ > 30, "seed barely changes the windows (%d of 50)", differ);
    data_close(&ds);
}

// ---- the validation subset -------------------------------------------------------------------------
// 30 documents "FOLDER/songNN.mid" of lengths 1 + (7 d) % 23, written in order or reversed.
#define N_SUB 30
static int sub_len(int d) { return 1 + (7 * d) % 23; }

static void write_named_shard(const char *path, const char *folder, int reversed)
{
    OutFile *o = out_open(path);
    ShardWriter w;
    shard_writer_init(&w, o->fp, path);
    for (int k = 0; k < N_SUB; k++) {
        int d = reversed ? N_SUB - 1 - k : k;
        int32_t ids[32];
        for (int i = 0; i < sub_len(d); i++) ids[i] = tok_of(d, i);
        char name[64];
        snprintf(name, sizeof name, "%s/song%02d.mid", folder, d);
        shard_writer_add(&w, name, ids, (size_t)sub_len(d));
    }
    shard_writer_finish(&w, remi_vocab_hash(), REMI_VOCAB_SIZE);
    out_commit(o);
}

// Name d of a shard, from its names section (a lazily mapped shard has no names array).
static const char *name_at(const Shard *s, int64_t d)
{
    const char *p = s->names_blob;
    while (d-- > 0) p += strlen(p) + 1;
    return p;
}

// The subset of ds as a bit set over song numbers; *targets gets the sum of their targets.
static uint32_t subset_of(const DataSet *ds, long *targets)
{
    uint32_t set = 0;
    *targets = 0;
    for (int64_t j = 0; j < ds->n_eval_docs; j++) {
        int64_t d = ds->eval_docs ? ds->eval_docs[j] : j;
        const char *name = strrchr(name_at(&ds->shard, d), '/') + 1;
        int song = atoi(name + 4);
        set |= 1u << song;
        *targets += sub_len(song) + 1;
    }
    return set;
}

static void test_val_subset(void)
{
    char a_path[256], b_path[256], err[ERR_MAX];
    snprintf(a_path, sizeof a_path, "%s/val_a.bin", dir);
    snprintf(b_path, sizeof b_path, "%s/val_b.bin", dir);
    write_named_shard(a_path, "here", 0);
    write_named_shard(b_path, "elsewhere/deeper", 1);
    const int L = 8;
    DataSet a, b;
    if (data_open(&a, a_path, L, remi_vocab_hash(), DATA_EVAL, err) < 0 ||
        data_open(&b, b_path, L, remi_vocab_hash(), DATA_EVAL | DATA_LAZY, err) < 0) {
        CHECK(0, "data_open: %s", err);
        return;
    }
    long total = 0, t;
    for (int d = 0; d < N_SUB; d++) total += sub_len(d) + 1;
    CHECK(subset_of(&a, &t) == (1u << N_SUB) - 1 && t == total && a.n_targets == total, "no budget: every document");
    uint32_t prev = 0;
    int bad_prefix = 0, bad_same = 0, bad_size = 0, bad_cover = 0, n_sizes = 0, last_n = 0;
    for (long budget = 1; budget <= total + 5; budget++) {
        CHECK(data_limit_eval(&a, budget, err) == 0 && data_limit_eval(&b, budget, err) == 0, "limit: %s", err);
        long ta, tb;
        uint32_t sa = subset_of(&a, &ta), sb = subset_of(&b, &tb);
        bad_same += sa != sb;           // another order and folder: the same songs
        bad_prefix += (prev & ~sa) != 0; // a larger budget only adds documents
        bad_size += ta < (budget < total ? budget : total) || ta != a.n_targets;
        n_sizes += a.n_eval_docs != last_n, last_n = (int)a.n_eval_docs;
        prev = sa;
        // every target of the subset scored exactly once by the evaluation windows
        long scored = 0;
        int32_t win[L + 1];
        for (int64_t k = 0; k < a.n_eval; k++) {
            data_eval_window(&a, k, win);
            for (int i = 1; i <= L; i++) scored += win[i] != REMI_PAD;
        }
        bad_cover += scored != ta;
    }
    CHECK(bad_same == 0, "the subset depends on document order or folder (%d budgets)", bad_same);
    CHECK(bad_prefix == 0, "a larger budget dropped a document (%d budgets)", bad_prefix);
    CHECK(bad_size == 0, "subset below its budget or miscounted (%d budgets)", bad_size);
    CHECK(bad_cover == 0, "evaluation windows do not score the subset's targets once (%d budgets)", bad_cover);
    CHECK(n_sizes == N_SUB, "the subset grows one document at a time: %d sizes", n_sizes);
    // the same after reopening, and 0 brings back every document
    CHECK(data_limit_eval(&a, 100, err) == 0, "limit");
    long t1, t2;
    uint32_t s1 = subset_of(&a, &t1);
    data_close(&a);
    CHECK(data_open(&a, a_path, L, remi_vocab_hash(), DATA_EVAL, err) == 0 && data_limit_eval(&a, 100, err) == 0, "reopen");
    CHECK(subset_of(&a, &t2) == s1 && t1 == t2 && t1 >= 100 && t1 < total, "subset after reopening: %ld / %ld", t1, t2);
    CHECK(data_limit_eval(&a, 0, err) == 0 && a.n_eval_docs == N_SUB && a.eval_docs == NULL, "budget 0: all");
    data_close(&a), data_close(&b);
}

// ---- augmentation ---------------------------------------------------------------------------------------
#define P(x) (REMI_PITCH0 + (x) - REMI_PITCH_MIN)
#define VB(b) (REMI_VELOCITY0 + (b))
#define PR(p) (REMI_PROGRAM0 + 1 + (p))
#define DU (REMI_DURATION0 + 3)
#define CH (REMI_CHORD0 + 1)
#define PO (REMI_POSITION0 + 4)

static int same_tokens(const int32_t *got, const int32_t *want, int n, const char *what)
{
    for (int i = 0; i < n; i++)
        if (got[i] != want[i]) {
            CHECK(0, "%s: token %d is %s, want %s", what, i, remi_token_str(got[i]), remi_token_str(want[i]));
            return 0;
        }
    CHECK(1, "%s", what);
    return 1;
}

static void test_augment(void)
{
    // a window starting inside a note (its Program token lies before the window), a chord, a pitched note, a drum
    // hit, a note of another program, a drum hit at the top of the range
    const int32_t w0[] = {P(64), VB(4), DU, REMI_BAR, PO, PR(0), CH, PR(0), P(60), VB(5), DU, PR(-1), P(36), VB(8), DU,
                          PR(33), P(100), VB(15), DU, PR(-1), P(108), VB(0), DU};
    enum { N = sizeof w0 / sizeof *w0 };
    int32_t w[N];
    memcpy(w, w0, sizeof w);
    int got = data_augment_window(w, N, 0, 3, 2);
    const int32_t up3[N] = {P(67), VB(6), DU, REMI_BAR, PO, PR(0), CH, PR(0), P(63), VB(7), DU, PR(-1), P(36), VB(8),
                            DU, PR(33), P(103), VB(15), DU, PR(-1), P(108), VB(0), DU};
    CHECK(got == 3, "offset +3 applied as %d", got);
    same_tokens(w, up3, N, "+3 semitones, +2 velocity bins: pitched notes move, chord and drums stay, 15 clips");
    // the same window when the program before it is drums: its first note stays too
    memcpy(w, w0, sizeof w);
    data_augment_window(w, N, -1, 3, 2);
    const int32_t up3d[N] = {P(64), VB(4), DU, REMI_BAR, PO, PR(0), CH, PR(0), P(63), VB(7), DU, PR(-1), P(36), VB(8),
                             DU, PR(33), P(103), VB(15), DU, PR(-1), P(108), VB(0), DU};
    same_tokens(w, up3d, N, "a window that starts inside a drum hit leaves it alone");
    // +12 would take Pitch_100 to 112: the nearest offset that fits is +8 (drums at 108 do not count)
    memcpy(w, w0, sizeof w);
    got = data_augment_window(w, N, 0, 12, 0);
    const int32_t up8[N] = {P(72), VB(4), DU, REMI_BAR, PO, PR(0), CH, PR(0), P(68), VB(5), DU, PR(-1), P(36), VB(8),
                            DU, PR(33), P(108), VB(15), DU, PR(-1), P(108), VB(0), DU};
    CHECK(got == 8, "+12 clamped to %d, want 8", got);
    same_tokens(w, up8, N, "+12 clamped to +8");
    // -50 would take Pitch_60 below 21: -39 fits exactly (the drum at 36 does not count); velocities clip at 0
    memcpy(w, w0, sizeof w);
    got = data_augment_window(w, N, 0, -50, -20);
    const int32_t down[N] = {P(25), VB(0), DU, REMI_BAR, PO, PR(0), CH, PR(0), P(21), VB(0), DU, PR(-1), P(36), VB(8),
                             DU, PR(33), P(61), VB(0), DU, PR(-1), P(108), VB(0), DU};
    CHECK(got == -39, "-50 clamped to %d, want -39", got);
    same_tokens(w, down, N, "-50 clamped to -39, velocities clipped to the lowest bin");
    // drums only: nothing moves
    const int32_t drums[] = {PR(-1), P(40), VB(3), DU, REMI_EOS, REMI_PAD};
    int32_t wd[6];
    memcpy(wd, drums, sizeof wd);
    data_augment_window(wd, 6, 0, 5, 5);
    same_tokens(wd, drums, 6, "a drums-only window is untouched");

    // the draws: inside the ranges, every value reached, a function of (seed, i)
    DataAugment aug = {-5, 6, -2, 2};
    int seen_p[12] = {0}, seen_v[5] = {0}, out = 0, differ = 0;
    for (uint64_t i = 0; i < 6000; i++) {
        int p, v, p2, v2;
        data_augment_draw(&aug, 7, i, &p, &v);
        if (p < -5 || p > 6 || v < -2 || v > 2) {
            out++;
            continue;
        }
        seen_p[p + 5]++, seen_v[v + 2]++;
        data_augment_draw(&aug, 7, i, &p2, &v2);
        out += p2 != p || v2 != v;
        data_augment_draw(&aug, 8, i, &p2, &v2);
        differ += p2 != p;
    }
    int missing = 0;
    for (int k = 0; k < 12; k++) missing += seen_p[k] < 400; // 500 expected each
    for (int k = 0; k < 5; k++) missing += seen_v[k] < 1000;   // 1200 expected each
    CHECK(out == 0 && missing == 0, "draws: %d outside or not repeatable, %d values rare", out, missing);
    CHECK(differ > 4500, "another seed barely changes the offsets (%d of 6000)", differ);

    // training windows with augmentation: the same for the same (seed, i); only Pitch and Velocity tokens change
    char path[256], err[ERR_MAX];
    snprintf(path, sizeof path, "%s/train.bin", dir);
    DataSet ds;
    if (data_open(&ds, path, 8, remi_vocab_hash(), DATA_TRAIN | DATA_LAZY, err) < 0) {
        CHECK(0, "data_open: %s", err);
        return;
    }
    int32_t plain[9], a1[9], a2[9];
    int bad = 0, changed = 0;
    for (uint64_t i = 0; i < 500; i++) {
        data_train_window(&ds, 42, i, NULL, plain);
        data_train_window(&ds, 42, i, &aug, a1);
        data_train_window(&ds, 42, i, &aug, a2);
        bad += memcmp(a1, a2, sizeof a1) != 0;
        for (int t = 0; t < 9; t++) {
            TokType ty = remi_token_type(plain[t]);
            bad += a1[t] != plain[t] && ty != TOK_PITCH && ty != TOK_VELOCITY;
            bad += remi_token_type(a1[t]) != ty;
            changed += a1[t] != plain[t];
        }
    }
    CHECK(bad == 0 && changed > 100, "augmented windows: %d bad, %d tokens changed", bad, changed);
    data_close(&ds);
}

static void test_state(void)
{
    char cfg[256], err[ERR_MAX], path[256];
    snprintf(cfg, sizeof cfg, "%s/tiny.json", dir);
    FILE *f = fopen(cfg, "w");
    fputs("{\"model\": {\"depth\": [1, 1, 1], \"input_length\": 8, \"num_heads\": 2, \"d_model\": 8, "
          "\"dim_feedforward\": 16}, \"train\": {\"batch_size\": 2, \"steps\": 3}}", f);
    fclose(f);
    RunConfig rc;
    if (config_load(&rc, cfg, err) < 0) {
        CHECK(0, "tiny config: %s", err);
        return;
    }
    snprintf(path, sizeof path, "%s/train.bin", dir);
    DataSet ds;
    Trainer a, b;
    if (data_open(&ds, path, rc.input_length, remi_vocab_hash(), DATA_TRAIN | DATA_LAZY, err) < 0 || trainer_init(&a, &rc, REMI_VOCAB_SIZE, NULL, err) < 0 ||
        trainer_init(&b, &rc, REMI_VOCAB_SIZE, NULL, err) < 0) {
        CHECK(0, "setup: %s", err);
        return;
    }
    double norm, lr;
    for (int i = 0; i < 2; i++) trainer_step(&a, &ds, &norm, &lr);
    snprintf(path, sizeof path, "%s/trainer.state", dir);
    trainer_save(&a, path, 77, remi_vocab_hash(), 5);
    int64_t run = 0;
    CHECK(trainer_load(&b, path, 78, remi_vocab_hash(), &run, err) < 0 && strstr(err, "another config"), "other config");
    CHECK(trainer_load(&b, path, 77, remi_vocab_hash(), &run, err) == 0, "load: %s", err);
    CHECK(run == 5 && b.step == 2 && memcmp(a.m.w, b.m.w, a.m.n_floats * 4) == 0 &&
          memcmp(a.adam_v, b.adam_v, a.m.n_floats * 4) == 0, "state read back differs");
    // one more step each: bitwise the same
    trainer_step(&a, &ds, &norm, &lr), trainer_step(&b, &ds, &norm, &lr);
    CHECK(memcmp(a.m.w, b.m.w, a.m.n_floats * 4) == 0, "a step after a reload differs");
    // a truncated state is refused
    if (truncate(path, 2000) == 0)
        CHECK(trainer_load(&b, path, 77, remi_vocab_hash(), &run, err) < 0 && strstr(err, "wrong size"), "truncated");
    trainer_free(&a), trainer_free(&b), data_close(&ds), config_free(&rc);
}

// --recompute-ffn: the backward recomputes linear1, ReLU and dropout instead of keeping their output; the same
// losses, gradient norms, weights and Adam moments, byte for byte, with dropout on (the same seeds), and a plan
// smaller by about a layer's N x F floats per layer after the first
static void test_recompute(void)
{
    char cfg[256], err[ERR_MAX], path[256];
    snprintf(cfg, sizeof cfg, "%s/recompute.json", dir);
    FILE *f = fopen(cfg, "w");
    fputs("{\"model\": {\"depth\": [1, 2, 1], \"input_length\": 8, \"num_heads\": 2, \"d_model\": 8, "
          "\"dim_feedforward\": 16, \"dropout\": 0.2, \"attn_resampling\": true}, \"train\": {\"batch_size\": 2, "
          "\"gradient_accumulation_steps\": 2, \"steps\": 4}}", f);
    fclose(f);
    RunConfig rc[2];
    snprintf(path, sizeof path, "%s/train.bin", dir);
    DataSet ds;
    Trainer t[2];
    int ok = data_open(&ds, path, 8, remi_vocab_hash(), DATA_TRAIN | DATA_LAZY, err) == 0;
    for (int k = 0; ok && k < 2; k++) {
        ok = config_load(&rc[k], cfg, err) == 0;
        rc[k].recompute_ffn = k;
        ok = ok && trainer_init(&t[k], &rc[k], REMI_VOCAB_SIZE, NULL, err) == 0;
    }
    CHECK(ok, "recompute setup: %s", err);
    if (!ok) return;
    int same = 1;
    for (int s = 0; s < 4; s++) {
        double l[2], norm[2], lr[2];
        for (int k = 0; k < 2; k++) l[k] = trainer_step(&t[k], &ds, &norm[k], &lr[k]);
        same = same && memcmp(l, l + 1, sizeof *l) == 0 && memcmp(norm, norm + 1, sizeof *norm) == 0;
    }
    size_t n = t[0].m.n_floats * sizeof(float);
    CHECK(same && memcmp(t[0].m.w, t[1].m.w, n) == 0 && memcmp(t[0].adam_m, t[1].adam_m, n) == 0 &&
              memcmp(t[0].adam_v, t[1].adam_v, n) == 0,
          "recompute_ffn: 4 steps' losses, norms, weights and Adam moments, the bytes of the kept activations");
    // the plan at batch 8192 x 8 (4 MiB a layer, past the block's 2 MiB rounding): 6 layers (pre, 2 in the valley,
    // post, and 2 resampling) kept no r1d, one scratch holds it
    HgConfig hc[2];
    HgPlan hp[2];
    for (int k = 0; k < 2; k++) config_to_hg(&rc[k], REMI_VOCAB_SIZE, &hc[k]), hg_plan(&hc[k], 8192, 8, &hp[k], err);
    double saved = (double)hp[0].act_bytes - (double)hp[1].act_bytes, layer = 8192.0 * 8 * 16 * sizeof(float);
    CHECK(saved >= 3 * layer, "recompute_ffn: the plan saves %.0f bytes, want at least 3 layers' %.0f", saved,
          3 * layer);
    for (int k = 0; k < 2; k++) trainer_free(&t[k]), config_free(&rc[k]);
    data_close(&ds);
}

int main(void)
{
    util_init("test_trainer");
    if (!mkdtemp(dir)) die("mkdtemp failed");
    test_optim();
    test_windows();
    test_val_subset();
    test_augment();
    test_state();
    test_recompute();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return check_done();
}
