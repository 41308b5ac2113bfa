// test_plan: sizes before allocation (issue 13). hg_plan's parameters, tensors and activation bytes equal what
// hg_build and hg_alloc then take, for every configuration kind; the reference's headline config
// (configs/seed_default.json, 609,003,868 parameters) has the PyTorch reference's parameter table, name for name
// and shape for shape (tests/fixtures/seed_default.params, written by tests/ref/param_table.py); deep nesting and
// very deep blocks are valid, with names of any length and no two alike.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "config.h"
#include "decode.h"
#include "hg.h"
#include "remi.h"
#include "util.h"

// hg_plan against hg_build + hg_alloc for one config
static void check_plan(const char *what, const HgConfig *c, int B, int T)
{
    char err[ERR_MAX];
    HgPlan p;
    HgModel m;
    CHECK(hg_plan(c, B, T, &p, err) == 0, "%s: plan: %s", what, err);
    if (hg_build(&m, c, err) < 0) {
        CHECK(0, "%s: build: %s", what, err);
        return;
    }
    CHECK(p.n_floats == m.n_floats, "%s: planned %zu parameters, built %zu", what, p.n_floats, m.n_floats);
    CHECK(p.n_tensors == (size_t)m.n_params, "%s: planned %zu tensors, built %d", what, p.n_tensors, m.n_params);
    hg_alloc(&m, B, T);
    CHECK(p.act_bytes == hg_act_bytes(&m), "%s: planned %zu activation bytes, allocated %zu", what, p.act_bytes,
          hg_act_bytes(&m));
    size_t dec = 0;
    if (c->L >= 2) CHECK(dec_plan(&m, B, NULL, &dec, err) == 0 && dec > 0, "%s: decoder plan: %s", what, err);
    hg_free(&m);
}

static void test_kinds(void)
{
    static HgLevel inner = {.n_layers = 2}, mid = {.pre = 1, .post = 2, .s = 3, .valley = &inner};
    for (int linear = 0; linear < 2; linear++)
        for (int attn = 0; attn < 2; attn++) {
            HgConfig c = {.V = 40, .C = 16, .NH = 2, .F = 24, .L = 13, .linear = linear, .attn_resampling = attn,
                          .save_updown_hidden = 1, .top = {.pre = 2, .post = 1, .s = 2, .valley = &mid}};
            char what[64];
            snprintf(what, sizeof what, "nested linear %d attn %d", linear, attn);
            check_plan(what, &c, 3, 13);
            check_plan(what, &c, 1, 5);
        }
    HgConfig base = {.V = 40, .C = 16, .NH = 4, .F = 32, .L = 9, .top = {.n_layers = 3}};
    check_plan("baseline", &base, 2, 9);
    base.top.n_layers = 0;
    check_plan("no layers", &base, 2, 9);
}

