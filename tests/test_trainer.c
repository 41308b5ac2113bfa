// test_trainer: the pieces of a training step that are not the model. OneCycle, Adam and clipping against values
// printed by PyTorch 1.13 (torch.optim.lr_scheduler.OneCycleLR, torch.optim.Adam, clip_grad_norm_; the script is in
// the comment above each table). Training and evaluation windows on a hand-made shard: framing, no window crosses
// a document, every evaluation target is scored exactly once, starts are uniform, and everything is a function of
// the seed. The trainer state reads back and refuses another config.
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
    if (data_open(&ds, path, rc.input_length, remi_vocab_hash(), DATA_TRAIN | DATA_LAZY, err) < 0 || trainer_init(&a, &rc, REMI_VOCAB_SIZE, err) < 0 ||
        trainer_init(&b, &rc, REMI_VOCAB_SIZE, err) < 0) {
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

int main(void)
{
    util_init("test_trainer");
    if (!mkdtemp(dir)) die("mkdtemp failed");
    test_optim();
    test_windows();
    test_state();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return check_done();
}
