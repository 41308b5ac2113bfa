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

// A step's input and output block (Trainer.io_h, io_b): the dropout seeds (A), Adam's constants, inputs and
// targets (A, B, T) each; then, at in_bytes, the gradient norm and the A * S loss terms
typedef struct StepIO {
    uint64_t *seed;
    AdamStep *k;
    int32_t *inp, *tgt;
    double *out;
} StepIO;

static size_t step_in_bytes(int A, int B, int T)
{
    size_t bytes = (size_t)A * sizeof(uint64_t) + sizeof(AdamStep) + 2 * (size_t)A * B * T * sizeof(int32_t);
    return (bytes + 7) & ~(size_t)7;
}

static StepIO step_io(const Trainer *tr, char *base)
{
    size_t abt = (size_t)tr->A * tr->B * tr->T;
    StepIO io;
    io.seed = (uint64_t *)base;
    io.k = (AdamStep *)(io.seed + tr->A);
    io.inp = (int32_t *)(io.k + 1), io.tgt = io.inp + abt;
    io.out = (double *)(base + tr->in_bytes);
    return io;
}

int trainer_plan(const RunConfig *rc, int V, TrainPlan *p, char *err)
{
    HgConfig cfg;
    HgPlan hp;
    config_to_hg(rc, V, &cfg);
    int B = rc->batch_size, T = rc->input_length, A = rc->grad_accum, n_hidden = 0;
    if (hg_plan(&cfg, B, T, &hp, err) < 0) return -1;
    double f = sizeof(float), BT = (double)B * T, hidden = 0;
    size_t in_bytes = step_in_bytes(A, B, T);
    for (const HgLevel *lv = &cfg.top; lv->valley; lv = lv->valley) { // the auxiliary losses' gradients
        int Tp = (T + lv->s - 1) / lv->s * lv->s;
        T = Tp / lv->s;
        hidden += (double)B * cfg.C * (T + (cfg.save_updown_hidden ? Tp : 0));
        n_hidden += 1 + cfg.save_updown_hidden;
    }
    double io = 2.0 * ((double)in_bytes + 8.0 * (1 + (double)A * (1 + n_hidden))); // host and backend
    *p = (TrainPlan){.n_floats = hp.n_floats, .weights = f * hp.n_floats + hp.table_bytes, .grads = f * hp.n_floats,
                     .adam = 2 * f * hp.n_floats,
                     .acts = hp.act_bytes + f * (BT * V + hidden) + 4.0 * (rc->input_length + 1) + io};
    p->total = p->weights + p->grads + p->adam + p->acts;
    return 0;
}

static void step_ops(Trainer *tr);

// trainer_init's set-up on be; dry: in a dry run of be (the weights are not drawn)
static int init_on(Trainer *tr, const RunConfig *rc, int V, const Backend *be, int dry, char *err)
{
    memset(tr, 0, sizeof *tr);
    HgConfig cfg;
    config_to_hg(rc, V, &cfg);
    if (hg_build(&tr->m, &cfg, err) < 0) return -1;
    if (!dry) hg_init_weights(&tr->m, (uint64_t)rc->seed);
    if (be && hg_set_backend(&tr->m, be, err) < 0) return -1;
    be = tr->m.be;
    tr->rc = rc, tr->B = rc->batch_size, tr->T = rc->input_length, tr->V = V, tr->A = rc->grad_accum;
    tr->best_val = INFINITY;
    hg_alloc(&tr->m, tr->B, tr->T);
    size_t n = tr->m.n_floats, bt = (size_t)tr->B * tr->T;
    tr->adam_m = be->alloc(n * sizeof(float)), tr->adam_v = be->alloc(n * sizeof(float));
    tr->win = xmalloc(((size_t)tr->T + 1) * sizeof *tr->win);
    tr->dlogits = be->alloc(bt * V * sizeof *tr->dlogits);
    // the hidden states' shapes are known after one forward pass; size their gradients now
    int32_t *zeros = xcalloc(bt, sizeof *zeros);
    hg_forward(&tr->m, zeros, 0, 0);
    free(zeros);
    tr->dh = xcalloc((size_t)(tr->m.max_hidden ? tr->m.max_hidden : 1), sizeof *tr->dh);
    for (int h = 0; h < tr->m.n_hidden; h++) tr->dh[h] = be->alloc((size_t)tr->B * tr->m.hidden_T[h] * cfg.C * sizeof(float));
    tr->S = 1 + tr->m.n_hidden;
    tr->in_bytes = step_in_bytes(tr->A, tr->B, tr->T), tr->out_bytes = (1 + (size_t)tr->A * tr->S) * sizeof(double);
    tr->io_h = be->host_alloc(tr->in_bytes + tr->out_bytes);
    tr->pinned = tr->io_h != NULL;
    if (!tr->io_h) tr->io_h = xcalloc(1, tr->in_bytes + tr->out_bytes);
    tr->io_b = be->alloc(tr->in_bytes + tr->out_bytes);
    const char *g = getenv("HMT_GPU_STEP_GRAPH");
    tr->use_graph = g && strcmp(g, "1") == 0 && !be->on_host && tr->pinned;
    return be->sync(err);
}

