// registry: the SQLite experiment registry (see registry.h). The schema is created in one transaction and
// versioned with PRAGMA user_version: a newer version replaces the views (tables only ever gain columns).
#include "registry.h"

#include <errno.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

#define BUSY_TIMEOUT_MS 60000
#define BUSY_RETRIES 20 // on top of the timeout: a busy BEGIN IMMEDIATE is retried this many times

struct Registry {
    sqlite3 *db;
    char *path;
};

// ablation columns NAME_mean, NAME_sd of the results column COL (m.NAME is the mean, from the CTE below)
#define AB_STAT(col, name)                                                                                             \
    " m." name " AS " name "_mean, sqrt(sum((d." col " - m." name ") * (d." col " - m." name ")) / (count(d." col     \
    ") - 1)) AS " name "_sd"

static const char *const schema_sql =
    "CREATE TABLE IF NOT EXISTS runs("
    " run_id INTEGER PRIMARY KEY, experiment TEXT, status TEXT NOT NULL"
    "  CHECK (status IN ('running', 'done', 'failed', 'interrupted')),"
    " config_json TEXT, started_at TEXT, finished_at TEXT, out_dir TEXT, n_params INTEGER, git_rev TEXT,"
    " seed INTEGER, threads INTEGER, message TEXT, device TEXT, device_name TEXT);"
    "CREATE TABLE IF NOT EXISTS metrics(run_id INTEGER NOT NULL REFERENCES runs(run_id), step INTEGER,"
    " split TEXT, name TEXT, value REAL);"
    "CREATE INDEX IF NOT EXISTS metrics_by_run ON metrics(run_id, split, name, step);"
    "CREATE TABLE IF NOT EXISTS evals(run_id INTEGER NOT NULL REFERENCES runs(run_id), name TEXT, value REAL,"
    " created_at TEXT);"
    "CREATE INDEX IF NOT EXISTS evals_by_run ON evals(run_id, name);"
    "CREATE TABLE IF NOT EXISTS samples(run_id INTEGER REFERENCES runs(run_id), path TEXT, n_tokens INTEGER,"
    " seed INTEGER, created_at TEXT);"
    "DROP VIEW IF EXISTS results;"
    "CREATE VIEW results AS SELECT r.run_id, r.experiment, r.status, r.seed, r.device, r.device_name,"
    " json_extract(r.config_json, '$.model.type') AS model_type,"
    // a music_transformer's config carries base.json's resampling keys, which mean nothing for it
    " iif(json_extract(r.config_json, '$.model.type') = 'hourglass',"
    "  json_extract(r.config_json, '$.model.updown_sample_type'), NULL) AS updown_sample_type,"
    " iif(json_extract(r.config_json, '$.model.type') = 'hourglass',"
    "  json_extract(r.config_json, '$.model.attn_resampling'), NULL) AS attn_resampling,"
    " iif(json_extract(r.config_json, '$.model.type') = 'hourglass',"
    "  json_extract(r.config_json, '$.model.shorten_factor'), NULL) AS shorten_factor,"
    " json_extract(r.config_json, '$.model.depth') AS depth,"
    " json_extract(r.config_json, '$.loss.type') AS loss_type, r.n_params,"
    " (SELECT max(step) FROM metrics m WHERE m.run_id = r.run_id AND m.split = 'train') AS steps,"
    " (SELECT min(value) FROM metrics m WHERE m.run_id = r.run_id AND m.split = 'val' AND m.name = 'loss')"
    "  AS best_val_loss,"
    " (SELECT value FROM evals e WHERE e.run_id = r.run_id AND e.name = 'test_perplexity' ORDER BY e.rowid DESC"
    "  LIMIT 1) AS test_perplexity,"
    " (SELECT value FROM evals e WHERE e.run_id = r.run_id AND e.name = 'test_accuracy' ORDER BY e.rowid DESC"
    "  LIMIT 1) AS test_accuracy,"
    " (SELECT avg(value) FROM metrics m WHERE m.run_id = r.run_id AND m.split = 'train'"
    "  AND m.name = 'tokens_per_s') AS train_tokens_per_s,"
    " (SELECT value FROM evals e WHERE e.run_id = r.run_id AND e.name = 'pitch_class_kl' ORDER BY e.rowid DESC"
    "  LIMIT 1) AS pitch_class_kl,"
    " (SELECT value FROM evals e WHERE e.run_id = r.run_id AND e.name = 'duration_kl' ORDER BY e.rowid DESC"
    "  LIMIT 1) AS duration_kl,"
    " (SELECT value FROM evals e WHERE e.run_id = r.run_id AND e.name = 'velocity_kl' ORDER BY e.rowid DESC"
    "  LIMIT 1) AS velocity_kl,"
    " (SELECT value FROM evals e WHERE e.run_id = r.run_id AND e.name = 'validity' ORDER BY e.rowid DESC"
    "  LIMIT 1) AS validity,"
    " (julianday(r.finished_at) - julianday(r.started_at)) * 86400.0 AS wall_s"
    " FROM runs r;"
    // one row per experiment over its finished runs (issue 8). The sample sd is two-pass, sqrt(sum((x - mean)^2)
    // / (n - 1)) over the runs where x is not NULL: NULL for one value (x / 0 is NULL in SQL), never negative.
    // sqrt() is SQLite's math function (built in since 3.35 when enabled; Debian's library and sqlite3 CLI have it).
    "DROP VIEW IF EXISTS ablation;"
    "CREATE VIEW ablation AS WITH d AS (SELECT * FROM results WHERE status = 'done'),"
    " m AS (SELECT experiment, avg(best_val_loss) AS val_loss, avg(test_perplexity) AS test_perplexity,"
    "  avg(test_accuracy) AS test_accuracy, avg(pitch_class_kl) AS pitch_class_kl, avg(duration_kl) AS duration_kl,"
    "  avg(velocity_kl) AS velocity_kl, avg(validity) AS validity, avg(train_tokens_per_s) AS train_tokens_per_s,"
    "  avg(wall_s) AS wall_s FROM d GROUP BY experiment)"
    " SELECT d.experiment, max(d.model_type) AS model_type, max(d.updown_sample_type) AS updown_sample_type,"
    " max(d.attn_resampling) AS attn_resampling, max(d.shorten_factor) AS shorten_factor, max(d.depth) AS depth,"
    " max(d.loss_type) AS loss_type, max(d.n_params) AS n_params, max(d.steps) AS steps,"
    " count(*) AS n_runs, count(DISTINCT d.seed) AS n_seeds,"
    AB_STAT("best_val_loss", "val_loss") "," AB_STAT("test_perplexity", "test_perplexity") ","
    AB_STAT("test_accuracy", "test_accuracy") "," AB_STAT("pitch_class_kl", "pitch_class_kl") ","
    AB_STAT("duration_kl", "duration_kl") "," AB_STAT("velocity_kl", "velocity_kl") ","
    AB_STAT("validity", "validity") "," AB_STAT("train_tokens_per_s", "train_tokens_per_s") ","
    AB_STAT("wall_s", "wall_s")
    " FROM d JOIN m ON d.experiment IS m.experiment GROUP BY d.experiment;";

