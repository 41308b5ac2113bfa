// trainer: the training step, validation and trainer-state file (see trainer.h).
#include "trainer.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "ops.h"
#include "optim.h"
#include "remi.h"
#include "util.h"

int trainer_plan(const RunConfig *rc, int V, TrainPlan *p, char *err)
{
    HgConfig cfg;
    HgPlan hp;
    config_to_hg(rc, V, &cfg);
    int B = rc->batch_size, T = rc->input_length;
    if (hg_plan(&cfg, B, T, &hp, err) < 0) return -1;
    double f = sizeof(float), BT = (double)B * T, hidden = 0;
    for (const HgLevel *lv = &cfg.top; lv->valley; lv = lv->valley) { // the auxiliary losses' gradients
        int Tp = (T + lv->s - 1) / lv->s * lv->s;
        T = Tp / lv->s;
        hidden += (double)B * cfg.C * (T + (cfg.save_updown_hidden ? Tp : 0));
    }
    *p = (TrainPlan){.n_floats = hp.n_floats, .weights = f * hp.n_floats + hp.table_bytes, .grads = f * hp.n_floats,
                     .adam = 2 * f * hp.n_floats,
                     .acts = hp.act_bytes + f * (BT * V + hidden) + 3 * f * (BT + B)};
    p->total = p->weights + p->grads + p->adam + p->acts;
    return 0;
}

int trainer_init(Trainer *tr, const RunConfig *rc, int V, const Backend *be, char *err)
{
    memset(tr, 0, sizeof *tr);
    HgConfig cfg;
    config_to_hg(rc, V, &cfg);
    if (hg_build(&tr->m, &cfg, err) < 0) return -1;
    hg_init_weights(&tr->m, (uint64_t)rc->seed);
    if (be && hg_set_backend(&tr->m, be, err) < 0) return -1;
    be = tr->m.be;
    tr->rc = rc, tr->B = rc->batch_size, tr->T = rc->input_length, tr->V = V;
    tr->best_val = INFINITY;
    hg_alloc(&tr->m, tr->B, tr->T);
    size_t n = tr->m.n_floats, bt = (size_t)tr->B * tr->T;
    tr->adam_m = be->alloc(n * sizeof(float)), tr->adam_v = be->alloc(n * sizeof(float));
    tr->win = xmalloc(((size_t)tr->B * (tr->T + 1)) * sizeof *tr->win);
    tr->inp = xmalloc(bt * sizeof *tr->inp), tr->tgt = xmalloc(bt * sizeof *tr->tgt);
    tr->tgt_b = be->on_host ? tr->tgt : be->alloc(bt * sizeof *tr->tgt_b);
    tr->dlogits = be->alloc(bt * V * sizeof *tr->dlogits);
    // the hidden states' shapes are known after one forward pass; size their gradients now
    memset(tr->inp, 0, bt * sizeof *tr->inp);
    hg_forward(&tr->m, tr->inp, 0, 0);
    tr->dh = xcalloc((size_t)(tr->m.max_hidden ? tr->m.max_hidden : 1), sizeof *tr->dh);
    for (int h = 0; h < tr->m.n_hidden; h++) tr->dh[h] = be->alloc((size_t)tr->B * tr->m.hidden_T[h] * cfg.C * sizeof(float));
    return be->sync(err);
}

void trainer_free(Trainer *tr)
{
    const Backend *be = tr->m.be;
    for (int h = 0; tr->dh && h < tr->m.max_hidden; h++) be->free(tr->dh[h]);
    free(tr->dh);
    be->free(tr->adam_m), be->free(tr->adam_v), be->free(tr->dlogits);
    if (tr->tgt_b != tr->tgt) be->free(tr->tgt_b);
    free(tr->win), free(tr->inp), free(tr->tgt);
    hg_free(&tr->m);
    memset(tr, 0, sizeof *tr);
}

