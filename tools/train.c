// train: shards + a JSON config -> a run directory (model.safetensors, trainer.state, config.json) and rows in
// the experiment registry (spec/formats.md §4-6). The step, validation and trainer state are in
// libcommon/trainer.c; this file does arguments, the run's life cycle in the registry, progress and signals.
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cblas.h>

#include "backend.h"
#include "ckpt.h"
#include "config.h"
#include "data.h"
#include "evaluate.h"
#include "registry.h"
#include "remi.h"
#include "trainer.h"
#include "util.h"
#include "version.h"

static void usage(void)
{
    printf("Usage: train -c CONFIG -d SHARDS -o RUN_DIR [options]\n"
           "       train --resume -o RUN_DIR -d SHARDS [options]\n"
           "Train the model of CONFIG (configs/*.json) on SHARDS/train.bin, validating on SHARDS/val.bin, into\n"
           "RUN_DIR: model.safetensors (loadable by PyTorch), trainer.state (for --resume) and config.json (the\n"
           "resolved config). The run and its metrics go to the registry (SQLite).\n"
           "  -c, --config FILE     experiment config (with --resume: checked against the run's own)\n"
           "  -d, --data DIR        shard folder written by `shard -o DIR`\n"
           "  -o, --out DIR         run directory (created; an existing run there needs --resume)\n"
           "      --resume          continue the run in RUN_DIR from its last checkpoint, bit for bit\n"
           "      --registry FILE   experiment registry (default %s)\n"
           "      --experiment NAME name of the run in the registry (default: the config file's name)\n"
           "  -j, --threads N       OpenBLAS threads (default: the number of cores, %d)\n"
           "      --device DEV      cpu (default) or cuda (the first GPU; needs a `make CUDA=1` build)\n"
           "      --precision P     with --device cuda: fp32 (default: float32, as the CPU), tf32 (the matmuls in TF32),\n"
           "                        or bf16 (the linear layers' matmuls on bfloat16 inputs, float32 sums, weights\n"
           "                        and Adam state); a run resumes only in its own precision\n"
           "      --tf32            the same as --precision tf32\n"
           "      --recompute-ffn   less memory: the backward recomputes each layer's linear1, ReLU and dropout\n"
           "                        instead of keeping their output (the largest activation); one product more\n"
           "                        a layer, the same bytes (a run may resume with or without it)\n"
           "  -q, --quiet           no progress on stderr\n"
           "  -h, --help            this help\n"
           "Environment, with --device cuda: HMT_GPU_ATTENTION=fused (tiled attention: no T x T tensor, less\n"
           "memory; tf32 or bf16 run it on tensor cores for head sizes 16 to 64; slower than the default in\n"
           "every precision on an H100 before its backward kept dS: HMT_GPU_FA_DS_MIB, the MiB it may keep at\n"
           "once, default 64, 0 none; with bf16, HMT_GPU_FA_MMA=1 runs its forward and backward on fragments\n"
           "in registers, not yet timed on a GPU); HMT_GPU_BF16=fast (bf16: cuBLAS converts the operands itself);\n"
           "HMT_GPU_STEP_GRAPH=1 (the step captured once as a CUDA graph and replayed: the same bytes);\n"
           "HMT_GPU_RESERVE=0 (GPU memory block by block, not as one block sized by a dry run at start);\n"
           "with bf16, HMT_GPU_ACT16=0 (the feed-forward's hidden activation kept in float32, not bfloat16:\n"
           "the same bytes) and HMT_GPU_ATT16=1 (the unfused attention's products on bf16 operands too;\n"
           "the registry's device name says so).\n"
           "SIGINT or SIGTERM: checkpoint, mark the run interrupted, exit 1; --resume continues it.\n"
           "Exit status: 0 done, 1 failed or interrupted (the last checkpoint is kept), 2 usage error.\n",
           REG_DEFAULT_PATH, n_cpus());
}