static int fail(Registry *r, char *err, const char *what)
{
    return err_set(err, "registry '%s': %s: %s", r->path, what, sqlite3_errmsg(r->db));
}

static void now_utc(char *buf, size_t n)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

// BEGIN IMMEDIATE takes the write lock up front, so a transaction never fails half-way on a lock; the busy
// timeout waits for other writers and the loop covers the rare busy return that bypasses it.
static int begin(Registry *r, char *err)
{
    for (int i = 0;; i++) {
        int rc = sqlite3_exec(r->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        if (rc == SQLITE_OK) return 0;
        if ((rc != SQLITE_BUSY && rc != SQLITE_LOCKED) || i >= BUSY_RETRIES) return fail(r, err, "begin");
        usleep(10000u * (unsigned)(i + 1));
    }
}

static int commit(Registry *r, char *err)
{
    for (int i = 0;; i++) {
        int rc = sqlite3_exec(r->db, "COMMIT", NULL, NULL, NULL);
        if (rc == SQLITE_OK) return 0;
        if (rc != SQLITE_BUSY || i >= BUSY_RETRIES) {
            fail(r, err, "commit");
            sqlite3_exec(r->db, "ROLLBACK", NULL, NULL, NULL);
            return -1;
        }
        usleep(10000u * (unsigned)(i + 1));
    }
}

static int rollback(Registry *r)
{
    sqlite3_exec(r->db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}

static int mkdir_parent(const char *path, char *err)
{
    const char *slash = strrchr(path, '/');
    if (!slash || slash == path) return 0;
    char dir[4096];
    snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    if (mkdir(dir, 0777) < 0 && errno != EEXIST) return err_set(err, "registry '%s': %s: %s", path, dir, strerror(errno));
    return 0;
}

// sqrt(x) for SQLite builds without the math functions (the ablation view needs it); NULL for NULL or x < 0.
static void sql_sqrt(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    (void)argc;
    double x = sqlite3_value_double(argv[0]);
    if (sqlite3_value_type(argv[0]) == SQLITE_NULL || !(x >= 0)) sqlite3_result_null(ctx);
    else sqlite3_result_double(ctx, sqrt(x));
}

// Adds table.col to a registry made before the column existed (a new one gets it from schema_sql). 0 or -1.
static int add_column(Registry *r, const char *table, const char *col, const char *type)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT count(*), sum(name = '%s') FROM pragma_table_info('%s')", col, table);
    sqlite3_stmt *st = NULL;
    int n = 0, has = 0;
    if (sqlite3_prepare_v2(r->db, sql, -1, &st, NULL) != SQLITE_OK) return -1;
    if (sqlite3_step(st) == SQLITE_ROW) n = sqlite3_column_int(st, 0), has = sqlite3_column_int(st, 1);
    sqlite3_finalize(st);
    if (n == 0 || has) return 0; // no table yet (schema_sql makes it whole), or the column is there
    snprintf(sql, sizeof sql, "ALTER TABLE %s ADD COLUMN %s %s", table, col, type);
    return sqlite3_exec(r->db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

static Registry *open_flags(const char *path, int create, char *err)
{
    if (!*path) return err_set(err, "registry '': no file name"), NULL;
    if (create && mkdir_parent(path, err) < 0) return NULL;
    struct stat sb;
    if (!create && stat(path, &sb) < 0) {
        err_set(err, "registry '%s': cannot open: %s", path, strerror(errno));
        return NULL;
    }
    Registry *r = xcalloc(1, sizeof *r);
    r->path = xstrdup(path);
    if (sqlite3_open_v2(path, &r->db, SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0), NULL) != SQLITE_OK) {
        fail(r, err, "cannot open");
        reg_close(r);
        return NULL;
    }
    sqlite3_busy_timeout(r->db, BUSY_TIMEOUT_MS);
    { // a registry (its runs table) or an empty database, given the schema: another database is not touched
        sqlite3_stmt *q = NULL;
        int n_tables = -1, has_runs = 0;
        if (sqlite3_prepare_v2(r->db, "SELECT count(*), coalesce(sum(name = 'runs'), 0) FROM sqlite_master"
                                      " WHERE type = 'table'", -1, &q, NULL) == SQLITE_OK &&
            sqlite3_step(q) == SQLITE_ROW)
            n_tables = sqlite3_column_int(q, 0), has_runs = sqlite3_column_int(q, 1);
        sqlite3_finalize(q);
        if (n_tables < 0) fail(r, err, "cannot open");
        else if (n_tables > 0 && !has_runs) err_set(err, "registry '%s': not a registry: no runs table", path);
        if (n_tables < 0 || (n_tables > 0 && !has_runs)) {
            reg_close(r);
            return NULL;
        }
    }
    sqlite3_stmt *probe = NULL;
    if (sqlite3_prepare_v2(r->db, "SELECT sqrt(4)", -1, &probe, NULL) != SQLITE_OK &&
        sqlite3_create_function(r->db, "sqrt", 1, SQLITE_UTF8 | SQLITE_DETERMINISTIC, NULL, sql_sqrt, NULL, NULL) !=
            SQLITE_OK) {
        fail(r, err, "cannot define sqrt()");
        reg_close(r);
        return NULL;
    }
    sqlite3_finalize(probe);
    // WAL lets readers and one writer work at once; switching needs a moment alone with the file
    int ok = 0;
    for (int i = 0; i <= BUSY_RETRIES && !ok; i++) {
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(r->db, "PRAGMA journal_mode=WAL", -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW)
            ok = strcmp((const char *)sqlite3_column_text(st, 0), "wal") == 0;
        sqlite3_finalize(st);
        if (!ok) usleep(10000u * (unsigned)(i + 1));
    }
    if (!ok) {
        fail(r, err, "cannot switch to WAL mode");
        reg_close(r);
        return NULL;
    }
    sqlite3_exec(r->db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL);
    int version = -1;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(r->db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (version < 0) {
        fail(r, err, "not a registry");
        reg_close(r);
        return NULL;
    }
    if (version > REG_SCHEMA_VERSION) {
        err_set(err, "registry '%s': schema version %d is newer than this program's %d", path, version, REG_SCHEMA_VERSION);
        reg_close(r);
        return NULL;
    }
    if (version < REG_SCHEMA_VERSION) {
        char sql[64];
        snprintf(sql, sizeof sql, "PRAGMA user_version=%d", REG_SCHEMA_VERSION);
        if (begin(r, err) < 0 || add_column(r, "runs", "device", "TEXT") < 0 ||
            add_column(r, "runs", "device_name", "TEXT") < 0 || sqlite3_exec(r->db, schema_sql, NULL, NULL, NULL) != SQLITE_OK ||
            sqlite3_exec(r->db, sql, NULL, NULL, NULL) != SQLITE_OK) {
            fail(r, err, "cannot create the schema");
            rollback(r);
            reg_close(r);
            return NULL;
        }
        if (commit(r, err) < 0) {
            reg_close(r);
            return NULL;
        }
    }
    return r;
}

Registry *reg_open(const char *path, char *err)
{
    return open_flags(path, 1, err);
}

Registry *reg_open_existing(const char *path, char *err)
{
    return open_flags(path, 0, err);
}

void reg_close(Registry *r)
{
    if (!r) return;
    sqlite3_close(r->db);
    free(r->path);
    free(r);
}

// Runs one prepared statement to completion inside the current transaction.
static int step_done(Registry *r, sqlite3_stmt *st, char *err, const char *what)
{
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE) fail(r, err, what);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

static sqlite3_stmt *prepare(Registry *r, const char *sql, char *err)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(r->db, sql, -1, &st, NULL) != SQLITE_OK) fail(r, err, "prepare");
    return st;
}

int64_t reg_begin_run(Registry *r, const char *experiment, const char *config_json, const char *out_dir,
                      long n_params, const char *git_rev, long seed, int threads, char *err)
{
    char now[32];
    now_utc(now, sizeof now);
    if (begin(r, err) < 0) return -1;
    // The caller holds the run folder's lock, so a row of that folder still 'running' belongs to a process that
    // died without closing it (SIGKILL, power loss): close it, or it would read as running forever.
    sqlite3_stmt *st = prepare(r, "UPDATE runs SET status = 'interrupted', finished_at = ?, message = 'the process"
                                  " stopped without closing the run; a later train started over in its folder'"
                                  " WHERE out_dir = ? AND status = 'running'", err);
    if (!st) return rollback(r);
    sqlite3_bind_text(st, 1, now, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, out_dir, -1, SQLITE_TRANSIENT);
    if (step_done(r, st, err, "close stale runs") < 0) return rollback(r);
    st = prepare(r, "INSERT INTO runs(experiment, status, config_json, started_at, out_dir, n_params,"
                                  " git_rev, seed, threads) VALUES (?, 'running', ?, ?, ?, ?, ?, ?, ?)", err);
    if (!st) return rollback(r);
    sqlite3_bind_text(st, 1, experiment, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, config_json, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, now, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 4, out_dir, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 5, n_params);
    sqlite3_bind_text(st, 6, git_rev, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 7, seed);
    sqlite3_bind_int(st, 8, threads);
    if (step_done(r, st, err, "insert run") < 0) return rollback(r);
    int64_t id = sqlite3_last_insert_rowid(r->db);
    return commit(r, err) < 0 ? -1 : id;
}

int reg_set_device(Registry *r, int64_t run_id, const char *device, const char *device_name, char *err)
{
    if (begin(r, err) < 0) return -1;
    sqlite3_stmt *st = prepare(r, "UPDATE runs SET device = ?, device_name = ? WHERE run_id = ?", err);
    if (!st) return rollback(r);
    sqlite3_bind_text(st, 1, device, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, device_name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 3, run_id);
    if (step_done(r, st, err, "set the run's device") < 0) return rollback(r);
    return commit(r, err);
}

int reg_resume_run(Registry *r, int64_t run_id, long step, char *err)
{
    if (begin(r, err) < 0) return -1;
    sqlite3_stmt *st = prepare(r, "UPDATE runs SET status = 'running', finished_at = NULL, message = NULL"
                                  " WHERE run_id = ?", err);
    if (!st) return rollback(r);
    sqlite3_bind_int64(st, 1, run_id);
    if (step_done(r, st, err, "update run") < 0) return rollback(r);
    if (sqlite3_changes(r->db) == 0) {
        rollback(r);
        return 1;
    }
    if (!(st = prepare(r, "DELETE FROM metrics WHERE run_id = ? AND step > ?", err))) return rollback(r);
    sqlite3_bind_int64(st, 1, run_id);
    sqlite3_bind_int64(st, 2, step);
    if (step_done(r, st, err, "delete metrics") < 0) return rollback(r);
    return commit(r, err);
}

int reg_finish_run(Registry *r, int64_t run_id, const char *status, const char *message, char *err)
{
    char now[32];
    now_utc(now, sizeof now);
    if (begin(r, err) < 0) return -1;
    sqlite3_stmt *st = prepare(r, "UPDATE runs SET status = ?, finished_at = ?, message = ? WHERE run_id = ?", err);
    if (!st) return rollback(r);
    sqlite3_bind_text(st, 1, status, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, now, -1, SQLITE_TRANSIENT);
    if (message) sqlite3_bind_text(st, 3, message, -1, SQLITE_TRANSIENT);
    else sqlite3_bind_null(st, 3);
    sqlite3_bind_int64(st, 4, run_id);
    if (step_done(r, st, err, "update run") < 0) return rollback(r);
    return commit(r, err);
}

int reg_metrics(Registry *r, int64_t run_id, long step, const char *split, int n, const char *const names[],
                const double values[], char *err)
{
    if (begin(r, err) < 0) return -1;
    sqlite3_stmt *st = prepare(r, "INSERT INTO metrics(run_id, step, split, name, value) VALUES (?, ?, ?, ?, ?)", err);
    if (!st) return rollback(r);
    for (int i = 0; i < n; i++) {
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, run_id);
        sqlite3_bind_int64(st, 2, step);
        sqlite3_bind_text(st, 3, split, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 4, names[i], -1, SQLITE_TRANSIENT);
        sqlite3_bind_double(st, 5, values[i]);
        if (sqlite3_step(st) != SQLITE_DONE) {
            fail(r, err, "insert metric");
            sqlite3_finalize(st);
            return rollback(r);
        }
    }
    sqlite3_finalize(st);
    return commit(r, err);
}

