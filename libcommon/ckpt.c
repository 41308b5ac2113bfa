// ckpt: safetensors writing and validating reading for the model's weights (see ckpt.h).
#include "ckpt.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "remi.h"
#include "util.h"

#define PE_NAME "positional_encoding.pe"
// A header larger than this is refused before it is read: the format's own limit (the safetensors library, which
// PyTorch loads these files with, refuses more), which train checks a config against before it trains.
#define HEADER_MAX 100000000u

typedef struct Tensor {
    const char *name;
    int ndim, shape[3];
    const float *data;
    size_t n;
} Tensor;

// The tensors of m in file order: the parameter table, then the positional buffer.
static int list_tensors(const HgModel *m, Tensor *t)
{
    for (int i = 0; i < m->n_params; i++) {
        const HgParam *p = &m->params[i];
        t[i] = (Tensor){p->name, p->ndim, {p->shape[0], p->shape[1], 1}, m->w + p->offset, p->size};
    }
    t[m->n_params] = (Tensor){PE_NAME, 3, {m->cfg.L, 1, m->cfg.C}, m->pe, (size_t)m->cfg.L * m->cfg.C};
    return m->n_params + 1;
}

// The JSON header for m's tensors (malloc'd, padded so that the data starts 8-byte aligned), its length in *hlen
static char *header(const Tensor *t, int n, const char *metadata_config, uint64_t vocab_hash, size_t *hlen_out)
{
    char *hdr = NULL;
    size_t hlen = 0;
    FILE *h = open_memstream(&hdr, &hlen);
    if (!h) die("cannot write checkpoint header: out of memory");
    fprintf(h, "{\"__metadata__\":{\"config\":");
    json_write_string(h, metadata_config ? metadata_config : "{}");
    fprintf(h, ",\"vocab_hash\":\"%016llx\"}", (unsigned long long)vocab_hash);
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        fputc(',', h);
        json_write_string(h, t[i].name);
        fprintf(h, ":{\"dtype\":\"F32\",\"shape\":[");
        for (int d = 0; d < t[i].ndim; d++) fprintf(h, "%s%d", d ? "," : "", t[i].shape[d]);
        fprintf(h, "],\"data_offsets\":[%zu,%zu]}", off, off + 4 * t[i].n);
        off += 4 * t[i].n;
    }
    fputc('}', h);
    while ((ftell(h) + 8) % 8) fputc(' ', h); // data starts 8-byte aligned, as the format recommends
    fclose(h);
    *hlen_out = hlen;
    return hdr;
}

int ckpt_check(const HgModel *m, const char *metadata_config, char *err)
{
    Tensor *t = xcalloc((size_t)m->n_params + 1, sizeof *t);
    size_t hlen;
    free(header(t, list_tensors(m, t), metadata_config, 0, &hlen)); // (the hash's digits: a fixed width)
    free(t);
    if (hlen <= HEADER_MAX) return 0;
    return err_set(err, "its checkpoint's header would be %zu bytes, over the safetensors limit of %u (the tensors' "
                        "names grow with the nesting)", hlen, HEADER_MAX);
}

void ckpt_save(const HgModel *m, const char *path, const char *metadata_config, uint64_t vocab_hash)
{
    Tensor *t = xcalloc((size_t)m->n_params + 1, sizeof *t);
    int n = list_tensors(m, t);
    size_t hlen;
    char *hdr = header(t, n, metadata_config, vocab_hash, &hlen);
    OutFile *o = out_open(path);
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
    xfwrite(len8, 1, 8, o->fp, path);
    xfwrite(hdr, 1, hlen, o->fp, path);
    for (int i = 0; i < n; i++) xfwrite(t[i].data, sizeof(float), t[i].n, o->fp, path); // x86-64: little-endian
    out_commit(o);
    free(hdr);
    free(t);
}

