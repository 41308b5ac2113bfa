// test_config: configs (spec/formats.md §6): extends merges key by key over a base, every committed config
// resolves, the canonical JSON reads back to itself, and every kind of bad key is an error naming key and file
// (train.augment's ranges and train.val_max_tokens included; at their defaults they stay out of the JSON).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "config.h"
#include "util.h"

static char dir[] = "/tmp/test_config.XXXXXX";

static void put(const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) die("cannot write '%s'", path);
    fputs(text, f);
    fclose(f);
}

// Loads name from the temporary folder; returns the rc and leaves the message in err.
static int load(RunConfig *rc, const char *name, char *err)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return config_load(rc, path, err);
}

static void expect_error(const char *name, const char *text, const char *want1, const char *want2)
{
    RunConfig rc;
    char err[ERR_MAX] = "";
    put(name, text);
    int r = load(&rc, name, err);
    CHECK(r < 0, "%s: accepted: %s", name, text);
    if (r < 0) CHECK(strstr(err, want1) && strstr(err, want2), "%s: message '%s' lacks '%s' / '%s'", name, err, want1, want2);
    else config_free(&rc);
}

int main(void)
{
    util_init("test_config");
    if (!mkdtemp(dir)) die("mkdtemp failed");
    char err[ERR_MAX];
    RunConfig rc;

    // extends: the child's keys win, the base's others stay, nested objects merge key by key
    put("base.json", "{\"model\": {\"type\": \"hourglass\", \"depth\": [2, 2, 2], \"d_model\": 64, \"num_heads\": 4},"
                     " \"train\": {\"steps\": 50, \"seed\": 7}}");
    put("child.json", "{\"extends\": \"base.json\", \"model\": {\"d_model\": 32}, \"train\": {\"steps\": 9}}");
    CHECK(load(&rc, "child.json", err) == 0, "child: %s", err);
    CHECK(rc.d_model == 32 && rc.num_heads == 4 && rc.steps == 9 && rc.seed == 7 && rc.hourglass, "merge: d %d h %d "
          "steps %d seed %ld", rc.d_model, rc.num_heads, rc.steps, rc.seed);
    CHECK(rc.n_levels == 1 && rc.levels[0].pre == 2 && rc.levels[0].s == 2 && rc.levels[1].n_layers == 2, "depth");
    // defaults fill what no file sets (model.md §9)
    CHECK(rc.batch_size == 8 && rc.grad_norm_clip == 0.5 && rc.max_lr == 3e-4 && rc.pct_start == 0.2 &&
          rc.div_factor == 25 && rc.final_div_factor == 1e4 && rc.beta1 == 0.9 && rc.beta2 == 0.999 && rc.eps == 1e-8 &&
          rc.dropout == 0.1 && rc.one_cycle && !rc.anneal_linear, "defaults");
    CHECK(rc.loss == 0 && rc.alpha == 0.1, "alpha default for ce: %g", rc.alpha);
    // the canonical JSON resolves to itself
    RunConfig again;
    CHECK(config_parse(&again, rc.json, "resolved", err) == 0, "resolved config refused: %s", err);
    CHECK(strcmp(again.json, rc.json) == 0, "canonical JSON not stable:\n%s\n%s", rc.json, again.json);
    CHECK(strstr(rc.json, "\"extends\"") == NULL, "extends left in the resolved config");
    config_free(&again), config_free(&rc);

    // a chain of three, an exp_cosine loss (alpha default 1e-6), nested depth with a shorten list
    put("mid.json", "{\"extends\": \"child.json\", \"loss\": {\"type\": \"exp_cosine_ce\"}}");
    put("top.json", "{\"extends\": \"mid.json\", \"model\": {\"depth\": [1, [1, 2, 1], 1], \"shorten_factor\": [2, 3]}}");
    CHECK(load(&rc, "top.json", err) == 0, "top: %s", err);
    CHECK(rc.loss == 2 && rc.alpha == 1e-6 && rc.d_model == 32, "chain of three");
    CHECK(rc.n_levels == 2 && rc.levels[0].s == 2 && rc.levels[1].s == 3 && rc.levels[1].pre == 1 &&
          rc.levels[2].n_layers == 2 && rc.levels[0].valley == &rc.levels[1], "nested depth");
    char desc[256];
    config_describe(&rc, desc, sizeof desc);
    CHECK(strcmp(desc, "hourglass [1, [1, 2, 1], 1] s=2 linear+attn") == 0, "describe: %s", desc);
    config_free(&rc);

    // every committed config resolves, and the baseline is a 6-layer music transformer
    const char *names[] = {"base", "baseline", "naive", "linear", "naive_attn", "linear_attn", "shorten3", "shorten4",
                           "nested", "cosine_ce", "exp_cosine_ce", "linear_attn_aug"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char path[256];
        snprintf(path, sizeof path, "configs/%s.json", names[i]);
        CHECK(config_load(&rc, path, err) == 0, "%s: %s", path, err);
        if (strcmp(names[i], "baseline") == 0) CHECK(!rc.hourglass && rc.levels[0].n_layers == 6, "baseline");
        if (strcmp(names[i], "shorten3") == 0) CHECK(rc.levels[0].s == 3 && rc.linear && rc.attn_resampling, "s3");
        if (strcmp(names[i], "naive") == 0) CHECK(!rc.linear && !rc.attn_resampling, "naive");
        if (strcmp(names[i], "linear_attn_aug") == 0)
            CHECK(rc.linear && rc.attn_resampling && rc.aug_pitch[0] == -5 && rc.aug_pitch[1] == 6 &&
                  rc.aug_velocity[0] == -2 && rc.aug_velocity[1] == 2, "linear_attn_aug");
        config_free(&rc);
    }

    // train.val_max_tokens and train.augment: off by default and then absent from the canonical JSON (so the
    // resolved config of a run from before them, and its hash, stay the same); set, they resolve and read back
    CHECK(load(&rc, "child.json", err) == 0, "child: %s", err);
    CHECK(rc.val_max_tokens == 0 && !rc.aug_pitch[0] && !rc.aug_pitch[1] && !rc.aug_velocity[0] && !rc.aug_velocity[1],
          "defaults of val_max_tokens and augment");
    CHECK(!strstr(rc.json, "val_max_tokens") && !strstr(rc.json, "augment"), "defaults written: %s", rc.json);
    config_free(&rc);
    put("aug_base.json", "{\"extends\": \"child.json\", \"train\": {\"augment\": {\"pitch_offsets\": [-5, 6]}}}");
    put("aug.json", "{\"extends\": \"aug_base.json\", \"train\": {\"val_max_tokens\": 50000,"
                    " \"augment\": {\"velocity_offsets\": [-2, 1]}}}");
    CHECK(load(&rc, "aug.json", err) == 0, "aug: %s", err);
    CHECK(rc.val_max_tokens == 50000 && rc.aug_pitch[0] == -5 && rc.aug_pitch[1] == 6 && rc.aug_velocity[0] == -2 &&
          rc.aug_velocity[1] == 1 && rc.steps == 9, "augment merged over extends: pitch [%d, %d] velocity [%d, %d]",
          rc.aug_pitch[0], rc.aug_pitch[1], rc.aug_velocity[0], rc.aug_velocity[1]);
    CHECK(strstr(rc.json, "\"val_max_tokens\":50000") &&
          strstr(rc.json, "\"augment\":{\"pitch_offsets\":[-5,6],\"velocity_offsets\":[-2,1]}"), "canonical: %s", rc.json);
    CHECK(config_parse(&again, rc.json, "resolved", err) == 0 && strcmp(again.json, rc.json) == 0 &&
          again.aug_velocity[0] == -2 && again.val_max_tokens == 50000, "augment does not read back: %s", err);
    config_free(&again), config_free(&rc);
    expect_error("a1.json", "{\"train\": {\"augment\": {\"pitch_offsets\": [3, -3]}}}", "a1.json",
                 "train.augment.pitch_offsets: expected [lo, hi], integers in -87..87 with lo <= hi");
    expect_error("a2.json", "{\"train\": {\"augment\": {\"velocity_offsets\": [0, 16]}}}", "a2.json",
                 "train.augment.velocity_offsets: expected [lo, hi], integers in -15..15");
    expect_error("a3.json", "{\"train\": {\"augment\": {\"pitch_offset\": [0, 1]}}}", "a3.json",
                 "train.augment.pitch_offset: unknown key");
    expect_error("a4.json", "{\"train\": {\"augment\": [0, 1]}}", "a4.json", "train.augment: expected an object");
    expect_error("a5.json", "{\"train\": {\"augment\": {\"pitch_offsets\": [0.5, 1]}}}", "a5.json",
                 "train.augment.pitch_offsets");
    expect_error("a6.json", "{\"train\": {\"augment\": {\"pitch_offsets\": 2}}}", "a6.json",
                 "train.augment.pitch_offsets");
    expect_error("a7.json", "{\"train\": {\"val_max_tokens\": -1}}", "a7.json", "train.val_max_tokens");
    expect_error("a8.json", "{\"extends\": \"a1.json\"}", "a1.json", "train.augment.pitch_offsets");

    // errors name the file holding the bad key, and the key
    expect_error("e1.json", "{\"model\": {\"d_modle\": 3}}", "e1.json", "model.d_modle: unknown key");
    expect_error("e2.json", "{\"modle\": {}}", "e2.json", "modle: unknown key");
    expect_error("d1.json", "{\"train\": {\"steps\": 3, \"steps\": 5}}", "d1.json", "train.steps: the key appears twice");
    expect_error("d2.json", "{\"train\": {}, \"model\": {}, \"train\": {}}", "d2.json", "train: the key appears twice");
    expect_error("e3.json", "{\"model\": {\"d_model\": \"256\"}}", "e3.json", "model.d_model: expected an integer");
    expect_error("e4.json", "{\"model\": {\"dropout\": 1.5}}", "e4.json", "model.dropout: expected a number in 0..0.99");
    expect_error("e5.json", "{\"train\": {\"batch_size\": 2.5}}", "e5.json", "train.batch_size");
    expect_error("e6.json", "{\"model\": {\"updown_sample_type\": \"cubic\"}}", "e6.json", "naive|linear");
    expect_error("e7.json", "{\"model\": {\"attn_resampling\": 1}}", "e7.json", "expected true or false");
    expect_error("e8.json", "{\"extends\": \"e1.json\"}", "e1.json", "model.d_modle"); // the base's file is named
    expect_error("e9.json", "{\"extends\": \"nowhere.json\"}", "nowhere.json", "No such file");
    expect_error("e10.json", "{\"extends\": \"e10.json\"}", "e10.json", "extends chain");
    expect_error("e11.json", "{\"model\": {\"d_model\": 30, \"num_heads\": 4}}", "e11.json", "does not divide");
    expect_error("e12.json", "{\"model\": {\"type\": \"music_transformer\", \"depth\": [1, 1, 1]}}", "e12.json",
                 "model.depth");
    expect_error("e13.json", "{\"model\": {\"depth\": [1, 1, 1], \"shorten_factor\": [2, 2]}}", "e13.json",
                 "2 factors for 1 hourglass levels");
    expect_error("e14.json", "{\"model\": {\"depth\": [1, 1]}}", "e14.json", "model.depth");
    expect_error("e15.json", "{\"model\": {\"d_model\": 256,}}", "e15.json", "invalid JSON near line 1");
    expect_error("e16.json", "[1, 2]", "e16.json", "expected a JSON object");
    expect_error("e17.json", "{\"train\": {\"steps\": 0}}", "e17.json", "train.steps");
    expect_error("e18.json", "{\"optimizer\": {\"betas\": [0.9]}}", "e18.json", "optimizer.betas");

    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return check_done();
}
