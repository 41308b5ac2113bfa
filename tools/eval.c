// eval: a trained model + shards -> held-out likelihood (total and per token type) and the prompt-continuation
// study of music features, as a table on stdout (or JSON with --json) and rows of the registry's evals table.
// The measurements are in libcommon/evaluate.c; this file does arguments, output and the registry.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "ckpt.h"
#include "config.h"
#include "data.h"
#include "decode.h"
#include "doc.h"
#include "evaluate.h"
#include "ops.h"
#include "registry.h"
#include "remi.h"
#include "util.h"

static void usage(void)
{
    printf("Usage: eval -m RUN_DIR|MODEL.safetensors -d SHARDS [options]\n"
           "Score the model on every token of SHARDS/test.bin once (loss, perplexity, top-1 accuracy, also per token\n"
           "type), then prompt it with the first P tokens of N test documents and compare prompt -> generated with\n"
           "prompt -> original continuation on music features (mean distances, two-sample KS p-value).\n"
           "  -m, --model PATH        a run directory of train, or its model.safetensors\n"
           "  -d, --data DIR          shard folder written by `shard -o DIR`\n"
           "      --split NAME        test or val (default test)\n"
           "      --max-tokens N      score a fixed subset of the split's documents holding at least N tokens, the\n"
           "                          same one train.val_max_tokens picks (default 0 = every token)\n"
           "  -n N                    documents in the generation study, 0 = none (default 32)\n"
           "      --prompt-tokens P   prompt length, at most the window (input_length L) - 1\n"
           "                          (default min(256, L/2): 256 for L >= 512)\n"
           "      --gen-tokens C      continuation length (default min(256, L/2), as the prompt)\n"
           "      --temperature T     sampling temperature (default 1.0)\n"
           "      --top-k K           (default 0 = all)\n"
           "      --top-p P           (default 1.0)\n"
           "      --seed S            sampling seed (default 1): the same seed gives the same numbers\n"
           "  -b, --batch N           windows and generations per batch (default 8)\n"
           "      --study-out FILE    also write the first --study-docs documents of the study as token documents\n"
           "                          to FILE (atomically), two each: NAME-original (prompt + original\n"
           "                          continuation) and NAME-generated (prompt + generated), to hear and compare\n"
           "      --study-docs K      documents in --study-out, 1..64 (default 3)\n"
           "      --registry FILE     write the numbers to this registry's evals (default %s)\n"
           "      --no-registry       do not write to a registry\n"
           "      --json              one JSON object on stdout instead of a table\n"
           "      --device DEV        cpu (default) or cuda (the first GPU; needs a `make CUDA=1` build)\n"
           "  -j, --threads N         threads (default %d: the CPUs)\n"
           "  -q, --quiet             no progress on stderr\n"
           "  -h, --help              this help\n"
           "The lengths used are printed on stderr and reported as gen_prompt_tokens and gen_continuation_tokens.\n"
           "A window of 1 token holds no prompt: the study is then left out (and an explicit -n N > 0 is an error).\n"
           "Environment, with --device cuda: HMT_GPU_ATTENTION=fused (tiled attention, no T x T tensor);\n"
           "HMT_GPU_DECODE_GRAPH=1 and HMT_GPU_DECODE_BF16=1 for the study's generation (see sample --help).\n"
           "Exit status: 0 success, 1 bad model, shards or registry, 2 usage error.\n",
           REG_DEFAULT_PATH, n_cpus());
}

static const char *const type_names[EVAL_N_TYPES] = {"EOS", "Bar", "Position", "Program", "Pitch", "Velocity",
                                                     "Duration", "Chord"};

// The results as (name, value) pairs, in print order.
typedef struct Results {
    int n;
    char name[96][48];
    double value[96];
} Results;

static void add(Results *r, const char *name, double v)
{
    snprintf(r->name[r->n], sizeof r->name[0], "%s", name);
    r->value[r->n++] = v;
}