// The JSON header of an open safetensors file (NUL-terminated, malloc'd), its length and the file size; NULL with err.
static char *read_header(FILE *f, uint64_t *hlen_out, long *fsize_out, char *err)
{
    uint8_t len8[8];
    if (fseek(f, 0, SEEK_END) != 0) return err_set(err, "cannot seek"), NULL;
    long fsize = ftell(f);
    rewind(f);
    if (fsize < 8 || fread(len8, 1, 8, f) != 8) return err_set(err, "not a safetensors file (shorter than 8 bytes)"), NULL;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | len8[i];
    if (hlen > HEADER_MAX) {
        err_set(err, "header length %llu is over the safetensors limit of %u", (unsigned long long)hlen, HEADER_MAX);
        return NULL;
    }
    if (hlen > (uint64_t)fsize - 8) {
        err_set(err, "header length %llu does not fit the file (%ld bytes)", (unsigned long long)hlen, fsize);
        return NULL;
    }
    char *hdr = xmalloc(hlen + 1);
    if (fread(hdr, 1, hlen, f) != hlen) return free(hdr), err_set(err, "cannot read the header"), NULL;
    hdr[hlen] = 0;
    *hlen_out = hlen, *fsize_out = fsize;
    return hdr;
}

char *ckpt_read_config(const char *path, char *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) return err_set(err, "cannot open: %m"), NULL;
    uint64_t hlen;
    long fsize;
    char *hdr = read_header(f, &hlen, &fsize, err), *config = NULL;
    fclose(f);
    if (!hdr) return NULL;
    cJSON *root = cJSON_ParseWithLength(hdr, hlen);
    cJSON *c = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "__metadata__"), "config");
    if (cJSON_IsString(c)) config = xstrdup(c->valuestring);
    else err_set(err, root ? "no __metadata__.config (not written by train?)" : "header is not JSON");
    cJSON_Delete(root);
    free(hdr);
    return config;
}

static const size_t *sort_range; // qsort has no context argument
static int range_cmp(const void *a, const void *b)
{
    size_t x = sort_range[2 * *(const int *)a], y = sort_range[2 * *(const int *)b];
    return (x > y) - (x < y);
}

int ckpt_load(HgModel *m, const char *path, char **metadata_config, char *err)
{
    if (metadata_config) *metadata_config = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return err_set(err, "cannot open: %m");
    int rc = -1;
    cJSON *root = NULL;
    char *hdr = NULL;
    Tensor *t = xcalloc((size_t)m->n_params + 1, sizeof *t);
    int n = list_tensors(m, t);
    size_t *range = xcalloc(2 * (size_t)n, sizeof *range);
    int *seen = xcalloc((size_t)n, sizeof *seen), *order = xcalloc((size_t)n, sizeof *order);
    uint64_t hlen;
    long fsize;
    if (!(hdr = read_header(f, &hlen, &fsize, err))) goto out;
    size_t data_len = (size_t)fsize - 8 - hlen;
    root = cJSON_ParseWithLength(hdr, hlen);
    if (!cJSON_IsObject(root)) {
        err_set(err, "header is not a JSON object");
        goto out;
    }
    for (cJSON *e = root->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) {
            cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "config");
            if (metadata_config && cJSON_IsString(c)) *metadata_config = xstrdup(c->valuestring);
            continue;
        }
        int k = strcmp(e->string, PE_NAME) == 0 ? n - 1 : hg_param_index(m, e->string);
        if (k < 0) {
            err_set(err, "unexpected tensor '%.80s' (not in this model's configuration)", e->string);
            goto out;
        }
        if (seen[k]++) { // cJSON keeps both entries of a repeated key
            err_set(err, "tensor '%s' appears twice", t[k].name);
            goto out;
        }
        cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype"), *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
        cJSON *of = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
        if (!cJSON_IsString(dt) || strcmp(dt->valuestring, "F32") != 0) {
            err_set(err, "tensor '%s': dtype %s, only F32 is read", t[k].name, cJSON_IsString(dt) ? dt->valuestring : "missing");
            goto out;
        }
        int nd = cJSON_GetArraySize(sh), ok = cJSON_IsArray(sh) && nd == t[k].ndim;
        for (int d = 0; ok && d < nd; d++) {
            cJSON *v = cJSON_GetArrayItem(sh, d);
            ok = cJSON_IsNumber(v) && v->valuedouble == t[k].shape[d];
        }
        if (!ok) {
            char *got = cJSON_PrintUnformatted(sh);
            err_set(err, "tensor '%s': shape %s, this configuration needs [%d%s%d%s%d]", t[k].name, got ? got : "?",
                    t[k].shape[0], t[k].ndim > 1 ? "," : "", t[k].ndim > 1 ? t[k].shape[1] : 0,
                    t[k].ndim > 2 ? "," : "", t[k].ndim > 2 ? t[k].shape[2] : 0);
            free(got);
            goto out;
        }
        cJSON *b = cJSON_GetArrayItem(of, 0), *en = cJSON_GetArrayItem(of, 1);
        if (!cJSON_IsArray(of) || cJSON_GetArraySize(of) != 2 || !cJSON_IsNumber(b) || !cJSON_IsNumber(en) ||
            b->valuedouble < 0 || en->valuedouble < b->valuedouble || en->valuedouble > (double)data_len ||
            en->valuedouble - b->valuedouble != 4.0 * (double)t[k].n) {
            err_set(err, "tensor '%s': data_offsets outside the data (%zu bytes) or not %zu bytes long", t[k].name,
                    data_len, 4 * t[k].n);
            goto out;
        }
        range[2 * k] = (size_t)b->valuedouble, range[2 * k + 1] = (size_t)en->valuedouble;
    }
    for (int k = 0; k < n; k++) {
        if (!seen[k]) {
            err_set(err, "tensor '%s' is missing", t[k].name);
            goto out;
        }
        order[k] = k;
    }
    // overlap: sorted by start, each non-empty range must end before the next non-empty one starts
    sort_range = range;
    qsort(order, (size_t)n, sizeof *order, range_cmp);
    for (int i = 1, prev = -1; i <= n; i++) {
        int k = order[i - 1];
        if (!t[k].n) continue;
        if (prev >= 0 && range[2 * k] < range[2 * prev + 1]) {
            err_set(err, "tensors '%s' and '%s' overlap", t[prev].name, t[k].name);
            goto out;
        }
        prev = k;
    }
    for (int k = 0; k < m->n_params; k++) { // the positional buffer is recomputed, not read
        float *w = m->w + m->params[k].offset;
        if (fseek(f, (long)(8 + hlen + range[2 * k]), SEEK_SET) != 0 || fread(w, sizeof(float), t[k].n, f) != t[k].n) {
            err_set(err, "tensor '%s': cannot read its data", t[k].name);
            goto out;
        }
        for (size_t i = 0; i < t[k].n; i++) // a NaN or Inf weight would only surface as garbage logits later
            if (!isfinite(w[i])) {
                err_set(err, "tensor '%s': value %g at index %zu is not finite", t[k].name, (double)w[i], i);
                goto out;
            }
    }
    rc = 0;