static volatile sig_atomic_t stop_signal;
static struct sigaction old_int, old_term;
static Registry *reg;
static int64_t run_id;
static int finished; // the registry row has its final status

static void on_stop(int sig)
{
    if (stop_signal) { // a second signal: stop now, the way every tool does
        sigaction(SIGINT, &old_int, NULL), sigaction(SIGTERM, &old_term, NULL);
        raise(sig);
    }
    stop_signal = sig;
}

// die() and any other exit leave the run marked failed, never "running"
static void mark_failed_at_exit(void)
{
    char err[ERR_MAX];
    if (reg && run_id > 0 && !finished) reg_finish_run(reg, run_id, "failed", "exited with an error", err);
}

static void finish(const char *status, const char *message)
{
    char err[ERR_MAX];
    finished = 1;
    if (reg_finish_run(reg, run_id, status, message, err) < 0) die("%s", err);
}

static void checkpoint(const Trainer *tr, const RunConfig *rc, const char *dir, uint64_t config_hash)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/trainer.state", dir);
    trainer_save(tr, path, config_hash, remi_vocab_hash(), run_id);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    ckpt_save(&tr->m, path, rc->json, remi_vocab_hash());
    // test hook (tests/cli/test_train.sh): die by SIGKILL right after the checkpoint of this step
    const char *kill_at = getenv("HMT_TEST_KILL_AFTER_CHECKPOINT");
    if (kill_at && atol(kill_at) == tr->step) raise(SIGKILL);
}

static double t_registry; // seconds spent writing metrics, for the closing summary

static void log_metrics(long step, const char *split, int n, const char *const names[], const double values[])
{
    char err[ERR_MAX];
    double t0 = now_s();
    if (reg_metrics(reg, run_id, step, split, n, names, values, err) < 0) die("%s", err);
    t_registry += now_s() - t0;
}

// The validation of step s: val loss and perplexity to the registry, the best kept in tr. A signal midway leaves
// nothing logged; logits that are not finite fail the run (the checkpoint of step last_ckpt is kept).
static void validate(Trainer *tr, const DataSet *val, long s, long last_ckpt, int quiet, int tty)
{
    // test hook (tests/cli/test_train.sh): a SIGTERM as the validation of this step starts
    const char *stop_at = getenv("HMT_TEST_STOP_IN_VALIDATION");
    if (stop_at && atol(stop_at) == s) stop_signal = SIGTERM;
    EvalLikelihood lk;
    int vr = evaluate_likelihood(&tr->m, val, &stop_signal, &lk);
    if (vr == -2) {
        char msg[256];
        snprintf(msg, sizeof msg, "step %ld: validation logits are not finite (window %ld); the last good "
                 "checkpoint (step %ld) is kept", s, lk.bad_window, last_ckpt);
        finish("failed", msg);
        die("%s", msg);
    }
    if (vr != 0) return;
    if (lk.loss < tr->best_val) tr->best_val = lk.loss;
    // tokens: the targets scored, the validation subset's size (train.val_max_tokens)
    log_metrics(s, "val", 3, (const char *const[]){"loss", "perplexity", "tokens"},
                (double[]){lk.loss, exp(lk.loss), (double)lk.n});
    if (!quiet)
        fprintf(stderr, "%sstep %ld: val loss %.4f  perplexity %.3f\n", tty ? "\r\033[K" : "", s, lk.loss,
                exp(lk.loss));
}

// whether the registry holds the val loss of step s of this run
static int validated(long s)
{
    char err[ERR_MAX];
    RegValue b[2] = {{.type = REG_INT, .i = run_id}, {.type = REG_INT, .i = s}};
    long n = reg_query(reg, "select 1 from metrics where run_id = ? and step = ? and split = 'val' and name = 'loss'",
                       2, b, NULL, NULL, err);
    if (n < 0) die("%s", err);
    return n > 0;
}

