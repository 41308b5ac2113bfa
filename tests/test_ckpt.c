// test_ckpt: model.safetensors written by C reads back bit for bit, and the reader refuses every malformed
// header with a message naming the tensor and the reason. (PyTorch -> C is in test_parity.)
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "ckpt.h"
#include "util.h"

static HgLevel valley = {.n_layers = 1};

static void build(HgModel *m, int C)
{
    HgConfig c = {.V = 30, .C = C, .NH = 2, .F = 16, .L = 8, .linear = 1, .attn_resampling = 1,
                  .save_updown_hidden = 1, .top = {.pre = 1, .post = 1, .s = 2, .valley = &valley}};
    char err[ERR_MAX];
    CHECK(hg_build(m, &c, err) == 0, "build: %s", err);
}

static char *slurp(const char *path, size_t *n)
{
    uint8_t *b;
    char err[ERR_MAX];
    if (read_file(path, 1u << 26, &b, n, err) < 0) return NULL;
    return (char *)b;
}

static void spit(const char *path, const char *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    fwrite(b, 1, n, f);
    fclose(f);
}

// Rewrites the header of a good file: replaces the first occurrence of `from` by `to`, fixing the length.
static void edit_header(const char *good, const char *out, const char *from, const char *to)
{
    size_t n;
    char *b = slurp(good, &n);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | (uint8_t)b[i];
    char *hdr = strndup(b + 8, hl), *at = strstr(hdr, from);
    CHECK(at != NULL, "'%s' not in the header", from);
    if (!at) return;
    size_t nh = hl - strlen(from) + strlen(to);
    char *o = xmalloc(8 + nh + (n - 8 - hl));
    uint64_t l = nh;
    for (int i = 0; i < 8; i++) o[i] = (char)(l >> (8 * i));
    size_t pre = (size_t)(at - hdr);
    memcpy(o + 8, hdr, pre);
    memcpy(o + 8 + pre, to, strlen(to));
    memcpy(o + 8 + pre + strlen(to), at + strlen(from), hl - pre - strlen(from));
    memcpy(o + 8 + nh, b + 8 + hl, n - 8 - hl);
    spit(out, o, 8 + nh + (n - 8 - hl));
    free(o), free(hdr), free(b);
}

static void expect_refused(HgModel *m, const char *path, const char *want, const char *what)
{
    char err[ERR_MAX] = "";
    int rc = ckpt_load(m, path, NULL, err);
    CHECK(rc < 0 && strstr(err, want), "%s: refused with '%s' (got rc %d, '%s')", what, want, rc, err);
}

#define EXPORT_CONFIG                                                                                              \
    "{\"vocab_size\": 30, \"model\": {\"type\": \"hourglass\", \"depth\": [1, 1, 1], \"input_length\": 8, "           \
    "\"num_heads\": 2, \"d_model\": 8, \"dim_feedforward\": 16, \"dropout\": 0.0, \"shorten_factor\": 2, "           \
    "\"updown_sample_type\": \"linear\", \"attn_resampling\": true, \"save_updown_hidden\": true}}"

// A six-level nest at tiny width (names up to ~190 characters; issue 13: names were cut at 127)
#define NEST6_CONFIG                                                                                               \
    "{\"vocab_size\": 30, \"model\": {\"type\": \"hourglass\", \"depth\": [1, [1, [1, [1, [1, [1, 2, 1], 1], 1], 1], 1], " \
    "1], \"input_length\": 8, \"num_heads\": 2, \"d_model\": 8, \"dim_feedforward\": 16, \"dropout\": 0.0, "          \
    "\"shorten_factor\": 1, \"updown_sample_type\": \"linear\", \"attn_resampling\": true, \"save_updown_hidden\": true}}"

static void build_nest6(HgModel *m)
{
    static HgLevel lv[7];
    lv[6] = (HgLevel){.n_layers = 2};
    for (int i = 5; i >= 0; i--) lv[i] = (HgLevel){.pre = 1, .post = 1, .s = 1, .valley = &lv[i + 1]};
    HgConfig c = {.V = 30, .C = 8, .NH = 2, .F = 16, .L = 8, .linear = 1, .attn_resampling = 1,
                  .save_updown_hidden = 1, .top = lv[0]};
    char err[ERR_MAX];
    CHECK(hg_build(m, &c, err) == 0, "build: %s", err);
}

// For `make interop` (C -> PyTorch): writes DIR/model.safetensors and DIR/io.bin (int32 B, T, tokens (B,T),
// then float32 logits (B,T,V)) for tests/ref/interop.py to check with the reference module; nest6 != 0 for the
// six-level nest.
static int export_for_pytorch(const char *dir, int nest6)
{
    HgModel m;
    if (nest6) build_nest6(&m);
    else build(&m, 8);
    hg_init_weights(&m, 77);
    for (size_t i = 0; i < m.n_floats; i++) m.w[i] += 0.01f * (float)((i * 7919) % 13) - 0.06f;
    char path[1024];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    ckpt_save(&m, path, nest6 ? NEST6_CONFIG : EXPORT_CONFIG, 0);
    int32_t hdr[2] = {2, 7}, tok[14];
    for (int i = 0; i < 14; i++) tok[i] = 1 + (i * 11) % 29;
    hg_alloc(&m, 2, 7);
    hg_forward(&m, tok, 0, 0);
    snprintf(path, sizeof path, "%s/io.bin", dir);
    OutFile *o = out_open(path);
    xfwrite(hdr, sizeof hdr, 1, o->fp, path);
    xfwrite(tok, sizeof tok, 1, o->fp, path);
    xfwrite(m.logits, sizeof(float), (size_t)14 * m.cfg.V, o->fp, path);
    out_commit(o);
    hg_free(&m);
    return 0;
}

