// config: JSON experiment configs with `extends`, one schema table, canonical resolved JSON (see config.h).
// Every file of an extends chain is checked on its own against the schema, so an error names the file that holds
// the bad key; the merged result then gets defaults and the cross-key rules (depth vs type, heads | d_model).
#include "config.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define MAX_CHAIN 16 // extends chain length (a longer one is a cycle in practice)
#define CONFIG_MAX_BYTES (1u << 20)
#define DEPTH_MAX 1000000 // layers in one block: far beyond any memory, small enough for int arithmetic

typedef enum { T_INT, T_LONG, T_NUM, T_BOOL, T_ENUM, T_PAIR, T_DEPTH, T_SHORTEN, T_AUGMENT } KeyType;

typedef struct Key {
    const char *section, *key;
    KeyType type;
    size_t off;     // field in RunConfig (T_PAIR: the first of two doubles)
    double lo, hi;  // T_INT/T_LONG/T_NUM range, inclusive
    double def;     // default (T_ENUM: index into choices; NAN: chosen by another key, see fill())
    const char *choices; // T_ENUM: "a|b|c", the field gets the index
} Key;

#define F(field) offsetof(RunConfig, field)
#define NO_FIELD ((size_t)-1) // a key with no field of its own (handled in resolve())
static const Key schema[] = {
    {"model", "type", T_ENUM, F(hourglass), 0, 0, 1, "music_transformer|hourglass"},
    // sizes: only what keeps the arithmetic in range; what fits is decided by memory (hg_plan, memplan.h)
    {"model", "depth", T_DEPTH, NO_FIELD, 0, DEPTH_MAX, NAN, NULL},
    {"model", "input_length", T_INT, F(input_length), 2, 65536, 512, NULL}, // 1: no window to slide when sampling
    {"model", "num_heads", T_INT, F(num_heads), 1, 65536, 4, NULL},
    {"model", "d_model", T_INT, F(d_model), 1, 1 << 20, 256, NULL},
    {"model", "dim_feedforward", T_INT, F(dim_feedforward), 1, 1 << 24, 1024, NULL},
    {"model", "dropout", T_NUM, F(dropout), 0, 0.99, 0.1, NULL},
    {"model", "shorten_factor", T_SHORTEN, NO_FIELD, 1, 65536, 2, NULL},
    {"model", "updown_sample_type", T_ENUM, F(linear), 0, 0, 1, "naive|linear"},
    {"model", "attn_resampling", T_BOOL, F(attn_resampling), 0, 0, 1, NULL},
    {"model", "save_updown_hidden", T_BOOL, F(save_updown_hidden), 0, 0, 1, NULL},
    {"loss", "type", T_ENUM, F(loss), 0, 0, 0, "ce|cosine_ce|exp_cosine_ce"},
    {"loss", "alpha", T_NUM, F(alpha), 0, 1e6, NAN, NULL},
    {"optimizer", "type", T_ENUM, NO_FIELD, 0, 0, 0, "adam"},
    {"optimizer", "lr", T_NUM, F(lr), 0, 10, 3e-4, NULL},
    {"optimizer", "betas", T_PAIR, F(beta1), 0, 0.999999, 0, NULL},
    {"optimizer", "eps", T_NUM, F(eps), 0, 1, 1e-8, NULL},
    {"optimizer", "weight_decay", T_NUM, F(weight_decay), 0, 1, 0, NULL},
    {"lr_scheduler", "type", T_ENUM, F(one_cycle), 0, 0, 1, "constant|one_cycle"},
    {"lr_scheduler", "max_lr", T_NUM, F(max_lr), 0, 10, 3e-4, NULL},
    {"lr_scheduler", "pct_start", T_NUM, F(pct_start), 0, 1, 0.2, NULL},
    {"lr_scheduler", "anneal_strategy", T_ENUM, F(anneal_linear), 0, 0, 0, "cos|linear"},
    {"lr_scheduler", "div_factor", T_NUM, F(div_factor), 1e-6, 1e12, 25, NULL},
    {"lr_scheduler", "final_div_factor", T_NUM, F(final_div_factor), 1e-6, 1e12, 1e4, NULL},
    {"train", "batch_size", T_INT, F(batch_size), 1, 4096, 8, NULL},
    {"train", "gradient_accumulation_steps", T_INT, F(grad_accum), 1, 4096, 1, NULL},
    {"train", "steps", T_INT, F(steps), 1, 100000000, 2000, NULL},
    {"train", "grad_norm_clip", T_NUM, F(grad_norm_clip), 0, 1e12, 0.5, NULL},
    {"train", "eval_every", T_INT, F(eval_every), 1, 100000000, 200, NULL},
    {"train", "checkpoint_every", T_INT, F(checkpoint_every), 0, 100000000, 0, NULL},
    {"train", "log_every", T_INT, F(log_every), 1, 100000000, 10, NULL},
    {"train", "seed", T_LONG, F(seed), 0, 9007199254740991.0, 1, NULL},
    {"train", "val_max_tokens", T_LONG, F(val_max_tokens), 0, 9007199254740991.0, 0, NULL},
    {"train", "augment", T_AUGMENT, NO_FIELD, 0, 0, 0, NULL},
};
// train.augment's members: [lo, hi] integer ranges with lo <= hi, lo <= 0 <= hi not required
static const struct {
    const char *key;
    size_t off;
    int lim;
} augment_keys[] = {{"pitch_offsets", F(aug_pitch), 87}, {"velocity_offsets", F(aug_velocity), 15}};
#define N_AUGMENT (sizeof augment_keys / sizeof augment_keys[0])
#define N_KEYS (sizeof schema / sizeof schema[0])
static const char *const sections[] = {"model", "loss", "optimizer", "lr_scheduler", "train"};
#define N_SECTIONS (sizeof sections / sizeof sections[0])

