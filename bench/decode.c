// bench/decode: generation speed of the KV-cached decoder (decode.h) at the CPU config of model.md §9 (d 256,
// 4 heads, F 1024, L 512, V 348; baseline 6 layers; hourglass [2, 2, 2] s 2, naive and linear, with attention
// resampling): a 512-token prefill, then 512 dec_step calls (the window slides twice, keep 256), at batch 1 and 8,
// against the C full forward over a 512-token window (what sampling without a cache pays per token); then "sample
// tok/s": sampler.c's sample_generate over the same prefill, 512 tokens drawn with the REMI grammar and top_p 0.95
// (EOS kept out through the output layer's bias, so every run is 512 steps), on a GPU drawn where the decoder runs
// (HMT_GPU_DECODE_DRAW=0: on the host).
// Usage: bench/decode [RUNS [THREADS]] [--device cpu|cuda] (median of RUNS after one warm-up; THREADS for the decoder
// and the full forward, default 1; --device cuda: both on the GPU, a CUDA=1 build). Build and run: bench/decode.sh.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "decode.h"
#include "gpu.h"
#include "hg.h"
#include "ops.h"
#include "remi.h"
#include "sampler.h"
#include "util.h"

int main(int argc, char **argv)
{
    util_init(argv[0]);
    int runs = 3, threads = 1, npos = 0;
    const char *device = "cpu";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--device") == 0 && i + 1 < argc) device = argv[++i];
        else if (npos == 0) runs = (int)parse_long("RUNS", argv[i], 1, 100), npos++;
        else if (npos == 1) threads = (int)parse_long("THREADS", argv[i], 1, 64), npos++;
        else die_usage("unknown argument: '%s'", argv[i]);
    }
    ops_set_threads(threads);
    char err[ERR_MAX];
    const Backend *be = backend_get(device, err);
    if (!be) die("cannot use device '%s': %s", device, err);
    if (!be->on_host) printf("device: %s\n", be->device_name());
    int L = 512, C = 256, F = 1024, V = 348, n_new = 512;
    static HgLevel valley = {.n_layers = 2};
    struct {
        const char *name;
        HgConfig c;
    } cfgs[] = {
        {"baseline (6 layers)", {.V = V, .C = C, .NH = 4, .F = F, .L = L, .top = {.n_layers = 6}}},
        {"hourglass naive+attn", {.V = V, .C = C, .NH = 4, .F = F, .L = L, .linear = 0, .attn_resampling = 1,
                                  .top = {.pre = 2, .post = 2, .s = 2, .valley = &valley}}},
        {"hourglass linear+attn", {.V = V, .C = C, .NH = 4, .F = F, .L = L, .linear = 1, .attn_resampling = 1,
                                   .top = {.pre = 2, .post = 2, .s = 2, .valley = &valley}}},
    };
    printf("%-22s %2s %14s %14s %14s %16s %10s %14s\n", "config", "B", "prefill tok/s", "step tok/s", "gen tok/s",
           "full fwd tok/s", "gen/full", "sample tok/s");
    for (size_t k = 0; k < sizeof cfgs / sizeof *cfgs; k++) {
        HgModel m;
        if (hg_build(&m, &cfgs[k].c, err) < 0) die("%s", err);
        hg_init_weights(&m, 1);
        m.w[m.params[hg_param_index(&m, "Wout.bias")].offset + REMI_EOS] = -1e4f; // no EOS: runs of equal length
        if (hg_set_backend(&m, be, err) < 0) die("%s", err);
        for (int B = 1; B <= 8; B += 7) {
            int32_t *tok = xmalloc((size_t)B * (L + n_new) * sizeof *tok);
            for (int i = 0; i < B * (L + n_new); i++) tok[i] = 4 + (i * 7919) % (V - 4);
            Decoder *d = dec_new(&m, B, NULL, err);
            if (!d) die("%s", err);
            double *tp = xmalloc(sizeof(double) * (size_t)(runs + 1)), *tg = xmalloc(sizeof(double) * (size_t)(runs + 1));
            double *ts = xmalloc(sizeof(double) * (size_t)(runs + 1)), *tf = xmalloc(sizeof(double) * (size_t)(runs + 1));
            int32_t *step = xmalloc((size_t)B * sizeof *step);
            for (int r = 0; r <= runs; r++) {
                dec_reset(d);
                double t0 = now_s();
                if (!dec_prefill(d, tok, L, err)) die("%s", err); // items share the prompt layout; fine for timing
                tp[r] = now_s() - t0;
                double slide_free = 0;
                t0 = now_s();
                for (int i = 0; i < n_new; i++) {
                    for (int b = 0; b < B; b++) step[b] = tok[(size_t)b * n_new + i];
                    int slides = dec_len(d) == L;
                    double t1 = now_s();
                    if (!dec_step(d, step, err)) die("%s", err);
                    if (!slides) slide_free += now_s() - t1;
                }
                tg[r] = now_s() - t0;
                ts[r] = slide_free / (n_new - 2); // two of the steps slide
            }
            // the recompute a cacheless sampler does per token: a full forward over the 512-token window
            hg_alloc(&m, B, L);
            for (int r = 0; r <= runs; r++) {
                double t0 = now_s();
                hg_forward(&m, tok, 0, 0);
                if (be->sync(err) < 0) die("%s", err);
                tf[r] = now_s() - t0;
            }
            // sampling: the prefill and n_new drawn tokens through sample_generate (the grammar, top_p 0.95)
            SampleOpts so = {.temperature = 1.0, .top_p = 0.95, .grammar = 1, .seed = 1};
            int32_t *gen = xmalloc((size_t)B * n_new * sizeof *gen);
            int *n_out = xmalloc((size_t)B * sizeof *n_out);
            double *tsm = xmalloc(sizeof(double) * (size_t)(runs + 1));
            for (int b = 0; b < B; b++) tok[(size_t)b * L] = REMI_BOS; // sample_generate's prompts start so
            for (int r = 0; r <= runs; r++) {
                double t0 = now_s();
                if (sample_generate(d, B, tok, L, n_new, &so, gen, n_out, err) < 0) die("%s", err);
                tsm[r] = now_s() - t0;
            }
            double p = median_sort(tp + 1, runs), g = median_sort(tg + 1, runs);
            double s = median_sort(ts + 1, runs), f = median_sort(tf + 1, runs);
            double sm = median_sort(tsm + 1, runs) - p; // less the prefill, as "gen"
            printf("%-22s %2d %14.0f %14.0f %14.0f %16.1f %9.0fx %14.0f\n", cfgs[k].name, B, B * L / p, B / s,
                   B * n_new / g, B / f, (B * n_new / g) / (B / f), B * n_new / sm);
            free(gen), free(n_out), free(tsm);
            long captured, replayed; // HMT_GPU_DECODE_GRAPH=1: proof that the steps ran as graphs
            dec_graph_stats(d, &captured, &replayed);
            if (captured || replayed) printf("  (CUDA graphs: %ld captured, %ld steps replayed)\n", captured, replayed);
            fflush(stdout);
            if (!be->on_host) gpu_profile_print(stdout), gpu_profile_reset(); // HMT_GPU_PROFILE=1: op by op
            free(tok), free(tp), free(tg), free(ts), free(tf), free(step);
            dec_free(d);
        }
        hg_free(&m);
    }
    return 0;
}
