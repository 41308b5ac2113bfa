// bench/model: forward + backward tokens/s of the C model at the default CPU configs of model.md §9 (d 256,
// 4 heads, F 1024, T 512, batch 8; baseline 6 layers; hourglass [2, 2, 2] s 2, naive and linear, with attention
// resampling), the machine's 2-thread sgemm GFLOP/s (on a GPU: cuBLAS at 8192^3 in the same precision), and the
// model's share of that bound (matmul FLOPs / time).
// Usage: bench/model [RUNS [CONFIG]] [--device cpu|cuda] [--batch B] [--full] [--tf32 | --precision P]
// [--recompute-ffn] (median of RUNS timed steps after one warm-up; CONFIG 0..2 runs only that config, for
// profiling; --full adds gradient clipping and an Adam step, the step of issue 14's table; --device cuda runs on
// the GPU (a CUDA=1 build), timing after the GPU finished; --tf32 lets its matmuls use TF32; --config FILE times
// that config instead, at its own T, e.g. the reference's headline configs/seed_default.json; --recompute-ffn as
// train's: less memory, one product more a layer). On a GPU, "GPU MiB" is what the process holds there (its CUDA
// context and cuBLAS included), "alloc MiB" the most it held through gpu_alloc during the config's run (PyTorch's
// max_memory_allocated is its peer). --plan (a GPU backend): no timing; each config's step (with --full, clipping
// and Adam) runs once as a dry run (backend.h dry_begin: nothing launched, nothing allocated), and "plan MiB" is the
// one block a run would reserve for it (trainer_init's count: allocations, the ops' workspace, pointer arrays); on the
// CUDA emulator (build/emu/bench/model) it needs no GPU.
// Build: make bench-model (or make CUDA=1 build/cuda/bench/model; make build/emu/bench/model for --plan).
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "config.h"
#include "gpu.h"
#include "hg.h"
#include "ops.h"
#include "util.h"


static double sgemm_gflops(void)
{
    int n = 1024;
    float *a = xcalloc((size_t)n * n, 4), *b = xcalloc((size_t)n * n, 4), *c = xcalloc((size_t)n * n, 4);
    for (size_t i = 0; i < (size_t)n * n; i++) a[i] = b[i] = 0.001f * (float)(i % 997);
    double best = 0;
    for (int r = 0; r < 25; r++) { // the best of many short runs: the machine is shared, the peak is what we want
        double t = now_s();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1, a, n, b, n, 0, c, n);
        t = now_s() - t;
        if (r && 2.0 * n * n * n / t / 1e9 > best) best = 2.0 * n * n * n / t / 1e9;
    }
    free(a), free(b), free(c);
    return best;
}

// The GPU's own matmul peak in this precision: a cuBLAS product of 8192^3 through the backend, the best of 5
static double gpu_gemm_gflops(const Backend *be)
{
    int n = 8192;
    size_t bytes = (size_t)n * n * sizeof(float);
    float *a = be->alloc(bytes), *b = be->alloc(bytes), *c = be->alloc(bytes);
    char err[ERR_MAX];
    double best = 0;
    for (int r = 0; r < 6; r++) { // zeros: the rate of a dense product does not depend on the values in fp32
        double t = now_s();
        be->linear_forward(c, a, b, NULL, n, n, n);
        if (be->sync(err) < 0) die("%s", err);
        t = now_s() - t;
        if (r && 2.0 * n * n * n / t / 1e9 > best) best = 2.0 * n * n * n / t / 1e9;
    }
    be->free(a), be->free(b), be->free(c);
    return best;
}

// Matmul FLOPs of one forward of a layer over Tq queries and Tk keys (B rows each), with or without Er.
static double layer_flops(int B, int Tq, int Tk, int C, int F, int cross, int er)
{
    double N = (double)B * Tq, Nk = (double)B * Tk;
    double proj = cross ? 2 * N * C * C + 2 * Nk * C * 2 * C : 2 * N * C * 3 * C;
    double att = 2.0 * B * Tq * Tk * C * 2 + (er ? 2.0 * B * Tq * Tq * C : 0);
    return proj + att + 2 * N * C * C + 2 * 2 * N * C * F;
}

