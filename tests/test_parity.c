// test_parity: the C model against the PyTorch reference (tests/ref/model.py) on the committed fixtures of
// tests/fixtures/ (written by `make fixtures`): the same weights and tokens must give the same logits, hidden
// states, loss and gradient of every parameter, for every configuration kind and each loss.
// Tolerance, per tensor: max |C - PyTorch| <= 1e-4 * max |PyTorch| (the reference ran in float64).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ckpt.h"
#include "hg.h"
#include "ops.h"
#include "util.h"

typedef struct Entry {
    char name[160];
    int dtype, ndim, dims[4];
    size_t n;
    const void *data;
} Entry;

typedef struct Fixture {
    uint8_t *buf;
    Entry *e;
    int n;
} Fixture;

static int load_fixture(Fixture *f, const char *path)
{
    size_t len;
    char err[ERR_MAX];
    memset(f, 0, sizeof *f);
    if (read_file(path, 64u << 20, &f->buf, &len, err) < 0) {
        CHECK(0, "cannot read fixture '%s': %s (hint: make fixtures)", path, err);
        return -1;
    }
    uint32_t v[3];
    if (len < 12 || memcmp(f->buf, "HGFX", 4) != 0) {
        CHECK(0, "'%s' is not a fixture", path);
        return -1;
    }
    memcpy(v, f->buf + 4, 8);
    CHECK(v[0] == 1, "'%s': fixture version %u", path, v[0]);
    size_t pos = 12;
    f->e = xcalloc(v[1], sizeof *f->e);
    for (uint32_t i = 0; i < v[1]; i++) {
        Entry *e = &f->e[f->n++];
        uint32_t nl, dt, nd, d;
        memcpy(&nl, f->buf + pos, 4), pos += 4;
        snprintf(e->name, sizeof e->name, "%.*s", (int)nl, (const char *)f->buf + pos), pos += nl;
        memcpy(&dt, f->buf + pos, 4), memcpy(&nd, f->buf + pos + 4, 4), pos += 8;
        e->dtype = (int)dt, e->ndim = (int)nd, e->n = 1;
        for (uint32_t k = 0; k < nd; k++) {
            memcpy(&d, f->buf + pos, 4), pos += 4;
            if (k < 4) e->dims[k] = (int)d;
            e->n *= d;
        }
        if (pos + e->n * 4 > len) {
            CHECK(0, "'%s': truncated at entry %s", path, e->name);
            return -1;
        }
        void *copy = xmalloc(e->n * 4 + 1); // names leave the data unaligned: copy it out
        memcpy(copy, f->buf + pos, e->n * 4);
        e->data = copy;
        pos += e->n * 4;
    }
    return 0;
}

static const Entry *find(const Fixture *f, const char *name)
{
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->e[i].name, name) == 0) return &f->e[i];
    return NULL;
}

// prefix code of the depth tree: [0, n] a block; [1, pre, s, <valley>, post] an hourglass
static const int32_t *decode_depth(HgLevel *lv, const int32_t *c)
{
    memset(lv, 0, sizeof *lv);
    if (c[0] == 0) {
        lv->n_layers = c[1];
        return c + 2;
    }
    lv->pre = c[1], lv->s = c[2];
    lv->valley = xcalloc(1, sizeof *lv->valley);
    c = decode_depth(lv->valley, c + 3);
    lv->post = c[0];
    return c + 1;
}

static void free_depth(HgLevel *lv)
{
    if (lv->valley) free_depth(lv->valley), free(lv->valley);
}

static void compare(const char *fx, const char *what, const float *got, const float *want, size_t n)
{
    double scale = 0, err = 0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(want[i]));
    for (size_t i = 0; i < n; i++) {
        double d = fabs(got[i] - want[i]);
        if (d > err || (isnan(d) && !isnan(err))) err = d, at = i; // a NaN stays, and fails the check
    }
    CHECK(err <= 1e-4 * fmax(scale, 1e-30), "%s: %s: max abs error %.3g at %zu (C %.7g, PyTorch %.7g), scale %.3g",
          fx, what, err, at, got[at], want[at], scale);
}

// With `st` set, the weights come from that PyTorch-written safetensors file instead of the fixture.
static void run_fixture_from(const char *dir, const char *name, const char *st);
static void run_fixture(const char *dir, const char *name) { run_fixture_from(dir, name, NULL); }