int reg_evals(Registry *r, int64_t run_id, int n, const char *const names[], const double values[], char *err)
{
    char now[32];
    now_utc(now, sizeof now);
    if (begin(r, err) < 0) return -1;
    sqlite3_stmt *del = prepare(r, "DELETE FROM evals WHERE run_id = ? AND name = ?", err);
    sqlite3_stmt *ins = del ? prepare(r, "INSERT INTO evals(run_id, name, value, created_at) VALUES (?, ?, ?, ?)", err)
                            : NULL;
    int rc = del && ins ? 0 : -1;
    for (int i = 0; i < n && rc == 0; i++) {
        sqlite3_reset(del), sqlite3_reset(ins);
        sqlite3_bind_int64(del, 1, run_id);
        sqlite3_bind_text(del, 2, names[i], -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(ins, 1, run_id);
        sqlite3_bind_text(ins, 2, names[i], -1, SQLITE_TRANSIENT);
        sqlite3_bind_double(ins, 3, values[i]);
        sqlite3_bind_text(ins, 4, now, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(del) != SQLITE_DONE || sqlite3_step(ins) != SQLITE_DONE) rc = fail(r, err, "insert eval");
    }
    sqlite3_finalize(del), sqlite3_finalize(ins);
    return rc < 0 ? rollback(r) : commit(r, err);
}

int reg_sample(Registry *r, int64_t run_id, const char *path, long n_tokens, long seed, char *err)
{
    char now[32];
    now_utc(now, sizeof now);
    if (begin(r, err) < 0) return -1;
    sqlite3_stmt *st = prepare(r, "INSERT INTO samples(run_id, path, n_tokens, seed, created_at)"
                                  " VALUES (?, ?, ?, ?, ?)", err);
    if (!st) return rollback(r);
    if (run_id > 0) sqlite3_bind_int64(st, 1, run_id);
    else sqlite3_bind_null(st, 1);
    sqlite3_bind_text(st, 2, path, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 3, n_tokens);
    sqlite3_bind_int64(st, 4, seed);
    sqlite3_bind_text(st, 5, now, -1, SQLITE_TRANSIENT);
    if (step_done(r, st, err, "insert sample") < 0) return rollback(r);
    return commit(r, err);
}

Registry *reg_open_model_run(const char *path, const char *model, int need_run, int64_t *run, char *err)
{
    Registry *r = reg_open(path, err);
    if (!r) return NULL;
    char *dir = run_dir_path(model);
    if (!dir) err_set(err, "cannot resolve: '%s'", model);
    else if ((*run = reg_find_run(r, dir, err)) == 0 && need_run)
        err_set(err, "no run in registry '%s' has out_dir '%s' (the directory train wrote)", path, dir);
    int ok = dir && *run >= 0 && (*run > 0 || !need_run);
    free(dir);
    if (!ok) reg_close(r);
    return ok ? r : NULL;
}

int64_t reg_find_run(Registry *r, const char *out_dir, char *err)
{
    sqlite3_stmt *st = prepare(r, "SELECT max(run_id) FROM runs WHERE out_dir = ?", err);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, out_dir, -1, SQLITE_TRANSIENT);
    int64_t id = -1;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) id = sqlite3_column_int64(st, 0);
    else fail(r, err, "select run");
    sqlite3_finalize(st);
    return id;
}