double trainer_loss(const HgModel *m, const int32_t *tgt, int loss, double alpha, float *dlogits, float *const *dh,
                    float scale)
{
    const Backend *be = m->be;
    int B = m->B, T = m->T, V = m->cfg.V, C = m->cfg.C, n_valid;
    double l = be->crossentropy_fused(dlogits, m->logits, tgt, B * T, V, scale, &n_valid);
    for (int h = 0; h < m->n_hidden; h++) be->zero(dh[h], (size_t)B * m->hidden_T[h] * C * sizeof(float));
    if (loss == 0 || m->n_hidden == 0) return l;
    // cosine_ce: alpha * (pooled mean of cos over row pairs); exp_cosine_ce: alpha * mean over states and items
    double aux = 0;
    long pairs = 0;
    for (int h = 0; h < m->n_hidden; h++) {
        long np = 0;
        if (loss == 1) aux += be->cosine_pairs_forward(m->hidden[h], B, m->hidden_T[h], C, &np), pairs += np;
        else aux += be->exp_cosine_forward(m->hidden[h], B, m->hidden_T[h], C);
    }
    double denom = loss == 1 ? (double)pairs : (double)m->n_hidden * B;
    if (denom == 0) return l;
    for (int h = 0; h < m->n_hidden; h++) {
        float g = (float)(alpha / denom) * scale;
        if (loss == 1) be->cosine_pairs_backward(dh[h], m->hidden[h], B, m->hidden_T[h], C, g);
        else be->exp_cosine_backward(dh[h], m->hidden[h], B, m->hidden_T[h], C, g);
    }
    return l + alpha * aux / denom;
}

// Splits windows (B, T+1) into inputs and targets (B, T).
static void split_windows(Trainer *tr)
{
    for (int b = 0; b < tr->B; b++)
        for (int t = 0; t < tr->T; t++) {
            tr->inp[b * tr->T + t] = tr->win[b * (tr->T + 1) + t];
            tr->tgt[b * tr->T + t] = tr->win[b * (tr->T + 1) + t + 1];
        }
}

double trainer_step(Trainer *tr, const DataSet *train, double *grad_norm, double *lr)
{
    const RunConfig *rc = tr->rc;
    HgModel *m = &tr->m;
    const Backend *be = m->be;
    int A = rc->grad_accum;
    be->zero(m->bdw, m->n_floats * sizeof(float));
    double loss = 0;
    DataAugment aug = {rc->aug_pitch[0], rc->aug_pitch[1], rc->aug_velocity[0], rc->aug_velocity[1]};
    int augment = aug.pitch_lo || aug.pitch_hi || aug.velocity_lo || aug.velocity_hi;
    for (int a = 0; a < A; a++) {
        uint64_t micro = (uint64_t)tr->step * (uint64_t)A + (uint64_t)a; // global micro-batch index
        double t0 = now_s();
        for (int b = 0; b < tr->B; b++)
            data_train_window(train, (uint64_t)rc->seed, micro * (uint64_t)tr->B + (uint64_t)b, augment ? &aug : NULL,
                              tr->win + (size_t)b * (tr->T + 1));
        split_windows(tr);
        if (tr->tgt_b != tr->tgt) be->upload(tr->tgt_b, tr->tgt, (size_t)tr->B * tr->T * sizeof *tr->tgt);
        tr->t_data += now_s() - t0;
        hg_forward(m, tr->inp, 1, splitmix64((uint64_t)rc->seed ^ splitmix64(micro)));
        loss += trainer_loss(m, tr->tgt_b, rc->loss, rc->alpha, tr->dlogits, tr->dh, 1.0f / (float)A) / A;
        hg_backward(m, tr->inp, tr->dlogits, tr->dh);
    }
    *grad_norm = be->clip_grad_norm(m->bdw, m->n_floats, rc->grad_norm_clip);
    *lr = rc->one_cycle ? onecycle_lr(tr->step, rc->steps, rc->max_lr, rc->pct_start, rc->div_factor,
                                      rc->final_div_factor, rc->anneal_linear)
                        : rc->lr;
    if (!isfinite(loss) || !isfinite(*grad_norm)) return loss;
    AdamParams p = {*lr, rc->beta1, rc->beta2, rc->eps, rc->weight_decay};
    be->adam_step(m->bw, m->bdw, tr->adam_m, tr->adam_v, m->n_floats, tr->step + 1, &p);
    char err[ERR_MAX];
    if (be->sync(err) < 0) die("%s", err); // a GPU fault: nothing of this step is trustworthy
    // the embedding's PAD row is frozen (padding_idx): its gradient is zero, and Adam leaves it in place
    tr->step++;
    return loss;
}

// ---- trainer state ------------------------------------------------------------------------------
static void put64(int32_t *h, int slot, uint64_t v) { h[slot] = (int32_t)(uint32_t)v, h[slot + 1] = (int32_t)(uint32_t)(v >> 32); }
static uint64_t get64(const int32_t *h, int slot) { return (uint64_t)(uint32_t)h[slot] | (uint64_t)(uint32_t)h[slot + 1] << 32; }

