// test_registry: the SQLite registry (spec/formats.md §5). Eight processes create the same new registry and write
// runs, metrics, evals and samples at once: every write succeeds (no "database is locked") and no row is lost.
// Then the life cycle of a run (resume drops the metrics it will log again), the results view's columns, the
// ablation view (mean and sample sd per experiment over its finished runs), the schema upgrade of an older
// registry and the read-only query helpers reg_query / reg_select.
#include <math.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "registry.h"
#include "util.h"

#define N_WRITERS 8
#define N_STEPS 150

static char dir[] = "/tmp/test_registry.XXXXXX";

// One writer process: everything a train and an eval do, as fast as possible. Exit status 0 when every call worked.
static int writer(const char *path, int k)
{
    char err[ERR_MAX];
    Registry *r = reg_open(path, err);
    if (!r) return fprintf(stderr, "writer %d: %s\n", k, err), 1;
    char cfg[128], out[64];
    snprintf(cfg, sizeof cfg, "{\"model\":{\"type\":\"hourglass\",\"d_model\":%d},\"train\":{\"seed\":%d}}", 32 + k, k);
    snprintf(out, sizeof out, "runs/w%d", k);
    int64_t id = reg_begin_run(r, "concurrency", cfg, out, 1000 + k, "test", k, 1, err);
    if (id <= 0) return fprintf(stderr, "writer %d: %s\n", k, err), 1;
    const char *names[] = {"loss", "lr", "grad_norm", "tokens_per_s"};
    for (int s = 1; s <= N_STEPS; s++) {
        double v[4] = {10.0 / s, 1e-3, 0.5, 1000 + k};
        if (reg_metrics(r, id, s, "train", 4, names, v, err) < 0) return fprintf(stderr, "writer %d: %s\n", k, err), 1;
        if (s % 50 == 0 &&
            reg_metrics(r, id, s, "val", 1, (const char *const[]){"loss"}, (double[]){5.0 - s / 100.0 - k / 100.0}, err) < 0)
            return fprintf(stderr, "writer %d: %s\n", k, err), 1;
    }
    if (reg_evals(r, id, 2, (const char *const[]){"test_perplexity", "test_accuracy"}, (double[]){20.0 + k, 0.5}, err) < 0 ||
        reg_sample(r, id, "samples/x.mid", 512, k, err) < 0 || reg_finish_run(r, id, "done", NULL, err) < 0)
        return fprintf(stderr, "writer %d: %s\n", k, err), 1;
    reg_close(r);
    return 0;
}

static sqlite3 *db;
static double q(const char *sql) // one number from a query
{
    sqlite3_stmt *st;
    double v = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) return fprintf(stderr, "%s: %s\n", sql, sqlite3_errmsg(db)), -1;
    if (sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_double(st, 0);
    sqlite3_finalize(st);
    return v;
}

// ---- ablation view ----------------------------------------------------------------------------

// A finished (or not) run of experiment exp with val losses {best + 0.5, best}, and evals when eval_base >= 0.
static int64_t add_run(Registry *r, const char *exp, long seed, const char *status, double best, double eval_base)
{
    char err[ERR_MAX], out[64];
    snprintf(out, sizeof out, "runs/%s/%ld", exp, seed);
    int64_t id = reg_begin_run(r, exp, "{\"model\":{\"type\":\"hourglass\"}}", out, 100, "test", seed, 1, err);
    CHECK(id > 0, "begin: %s", err);
    CHECK(reg_metrics(r, id, 10, "val", 1, (const char *const[]){"loss"}, (double[]){best + 0.5}, err) == 0 &&
              reg_metrics(r, id, 20, "val", 1, (const char *const[]){"loss"}, (double[]){best}, err) == 0 &&
              reg_metrics(r, id, 20, "train", 1, (const char *const[]){"tokens_per_s"}, (double[]){1000 * seed},
                          err) == 0,
          "metrics: %s", err);
    if (eval_base >= 0)
        CHECK(reg_evals(r, id, 5,
                        (const char *const[]){"test_perplexity", "test_accuracy", "pitch_class_kl", "velocity_kl",
                                              "validity"},
                        (double[]){eval_base, eval_base / 100, 0.1, 0.2, 1}, err) == 0, "evals: %s", err);
    if (strcmp(status, "running") != 0) CHECK(reg_finish_run(r, id, status, NULL, err) == 0, "finish: %s", err);
    return id;
}

static bool near(const RegValue *v, double want) { return v->type == REG_REAL && fabs(v->d - want) < 1e-12; }