static const Key *find_key(const char *section, const char *key)
{
    for (size_t i = 0; i < N_KEYS; i++)
        if (strcmp(schema[i].section, section) == 0 && strcmp(schema[i].key, key) == 0) return &schema[i];
    return NULL;
}

static int enum_index(const char *choices, const char *s)
{
    int i = 0;
    for (const char *p = choices;; i++) {
        size_t n = strcspn(p, "|");
        if (strlen(s) == n && strncmp(p, s, n) == 0) return i;
        if (!p[n]) return -1;
        p += n + 1;
    }
}

static int is_int(const cJSON *v, double lo, double hi)
{
    return cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble) && v->valuedouble >= lo &&
           v->valuedouble <= hi;
}

// ---- checking one file ---------------------------------------------------------------------------
// A depth: an integer, or [pre, valley, post] with valley a depth (any nesting cJSON parses).
static int check_depth(const cJSON *v)
{
    for (; !is_int(v, 1, DEPTH_MAX); v = cJSON_GetArrayItem(v, 1)) {
        if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 3) return -1;
        if (!is_int(cJSON_GetArrayItem(v, 0), 0, DEPTH_MAX) || !is_int(cJSON_GetArrayItem(v, 2), 0, DEPTH_MAX)) return -1;
    }
    return 0;
}