void trainer_save(const Trainer *tr, const char *path, uint64_t config_hash, uint64_t vocab_hash, int64_t run_id)
{
    int32_t h[256] = {0};
    uint64_t best;
    memcpy(&best, &tr->best_val, 8);
    h[TS_H_MAGIC] = TS_MAGIC, h[TS_H_VERSION] = TS_VERSION;
    put64(h, TS_H_N_FLOATS, tr->m.n_floats), put64(h, TS_H_STEP, (uint64_t)tr->step);
    put64(h, TS_H_RUN_ID, (uint64_t)run_id), put64(h, TS_H_CONFIG_HASH, config_hash);
    put64(h, TS_H_VOCAB_HASH, vocab_hash), put64(h, TS_H_BEST_VAL, best);
    h[TS_H_PRECISION] = tr->precision;
    const Backend *be = tr->m.be;
    size_t n = tr->m.n_floats;
    float *host = be->on_host ? NULL : xmalloc(n * sizeof *host); // the Adam moments, one at a time
    OutFile *o = out_open(path);
    xfwrite(h, sizeof h, 1, o->fp, path);
    hg_weights_to_host((HgModel *)&tr->m);
    xfwrite(tr->m.w, sizeof(float), n, o->fp, path);
    // test hook (tests/cli/test_train.sh): die by SIGKILL half-way through the checkpoint of this step
    const char *kill_at = getenv("HMT_TEST_KILL_IN_CHECKPOINT");
    if (kill_at && atol(kill_at) == tr->step) fflush(o->fp), raise(SIGKILL);
    const float *moments[2] = {tr->adam_m, tr->adam_v};
    for (int k = 0; k < 2; k++) {
        if (host) be->download(host, moments[k], n * sizeof *host);
        xfwrite(host ? host : moments[k], sizeof(float), n, o->fp, path);
    }
    free(host);
    out_commit(o);
}

// Weights and Adam moments from f into the trainer's backend; -1 when f holds too few or too many floats.
static int read_state(Trainer *tr, FILE *f)
{
    const Backend *be = tr->m.be;
    size_t n = tr->m.n_floats;
    if (fread(tr->m.w, sizeof(float), n, f) != n) return -1;
    float *host = be->on_host ? NULL : xmalloc(n * sizeof *host);
    float *moments[2] = {tr->adam_m, tr->adam_v};
    int rc = 0;
    for (int k = 0; k < 2 && rc == 0; k++) {
        if (fread(host ? host : moments[k], sizeof(float), n, f) != n) rc = -1;
        else if (host) be->upload(moments[k], host, n * sizeof *host);
    }
    free(host);
    if (rc == 0 && fgetc(f) != EOF) rc = -1;
    hg_weights_to_backend(&tr->m);
    return rc;
}

int trainer_load(Trainer *tr, const char *path, uint64_t config_hash, uint64_t vocab_hash, int64_t *run_id,
                 char *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) return err_set(err, "'%s': %s", path, strerror(errno));
    int32_t h[256];
    int rc = -1;
    size_t n = tr->m.n_floats;
    if (fread(h, sizeof h, 1, f) != 1 || h[TS_H_MAGIC] != TS_MAGIC) err_set(err, "'%s': not a trainer state", path);
    else if (h[TS_H_VERSION] != TS_VERSION)
        err_set(err, "'%s': trainer state version %d, expected %d", path, h[TS_H_VERSION], TS_VERSION);
    else if (get64(h, TS_H_CONFIG_HASH) != config_hash)
        err_set(err, "'%s': saved with another config (the run's config.json holds it)", path);
    else if (get64(h, TS_H_VOCAB_HASH) != vocab_hash) err_set(err, "'%s': saved with another vocabulary", path);
    else if (get64(h, TS_H_N_FLOATS) != n) err_set(err, "'%s': %llu parameters, the config has %zu", path,
                                                   (unsigned long long)get64(h, TS_H_N_FLOATS), n);
    else if (read_state(tr, f) < 0)
        err_set(err, "'%s': wrong size (truncated or trailing data)", path);
    else {
        uint64_t best = get64(h, TS_H_BEST_VAL);
        tr->step = (long)get64(h, TS_H_STEP);
        tr->precision = (int)h[TS_H_PRECISION];
        memcpy(&tr->best_val, &best, 8);
        *run_id = (int64_t)get64(h, TS_H_RUN_ID);
        rc = 0;
    }
    fclose(f);
    return rc;
}