// The committed table: NAME<TAB>d0,d1,... lines, "# parameters N" at the end.
static void test_headline(void)
{
    char err[ERR_MAX], path[512];
    RunConfig rc;
    if (config_load(&rc, "configs/seed_default.json", err) < 0) {
        CHECK(0, "seed_default: %s", err);
        return;
    }
    HgConfig c;
    HgPlan p;
    HgModel m;
    config_to_hg(&rc, REMI_VOCAB_SIZE, &c);
    CHECK(hg_plan(&c, 0, 0, &p, err) == 0 && p.n_floats == 609003868, "seed_default: %zu parameters planned, the "
          "reference has 609,003,868 (%s)", p.n_floats, err);
    CHECK(hg_build(&m, &c, err) == 0, "seed_default: build: %s", err); // w and dw are calloc'd: never touched here
    CHECK(m.n_floats == 609003868, "seed_default: %zu parameters built", m.n_floats);
    snprintf(path, sizeof path, "tests/fixtures/seed_default.params");
    FILE *f = fopen(path, "r");
    CHECK(f != NULL, "cannot open %s", path);
    char line[1024];
    int n_lines = 0, matched = 0, pe = 0;
    long long total = -1;
    unsigned char *seen = xcalloc((size_t)m.n_params, 1);
    while (f && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        if (sscanf(line, "# parameters %lld", &total) == 1) continue;
        char *tab = strchr(line, '\t');
        if (!tab) continue;
        *tab = 0, n_lines++;
        if (strcmp(line, "positional_encoding.pe") == 0) { // a buffer, written by ckpt.c from (L, 1, C)
            pe = strcmp(tab + 1, "1024,1,768") == 0;
            continue;
        }
        int i = hg_param_index(&m, line);
        if (i < 0) {
            CHECK(0, "seed_default: the reference's '%s' is not in the C table", line);
            continue;
        }
        char shape[64];
        const HgParam *q = &m.params[i];
        if (q->ndim == 1) snprintf(shape, sizeof shape, "%d", q->shape[0]);
        else snprintf(shape, sizeof shape, "%d,%d", q->shape[0], q->shape[1]);
        CHECK(strcmp(shape, tab + 1) == 0, "seed_default: '%s' is [%s] in C, [%s] in the reference", line, shape, tab + 1);
        matched += !seen[i]++;
    }
    if (f) fclose(f);
    CHECK(pe, "seed_default: positional_encoding.pe missing or not (1024, 1, 768) in the fixture");
    CHECK(matched == m.n_params && n_lines == m.n_params + 1, "seed_default: %d of %d C tensors matched, %d in the "
          "reference", matched, m.n_params, n_lines);
    CHECK(total == 609003868, "seed_default: the fixture says %lld parameters", total);
    free(seen);
    hg_free(&m);
    config_free(&rc);
}

// A ten-level nest and a 1,000-layer valley at tiny width: valid configs, names past any fixed buffer, unique.
static void test_deep(void)
{
    char json[4096] = "", err[ERR_MAX];
    strcat(json, "{\"model\": {\"type\": \"hourglass\", \"d_model\": 4, \"num_heads\": 1, \"dim_feedforward\": 4, "
                 "\"input_length\": 8, \"shorten_factor\": 1, \"depth\": ");
    for (int i = 0; i < 10; i++) strcat(json, "[1, ");
    strcat(json, "1000");
    for (int i = 0; i < 10; i++) strcat(json, ", 1]");
    strcat(json, "}}");
    RunConfig rc;
    if (config_parse(&rc, json, "deep", err) < 0) {
        CHECK(0, "ten levels and 1000 layers refused: %s", err);
        return;
    }
    CHECK(rc.n_levels == 10 && rc.levels[10].n_layers == 1000, "deep: %d levels", rc.n_levels);
    HgConfig c;
    config_to_hg(&rc, REMI_VOCAB_SIZE, &c);
    check_plan("ten levels, 1000 layers", &c, 1, 8);
    HgModel m;
    CHECK(hg_build(&m, &c, err) == 0, "deep: build: %s", err);
    size_t longest = 0;
    for (int i = 0; i < m.n_params; i++) longest = strlen(m.params[i].name) > longest ? strlen(m.params[i].name) : longest;
    CHECK(longest > 200, "deep: the longest name has %zu characters", longest);
    const char *last = "transformer.encoder.valley_transformer.valley_transformer.valley_transformer.valley_transformer."
                       "valley_transformer.valley_transformer.valley_transformer.valley_transformer.valley_transformer."
                       "valley_transformer.layers.999.linear2.weight";
    CHECK(hg_param_index(&m, last) >= 0, "deep: '%s' missing", last);
    hg_free(&m);
    config_free(&rc);
    // eleven hourglass levels of s 2 on a window of 8 still build (the valley gets one row)
    CHECK(config_parse(&rc, "{\"model\": {\"type\": \"hourglass\", \"depth\": [1, [1, [1, [1, [1, [1, [1, [1, [1, [1, "
                            "[1, 2, 1], 1], 1], 1], 1], 1], 1], 1], 1], 1], 1], \"input_length\": 8, \"d_model\": 4, "
                            "\"num_heads\": 1, \"dim_feedforward\": 4}}", "eleven", err) == 0, "eleven levels: %s", err);
    config_free(&rc);
}

int main(void)
{
    util_init("test_plan");
    test_kinds();
    test_headline();
    test_deep();
    return check_done();
}