static int check_value(const Key *k, const cJSON *v, const char *file, char *err)
{
    const char *f = file;
    switch (k->type) {
    case T_INT:
    case T_LONG:
        if (!is_int(v, k->lo, k->hi))
            return err_set(err, "'%s': %s.%s: expected an integer in %.0f..%.0f", f, k->section, k->key, k->lo, k->hi);
        return 0;
    case T_NUM:
        if (!cJSON_IsNumber(v) || !(v->valuedouble >= k->lo && v->valuedouble <= k->hi))
            return err_set(err, "'%s': %s.%s: expected a number in %g..%g", f, k->section, k->key, k->lo, k->hi);
        return 0;
    case T_BOOL:
        if (!cJSON_IsBool(v)) return err_set(err, "'%s': %s.%s: expected true or false", f, k->section, k->key);
        return 0;
    case T_ENUM:
        if (!cJSON_IsString(v) || enum_index(k->choices, v->valuestring) < 0)
            return err_set(err, "'%s': %s.%s: expected one of %s", f, k->section, k->key, k->choices);
        return 0;
    case T_PAIR:
        if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 2)
            return err_set(err, "'%s': %s.%s: expected [b1, b2]", f, k->section, k->key);
        for (int i = 0; i < 2; i++) {
            const cJSON *x = cJSON_GetArrayItem(v, i);
            if (!cJSON_IsNumber(x) || !(x->valuedouble >= k->lo && x->valuedouble <= k->hi))
                return err_set(err, "'%s': %s.%s: expected two numbers in %g..%g", f, k->section, k->key, k->lo, k->hi);
        }
        return 0;
    case T_DEPTH:
        if (check_depth(v) < 0)
            return err_set(err, "'%s': model.depth: expected layers (an integer in 1..%d) or [pre, valley, post] "
                                "(pre, post in 0..%d, valley a depth)", f, DEPTH_MAX, DEPTH_MAX);
        return 0;
    case T_SHORTEN:
        if (is_int(v, k->lo, k->hi)) return 0;
        if (cJSON_IsArray(v) && cJSON_GetArraySize(v) >= 1) {
            int ok = 1;
            for (const cJSON *x = v->child; x; x = x->next) ok &= is_int(x, k->lo, k->hi);
            if (ok) return 0;
        }
        return err_set(err, "'%s': model.shorten_factor: expected an integer in 1..%.0f or a list of them", f, k->hi);
    case T_AUGMENT:
        if (!cJSON_IsObject(v)) return err_set(err, "'%s': train.augment: expected an object", f);
        for (const cJSON *x = v->child; x; x = x->next) {
            size_t i = 0;
            while (i < N_AUGMENT && strcmp(augment_keys[i].key, x->string) != 0) i++;
            if (i == N_AUGMENT) return err_set(err, "'%s': train.augment.%s: unknown key", f, x->string);
            int lim = augment_keys[i].lim;
            const cJSON *a = cJSON_GetArrayItem(x, 0), *b = cJSON_GetArrayItem(x, 1);
            if (!cJSON_IsArray(x) || cJSON_GetArraySize(x) != 2 || !is_int(a, -lim, lim) || !is_int(b, -lim, lim) ||
                a->valuedouble > b->valuedouble)
                return err_set(err, "'%s': train.augment.%s: expected [lo, hi], integers in -%d..%d with lo <= hi", f,
                               x->string, lim, lim);
        }
        return 0;
    }
    return 0;
}

// whether a key before x among its siblings has x's name (JSON allows it; which one counts would be a guess)
static int repeated(const cJSON *x)
{
    for (const cJSON *y = x->prev; y && y->next; y = y->prev) // (cJSON: the first one's prev is the last one)
        if (y->string && strcmp(y->string, x->string) == 0) return 1;
    return 0;
}

static int check_file(const cJSON *root, const char *file, int resolved, char *err)
{
    if (!cJSON_IsObject(root)) return err_set(err, "'%s': expected a JSON object", file);
    for (const cJSON *s = root->child; s; s = s->next) {
        if (!s->string) return err_set(err, "'%s': a key without a name", file);
        if (repeated(s)) return err_set(err, "'%s': %s: the key appears twice", file, s->string);
        if (!resolved && strcmp(s->string, "extends") == 0) {
            if (!cJSON_IsString(s) || !*s->valuestring) return err_set(err, "'%s': extends: expected a file name", file);
            continue;
        }
        size_t i = 0;
        while (i < N_SECTIONS && strcmp(sections[i], s->string) != 0) i++;
        if (i == N_SECTIONS) return err_set(err, "'%s': %s: unknown key", file, s->string);
        if (!cJSON_IsObject(s)) return err_set(err, "'%s': %s: expected an object", file, s->string);
        for (const cJSON *v = s->child; v; v = v->next) {
            const Key *k = find_key(s->string, v->string);
            if (!k) return err_set(err, "'%s': %s.%s: unknown key", file, s->string, v->string);
            if (repeated(v)) return err_set(err, "'%s': %s.%s: the key appears twice", file, s->string, v->string);
            if (check_value(k, v, file, err) < 0) return -1;
        }
    }
    return 0;
}

// ---- extends ----------------------------------------------------------------------------------------
static void merge(cJSON *dst, const cJSON *src)
{
    for (const cJSON *s = src->child; s; s = s->next) {
        cJSON *d = cJSON_GetObjectItemCaseSensitive(dst, s->string);
        if (d && cJSON_IsObject(d) && cJSON_IsObject(s)) merge(d, s);
        else if (d) cJSON_ReplaceItemInObjectCaseSensitive(dst, s->string, cJSON_Duplicate(s, 1));
        else cJSON_AddItemToObject(dst, s->string, cJSON_Duplicate(s, 1));
    }
}

static cJSON *parse_text(const char *text, size_t len, const char *name, char *err)
{
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) {
        size_t at = end ? (size_t)(end - text) : 0, line = 1;
        for (size_t i = 0; i < at && i < len; i++) line += text[i] == '\n';
        err_set(err, "'%s': invalid JSON near line %zu", name, line);
    }
    return root;
}