// One train per run directory: an exclusive lock on RUN_DIR/.lock, held until exit. Then the temporary files a
// SIGKILLed predecessor left (NAME.tmp.XXXXXX of our two checkpoint files) are its own and can go.
static void lock_run_dir(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/.lock", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0) die("cannot lock run directory: '%s': %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) die("run directory in use: '%s': another train holds its lock", dir);
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));)
        if (strncmp(e->d_name, "trainer.state.tmp.", 18) == 0 || strncmp(e->d_name, "model.safetensors.tmp.", 22) == 0) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
    if (d) closedir(d);
}

static void fmt_duration(double s, char *buf, size_t n)
{
    if (!isfinite(s) || s < 0) snprintf(buf, n, "?");
    else if (s < 60) snprintf(buf, n, "%.0fs", s);
    else if (s < 3600) snprintf(buf, n, "%dm%02ds", (int)s / 60, (int)s % 60);
    else snprintf(buf, n, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
}

int main(int argc, char **argv)
{
    util_init(argv[0]);
    double t_main = now_s();
    const char *config_path = NULL, *data_dir = NULL, *out_dir = NULL, *reg_path = REG_DEFAULT_PATH;
    const char *experiment = NULL, *device = "cpu";
    const char *prec_arg = "fp32";
    int resume = 0, quiet = 0, recompute_ffn = 0, threads = n_cpus();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage();
            return 0;
        }
        const char **val = strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0   ? &config_path
                           : strcmp(a, "-d") == 0 || strcmp(a, "--data") == 0   ? &data_dir
                           : strcmp(a, "-o") == 0 || strcmp(a, "--out") == 0    ? &out_dir
                           : strcmp(a, "--registry") == 0                        ? &reg_path
                           : strcmp(a, "--experiment") == 0                      ? &experiment
                           : strcmp(a, "--device") == 0                          ? &device
                           : strcmp(a, "--precision") == 0                       ? &prec_arg
                                                                                 : NULL;
        if (val || strcmp(a, "-j") == 0 || strcmp(a, "--threads") == 0) {
            if (!next) die_usage("option %s needs a value", a);
            if (val) *val = argv[++i];
            else threads = (int)parse_long(a, argv[++i], 1, 1024);
        } else if (strcmp(a, "--resume") == 0) {
            resume = 1;
        } else if (strcmp(a, "--tf32") == 0) {
            prec_arg = "tf32";
        } else if (strcmp(a, "--recompute-ffn") == 0) {
            recompute_ffn = 1;
        } else if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
            quiet = 1;
        } else {
            die_usage("unknown option: '%s'", a);
        }
    }
    if (!out_dir || !*out_dir) die_usage("a run directory is required (-o RUN_DIR)");
    if (!data_dir || !*data_dir) die_usage("a shard folder is required (-d SHARDS)");
    if (!*reg_path) die_usage("option --registry needs a file name");
    if (experiment && !*experiment) die_usage("option --experiment needs a name");
    if (!config_path && !resume) die_usage("a config is required (-c CONFIG)");
    if (strcmp(device, "cpu") != 0 && strcmp(device, "cuda") != 0) die_usage("--device '%s': expected cpu or cuda", device);
    int prec = precision_parse(prec_arg);
    if (prec < 0) die_usage("--precision '%s': expected fp32, tf32 or bf16", prec_arg);
    if (prec != PREC_FP32 && strcmp(device, "cuda") != 0) die_usage("--precision %s is for --device cuda", prec_arg);
    openblas_set_num_threads(threads);

    // the config: the file given, or with --resume the run's own
    char path[4096], err[ERR_MAX];
    RunConfig rc;
    snprintf(path, sizeof path, "%s/config.json", out_dir);
    if (config_load(&rc, config_path ? config_path : path, err) < 0) die("bad config: %s", err);
    rc.recompute_ffn = recompute_ffn;
    uint64_t config_hash = fnv1a(1469598103934665603ULL, rc.json, strlen(rc.json));
    if (!experiment) { // the config file's name without folder and .json
        const char *p = config_path ? config_path : out_dir, *slash = strrchr(p, '/');
        static char name[256];
        snprintf(name, sizeof name, "%s", slash && slash[1] ? slash + 1 : p);
        char *dot = strrchr(name, '.');
        if (dot && strcmp(dot, ".json") == 0) *dot = 0;
        experiment = name;
    }

    // the memory plan, before anything is allocated or created: a run that cannot fit is refused here, not
    // killed by the kernel halfway with a run folder and a 'running' registry row behind it
    TrainPlan tp;
    if (trainer_plan(&rc, REMI_VOCAB_SIZE, &tp, err) < 0) die("bad config: %s", err);
    const Backend *be = backend_get(device, err);
    if (!be) die("cannot use device '%s': %s", device, err);
    if (prec != PREC_FP32) be->set_precision(prec); // faster, no longer the CPU's float32 bytes (only cuda gets here)
    const char *mem_src;
    uint64_t avail = be->mem_free(&mem_src);
    char b[6][32];
    char plan[512];
    snprintf(plan, sizeof plan, "%s (weights %s, gradients %s, Adam state %s, activations %s for batch %d x %d)",
             fmt_bytes(tp.total, b[0], 32), fmt_bytes(tp.weights, b[1], 32), fmt_bytes(tp.grads, b[2], 32),
             fmt_bytes(tp.adam, b[3], 32), fmt_bytes(tp.acts, b[4], 32), rc.batch_size, rc.input_length);
    if (tp.total > (double)avail)
        die("model does not fit in %smemory: '%s': %zu parameters need %s; %s available (%s)", be->on_host ? "" : "GPU ",
            config_path ? config_path : path, tp.n_floats, plan, fmt_bytes((double)avail, b[5], 32), mem_src);

    DataSet train, val;
    char train_path[4096], val_path[4096]; // the data sets keep these for their messages
    snprintf(train_path, sizeof train_path, "%s/train.bin", data_dir);
    // mapped, not read: start-up and resident memory do not grow with the corpus (data.h)
    if (data_open(&train, train_path, rc.input_length, remi_vocab_hash(), DATA_TRAIN | DATA_LAZY, err) < 0)
        die("cannot use shard: %s", err);
    snprintf(val_path, sizeof val_path, "%s/val.bin", data_dir);
    // data_limit_eval plans the evaluation windows (DATA_EVAL would plan them twice)
    if (data_open(&val, val_path, rc.input_length, remi_vocab_hash(), DATA_LAZY, err) < 0 ||
        data_limit_eval(&val, rc.val_max_tokens, err) < 0)
        die("cannot use shard: %s", err);

    if (!quiet)
        fprintf(stderr, "train: plan: %zu parameters, %s; %s available\n", tp.n_floats, plan,
                avail == UINT64_MAX ? "?" : fmt_bytes((double)avail, b[5], 32));
    Trainer tr;
    if (trainer_init(&tr, &rc, REMI_VOCAB_SIZE, be, err) < 0)
        die("%s: %s", be->on_host ? "bad config" : "cannot set up the run on the GPU", err);
    if (ckpt_check(&tr.m, rc.json, err) < 0) die("bad config: '%s': %s", config_path ? config_path : path, err);
    if (!quiet && tr.reserved)
        fprintf(stderr, "train: device memory: %s in one block (the set-up and a step, counted by a dry run)\n",
                fmt_bytes((double)tr.reserved, b[5], 32));
    tr.precision = prec;
    char state_path[4096];
    snprintf(state_path, sizeof state_path, "%s/trainer.state", out_dir);
    if (!(reg = reg_open(reg_path, err))) die("%s", err); // (before the folder: a bad registry leaves none)
    if (mkdir(out_dir, 0777) != 0 && errno != EEXIST) die("cannot create folder: '%s': %s", out_dir, strerror(errno));
    lock_run_dir(out_dir);
    atexit(mark_failed_at_exit);
    if (resume) {
        if (trainer_load(&tr, state_path, config_hash, remi_vocab_hash(), &run_id, err) < 0)
            die("cannot resume: %s", err);
        if (strcmp(device, "cpu") == 0) tr.precision = PREC_FP32; // a TF32 or bf16 run may go on on the CPU
        if (tr.precision != prec) { // a usage error: the run itself stays as it was, not failed
            run_id = 0;
            die("cannot resume: '%s' trained in %s: resume it with --precision %s", out_dir,
                precision_name(tr.precision), precision_name(tr.precision));
        }
        int r = run_id > 0 ? reg_resume_run(reg, run_id, tr.step, err) : 1;
        if (r < 0) die("%s", err);
        if (r == 1) run_id = 0; // a registry that does not know this run: start a new row
    } else if (access(state_path, F_OK) == 0) {
        die("run exists: '%s': use --resume to continue it, or another -o", out_dir);
    }
    if (run_id <= 0) {
        char *dir = run_dir_path(out_dir); // absolute, so sample and eval find the run from any folder
        if (!dir) die("cannot resolve: '%s'", out_dir);
        run_id = reg_begin_run(reg, experiment, rc.json, dir, (long)tr.m.n_floats, HMT_GIT_REV, rc.seed, threads, err);
        if (run_id < 0) die("%s", err);
        free(dir);
    }
    char dev_name[300];
    // gpu.h gpu_att16: the attention's products in bf16 too (other numbers), not with HMT_GPU_BF16=fast
    const char *a16 = getenv("HMT_GPU_ATT16"), *fast = getenv("HMT_GPU_BF16");
    int att16 = a16 && strcmp(a16, "1") == 0 && !(fast && strcmp(fast, "fast") == 0);
    snprintf(dev_name, sizeof dev_name, "%s%s", be->device_name(),
             prec == PREC_TF32 ? " (TF32)" : prec == PREC_BF16 ? (att16 ? " (bf16, HMT_GPU_ATT16=1)" : " (bf16)") : "");
    if (reg_set_device(reg, run_id, be->name, dev_name, err) < 0) die("%s", err);
    if (!resume) {
        snprintf(path, sizeof path, "%s/config.json", out_dir);
        OutFile *o = out_open(path);
        fprintf(o->fp, "%s\n", rc.json);
        out_commit(o);
    }
    struct sigaction sa = {.sa_handler = on_stop};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, NULL, &old_int), sigaction(SIGTERM, NULL, &old_term);
    if (old_int.sa_handler != SIG_IGN) sigaction(SIGINT, &sa, NULL);
    if (old_term.sa_handler != SIG_IGN) sigaction(SIGTERM, &sa, NULL);

    char desc[256];
    config_describe(&rc, desc, sizeof desc);
    if (!quiet)
        fprintf(stderr, "train: run %lld (%s): %s, %zu parameters; %lld train windows' starts; validation: %lld of %lld "
                "documents, %lld tokens, %lld windows%s\n", (long long)run_id, experiment, desc, tr.m.n_floats,
                (long long)train.n_starts, (long long)val.n_eval_docs, (long long)val.shard.n_docs,
                (long long)val.n_targets, (long long)val.n_eval, resume ? "; resuming" : "");
    int tty = isatty(2);
    long tokens_per_step = (long)rc.batch_size * rc.grad_accum * rc.input_length;
    double t_start = now_s(), t_log = t_start, t_eval = 0, t_steps = 0, loss_sum = 0, norm = 0, lr = 0;
    double t_startup = t_start - t_main; // to the first step: arguments, config, shards, model, registry
    long log_steps = 0, start_step = tr.step, last_ckpt = tr.step;
    int every_ckpt = rc.checkpoint_every ? rc.checkpoint_every : rc.eval_every;
    // a run stopped during a validation (after its step's checkpoint) validates that step first: above all the last
    // step's, which would otherwise never run, as the loop below has no step left
    if (resume && tr.step > 0 && (tr.step % rc.eval_every == 0 || tr.step == rc.steps) && !validated(tr.step)) {
        double t0 = now_s();
        validate(&tr, &val, tr.step, last_ckpt, quiet, tty);
        t_eval += now_s() - t0;
        if (tr.step == rc.steps) checkpoint(&tr, &rc, out_dir, config_hash); // its best val loss
    }
    while (tr.step < rc.steps && !stop_signal) {
        double t0 = now_s(), loss = trainer_step(&tr, &train, &norm, &lr);
        t_steps += now_s() - t0;
        if (!isfinite(loss) || !isfinite(norm)) {
            char msg[256];
            snprintf(msg, sizeof msg, "step %ld: %s is %s; the last good checkpoint (step %ld) is kept", tr.step + 1,
                     isfinite(loss) ? "the gradient norm" : "the loss", isnan(isfinite(loss) ? norm : loss) ? "nan" : "inf",
                     last_ckpt);
            finish("failed", msg);
            die("%s", msg);
        }
        loss_sum += loss, log_steps++;
        long s = tr.step;
        if (s % rc.log_every == 0 || s == rc.steps) {
            double now = now_s(), tps = (double)tokens_per_step * log_steps / (now - t_log);
            double vals[4] = {loss_sum / log_steps, lr, norm, tps};
            log_metrics(s, "train", 4, (const char *const[]){"loss", "lr", "grad_norm", "tokens_per_s"}, vals);
            char eta[32];
            fmt_duration((now - t_start - t_eval) / (double)(s - start_step) * (double)(rc.steps - s), eta, sizeof eta);
            if (!quiet)
                fprintf(stderr, "%sstep %ld/%d  loss %.4f  lr %.3g  grad %.3g  %.0f tok/s  ETA %s%s", tty ? "\r\033[K" : "",
                        s, rc.steps, vals[0], lr, norm, tps, eta, tty ? "" : "\n");
            loss_sum = 0, log_steps = 0, t_log = now;
        }
        if (s % rc.eval_every == 0 || s == rc.steps) {
            double t0 = now_s();
            validate(&tr, &val, s, last_ckpt, quiet, tty);
            t_eval += now_s() - t0;
            t_log += now_s() - t0;
        }
        if (s % every_ckpt == 0 || s == rc.steps) checkpoint(&tr, &rc, out_dir, config_hash), last_ckpt = s;
    }
    int status = 0;
    if (stop_signal) {
        if (last_ckpt != tr.step) checkpoint(&tr, &rc, out_dir, config_hash);
        char msg[128];
        snprintf(msg, sizeof msg, "stopped by signal %d at step %ld", (int)stop_signal, tr.step);
        finish("interrupted", msg);
        fprintf(stderr, "%strain: %s; checkpoint saved, --resume continues it\n", tty && !quiet ? "\r\033[K" : "", msg);
        status = 1;
    } else {
        if (last_ckpt != tr.step) checkpoint(&tr, &rc, out_dir, config_hash);
        finish("done", NULL);
        long n = tr.step - start_step;
        if (!quiet) {
            char took[32];
            fmt_duration(now_s() - t_start, took, sizeof took);
            fprintf(stderr, "%strain: run %lld done: %ld steps in %s, best val loss %.4f\n", tty ? "\r\033[K" : "",
                    (long long)run_id, tr.step, took, tr.best_val);
        }
        if (!quiet && n > 0)
            fprintf(stderr, "train: %.3f s per step; of that, data path %.3f%%, registry %.3f%%; validation %.0f s;"
                    " start-up %.2f s\n", t_steps / n, 100 * tr.t_data / t_steps, 100 * t_registry / t_steps, t_eval,
                    t_startup);
    }
    trainer_free(&tr);
    data_close(&train), data_close(&val);
    reg_close(reg);
    reg = NULL;
    config_free(&rc);
    return status;
}