// The study documents kept by evaluate_generation as token documents: NAME-original, NAME-generated per
// document, NAME its shard name without the last component's extension. Frees the buffers.
static void write_study(const char *path, const Shard *sh, EvalGenOpts *g, int n_studied)
{
    OutFile *o = out_open(path);
    char *buf = NULL, name[4096];
    size_t cap = 0;
    int n = g->n_examples < n_studied ? g->n_examples : n_studied;
    for (int i = 0; i < n; i++) {
        const char *src = sh->names[g->example_docs[i]], *base = path_base(src), *dot = strrchr(base, '.');
        int len = (int)(dot && dot != base ? (size_t)(dot - src) : strlen(src));
        for (int k = 0; k < 2; k++) {
            snprintf(name, sizeof name, "%.*s-%s", len, src, k ? "generated" : "original");
            size_t n_buf = 0;
            doc_format(&buf, &n_buf, &cap, name, g->examples[2 * i + k].ids, g->examples[2 * i + k].n, false);
            xfwrite(buf, 1, n_buf, o->fp, path);
        }
    }
    out_commit(o);
    for (int i = 0; i < 2 * g->n_examples; i++) free(g->examples[i].ids);
    free(g->examples), free(g->example_docs), free(buf);
}

int main(int argc, char **argv)
{
    util_init(argv[0]);
    const char *model = NULL, *data = NULL, *split = "test", *reg_path = REG_DEFAULT_PATH;
    // prompt and continuation: -1 until given, then the window's defaults (below, once the model is loaded)
    EvalGenOpts g = {.n_docs = 32, .prompt = -1, .continuation = -1, .batch = 8,
                     .sample = {.temperature = 1.0, .top_k = 0, .top_p = 1.0, .grammar = 1, .seed = 1}};
    int json = 0, quiet = 0, threads = n_cpus(), n_given = 0, study_docs = 3, reg_given = 0, no_reg = 0;
    long max_tokens = 0;
    const char *study_path = NULL, *device = "cpu";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage();
            return 0;
        }
        static const char *const with_value[] = {"-m", "--model", "-d", "--data", "--split", "-n", "--prompt-tokens",
                                                 "--gen-tokens", "--temperature", "--top-k", "--top-p", "--seed", "-b",
                                                 "--batch", "--registry", "-j", "--threads", "--device", "--max-tokens",
                                                 "--study-out", "--study-docs"};
        int takes = 0;
        for (size_t k = 0; k < sizeof with_value / sizeof *with_value; k++) takes |= strcmp(a, with_value[k]) == 0;
        if (takes && !v) die_usage("option %s needs a value", a);
        if (takes) i++;
        if (strcmp(a, "-m") == 0 || strcmp(a, "--model") == 0) model = v;
        else if (strcmp(a, "-d") == 0 || strcmp(a, "--data") == 0) data = v;
        else if (strcmp(a, "--split") == 0) split = v;
        else if (strcmp(a, "-n") == 0) g.n_docs = (int)parse_long(a, v, 0, 1 << 20), n_given = 1;
        else if (strcmp(a, "--prompt-tokens") == 0) g.prompt = (int)parse_long(a, v, 1, 1 << 20);
        else if (strcmp(a, "--gen-tokens") == 0) g.continuation = (int)parse_long(a, v, 1, 1 << 20);
        else if (strcmp(a, "--temperature") == 0) g.sample.temperature = parse_double(a, v, 0, 100);
        else if (strcmp(a, "--top-k") == 0) g.sample.top_k = (int)parse_long(a, v, 0, REMI_VOCAB_SIZE);
        else if (strcmp(a, "--top-p") == 0) g.sample.top_p = parse_double(a, v, 1e-9, 1);
        else if (strcmp(a, "--seed") == 0) g.sample.seed = (uint64_t)parse_long(a, v, 0, 1L << 62);
        else if (strcmp(a, "-b") == 0 || strcmp(a, "--batch") == 0) g.batch = (int)parse_long(a, v, 1, 4096);
        else if (strcmp(a, "--registry") == 0) reg_path = v, reg_given = 1;
        else if (strcmp(a, "--max-tokens") == 0) max_tokens = parse_long(a, v, 0, 1L << 53);
        else if (strcmp(a, "--study-out") == 0) study_path = v;
        else if (strcmp(a, "--study-docs") == 0) study_docs = (int)parse_long(a, v, 1, 64);
        else if (strcmp(a, "--no-registry") == 0) reg_path = NULL, no_reg = 1;
        else if (strcmp(a, "-j") == 0 || strcmp(a, "--threads") == 0) threads = (int)parse_long(a, v, 1, 1024);
        else if (strcmp(a, "--device") == 0) device = v;
        else if (strcmp(a, "--json") == 0) json = 1;
        else if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) quiet = 1;
        else die_usage("unknown option: '%s'", a);
    }
    if (!model) die_usage("a model is required (-m RUN_DIR)");
    if (reg_given && no_reg) die_usage("--registry and --no-registry: give one of them");
    if (!data) die_usage("a shard folder is required (-d SHARDS)");
    if (strcmp(split, "test") != 0 && strcmp(split, "val") != 0) die_usage("--split is test or val, not '%s'", split);
    if (study_path && g.n_docs == 0) die_usage("--study-out writes documents of the study: it needs -n N >= 1");
    if (study_path && !*study_path) die_usage("option --study-out needs a file name");
    if (strcmp(device, "cpu") != 0 && strcmp(device, "cuda") != 0) die_usage("--device '%s': expected cpu or cuda", device);
    ops_set_threads(threads); // the pool's threads; OpenBLAS itself runs single-threaded inside them

    char err[ERR_MAX], path[4096];
    RunConfig rc;
    HgModel m;
    if (ckpt_open_model(model, &rc, &m, err) < 0) die("cannot load model: %s", err);
    const Backend *be = backend_get(device, err); // cuda: the weights, caches and activations go to the GPU
    if (!be) die("cannot use device '%s': %s", device, err);
    if (hg_set_backend(&m, be, err) < 0) die("cannot use device '%s': %s", device, err);
    // the registry and the model's run in it, before the work: one that cannot be used fails now, not after it
    Registry *reg = NULL;
    int64_t reg_run = 0;
    if (reg_path && !(reg = reg_open_model_run(reg_path, model, 1, &reg_run, err))) die("%s", err);
    // The study's lengths: what the options say, else what the window allows. BOS + prompt must fit the window
    // (the continuation may slide it, as sample does); an explicit prompt that does not fit is an error.
    int L = rc.input_length, dflt = L / 2 < 256 ? L / 2 : 256, prompt_given = g.prompt >= 0,
        gen_given = g.continuation >= 0;
    if (!prompt_given) g.prompt = dflt;
    if (g.continuation < 0) g.continuation = dflt > 0 ? dflt : 256;
    if (g.n_docs > 0 && prompt_given && g.prompt + 1 > L)
        die_usage("--prompt-tokens %d does not fit the model's window of %d tokens (at most %d)", g.prompt, L, L - 1);
    if (g.n_docs > 0 && g.prompt == 0) { // L == 1: no prompt fits
        if (n_given) die_usage("-n %d: the model's window of %d token holds no prompt", g.n_docs, L);
        g.n_docs = 0;
        if (!quiet) fprintf(stderr, "eval: the model's window of %d token holds no prompt: no generation study\n", L);
    }
    DataSet ds;
    snprintf(path, sizeof path, "%s/%s.bin", data, split);
    // data_limit_eval plans the evaluation windows (DATA_EVAL would plan them twice)
    if (data_open(&ds, path, rc.input_length, remi_vocab_hash(), 0, err) < 0 ||
        data_limit_eval(&ds, max_tokens, err) < 0)
        die("cannot use shard: %s", err);

    Results r = {0};
    double t0 = now_s();
    if (dec_check_memory(&m, g.n_docs > 0 ? g.batch : 0, g.batch, rc.input_length, err) < 0) die("%s", err);
    hg_alloc(&m, g.batch, rc.input_length);
    EvalLikelihood lk;
    int lr = evaluate_likelihood(&m, &ds, NULL, &lk);
    if (lr == -2)
        die("the logits are not finite: '%s': evaluation window %ld: a diverged or corrupt model", model, lk.bad_window);
    if (lr < 0) die("nothing to score: '%s' has no tokens", path);
    char key[64];
    add(&r, "test_loss", lk.loss), add(&r, "test_perplexity", lk.perplexity), add(&r, "test_accuracy", lk.accuracy);
    add(&r, "test_tokens", (double)lk.n);
    for (int t = 0; t < EVAL_N_TYPES; t++) {
        if (!lk.type_n[t]) continue;
        snprintf(key, sizeof key, "test_loss_%s", type_names[t]), add(&r, key, lk.type_loss[t]);
        snprintf(key, sizeof key, "test_accuracy_%s", type_names[t]), add(&r, key, lk.type_accuracy[t]);
    }
    if (!quiet) fprintf(stderr, "eval: scored %ld %s tokens in %.1f s\n", lk.n, split, now_s() - t0);
    if (g.n_docs > 0) {
        if (!quiet)
            fprintf(stderr, "eval: generation study: prompt %d + continuation %d tokens%s, window %d\n", g.prompt,
                    g.continuation, prompt_given && gen_given ? "" : " (defaults: min(256, L/2))", L);
        t0 = now_s();
        Decoder *d = dec_new(&m, g.batch, NULL, err);
        if (!d) die("cannot start the decoder: %s", err);
        EvalGeneration gen;
        if (study_path) {
            g.n_examples = study_docs;
            g.examples = xcalloc(2 * (size_t)study_docs, sizeof *g.examples);
            g.example_docs = xcalloc((size_t)study_docs, sizeof *g.example_docs);
        }
        if (evaluate_generation(d, &ds, &g, &gen, err) < 0) die("generation study on '%s': %s", path, err);
        dec_free(d);
        if (study_path) write_study(study_path, &ds.shard, &g, gen.n_docs);
        add(&r, "gen_documents", gen.n_docs);
        add(&r, "gen_prompt_tokens", g.prompt), add(&r, "gen_continuation_tokens", g.continuation);
        for (int f = 0; f < EF_N; f++) {
            const char *fn = evaluate_feature_names[f];
            add(&r, fn, gen.gen_mean[f]);
            snprintf(key, sizeof key, "%s_orig", fn), add(&r, key, gen.orig_mean[f]);
            snprintf(key, sizeof key, "%s_ks_p", fn), add(&r, key, gen.ks_p[f]);
        }
        add(&r, "validity", 1 - gen.skipped_share), add(&r, "skipped_share", gen.skipped_share);
        add(&r, "in_key_gen", gen.in_key_gen), add(&r, "in_key_orig", gen.in_key_orig);
        if (!quiet)
            fprintf(stderr, "eval: generated %ld tokens for %d documents in %.1f s\n", gen.n_generated, gen.n_docs,
                    now_s() - t0);
    }
    if (json) {
        printf("{");
        for (int i = 0; i < r.n; i++) {
            printf("%s", i ? ", " : "");
            json_write_string(stdout, r.name[i]);
            if (isfinite(r.value[i])) printf(": %.10g", r.value[i]);
            else printf(": null");
        }
        printf("}\n");
    } else {
        for (int i = 0; i < r.n; i++) printf("%-28s %.6g\n", r.name[i], r.value[i]);
    }
    stdout_close();
    if (reg) {
        const char *names[96];
        for (int i = 0; i < r.n; i++) names[i] = r.name[i];
        if (reg_evals(reg, reg_run, r.n, names, r.value, err) < 0) die("%s", err);
        reg_close(reg);
    }
    data_close(&ds);
    hg_free(&m);
    config_free(&rc);
    return 0;
}