// The merged tree of path and its extends chain, every file checked; NULL with err.
static cJSON *load_chain(const char *path, int depth, char *err)
{
    if (depth >= MAX_CHAIN) return err_set(err, "'%s': extends chain longer than %d (a cycle?)", path, MAX_CHAIN), NULL;
    uint8_t *buf;
    size_t len;
    char rerr[ERR_MAX];
    if (read_file(path, CONFIG_MAX_BYTES, &buf, &len, rerr) < 0) return err_set(err, "'%s': %s", path, rerr), NULL;
    cJSON *root = parse_text((const char *)buf, len, path, err);
    free(buf);
    if (!root) return NULL;
    if (check_file(root, path, 0, err) < 0) return cJSON_Delete(root), NULL;
    cJSON *ext = cJSON_DetachItemFromObjectCaseSensitive(root, "extends");
    if (!ext) return root;
    char base[4096];
    const char *slash = strrchr(path, '/');
    if (ext->valuestring[0] == '/' || !slash) snprintf(base, sizeof base, "%s", ext->valuestring);
    else snprintf(base, sizeof base, "%.*s/%s", (int)(slash - path), path, ext->valuestring);
    cJSON_Delete(ext);
    cJSON *merged = load_chain(base, depth + 1, err);
    if (merged) merge(merged, root);
    cJSON_Delete(root);
    return merged;
}

// ---- resolving ------------------------------------------------------------------------------------
static void build_levels(RunConfig *rc, const cJSON *depth)
{
    int i = 0, n = 0;
    for (const cJSON *d = depth; cJSON_IsArray(d); d = cJSON_GetArrayItem(d, 1)) n++;
    rc->levels = xcalloc((size_t)n + 1, sizeof *rc->levels);
    while (cJSON_IsArray(depth)) {
        HgLevel *lv = &rc->levels[i];
        lv->pre = cJSON_GetArrayItem(depth, 0)->valueint;
        lv->post = cJSON_GetArrayItem(depth, 2)->valueint;
        lv->valley = &rc->levels[i + 1];
        depth = cJSON_GetArrayItem(depth, 1), i++;
    }
    rc->levels[i] = (HgLevel){.n_layers = depth->valueint};
    rc->n_levels = i;
}

static cJSON *depth_json(const RunConfig *rc, int i)
{
    if (i == rc->n_levels) return cJSON_CreateNumber(rc->levels[i].n_layers);
    cJSON *a = cJSON_CreateArray();
    cJSON_AddItemToArray(a, cJSON_CreateNumber(rc->levels[i].pre));
    cJSON_AddItemToArray(a, depth_json(rc, i + 1));
    cJSON_AddItemToArray(a, cJSON_CreateNumber(rc->levels[i].post));
    return a;
}

// Keys added after runs existed are left out of the canonical JSON at their default, so the resolved config (and
// its hash, which --resume checks) of a run from before them stays the same: 1 for such a key at its default.
static const char *const late_keys[] = {"val_max_tokens", "augment"}; // of "train", added with issue 17

static int quiet_default(const RunConfig *rc, const Key *k)
{
    int late = 0;
    for (size_t i = 0; i < sizeof late_keys / sizeof *late_keys; i++) late |= strcmp(k->key, late_keys[i]) == 0;
    if (!late) return 0;
    if (k->type == T_AUGMENT)
        return !rc->aug_pitch[0] && !rc->aug_pitch[1] && !rc->aug_velocity[0] && !rc->aug_velocity[1];
    const char *field = (const char *)rc + k->off;
    switch (k->type) {
    case T_INT: case T_BOOL: return *(const int *)field == (int)k->def;
    case T_LONG: return *(const long *)field == (long)k->def;
    case T_NUM: return *(const double *)field == k->def;
    default: return 0; // a late key of another kind is always written
    }
}