static void run_fixture_from(const char *dir, const char *name, const char *st)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.bin", dir, name);
    Fixture f;
    if (load_fixture(&f, path) < 0) return;
    const int32_t *cv = find(&f, "config")->data;
    HgConfig cfg = {.V = cv[0], .C = cv[1], .NH = cv[2], .F = cv[3], .L = cv[4], .dropout = 0, .linear = cv[5],
                    .attn_resampling = cv[6], .save_updown_hidden = cv[7]};
    int B = cv[8], T = cv[9], loss_kind = cv[10];
    float alpha = *(const float *)find(&f, "alpha")->data;
    decode_depth(&cfg.top, find(&f, "depth")->data);
    HgModel m;
    char err[ERR_MAX];
    CHECK(hg_build(&m, &cfg, err) == 0, "%s: build: %s", name, err);
    // weights by name; every C parameter has one, with the same shape, and the counts agree
    int n_fixture_params = 0;
    for (int i = 0; i < f.n; i++) n_fixture_params += strncmp(f.e[i].name, "param.", 6) == 0;
    CHECK(n_fixture_params == m.n_params, "%s: %d parameters in the fixture, %d in C", name, n_fixture_params, m.n_params);
    for (int i = 0; i < m.n_params; i++) {
        char key[160];
        snprintf(key, sizeof key, "param.%s", m.params[i].name);
        const Entry *e = find(&f, key);
        CHECK(e && e->n == m.params[i].size && e->dims[0] == m.params[i].shape[0], "%s: parameter %s missing or of another shape",
              name, m.params[i].name);
        if (e && e->n == m.params[i].size && !st) memcpy(m.w + m.params[i].offset, e->data, e->n * sizeof(float));
    }
    if (st) {
        char *meta = NULL;
        int rc = ckpt_load(&m, st, &meta, err);
        CHECK(rc == 0, "%s: cannot load '%s': %s", name, st, err);
        CHECK(meta && strstr(meta, "\"d_model\""), "%s: metadata config missing from '%s'", name, st);
        free(meta);
    }
    const int32_t *tokens = find(&f, "tokens")->data;
    int32_t *inp = xmalloc((size_t)B * T * sizeof *inp), *tgt = xmalloc((size_t)B * T * sizeof *tgt);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) inp[b * T + t] = tokens[b * (T + 1) + t], tgt[b * T + t] = tokens[b * (T + 1) + t + 1];
    hg_alloc(&m, B, T);
    hg_forward(&m, inp, 0, 0);
    compare(name, "logits", m.logits, find(&f, "logits")->data, (size_t)B * T * cfg.V);
    for (int h = 0; h < m.n_hidden; h++) {
        char key[32];
        snprintf(key, sizeof key, "hidden.%d", h);
        const Entry *e = find(&f, key);
        CHECK(e && e->n == (size_t)B * m.hidden_T[h] * cfg.C, "%s: hidden state %d missing or of another shape", name, h);
        if (e && e->n == (size_t)B * m.hidden_T[h] * cfg.C) compare(name, key, m.hidden[h], e->data, e->n);
    }
    CHECK(find(&f, "hidden.0") == NULL || m.n_hidden > 0, "%s: C has no hidden states", name);
    if (loss_kind == 0) { // evaluate.c's scoring (hg_score) against PyTorch's cross-entropy over the same targets
        double *nll = xmalloc((size_t)B * T * sizeof *nll), s = 0;
        int32_t *best = xmalloc((size_t)B * T * sizeof *best);
        long n = 0;
        hg_score(&m, tgt, nll, best);
        for (int i = 0; i < B * T; i++) s += tgt[i] ? nll[i] : 0, n += tgt[i] != 0;
        float mean = n ? (float)(s / (double)n) : NAN;
        compare(name, "scored rows' mean", &mean, find(&f, "loss")->data, 1);
        free(nll), free(best);
    }
    // the loss and its gradients wrt logits and hidden states (model.md §7)
    size_t nl = (size_t)B * T * cfg.V;
    float *probs = xmalloc(nl * sizeof *probs), *dlogits = xcalloc(nl, sizeof *dlogits);
    int n_valid;
    double loss = crossentropy_forward(probs, m.logits, tgt, B * T, cfg.V, &n_valid);
    crossentropy_backward(dlogits, probs, tgt, B * T, cfg.V, n_valid, 1.0f);
    float *dh[32] = {0};
    long pairs = 0;
    double aux = 0;
    for (int h = 0; h < m.n_hidden; h++) {
        long np = 0;
        dh[h] = xcalloc((size_t)B * m.hidden_T[h] * cfg.C, sizeof(float));
        if (loss_kind == 1) aux += cosine_pairs_forward(m.hidden[h], B, m.hidden_T[h], cfg.C, &np), pairs += np;
        if (loss_kind == 2) aux += exp_cosine_forward(m.hidden[h], B, m.hidden_T[h], cfg.C);
    }
    for (int h = 0; h < m.n_hidden; h++) {
        if (loss_kind == 1) cosine_pairs_backward(dh[h], m.hidden[h], B, m.hidden_T[h], cfg.C, alpha / (float)pairs);
        if (loss_kind == 2) exp_cosine_backward(dh[h], m.hidden[h], B, m.hidden_T[h], cfg.C, alpha / (float)(m.n_hidden * B));
    }
    if (loss_kind == 1) loss += alpha * aux / (double)pairs;
    if (loss_kind == 2) loss += alpha * aux / (double)(m.n_hidden * B);
    float lf = (float)loss;
    compare(name, "loss", &lf, find(&f, "loss")->data, 1);
    memset(m.dw, 0, m.n_floats * sizeof *m.dw);
    hg_backward(&m, dlogits, dh);
    for (int i = 0; i < m.n_params; i++) {
        char key[160];
        snprintf(key, sizeof key, "grad.%s", m.params[i].name);
        const Entry *e = find(&f, key);
        if (e && e->n == m.params[i].size) compare(name, key, m.dw + m.params[i].offset, e->data, e->n);
        else CHECK(0, "%s: %s missing", name, key);
    }
    for (int h = 0; h < m.n_hidden; h++) free(dh[h]);
    for (int i = 0; i < f.n; i++) free((void *)f.e[i].data);
    free(probs), free(dlogits), free(inp), free(tgt), free(f.e), free(f.buf);
    free_depth(&cfg.top);
    hg_free(&m);
}

int main(void)
{
    const char *dir = getenv("FIXTURES") ? getenv("FIXTURES") : "tests/fixtures";
    static const char *names[] = {"baseline", "naive", "linear", "naive_attn", "linear_attn", "nested", "s3_t13",
                                  "cosine_ce", "exp_cosine_ce"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) run_fixture(dir, names[i]);
    // interop, PyTorch -> C: a safetensors file saved from the reference module gives the same results
    char st[1024];
    snprintf(st, sizeof st, "%s/linear_attn.safetensors", dir);
    run_fixture_from(dir, "linear_attn", st);
    return check_done();
}
