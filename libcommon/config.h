// config: experiment configs (spec/formats.md §6): JSON files with `extends`, checked key by key against one
// schema table, defaults filled in, resolved into a RunConfig and a canonical JSON string (stored with the run
// and in model.safetensors' __metadata__). cJSON is used here and in ckpt.c only. No model code here.
#ifndef CONFIG_H
#define CONFIG_H

#include "hg.h"

typedef struct RunConfig {
    // model
    int hourglass;          // "type": "hourglass" (else "music_transformer")
    HgLevel *levels;        // the depth tree, n_levels + 1 entries (malloc'd): levels[0] is the top,
                            // levels[i].valley -> levels[i+1]. Any nesting; sizes are limited by memory (hg_plan)
    int n_levels;           // hourglass levels (0 for the baseline)
    int input_length, num_heads, d_model, dim_feedforward;
    double dropout;
    int linear, attn_resampling, save_updown_hidden;
    int recompute_ffn;      // not from the file (not hashed): a run option (hg.h HgConfig.recompute_ffn)
    // loss
    int loss;               // 0 ce, 1 cosine_ce, 2 exp_cosine_ce
    double alpha;
    // optimizer: Adam (model.md §9)
    double lr, beta1, beta2, eps, weight_decay;
    // lr_scheduler
    int one_cycle;          // "one_cycle" (else "constant")
    int anneal_linear;      // anneal_strategy "linear" (else "cos")
    double max_lr, pct_start, div_factor, final_div_factor;
    // train
    int batch_size, grad_accum, steps, eval_every, checkpoint_every, log_every;
    double grad_norm_clip;  // 0: no clipping
    long seed;
    long val_max_tokens;    // validation budget in targets; 0: the whole split (data_limit_eval)
    int aug_pitch[2];       // train.augment.pitch_offsets [lo, hi], semitones; [0, 0]: off
    int aug_velocity[2];    // train.augment.velocity_offsets [lo, hi], velocity bins; [0, 0]: off
    char *json;             // the resolved config, canonical JSON (malloc'd)
} RunConfig;

// A RunConfig holds pointers into itself (levels[i].valley): do not copy it by value.
// Reads path, applies its `extends` chain (a path relative to the file that names it; merged key by key, objects
// recursively, anything else replaced), checks every key of every file against the schema (unknown key, wrong
// type, out-of-range value: the error names the file and the key), fills defaults and checks cross-key rules.
// Returns 0, or -1 with err ("'configs/x.json': model.d_model: expected an integer in 1..65536").
int config_load(RunConfig *rc, const char *path, char *err);
// The same from a JSON string (a resolved config read back from a checkpoint); name is used in messages.
int config_parse(RunConfig *rc, const char *json, const char *name, char *err);
// The model part as the HgConfig hg_build expects (V the vocabulary size). cfg->top points into rc->levels,
// so rc must outlive cfg.
void config_to_hg(const RunConfig *rc, int V, HgConfig *cfg);
// A short description of the architecture, e.g. "hourglass [2, 2, 2] s=2 linear+attn".
void config_describe(const RunConfig *rc, char *buf, size_t n);
void config_free(RunConfig *rc);

#endif