// Defaults, the struct, cross-key checks and the canonical JSON, from a checked merged tree.
static int resolve(RunConfig *rc, const cJSON *root, const char *name, char *err)
{
    cJSON *canon = cJSON_CreateObject();
    for (size_t s = 0; s < N_SECTIONS; s++) cJSON_AddItemToObject(canon, sections[s], cJSON_CreateObject());
    const cJSON *depth = NULL, *shorten = NULL;
    for (size_t i = 0; i < N_KEYS; i++) {
        const Key *k = &schema[i];
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, k->section), k->key);
        cJSON *out = cJSON_GetObjectItemCaseSensitive(canon, k->section);
        char *field = k->off == NO_FIELD ? NULL : (char *)rc + k->off;
        switch (k->type) {
        case T_INT: *(int *)field = v ? v->valueint : (int)k->def; break;
        case T_LONG: *(long *)field = v ? (long)v->valuedouble : (long)k->def; break;
        case T_NUM: *(double *)field = v ? v->valuedouble : k->def; break;
        case T_BOOL: *(int *)field = v ? cJSON_IsTrue(v) : (int)k->def; break;
        case T_ENUM:
            if (k->off != NO_FIELD) *(int *)field = v ? enum_index(k->choices, v->valuestring) : (int)k->def;
            break;
        case T_PAIR:
            ((double *)field)[0] = v ? cJSON_GetArrayItem(v, 0)->valuedouble : 0.9;
            ((double *)field)[1] = v ? cJSON_GetArrayItem(v, 1)->valuedouble : 0.999;
            break;
        case T_DEPTH: depth = v; break;
        case T_SHORTEN: shorten = v; break;
        case T_AUGMENT:
            for (size_t a = 0; a < N_AUGMENT; a++) {
                const cJSON *x = v ? cJSON_GetObjectItemCaseSensitive(v, augment_keys[a].key) : NULL;
                int *r = (int *)((char *)rc + augment_keys[a].off);
                r[0] = x ? cJSON_GetArrayItem(x, 0)->valueint : 0;
                r[1] = x ? cJSON_GetArrayItem(x, 1)->valueint : 0;
            }
            break;
        }
        if (k->type == T_ENUM) {
            int idx = v ? enum_index(k->choices, v->valuestring) : (int)k->def;
            const char *p = k->choices;
            for (int j = 0; j < idx; j++) p += strcspn(p, "|") + 1;
            char word[64];
            snprintf(word, sizeof word, "%.*s", (int)strcspn(p, "|"), p);
            cJSON_AddStringToObject(out, k->key, word);
        }
    }
    // depth by type: the baseline takes an integer, the hourglass [pre, valley, post]
    cJSON *dflt = NULL;
    if (!depth) depth = dflt = rc->hourglass ? cJSON_CreateIntArray((const int[]){2, 2, 2}, 3) : cJSON_CreateNumber(6);
    int bad_depth = rc->hourglass ? !cJSON_IsArray(depth) : !cJSON_IsNumber(depth);
    if (!bad_depth) build_levels(rc, depth);
    cJSON_Delete(dflt);
    if (bad_depth) {
        cJSON_Delete(canon);
        return err_set(err, "'%s': model.depth: type %s takes %s", name,
                       rc->hourglass ? "hourglass" : "music_transformer",
                       rc->hourglass ? "[pre, valley, post]" : "an integer number of layers");
    }
    int n_s = shorten && cJSON_IsArray(shorten) ? cJSON_GetArraySize(shorten) : 0;
    if (n_s && n_s != rc->n_levels) {
        cJSON_Delete(canon);
        free(rc->levels), rc->levels = NULL;
        return err_set(err, "'%s': model.shorten_factor: %d factors for %d hourglass levels", name, n_s, rc->n_levels);
    }
    for (int i = 0; i < rc->n_levels; i++)
        rc->levels[i].s = n_s ? cJSON_GetArrayItem(shorten, i)->valueint : shorten ? shorten->valueint : 2;
    if (rc->d_model % rc->num_heads) {
        cJSON_Delete(canon);
        free(rc->levels), rc->levels = NULL;
        return err_set(err, "'%s': model.num_heads: %d does not divide d_model %d", name, rc->num_heads, rc->d_model);
    }
    if (isnan(rc->alpha)) rc->alpha = rc->loss == 2 ? 1e-6 : 0.1;
    // the canonical JSON: every key, in schema order
    for (size_t i = 0; i < N_KEYS; i++) {
        const Key *k = &schema[i];
        cJSON *out = cJSON_GetObjectItemCaseSensitive(canon, k->section);
        const char *field = k->off == NO_FIELD ? NULL : (const char *)rc + k->off;
        if (quiet_default(rc, k)) continue;
        switch (k->type) {
        case T_INT: cJSON_AddNumberToObject(out, k->key, *(const int *)field); break;
        case T_LONG: cJSON_AddNumberToObject(out, k->key, (double)*(const long *)field); break;
        case T_AUGMENT: {
            cJSON *o = cJSON_AddObjectToObject(out, k->key);
            for (size_t a = 0; a < N_AUGMENT; a++)
                cJSON_AddItemToObject(o, augment_keys[a].key,
                                      cJSON_CreateIntArray((const int *)((const char *)rc + augment_keys[a].off), 2));
            break;
        }
        case T_NUM: cJSON_AddNumberToObject(out, k->key, *(const double *)field); break;
        case T_BOOL: cJSON_AddBoolToObject(out, k->key, *(const int *)field); break;
        case T_PAIR: cJSON_AddItemToObject(out, k->key, cJSON_CreateDoubleArray((const double *)field, 2)); break;
        case T_DEPTH: cJSON_AddItemToObject(out, k->key, depth_json(rc, 0)); break;
        case T_SHORTEN:
            if (rc->n_levels <= 1) cJSON_AddNumberToObject(out, k->key, rc->n_levels ? rc->levels[0].s : 2);
            else {
                cJSON *a = cJSON_AddArrayToObject(out, k->key);
                for (int l = 0; l < rc->n_levels; l++) cJSON_AddItemToArray(a, cJSON_CreateNumber(rc->levels[l].s));
            }
            break;
        case T_ENUM: break; // written above
        }
    }
    // sort each section's keys into schema order (enums were added first)
    for (size_t s = 0; s < N_SECTIONS; s++) {
        cJSON *sec = cJSON_GetObjectItemCaseSensitive(canon, sections[s]), *sorted = cJSON_CreateObject();
        for (size_t i = 0; i < N_KEYS; i++) {
            cJSON *item = strcmp(schema[i].section, sections[s]) == 0
                              ? cJSON_DetachItemFromObjectCaseSensitive(sec, schema[i].key) : NULL;
            if (item) cJSON_AddItemToObject(sorted, schema[i].key, item);
        }
        cJSON_ReplaceItemInObjectCaseSensitive(canon, sections[s], sorted);
    }
    rc->json = cJSON_PrintUnformatted(canon);
    cJSON_Delete(canon);
    if (!rc->json) die("out of memory");
    return 0;
}