int main(int argc, char **argv)
{
    util_init(argv[0]);
    if (argc == 3 && strcmp(argv[1], "--export") == 0) return export_for_pytorch(argv[2], 0);
    if (argc == 3 && strcmp(argv[1], "--export-nest6") == 0) return export_for_pytorch(argv[2], 1);
    char dir[] = "/tmp/test_ckpt.XXXXXX";
    if (!mkdtemp(dir)) return 1;
    char good[256], bad[256];
    snprintf(good, sizeof good, "%s/model.safetensors", dir);
    snprintf(bad, sizeof bad, "%s/bad.safetensors", dir);
    HgModel a, b;
    build(&a, 8);
    build(&b, 8);
    hg_init_weights(&a, 5);
    ckpt_save(&a, good, "{\"model\": {\"d_model\": 8}}", 0x1234);
    char *meta = NULL, err[ERR_MAX];
    CHECK(ckpt_load(&b, good, &meta, err) == 0, "load: %s", err);
    CHECK(memcmp(a.w, b.w, a.n_floats * sizeof *a.w) == 0, "weights read back bit for bit");
    CHECK(meta && strcmp(meta, "{\"model\": {\"d_model\": 8}}") == 0, "metadata config read back (got %s)", meta ? meta : "NULL");
    free(meta);
    size_t n;
    char *g = slurp(good, &n);
    CHECK(n % 4 == 0 && ((uint8_t)g[0] | (uint8_t)g[1] << 8) % 8 == 0, "data starts 8-byte aligned");

    // malformed files
    spit(bad, g, 5);
    expect_refused(&b, bad, "shorter than 8", "5-byte file");
    spit(bad, g, n - 4);
    expect_refused(&b, bad, "data_offsets", "file cut inside the data");
    char big[16] = {(char)0xff, (char)0xff, (char)0xff, (char)0xff, 0, 0, 0, 0};
    spit(bad, big, 16);
    expect_refused(&b, bad, "header length", "header length beyond the file");
    char over[16] = {(char)0x01, (char)0xe1, (char)0xf5, (char)0x05, 0, 0, 0, 0}; // 100,000,001
    spit(bad, over, 16);
    expect_refused(&b, bad, "over the safetensors limit of 100000000", "header length over the format's limit");
    CHECK(ckpt_check(&a, "{\"model\": {\"d_model\": 8}}", err) == 0, "a small model's header is within the limit: %s",
          err);
    edit_header(good, bad, "{\"__metadata__\"", "[\"__metadata__\"");
    expect_refused(&b, bad, "not a JSON object", "broken JSON");
    edit_header(good, bad, "\"dtype\":\"F32\"", "\"dtype\":\"F16\"");
    expect_refused(&b, bad, "only F32", "F16 tensor");
    edit_header(good, bad, "\"shape\":[30,8]", "\"shape\":[31,8]");
    expect_refused(&b, bad, "shape [31,8]", "wrong shape");
    edit_header(good, bad, "\"Wout.bias\"", "\"Wout.biased\"");
    expect_refused(&b, bad, "unexpected tensor 'Wout.biased'", "unknown tensor name");
    edit_header(good, bad, "\"data_offsets\":[0,960]", "\"data_offsets\":[960,1920]");
    expect_refused(&b, bad, "overlap", "overlapping tensors");
    edit_header(good, bad, "\"Wout.bias\"", "\"embedding.weight\"");
    expect_refused(&b, bad, "'embedding.weight' appears twice", "a duplicate tensor name");
    // a NaN or an infinity in the weights (a corrupt file, a diverged model) is refused naming tensor and index
    const char *l1 = "transformer.encoder.post_transformer.layers.0.linear1.weight";
    int i1 = hg_param_index(&a, l1);
    CHECK(i1 >= 0, "%s in the table", l1);
    float keep = a.w[a.params[i1].offset + 5];
    a.w[a.params[i1].offset + 5] = NAN;
    ckpt_save(&a, bad, "{}", 0);
    expect_refused(&b, bad, "linear1.weight': value nan at index 5 is not finite", "a NaN weight");
    a.w[a.params[i1].offset + 5] = keep;
    a.w[a.n_floats - 1] = -INFINITY;
    ckpt_save(&a, bad, "{}", 0);
    expect_refused(&b, bad, "'Wout.bias': value -inf at index 29 is not finite", "an infinite weight");
    // another configuration's checkpoint is refused by shape
    HgModel c;
    build(&c, 10);
    expect_refused(&c, good, "shape", "checkpoint of another d_model");
    expect_refused(&b, "/nonexistent/x.safetensors", "cannot open", "missing file");
    free(g);
    unlink(good), unlink(bad), rmdir(dir);
    hg_free(&a), hg_free(&b), hg_free(&c);
    return check_done();
}
