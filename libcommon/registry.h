// registry: the SQLite experiment registry (spec/formats.md §5): tables runs, metrics, evals, samples and the
// views results and ablation. SQLite is used from this file only. Many processes write at once (make -j): the
// database is in WAL mode, every write is one BEGIN IMMEDIATE transaction with a busy timeout and retries, and
// every statement binds its values. Functions return 0 / an id, or -1 with err; they never die.
#ifndef REGISTRY_H
#define REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#define REG_DEFAULT_PATH "results/registry.db"
#define REG_SCHEMA_VERSION 4 // PRAGMA user_version. 2: results.velocity_kl, the ablation view; 3: Hourglass-only
                              // columns of results NULL for music_transformer runs; 4: runs.device, device_name

// View ablation (schema version 2): one row per runs.experiment over its runs with status 'done':
//   experiment, model_type, updown_sample_type, attn_resampling, shorten_factor, depth, loss_type, n_params, steps
//   (config fields and sizes as in results, the largest value over the runs), n_runs, n_seeds (distinct seeds),
//   and X_mean, X_sd for X in val_loss (results.best_val_loss), test_perplexity, test_accuracy, pitch_class_kl,
//   duration_kl, velocity_kl, validity, train_tokens_per_s, wall_s. X_sd is the sample standard deviation (n - 1)
//   over the runs where X is not NULL: NULL with fewer than two values; X_mean is NULL with none.

typedef struct Registry Registry;

// Opens (creating the file, its parent folder and the schema when missing) the registry at path. An older
// schema version is upgraded: missing tables are created and the views replaced.
Registry *reg_open(const char *path, char *err);
// reg_open for readers: the file must exist (else -1 with "registry 'path': cannot open: No such file ...");
// an existing registry is upgraded as by reg_open, an empty SQLite file given the schema. Both refuse a database
// with other tables and no runs table, untouched ("not a registry").
Registry *reg_open_existing(const char *path, char *err);
void reg_close(Registry *r);

// A new runs row with status 'running'; returns its run_id (> 0) or -1.
int64_t reg_begin_run(Registry *r, const char *experiment, const char *config_json, const char *out_dir,
                      long n_params, const char *git_rev, long seed, int threads, char *err);
// Records where the run trains: device "cpu" or "cuda", device_name the CPU's or GPU's model name.
int reg_set_device(Registry *r, int64_t run_id, const char *device, const char *device_name, char *err);
// Marks an existing run 'running' again (a resumed run) and drops its metrics after `step`, which the resumed
// run will log again. Returns 0, 1 when run_id is not in this registry, -1 on error.
int reg_resume_run(Registry *r, int64_t run_id, long step, char *err);
// Sets status ('done', 'failed', 'interrupted'), finished_at and an optional message.
int reg_finish_run(Registry *r, int64_t run_id, const char *status, const char *message, char *err);
// n metrics of one step and split, in one transaction.
int reg_metrics(Registry *r, int64_t run_id, long step, const char *split, int n, const char *const names[],
                const double values[], char *err);
// n evals rows (name, value) for run_id, replacing earlier rows of the same names, in one transaction.
int reg_evals(Registry *r, int64_t run_id, int n, const char *const names[], const double values[], char *err);
int reg_sample(Registry *r, int64_t run_id, const char *path, long n_tokens, long seed, char *err);
// The run_id of the most recent run whose out_dir is out_dir, 0 when none, -1 on error.
int64_t reg_find_run(Registry *r, const char *out_dir, char *err);
// reg_open, then the run of model (a run folder, or a file in one: run_dir_path) in *run, 0 when none (with
// need_run, an error naming the folder). NULL with err; the tools call it before their work, so that a registry
// they cannot use fails at once.
Registry *reg_open_model_run(const char *path, const char *model, int need_run, int64_t *run, char *err);

// ---- read-only queries (for report and users' tools; SQLite stays inside registry.c) ------------
typedef enum { REG_NULL, REG_INT, REG_REAL, REG_TEXT } RegType;
// One SQL value. INTEGER values also fill d (as double), so numbers read alike; s is NULL unless REG_TEXT.
typedef struct RegValue {
    RegType type;
    int64_t i;
    double d;
    const char *s;
} RegValue;

// Row callback of reg_query: n_cols names and values, valid only during the call. Nonzero stops the query.
typedef int (*RegRowFn)(void *ctx, int n_cols, const char *const names[], const RegValue values[]);

// Runs one read-only SQL statement (a SELECT, or a PRAGMA that does not write) with n_binds values bound to its
// ?-parameters in order, calling fn (may be NULL) once per row. Refuses statements that would write, several
// statements and a parameter count other than n_binds. Returns the number of rows seen, or -1 with err.
long reg_query(Registry *r, const char *sql, int n_binds, const RegValue binds[], RegRowFn fn, void *ctx, char *err);

// A whole result set in memory, row-major: value (row, col) is v[row * n_cols + col]. Owns names and text.
typedef struct RegTable {
    int n_cols;
    char **names;
    size_t n_rows, cap;
    RegValue *v;
} RegTable;

// reg_query into a fresh RegTable (column names are filled even with no rows). NULL with err on failure.
// Free with reg_table_free (NULL is fine).
RegTable *reg_select(Registry *r, const char *sql, int n_binds, const RegValue binds[], char *err);
void reg_table_free(RegTable *t);
// The index of the column called name, or -1.
int reg_table_col(const RegTable *t, const char *name);
// Value (row, col); a NULL value for a row or column out of range (so a missing column reads as NULL).
const RegValue *reg_cell(const RegTable *t, size_t row, int col);

#endif