static void test_ablation(void)
{
    char path[256], err[ERR_MAX];
    snprintf(path, sizeof path, "%s/ablation.db", dir);
    Registry *r = reg_open(path, err);
    CHECK(r != NULL, "open: %s", err);
    if (!r) return;
    // three seeds done: best val losses 2.0, 2.2, 2.4 -> mean 2.2, sd 0.2; perplexities 8, 9, 10 -> 9 +- 1
    add_run(r, "abl", 1, "done", 2.0, 8);
    add_run(r, "abl", 2, "done", 2.2, 9);
    add_run(r, "abl", 3, "done", 2.4, 10);
    add_run(r, "abl", 4, "failed", 0.1, 1);      // excluded: not done
    add_run(r, "abl", 5, "interrupted", 0.1, 1); // excluded
    add_run(r, "abl", 6, "running", 0.1, -1);    // excluded
    add_run(r, "single", 1, "done", 3.0, -1);    // one seed, no evals: sd NULL, eval means NULL
    add_run(r, "never", 1, "failed", 1.0, 5);    // no finished run: no row at all
    RegTable *t = reg_select(r, "SELECT * FROM ablation ORDER BY experiment", 0, NULL, err);
    CHECK(t != NULL, "select ablation: %s", err);
    if (t) {
        CHECK(t->n_rows == 2, "ablation rows: %zu, want 2", t->n_rows);
        int c_n = reg_table_col(t, "n_runs"), c_seeds = reg_table_col(t, "n_seeds");
        int c_mean = reg_table_col(t, "val_loss_mean"), c_sd = reg_table_col(t, "val_loss_sd");
        CHECK(c_n >= 0 && c_seeds >= 0 && c_mean >= 0 && c_sd >= 0, "ablation columns");
        CHECK(strcmp(reg_cell(t, 0, reg_table_col(t, "experiment"))->s, "abl") == 0, "first row is abl");
        CHECK(reg_cell(t, 0, c_n)->i == 3 && reg_cell(t, 0, c_seeds)->i == 3, "abl counts %lld %lld",
              (long long)reg_cell(t, 0, c_n)->i, (long long)reg_cell(t, 0, c_seeds)->i);
        CHECK(near(reg_cell(t, 0, c_mean), 2.2), "abl val_loss_mean %.17g", reg_cell(t, 0, c_mean)->d);
        CHECK(near(reg_cell(t, 0, c_sd), 0.2), "abl val_loss_sd %.17g", reg_cell(t, 0, c_sd)->d);
        CHECK(near(reg_cell(t, 0, reg_table_col(t, "test_perplexity_mean")), 9) &&
                  near(reg_cell(t, 0, reg_table_col(t, "test_perplexity_sd")), 1),
              "abl test perplexity");
        CHECK(near(reg_cell(t, 0, reg_table_col(t, "test_accuracy_mean")), 0.09), "abl test accuracy");
        CHECK(near(reg_cell(t, 0, reg_table_col(t, "velocity_kl_mean")), 0.2) &&
                  near(reg_cell(t, 0, reg_table_col(t, "velocity_kl_sd")), 0),
              "abl velocity_kl: equal values give sd 0");
        CHECK(near(reg_cell(t, 0, reg_table_col(t, "train_tokens_per_s_mean")), 2000) &&
                  near(reg_cell(t, 0, reg_table_col(t, "train_tokens_per_s_sd")), 1000),
              "abl tokens/s");
        CHECK(reg_cell(t, 0, reg_table_col(t, "duration_kl_mean"))->type == REG_NULL, "no duration_kl: NULL mean");
        CHECK(reg_cell(t, 0, reg_table_col(t, "wall_s_mean"))->type == REG_REAL, "wall_s");
        CHECK(strcmp(reg_cell(t, 1, reg_table_col(t, "experiment"))->s, "single") == 0, "second row is single");
        CHECK(reg_cell(t, 1, c_n)->i == 1 && reg_cell(t, 1, c_seeds)->i == 1, "single counts");
        CHECK(near(reg_cell(t, 1, c_mean), 3.0), "single mean");
        CHECK(reg_cell(t, 1, c_sd)->type == REG_NULL, "single seed: sd is NULL");
        CHECK(reg_cell(t, 1, reg_table_col(t, "test_perplexity_mean"))->type == REG_NULL, "single: no evals");
        CHECK(strcmp(reg_cell(t, 1, reg_table_col(t, "model_type"))->s, "hourglass") == 0, "single: model_type");
        reg_table_free(t);
    }
    reg_close(r);

    // an older registry (version 1, no ablation view) gets the views on open; its rows stay
    sqlite3_open(path, &db);
    CHECK(sqlite3_exec(db, "DROP VIEW ablation; PRAGMA user_version = 1", NULL, NULL, NULL) == SQLITE_OK, "downgrade");
    CHECK(q("SELECT count(*) FROM sqlite_master WHERE name = 'ablation'") == 0, "view dropped");
    sqlite3_close(db);
    r = reg_open_existing(path, err);
    CHECK(r != NULL, "reopen old registry: %s", err);
    reg_close(r);
    sqlite3_open(path, &db);
    CHECK(q("PRAGMA user_version") == REG_SCHEMA_VERSION, "upgraded to the current version: %g", q("PRAGMA user_version"));
    CHECK(q("SELECT count(*) FROM ablation") == 2 && q("SELECT count(*) FROM runs") == 8, "upgrade keeps the rows");
    CHECK(q("SELECT abs(val_loss_sd - 0.2) < 1e-12 FROM ablation WHERE experiment = 'abl'") == 1, "sd after upgrade");
    sqlite3_close(db);
}