int trainer_init(Trainer *tr, const RunConfig *rc, int V, const Backend *be, char *err)
{
    // One allocation per run on a GPU: a dry run of the set-up and of one step counts what they allocate and the
    // workspace the ops ask for, and that is reserved as one block before the set-up proper carves from it, so a
    // run that does not fit fails here, and no step allocates (HMT_GPU_RESERVE=0: one allocation at a time)
    const char *env = getenv("HMT_GPU_RESERVE");
    size_t reserved = 0;
    if (be && be->dry_begin && !(env && strcmp(env, "0") == 0)) {
        Trainer dry;
        be->dry_begin();
        int ok = init_on(&dry, rc, V, be, 1, err) == 0;
        if (ok) step_ops(&dry);
        trainer_free(&dry);
        reserved = be->dry_end();
        if (!ok || be->reserve(err) < 0) return -1;
    }
    if (init_on(tr, rc, V, be, 0, err) < 0) return -1;
    tr->reserved = reserved;
    return 0;
}

void trainer_free(Trainer *tr)
{
    const Backend *be = tr->m.be;
    if (!be) return;
    if (tr->graph) be->graph_free(tr->graph);
    for (int h = 0; tr->dh && h < tr->m.max_hidden; h++) be->free(tr->dh[h]);
    free(tr->dh);
    be->free(tr->adam_m), be->free(tr->adam_v), be->free(tr->dlogits), be->free(tr->io_b);
    if (tr->pinned) be->host_free(tr->io_h);
    else free(tr->io_h);
    free(tr->win);
    hg_free(&tr->m);
    memset(tr, 0, sizeof *tr);
}

// the auxiliary loss's denominator: the row pairs of every hidden state (cosine_ce), or states times items
static double aux_denom(const HgModel *m, int loss)
{
    double pairs = 0;
    for (int h = 0; h < m->n_hidden; h++) pairs += (double)m->B * (m->hidden_T[h] / 2);
    return loss == 1 ? pairs : (double)m->n_hidden * m->B;
}

// trainer_loss's work with its terms left in the backend's memory: vals[0] = the cross-entropy's mean, vals[1 + h]
// = hidden state h's auxiliary sum (unwritten when loss is 0)
static void loss_terms(const HgModel *m, const int32_t *tgt, int loss, double alpha, float *dlogits, float *const *dh,
                       float scale, double *vals)
{
    const Backend *be = m->be;
    int B = m->B, T = m->T, V = m->cfg.V, C = m->cfg.C;
    be->crossentropy_fused(dlogits, vals, m->logits, tgt, B * T, V, scale);
    for (int h = 0; h < m->n_hidden; h++) be->zero(dh[h], (size_t)B * m->hidden_T[h] * C * sizeof(float));
    if (loss == 0 || m->n_hidden == 0) return;
    // cosine_ce: alpha * (pooled mean of cos over row pairs); exp_cosine_ce: alpha * mean over states and items
    for (int h = 0; h < m->n_hidden; h++) {
        if (loss == 1) be->cosine_pairs_forward(vals + 1 + h, m->hidden[h], B, m->hidden_T[h], C);
        else be->exp_cosine_forward(vals + 1 + h, m->hidden[h], B, m->hidden_T[h], C);
    }
    double denom = aux_denom(m, loss);
    if (denom == 0) return;
    for (int h = 0; h < m->n_hidden; h++) {
        float g = (float)(alpha / denom) * scale;
        if (loss == 1) be->cosine_pairs_backward(dh[h], m->hidden[h], B, m->hidden_T[h], C, g);
        else be->exp_cosine_backward(dh[h], m->hidden[h], B, m->hidden_T[h], C, g);
    }
}

// the loss from loss_terms' values (host memory)
static double loss_value(const HgModel *m, int loss, double alpha, const double *vals)
{
    double l = vals[0], aux = 0, denom = aux_denom(m, loss);
    if (loss == 0 || m->n_hidden == 0 || denom == 0) return l;
    for (int h = 0; h < m->n_hidden; h++) aux += vals[1 + h];
    return l + alpha * aux / denom;
}

double trainer_loss(const HgModel *m, const int32_t *tgt, int loss, double alpha, float *dlogits, float *const *dh,
                    float scale)
{
    const Backend *be = m->be;
    size_t bytes = (1 + (size_t)m->n_hidden) * sizeof(double);
    double *vals_b = be->alloc(bytes), *vals = xcalloc(1, bytes);
    loss_terms(m, tgt, loss, alpha, dlogits, dh, scale, vals_b);
    be->download(vals, vals_b, bytes);
    double l = loss_value(m, loss, alpha, vals);
    be->free(vals_b), free(vals);
    return l;
}