// ---- read-only queries ------------------------------------------------------------------------

// Binds v to parameter i (1-based).
static int bind_value(sqlite3_stmt *st, int i, const RegValue *v)
{
    switch (v->type) {
    case REG_INT: return sqlite3_bind_int64(st, i, v->i);
    case REG_REAL: return sqlite3_bind_double(st, i, v->d);
    case REG_TEXT: return v->s ? sqlite3_bind_text(st, i, v->s, -1, SQLITE_TRANSIENT) : sqlite3_bind_null(st, i);
    default: return sqlite3_bind_null(st, i);
    }
}

long reg_query(Registry *r, const char *sql, int n_binds, const RegValue binds[], RegRowFn fn, void *ctx, char *err)
{
    sqlite3_stmt *st = NULL;
    const char *tail = NULL;
    if (sqlite3_prepare_v2(r->db, sql, -1, &st, &tail) != SQLITE_OK) return fail(r, err, "query");
    if (!st) return err_set(err, "registry '%s': query: no statement", r->path);
    long rc = -1;
    tail += strspn(tail, " \t\r\n;");
    if (*tail) {
        err_set(err, "registry '%s': query: more than one statement", r->path);
        goto out;
    }
    if (!sqlite3_stmt_readonly(st)) {
        err_set(err, "registry '%s': query: not a read-only statement", r->path);
        goto out;
    }
    if (sqlite3_bind_parameter_count(st) != n_binds) {
        err_set(err, "registry '%s': query: %d values for %d parameters", r->path, n_binds,
                sqlite3_bind_parameter_count(st));
        goto out;
    }
    for (int i = 0; i < n_binds; i++)
        if (bind_value(st, i + 1, &binds[i]) != SQLITE_OK) {
            fail(r, err, "bind");
            goto out;
        }
    int n_cols = sqlite3_column_count(st);
    const char **names = xcalloc((size_t)n_cols + 1, sizeof *names);
    RegValue *vals = xcalloc((size_t)n_cols + 1, sizeof *vals);
    for (int c = 0; c < n_cols; c++) names[c] = sqlite3_column_name(st, c);
    long n_rows = 0;
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        for (int c = 0; c < n_cols; c++) {
            RegValue *v = &vals[c];
            memset(v, 0, sizeof *v);
            switch (sqlite3_column_type(st, c)) {
            case SQLITE_INTEGER:
                v->type = REG_INT, v->i = sqlite3_column_int64(st, c), v->d = (double)v->i;
                break;
            case SQLITE_FLOAT:
                v->type = REG_REAL, v->d = sqlite3_column_double(st, c);
                break;
            case SQLITE_NULL:
                v->type = REG_NULL;
                break;
            default: // TEXT, and BLOB shown as text
                v->type = REG_TEXT, v->s = (const char *)sqlite3_column_text(st, c);
                if (!v->s) v->type = REG_NULL;
                break;
            }
        }
        n_rows++;
        if (fn && fn(ctx, n_cols, names, vals) != 0) break;
    }
    if (step == SQLITE_ROW || step == SQLITE_DONE) rc = n_rows;
    else fail(r, err, "query");
    free(names);
    free(vals);