// ---- read-only queries ------------------------------------------------------------------------

static int count_rows(void *ctx, int n_cols, const char *const names[], const RegValue v[])
{
    long *n = ctx;
    if (n_cols == 2 && strcmp(names[0], "run_id") == 0 && v[0].type == REG_INT && v[1].type == REG_TEXT) ++*n;
    return *n >= 2; // stops after two rows
}

static void test_query(void)
{
    char path[256], err[ERR_MAX];
    snprintf(path, sizeof path, "%s/ablation.db", dir);
    Registry *r = reg_open_existing(path, err);
    CHECK(r != NULL, "open: %s", err);
    if (!r) return;
    RegValue exp = {.type = REG_TEXT, .s = "abl"}, lo = {.type = REG_REAL, .d = 2.3};
    RegTable *t = reg_select(r, "SELECT run_id, seed FROM runs WHERE experiment = ? AND status = 'done'"
                                " AND run_id IN (SELECT run_id FROM metrics WHERE name = 'loss' AND value < ?)"
                                " ORDER BY run_id",
                             2, (RegValue[]){exp, lo}, err);
    CHECK(t && t->n_rows == 2 && t->n_cols == 2, "bound query: %s", t ? "wrong rows" : err);
    if (t) CHECK(reg_cell(t, 1, 1)->i == 2 && reg_cell(t, 99, 0)->type == REG_NULL, "cells");
    reg_table_free(t);
    t = reg_select(r, "SELECT run_id, experiment FROM runs WHERE 0", 0, NULL, err);
    CHECK(t && t->n_rows == 0 && t->n_cols == 2 && strcmp(t->names[1], "experiment") == 0, "empty result has columns");
    reg_table_free(t);
    long n = 0;
    CHECK(reg_query(r, "SELECT run_id, experiment FROM runs", 0, NULL, count_rows, &n, err) == 2 && n == 2,
          "callback stops the query");
    CHECK(reg_query(r, "DELETE FROM runs", 0, NULL, NULL, NULL, err) < 0 && strstr(err, "read-only"),
          "write refused: %s", err);
    CHECK(reg_query(r, "SELECT 1; DELETE FROM runs", 0, NULL, NULL, NULL, err) < 0 && strstr(err, "more than one"),
          "two statements refused: %s", err);
    CHECK(reg_query(r, "SELECT ?", 0, NULL, NULL, NULL, err) < 0 && strstr(err, "parameters"), "missing bind: %s", err);
    CHECK(reg_query(r, "SELECT nonsense FROM nowhere", 0, NULL, NULL, NULL, err) < 0 && strstr(err, "nowhere"),
          "bad SQL: %s", err);
    CHECK(reg_query(r, "SELECT 1;  ", 0, NULL, NULL, NULL, err) == 1, "trailing semicolon: %s", err);
    reg_close(r);
    sqlite3_open(path, &db);
    CHECK(q("SELECT count(*) FROM runs") == 8, "nothing deleted");
    sqlite3_close(db);
    snprintf(path, sizeof path, "%s/missing.db", dir);
    r = reg_open_existing(path, err);
    CHECK(r == NULL && strstr(err, "missing.db") && strstr(err, "No such file"), "missing registry: %s",
          r ? "opened" : err);
    CHECK(access(path, F_OK) != 0, "missing registry not created");
    reg_close(r);
}