// The step's ops, from copying its inputs in to copying its outputs out, with nothing that waits for a GPU: what
// trainer_step runs directly or captures once and replays (every value that changes from step to step is read
// from io_b when the ops run).
static void step_ops(Trainer *tr)
{
    const RunConfig *rc = tr->rc;
    HgModel *m = &tr->m;
    const Backend *be = m->be;
    StepIO io = step_io(tr, tr->io_b);
    size_t bt = (size_t)tr->B * tr->T;
    be->copy_async(tr->io_b, tr->io_h, tr->in_bytes, 1);
    be->zero(m->bdw, m->n_floats * sizeof(float));
    be->zero(io.out, tr->out_bytes);
    for (int a = 0; a < tr->A; a++) {
        hg_forward_b(m, io.inp + a * bt, 1, (SeedRef){io.seed + a, 1, 0});
        loss_terms(m, io.tgt + a * bt, rc->loss, rc->alpha, tr->dlogits, tr->dh, 1.0f / (float)tr->A,
                   io.out + 1 + (size_t)a * tr->S);
        hg_backward(m, tr->dlogits, tr->dh);
    }
    be->clip_grad_norm(io.out, m->bdw, m->n_floats, rc->grad_norm_clip);
    AdamParams p = {0, rc->beta1, rc->beta2, rc->eps, rc->weight_decay}; // the lr is in io.k
    be->adam_apply(m->bw, m->bdw, tr->adam_m, tr->adam_v, m->n_floats, &p, io.k, io.out, 1 + tr->A * tr->S);
    be->copy_async(tr->io_h + tr->in_bytes, io.out, tr->out_bytes, 0);
}

double trainer_step(Trainer *tr, const DataSet *train, double *grad_norm, double *lr)
{
    const RunConfig *rc = tr->rc;
    HgModel *m = &tr->m;
    const Backend *be = m->be;
    int A = tr->A, T = tr->T;
    size_t bt = (size_t)tr->B * T;
    StepIO io = step_io(tr, tr->io_h);
    DataAugment aug = {rc->aug_pitch[0], rc->aug_pitch[1], rc->aug_velocity[0], rc->aug_velocity[1]};
    int augment = aug.pitch_lo || aug.pitch_hi || aug.velocity_lo || aug.velocity_hi;
    double t0 = now_s();
    for (int a = 0; a < A; a++) {
        uint64_t micro = (uint64_t)tr->step * (uint64_t)A + (uint64_t)a; // global micro-batch index
        int32_t *inp = io.inp + a * bt, *tgt = io.tgt + a * bt;
        for (int b = 0; b < tr->B; b++) {
            const int32_t *w = tr->win;
            data_train_window(train, (uint64_t)rc->seed, micro * (uint64_t)tr->B + (uint64_t)b, augment ? &aug : NULL,
                              tr->win);
            memcpy(inp + (size_t)b * T, w, (size_t)T * sizeof *w);
            memcpy(tgt + (size_t)b * T, w + 1, (size_t)T * sizeof *w);
        }
        io.seed[a] = splitmix64((uint64_t)rc->seed ^ splitmix64(micro));
    }
    tr->t_data += now_s() - t0;
    *lr = rc->one_cycle ? onecycle_lr(tr->step, rc->steps, rc->max_lr, rc->pct_start, rc->div_factor,
                                      rc->final_div_factor, rc->anneal_linear)
                        : rc->lr;
    AdamParams p = {*lr, rc->beta1, rc->beta2, rc->eps, rc->weight_decay};
    *io.k = adam_constants(&p, tr->step + 1);
    // HMT_GPU_STEP_GRAPH=1: the first step runs directly (every workspace reaches its size), the second is captured
    // and every later one replays it; a graph gone stale (an op between steps, a validation, grew the workspace) is
    // captured again
    int queued = 0;
    if (tr->graph) {
        int r = be->graph_launch(tr->graph);
        if (r == 0) queued = 1;
        else be->graph_free(tr->graph), tr->graph = NULL, tr->use_graph = r > 0 ? 2 : 0;
    }
    if (!queued && tr->use_graph == 2) {
        tr->use_graph = 0; // one try
        if (be->graph_begin()) {
            step_ops(tr);
            if ((tr->graph = be->graph_end())) be->graph_launch(tr->graph), tr->n_captures++; // NULL: the sync says why
            queued = 1;
        }
    }
    if (!queued) step_ops(tr);
    if (tr->use_graph == 1) tr->use_graph = 2;
    char err[ERR_MAX];
    if (be->sync(err) < 0) die("%s", err); // a GPU fault: nothing of this step is trustworthy
    *grad_norm = io.out[0];
    double loss = 0;
    for (int a = 0; a < A; a++) loss += loss_value(m, rc->loss, rc->alpha, io.out + 1 + (size_t)a * tr->S) / A;
    // not finite: Adam's guard left the weights as they were
    if (!isfinite(loss) || !isfinite(*grad_norm)) return loss;
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