int main(int argc, char **argv)
{
    util_init(argv[0]);
    int runs = 5, only = -1, B = 8, full = 0, prec = PREC_FP32, npos = 0, recompute = 0, plan = 0;
    const char *device = "cpu", *config = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--device") == 0 && i + 1 < argc) device = argv[++i];
        else if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc) B = (int)parse_long("--batch", argv[++i], 1, 4096);
        else if (strcmp(argv[i], "--full") == 0) full = 1;
        else if (strcmp(argv[i], "--recompute-ffn") == 0) recompute = 1;
        else if (strcmp(argv[i], "--plan") == 0) plan = 1;
        else if (strcmp(argv[i], "--tf32") == 0) prec = PREC_TF32;
        else if (strcmp(argv[i], "--precision") == 0 && i + 1 < argc) {
            if ((prec = precision_parse(argv[++i])) < 0) die_usage("--precision '%s': expected fp32, tf32 or bf16", argv[i]);
        }
        else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) config = argv[++i];
        else if (npos == 0) runs = (int)parse_long("RUNS", argv[i], 1, 100), npos++;
        else if (npos == 1) only = (int)parse_long("CONFIG", argv[i], 0, 2), npos++;
        else die_usage("unknown argument: '%s'", argv[i]);
    }
    char err[ERR_MAX];
    const Backend *be = backend_get(device, err);
    if (!be) die("cannot use device '%s': %s", device, err);
    if (prec != PREC_FP32 && be->on_host) die_usage("--precision %s needs --device cuda", precision_name(prec));
    if (plan && !be->dry_begin) die_usage("--plan needs --device cuda");
    gpu_set_precision(prec);
    int T = 512, C = 256, F = 1024, V = 348;
    if (plan) runs = 0; // one step, dry
    double peak = plan ? 0 : be->on_host ? sgemm_gflops() : gpu_gemm_gflops(be), bf16_peak = 0;
    if (plan) {
        printf("device: %s; batch %d; %s; a dry run of one step per config (--plan: nothing runs)\n",
               be->device_name(), B, prec == PREC_FP32 ? "fp32" : prec == PREC_TF32 ? "TF32" : "bf16 linear layers");
    } else if (!be->on_host) { // model FLOP utilisation is also given against the GPU's bf16 rate (issue 15)
        gpu_set_precision(PREC_BF16);
        bf16_peak = prec == PREC_BF16 ? peak : gpu_gemm_gflops(be);
        gpu_set_precision(prec);
    }
    if (plan) {
    } else if (be->on_host) {
        printf("sgemm 1024^3 with %d OpenBLAS threads: %.1f GFLOP/s\n", openblas_get_num_threads(), peak);
    } else {
        printf("device: %s; batch %d; %s; cuBLAS 8192^3: %.1f TFLOP/s (bf16: %.1f)\n", be->device_name(), B,
                prec == PREC_FP32 ? "fp32 (TF32 off)" : prec == PREC_TF32 ? "TF32" : "bf16 linear layers", peak / 1e3,
                bf16_peak / 1e3);
    }
    printf("step: forward, cross-entropy, backward%s%s\n", full ? ", clipping, Adam" : "",
           recompute ? " (linear1, ReLU and dropout recomputed in the backward)" : "");
    if (plan) printf("%-22s %12s %12s\n", "config", "plan MiB", "activations");
    else
        printf("%-22s %12s %12s %10s %12s %10s%s\n", "config", "step s", "tokens/s", "GFLOP/s", "of sgemm",
               be->on_host ? "alloc MiB" : "GPU MiB", be->on_host ? "" : "    of bf16  alloc MiB");
    static HgLevel valley = {.n_layers = 2};
    struct {
        const char *name;
        HgConfig c;
    } cfgs[] = {
        {"baseline (6 layers)", {.V = V, .C = C, .NH = 4, .F = F, .L = T, .dropout = 0.1f, .top = {.n_layers = 6}}},
        {"hourglass naive+attn", {.V = V, .C = C, .NH = 4, .F = F, .L = T, .dropout = 0.1f, .linear = 0,
                                  .attn_resampling = 1, .save_updown_hidden = 1,
                                  .top = {.pre = 2, .post = 2, .s = 2, .valley = &valley}}},
        {"hourglass linear+attn", {.V = V, .C = C, .NH = 4, .F = F, .L = T, .dropout = 0.1f, .linear = 1,
                                   .attn_resampling = 1, .save_updown_hidden = 1,
                                   .top = {.pre = 2, .post = 2, .s = 2, .valley = &valley}}},
    };
    size_t n_cfgs = sizeof cfgs / sizeof *cfgs;
    RunConfig rc;
    if (config) { // one config file instead of the three (its own T; FLOPs not counted)
        if (config_load(&rc, config, err) < 0) die("%s", err);
        cfgs[0].name = path_base(config);
        config_to_hg(&rc, V, &cfgs[0].c);
        T = rc.input_length, n_cfgs = 1, only = -1;
    }
    if (!be->on_host) // which attention the rows time (every config here has the same head size)
        printf("attention: %s\n", backend_cuda_attention(cfgs[0].c.C / cfgs[0].c.NH, prec));
    for (size_t k = 0; k < n_cfgs; k++) {
        if (only >= 0 && (size_t)only != k) continue;
        HgModel m;
        cfgs[k].c.recompute_ffn = recompute;
        if (!be->on_host) gpu_mem_peak_reset(); // "alloc MiB": this config's peak
        if (plan) be->dry_begin();
        if (hg_build(&m, &cfgs[k].c, err) < 0) die("%s", err);
        hg_init_weights(&m, 1);
        if (hg_set_backend(&m, be, err) < 0) die("%s", err);
        hg_alloc(&m, B, T);
        int32_t *tok = xmalloc((size_t)B * (T + 1) * sizeof *tok), *inp = xmalloc((size_t)B * T * 4), *tgt = xmalloc((size_t)B * T * 4);
        for (int i = 0; i < B * (T + 1); i++) tok[i] = 4 + (i * 7919) % (V - 4);
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) inp[b * T + t] = tok[b * (T + 1) + t], tgt[b * T + t] = tok[b * (T + 1) + t + 1];
        int32_t *tgt_b = be->alloc((size_t)B * T * 4);
        be->upload(tgt_b, tgt, (size_t)B * T * 4);
        float *dlog = be->alloc((size_t)B * T * V * 4);
        float *am = full ? be->alloc(m.n_floats * 4) : NULL, *av = full ? be->alloc(m.n_floats * 4) : NULL;
        AdamParams ap = {3e-4, 0.9, 0.999, 1e-8, 0};
        double *times = xmalloc(sizeof(double) * (size_t)(runs + 1)), *vals = be->alloc(2 * sizeof(double));
        AdamStep step = adam_constants(&ap, 1), *kd = be->alloc(sizeof step); // the constants' upload is not timed
        be->upload(kd, &step, sizeof step);
        for (int r = 0; r <= runs; r++) {
            if (r == 1) gpu_profile_reset(); // HMT_GPU_PROFILE=1: the timed steps only
            double t0 = now_s();
            hg_forward(&m, inp, 1, (uint64_t)r);
            be->crossentropy_fused(dlog, vals, m.logits, tgt_b, B * T, V, 1.0f); // as trainer_loss
            be->zero(m.bdw, m.n_floats * sizeof(float));
            hg_backward(&m, dlog, NULL);
            if (full) {
                be->clip_grad_norm(vals + 1, m.bdw, m.n_floats, 0.5);
                be->adam_apply(m.bw, m.bdw, am, av, m.n_floats, &ap, kd, vals, 2);
            }
            if (be->sync(err) < 0) die("%s", err);
            times[r] = now_s() - t0;
        }
        if (plan) { // everything freed inside the dry run, as trainer_init's
            double acts = (double)hg_act_bytes(&m) / 1048576;
            free(tok), free(inp), free(tgt), free(times);
            be->free(tgt_b), be->free(dlog);
            if (full) be->free(am), be->free(av);
            be->free(vals), be->free(kd);
            hg_free(&m);
            printf("%-22s %12.0f %12.0f\n", cfgs[k].name, (double)be->dry_end() / 1048576, acts);
            fflush(stdout);
            continue;
        }
        double med = median_sort(times + 1, runs);
        // matmul FLOPs, forward x 3 (backward is two matmuls per forward one)
        double fl = 2.0 * B * T * C * V;
        if (config) {
            fl = 0; // not counted for a config file: its columns print "-"
        } else if (cfgs[k].c.top.valley) {
            int Ts = T / 2;
            fl += 4 * layer_flops(B, T, T, C, F, 0, 1) + 2 * layer_flops(B, Ts, Ts, C, F, 0, 1);
            fl += layer_flops(B, Ts, T, C, F, 1, 0) + layer_flops(B, T, Ts, C, F, 1, 0);
            if (cfgs[k].c.linear) fl += 2 * (2.0 * B * Ts * 2 * C * C);
        } else {
            fl += 6 * layer_flops(B, T, T, C, F, 0, 1);
        }
        fl *= 3;
        // everything the step uses is allocated up front: weights, gradients, Adam moments, activations, dlogits
        double mib = ((double)m.n_floats * 4 * (full ? 4 : 2) + (double)hg_act_bytes(&m) + 4.0 * B * T * V) / 1048576;
        size_t fr = 0, tot = 0; // on the GPU: what the process holds there (the CUDA context, cuBLAS, the workspace)
        if (!be->on_host && gpu_mem_info(&fr, &tot) == 0) mib = (double)(tot - fr) / 1048576;
        char gf[32] = "-", share[32] = "-", share16[32] = "";
        if (fl > 0)
            snprintf(gf, sizeof gf, "%.1f", fl / med / 1e9),
                snprintf(share, sizeof share, "%.0f%%", 100 * fl / med / 1e9 / peak);
        if (fl > 0 && bf16_peak > 0) snprintf(share16, sizeof share16, " %10.1f%%", 100 * fl / med / 1e9 / bf16_peak);
        if (!be->on_host) { // the most the step held through gpu_alloc: PyTorch's max_memory_allocated's peer
            size_t now = 0, held = 0;
            gpu_mem_allocated(&now, &held);
            size_t len = strlen(share16);
            if (!share16[0]) len = (size_t)snprintf(share16, sizeof share16, " %11s", "-");
            snprintf(share16 + len, sizeof share16 - len, " %10.0f", (double)held / 1048576);
        }
        printf("%-22s %12.*f %12.0f %10s %12s %10.0f%s\n", cfgs[k].name, be->on_host ? 3 : 4, med, B * T / med, gf, share,
               mib, share16);
        fflush(stdout);
        if (!be->on_host) gpu_profile_print(stdout);
        free(tok), free(inp), free(tgt), free(times);
        be->free(tgt_b), be->free(dlog);
        if (full) be->free(am), be->free(av);
        be->free(vals), be->free(kd);
        hg_free(&m);
    }
    if (config) config_free(&rc);
    return 0;
}