int main(void)
{
    util_init("test_registry");
    if (!mkdtemp(dir)) die("mkdtemp failed");
    char path[256], err[ERR_MAX];
    snprintf(path, sizeof path, "%s/results/registry.db", dir); // the parent folder does not exist yet

    pid_t pid[N_WRITERS];
    for (int k = 0; k < N_WRITERS; k++)
        if ((pid[k] = fork()) == 0) _exit(writer(path, k));
    for (int k = 0; k < N_WRITERS; k++) {
        int st;
        waitpid(pid[k], &st, 0);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "writer %d failed (status %d)", k, st);
    }
    if (sqlite3_open(path, &db) != SQLITE_OK) die("cannot open '%s'", path);
    CHECK(q("SELECT count(*) FROM runs WHERE status = 'done'") == N_WRITERS, "runs done: %g", q("SELECT count(*) FROM runs"));
    CHECK(q("SELECT count(*) FROM metrics WHERE split = 'train'") == N_WRITERS * N_STEPS * 4, "train metrics: %g",
          q("SELECT count(*) FROM metrics WHERE split = 'train'"));
    CHECK(q("SELECT count(*) FROM metrics WHERE split = 'val'") == N_WRITERS * 3, "val metrics");
    CHECK(q("SELECT count(*) FROM evals") == N_WRITERS * 2 && q("SELECT count(*) FROM samples") == N_WRITERS, "evals");
    CHECK(q("SELECT count(DISTINCT run_id) FROM metrics") == N_WRITERS, "metrics of every run");
    // every run's metrics are its own, complete and in order
    CHECK(q("SELECT count(*) FROM (SELECT run_id FROM metrics WHERE name = 'loss' AND split = 'train' GROUP BY run_id"
            " HAVING count(*) = 150 AND min(step) = 1 AND max(step) = 150)") == N_WRITERS, "per-run metrics");
    CHECK(q("PRAGMA journal_mode") != -1, "journal mode query");
    // the results view: config fields out of config_json, aggregates out of metrics and evals
    CHECK(q("SELECT count(*) FROM results") == N_WRITERS, "results rows");
    CHECK(q("SELECT steps FROM results WHERE seed = 3") == N_STEPS, "results.steps");
    CHECK(q("SELECT abs(best_val_loss - 3.47) < 1e-9 FROM results WHERE seed = 3") == 1, "results.best_val_loss %g",
          q("SELECT best_val_loss FROM results WHERE seed = 3"));
    CHECK(q("SELECT test_perplexity FROM results WHERE seed = 5") == 25, "results.test_perplexity");
    CHECK(q("SELECT train_tokens_per_s FROM results WHERE seed = 2") == 1002, "results.train_tokens_per_s");
    CHECK(q("SELECT count(*) FROM results WHERE model_type = 'hourglass'") == N_WRITERS, "results.model_type");
    sqlite3_close(db);

    // life cycle: resume drops the metrics after the checkpoint's step; evals replace their names
    Registry *r = reg_open(path, err);
    CHECK(r != NULL, "reopen: %s", err);
    if (r) {
        int64_t id = reg_find_run(r, "runs/w4", err);
        CHECK(id > 0, "find run: %s", err);
        CHECK(reg_find_run(r, "runs/none", err) == 0, "find a missing run");
        CHECK(reg_resume_run(r, id, 100, err) == 0, "resume: %s", err);
        CHECK(reg_resume_run(r, 999999, 100, err) == 1, "resume of an unknown run");
        CHECK(reg_evals(r, id, 1, (const char *const[]){"test_perplexity"}, (double[]){7}, err) == 0, "evals: %s", err);
        reg_close(r);
        sqlite3_open(path, &db);
        char sql[256];
        snprintf(sql, sizeof sql, "SELECT max(step) FROM metrics WHERE run_id = %lld", (long long)id);
        CHECK(q(sql) == 100, "metrics after the resumed step kept: %g", q(sql));
        snprintf(sql, sizeof sql, "SELECT status = 'running' FROM runs WHERE run_id = %lld", (long long)id);
        CHECK(q(sql) == 1, "resumed run is running");
        snprintf(sql, sizeof sql, "SELECT count(*) * 100 + max(value) FROM evals WHERE run_id = %lld AND name = "
                 "'test_perplexity'", (long long)id);
        CHECK(q(sql) == 107, "evals replaced: %g", q(sql));
        sqlite3_close(db);
        // a new run in the folder of one still 'running' (its process was killed) closes the stale row
        r = reg_open(path, err);
        int64_t id2 = r ? reg_begin_run(r, "concurrency", "{}", "runs/w4", 1, "test", 4, 1, err) : -1;
        CHECK(id2 > id, "begin over a stale run: %s", err);
        reg_close(r);
        sqlite3_open(path, &db);
        snprintf(sql, sizeof sql, "SELECT status = 'interrupted' AND message LIKE '%%stopped without closing%%' AND "
                 "finished_at IS NOT NULL FROM runs WHERE run_id = %lld", (long long)id);
        CHECK(q(sql) == 1, "stale run closed as interrupted");
        CHECK(q("SELECT count(*) FROM runs WHERE status = 'running'") == 1, "only the new run is running: %g",
              q("SELECT count(*) FROM runs WHERE status = 'running'"));
        sqlite3_close(db);
    }
    // a file that is not a database is refused with its name
    snprintf(path, sizeof path, "%s/junk.db", dir);
    FILE *f = fopen(path, "w");
    fputs("this is not a database, but it is long enough to look like a header of one....................", f);
    fclose(f);
    r = reg_open(path, err);
    CHECK(r == NULL && strstr(err, "junk.db"), "junk accepted or unnamed: %s", r ? "(opened)" : err);
    reg_close(r);

    // a baseline's config carries base.json's resampling keys; the results view leaves them NULL (issue 13)
    snprintf(path, sizeof path, "%s/baseline.db", dir);
    r = reg_open(path, err);
    const char *bjson = "{\"model\":{\"type\":\"music_transformer\",\"depth\":6,\"updown_sample_type\":\"linear\","
                        "\"attn_resampling\":true,\"shorten_factor\":2}}";
    const char *hjson = "{\"model\":{\"type\":\"hourglass\",\"depth\":[2,2,2],\"updown_sample_type\":\"linear\","
                        "\"attn_resampling\":true,\"shorten_factor\":2}}";
    CHECK(r && reg_begin_run(r, "baseline", bjson, "runs/b", 1, "test", 1, 1, err) > 0 &&
          reg_begin_run(r, "linear_attn", hjson, "runs/h", 1, "test", 1, 1, err) > 0, "baseline runs: %s", err);
    reg_close(r);
    sqlite3_open(path, &db);
    CHECK(q("SELECT count(*) FROM results WHERE experiment = 'baseline' AND updown_sample_type IS NULL AND "
            "attn_resampling IS NULL AND shorten_factor IS NULL AND depth = 6") == 1, "baseline's Hourglass columns NULL");
    CHECK(q("SELECT count(*) FROM results WHERE experiment = 'linear_attn' AND updown_sample_type = 'linear' AND "
            "attn_resampling = 1 AND shorten_factor = 2") == 1, "hourglass columns kept");
    sqlite3_close(db);

    // runs.device and device_name (schema 4): set per run, shown by results; a registry from before them gains them
    snprintf(path, sizeof path, "%s/device.db", dir);
    sqlite3_open(path, &db);
    CHECK(sqlite3_exec(db, "CREATE TABLE runs(run_id INTEGER PRIMARY KEY, experiment TEXT, status TEXT NOT NULL,"
                           " config_json TEXT, started_at TEXT, finished_at TEXT, out_dir TEXT, n_params INTEGER,"
                           " git_rev TEXT, seed INTEGER, threads INTEGER, message TEXT);"
                           "INSERT INTO runs(experiment, status) VALUES ('old', 'done'); PRAGMA user_version = 3",
                     NULL, NULL, NULL) == SQLITE_OK, "a version-3 registry");
    sqlite3_close(db);
    r = reg_open(path, err);
    int64_t did = r ? reg_begin_run(r, "dev", "{}", "runs/d", 1, "test", 1, 1, err) : -1;
    CHECK(did > 0 && reg_set_device(r, did, "cuda", "NVIDIA H100 80GB HBM3", err) == 0, "set device: %s", err);
    reg_close(r);
    sqlite3_open(path, &db);
    CHECK(q("SELECT count(*) FROM results WHERE experiment = 'dev' AND device = 'cuda' AND "
            "device_name = 'NVIDIA H100 80GB HBM3'") == 1, "results.device");
    CHECK(q("SELECT count(*) FROM results WHERE experiment = 'old' AND device IS NULL") == 1, "old rows kept");
    CHECK(q("PRAGMA user_version") == REG_SCHEMA_VERSION, "upgraded from 3");
    sqlite3_close(db);

    test_ablation();
    test_query();

    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return check_done();
}