out:
    sqlite3_finalize(st);
    return rc;
}

// reg_select's row callback: appends a copy of the row.
static int table_add(void *ctx, int n_cols, const char *const names[], const RegValue vals[])
{
    RegTable *t = ctx;
    if (!t->names) {
        t->n_cols = n_cols;
        t->names = xcalloc((size_t)n_cols + 1, sizeof *t->names);
        for (int c = 0; c < n_cols; c++) t->names[c] = xstrdup(names[c] ? names[c] : "");
    }
    xgrow((void **)&t->v, &t->cap, (t->n_rows + 1) * (size_t)n_cols, sizeof *t->v);
    RegValue *row = t->v + t->n_rows * (size_t)n_cols;
    for (int c = 0; c < n_cols; c++) {
        row[c] = vals[c];
        if (vals[c].type == REG_TEXT) row[c].s = xstrdup(vals[c].s);
    }
    t->n_rows++;
    return 0;
}

RegTable *reg_select(Registry *r, const char *sql, int n_binds, const RegValue binds[], char *err)
{
    RegTable *t = xcalloc(1, sizeof *t);
    if (reg_query(r, sql, n_binds, binds, table_add, t, err) < 0) {
        reg_table_free(t);
        return NULL;
    }
    if (!t->names) { // no row: the column names still come from the statement
        sqlite3_stmt *st = prepare(r, sql, err);
        if (!st) {
            reg_table_free(t);
            return NULL;
        }
        t->n_cols = sqlite3_column_count(st);
        t->names = xcalloc((size_t)t->n_cols + 1, sizeof *t->names);
        for (int c = 0; c < t->n_cols; c++) t->names[c] = xstrdup(sqlite3_column_name(st, c));
        sqlite3_finalize(st);
    }
    return t;
}

void reg_table_free(RegTable *t)
{
    if (!t) return;
    for (size_t k = 0; k < t->n_rows * (size_t)t->n_cols; k++)
        if (t->v[k].type == REG_TEXT) free((char *)t->v[k].s);
    for (int c = 0; c < t->n_cols; c++) free(t->names[c]);
    free(t->names);
    free(t->v);
    free(t);
}

int reg_table_col(const RegTable *t, const char *name)
{
    for (int c = 0; c < t->n_cols; c++)
        if (strcmp(t->names[c], name) == 0) return c;
    return -1;
}

const RegValue *reg_cell(const RegTable *t, size_t row, int col)
{
    static const RegValue null_value = {REG_NULL, 0, 0, NULL};
    if (row >= t->n_rows || col < 0 || col >= t->n_cols) return &null_value;
    return &t->v[row * (size_t)t->n_cols + (size_t)col];
}