out:
    if (rc < 0 && metadata_config) free(*metadata_config), *metadata_config = NULL;
    cJSON_Delete(root);
    free(hdr), free(t), free(range), free(seen), free(order);
    fclose(f);
    return rc;
}

int ckpt_open_model(const char *path, RunConfig *rc, HgModel *m, char *err)
{
    char file[4096], lerr[ERR_MAX];
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) snprintf(file, sizeof file, "%s/model.safetensors", path);
    else snprintf(file, sizeof file, "%s", path);
    char *json = ckpt_read_config(file, lerr);
    if (!json) return err_set(err, "'%s': %s", file, lerr);
    int r = config_parse(rc, json, file, err);
    free(json);
    if (r < 0) return -1;
    HgConfig cfg;
    HgPlan hp;
    config_to_hg(rc, REMI_VOCAB_SIZE, &cfg);
    if (hg_plan(&cfg, 0, 0, &hp, lerr) < 0) {
        config_free(rc);
        return err_set(err, "'%s': %s", file, lerr);
    }
    const char *src;
    uint64_t avail = mem_available(&src);
    double need = 4.0 * (double)hp.n_floats + (double)hp.table_bytes; // the gradients hg_build zeroes stay untouched
    if (need > (double)avail) {
        char a[32], b[32];
        config_free(rc);
        return err_set(err, "'%s': model does not fit in memory: %zu parameters need %s; %s available (%s)", file,
                       hp.n_floats, fmt_bytes(need, a, 32), fmt_bytes((double)avail, b, 32), src);
    }
    if (hg_build(m, &cfg, lerr) < 0) {
        config_free(rc);
        return err_set(err, "'%s': %s", file, lerr);
    }
    if (ckpt_load(m, file, NULL, lerr) < 0) {
        hg_free(m), config_free(rc);
        return err_set(err, "'%s': %s", file, lerr);
    }
    return 0;
}