int config_load(RunConfig *rc, const char *path, char *err)
{
    memset(rc, 0, sizeof *rc);
    cJSON *root = load_chain(path, 0, err);
    if (!root) return -1;
    int r = resolve(rc, root, path, err);
    cJSON_Delete(root);
    return r;
}

int config_parse(RunConfig *rc, const char *json, const char *name, char *err)
{
    memset(rc, 0, sizeof *rc);
    cJSON *root = parse_text(json, strlen(json), name, err);
    if (!root) return -1;
    int r = check_file(root, name, 1, err) < 0 ? -1 : resolve(rc, root, name, err);
    cJSON_Delete(root);
    return r;
}

void config_to_hg(const RunConfig *rc, int V, HgConfig *cfg)
{
    *cfg = (HgConfig){.V = V, .C = rc->d_model, .NH = rc->num_heads, .F = rc->dim_feedforward, .L = rc->input_length,
                      .dropout = (float)rc->dropout, .linear = rc->linear, .attn_resampling = rc->attn_resampling,
                      .save_updown_hidden = rc->save_updown_hidden, .recompute_ffn = rc->recompute_ffn,
                      .top = rc->levels[0]};
}

static void describe_depth(const RunConfig *rc, int i, char *buf, size_t n)
{
    size_t w = strlen(buf);
    if (i == rc->n_levels) {
        snprintf(buf + w, n - w, "%d", rc->levels[i].n_layers);
        return;
    }
    snprintf(buf + w, n - w, "[%d, ", rc->levels[i].pre);
    describe_depth(rc, i + 1, buf, n);
    w = strlen(buf);
    snprintf(buf + w, n - w, ", %d]", rc->levels[i].post);
}

void config_describe(const RunConfig *rc, char *buf, size_t n)
{
    char d[256] = "";
    describe_depth(rc, 0, d, sizeof d);
    if (!rc->hourglass) {
        snprintf(buf, n, "music_transformer %s layers", d);
        return;
    }
    snprintf(buf, n, "hourglass %s s=%d %s%s", d, rc->levels[0].s, rc->linear ? "linear" : "naive",
             rc->attn_resampling ? "+attn" : "");
}

void config_free(RunConfig *rc)
{
    free(rc->json), free(rc->levels);
    rc->json = NULL, rc->levels = NULL;
}
