// test_midi_diff: differential test of our SMF reader against libsmf 1.3 on every POP909 song. For each file, the
// events midi_parse() reports (per track: tick, status, data bytes, meta type and payload, SysEx payload) must be
// exactly the events smf_load() builds. Reads $SHARED/data/pop909 (SHARED defaults to ../shared); missing data is a
// failure, never a skip. Links libsmf directly: the one exception to "libsmf only inside midi.c", as it is the
// reference here. How libsmf stores each kind of event is described at diff_event().
#include <dirent.h>
#include <smf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "midi.h"
#include "util.h"

static int n_pass, n_fail;
static size_t n_channel, n_meta, n_sysex; // events compared, by kind

typedef struct Ev {
    int track;
    MidiEvent e;
} Ev;

typedef struct EvList {
    Ev *v;
    size_t n, cap;
} EvList;

// Visitor: appends every event to the EvList ctx.
static void on_event(void *ctx, int track, const MidiEvent *e)
{
    EvList *l = ctx;
    xgrow((void **)&l->v, &l->cap, l->n + 1, sizeof *l->v);
    l->v[l->n++] = (Ev){track, *e};
}

// Compares one of our events with libsmf's. Returns NULL if equal, else what differs (written to why).
// How libsmf 1.3 stores what it loads (smf_load.c, extract_midi_event and friends), and so what we compare against:
//   channel message  midi_buffer = status, data bytes (2 or 3 bytes)
//   meta event       midi_buffer = FF, type, length byte, payload; libsmf reads the length as ONE byte (a length of
//                    128 or more, a 2-byte VLQ, is misread by libsmf; this test reports it as a libsmf limitation)
//   SysEx F0         midi_buffer = F0, payload (the VLQ length is dropped; the payload keeps its closing F7)
//   escape F7        libsmf 1.3 rejects every valid one (inverted validity check) and cuts the track there
//   End-of-Track     the FF 2F 00 from the file, the track's last event; time_pulses is the absolute tick
static const char *diff_event(const MidiEvent *e, const smf_event_t *s, char *why)
{
    const uint8_t *b = s->midi_buffer;
    int n = s->midi_buffer_length;
    if (s->time_pulses != e->tick) {
        snprintf(why, ERR_MAX, "tick %lld, libsmf %d", (long long)e->tick, s->time_pulses);
        return why;
    }
    if (e->status < 0xf0) {
        int nd = (e->status & 0xf0) == 0xc0 || (e->status & 0xf0) == 0xd0 ? 1 : 2;
        if (n != 1 + nd || b[0] != e->status || b[1] != e->d1 || (nd == 2 && b[2] != e->d2)) {
            snprintf(why, ERR_MAX, "channel message %02X %02X %02X, libsmf %d bytes %02X %02X %02X", e->status,
                     e->d1, e->d2, n, n > 0 ? b[0] : 0, n > 1 ? b[1] : 0, n > 2 ? b[2] : 0);
            return why;
        }
        return NULL;
    }
    if (e->status == 0xff) {
        if (e->len >= 128) {
            snprintf(why, ERR_MAX, "meta %02X of length %u: libsmf 1.3 reads meta lengths as one byte", e->d1,
                     e->len);
            return why;
        }
        if (n != (int)e->len + 3 || b[0] != 0xff || b[1] != e->d1 || b[2] != e->len ||
            (e->len && memcmp(b + 3, e->data, e->len) != 0)) {
            snprintf(why, ERR_MAX, "meta %02X length %u, libsmf %d bytes %02X %02X %02X", e->d1, e->len, n,
                     n > 0 ? b[0] : 0, n > 1 ? b[1] : 0, n > 2 ? b[2] : 0);
            return why;
        }
        return NULL;
    }
    if (e->status == 0xf0) {
        if (n != (int)e->len + 1 || b[0] != 0xf0 || (e->len && memcmp(b + 1, e->data, e->len) != 0)) {
            snprintf(why, ERR_MAX, "SysEx of length %u, libsmf %d bytes", e->len, n);
            return why;
        }
        return NULL;
    }
    snprintf(why, ERR_MAX, "escaped F7 event of length %u: libsmf 1.3 rejects every valid one", e->len);
    return why;
}

// Compares one file. Returns 0 if identical, else -1 with the first difference printed.
static int diff_file(const char *path)
{
    char err[ERR_MAX], why[ERR_MAX];
    uint8_t *buf;
    size_t n;
    if (read_file(path, MIDI_MAX_BYTES, &buf, &n, err) < 0) {
        fprintf(stderr, "FAIL %s: cannot read: %s\n", path, err);
        return -1;
    }
    EvList ours = {0};
    MidiVisitor v = {NULL, on_event, NULL, &ours};
    MidiInfo info;
    int rc = -1;
    smf_t *smf = NULL;
    if (midi_parse(buf, n, &info, &v, err) < 0) {
        fprintf(stderr, "FAIL %s: our reader: %s\n", path, err);
        goto out;
    }
    smf = smf_load(path);
    if (!smf) {
        fprintf(stderr, "FAIL %s: libsmf cannot load it, our reader can (%zu events)\n", path, ours.n);
        goto out;
    }
    if (smf->number_of_tracks != info.n_tracks) {
        fprintf(stderr, "FAIL %s: %d tracks, libsmf %d\n", path, info.n_tracks, smf->number_of_tracks);
        goto out;
    }
    if (smf->ppqn != info.tpq) {
        fprintf(stderr, "FAIL %s: %d ticks per quarter, libsmf %d\n", path, info.tpq, smf->ppqn);
        goto out;
    }
    size_t k = 0;
    for (int t = 0; t < info.n_tracks; t++) {
        smf_track_t *tr = smf_get_track_by_number(smf, t + 1);
        smf_event_t *se;
        int i = 0;
        for (; (se = smf_track_get_next_event(tr)); i++, k++) {
            if (k >= ours.n || ours.v[k].track != t) {
                fprintf(stderr, "FAIL %s: track %d: libsmf has an event %d more than ours\n", path, t, i);
                goto out;
            }
            if (diff_event(&ours.v[k].e, se, why)) {
                fprintf(stderr, "FAIL %s: track %d event %d: %s\n", path, t, i, why);
                goto out;
            }
            uint8_t st = ours.v[k].e.status;
            *(st < 0xf0 ? &n_channel : st == 0xff ? &n_meta : &n_sysex) += 1;
        }
        if (k < ours.n && ours.v[k].track == t) {
            fprintf(stderr, "FAIL %s: track %d: we have %d events, libsmf %d\n", path, t, i, tr->number_of_events);
            goto out;
        }
    }
    if (k != ours.n) {
        fprintf(stderr, "FAIL %s: %zu events, libsmf %zu\n", path, ours.n, k);
        goto out;
    }
    rc = 0;
out:
    if (smf) smf_delete(smf);
    free(ours.v);
    free(buf);
    return rc;
}

// qsort order of file names.
static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(int argc, char **argv)
{
    (void)argc;
    util_init(argv[0]);
    const char *shared = getenv("SHARED");
    if (!shared || !*shared) shared = "../shared";
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/data/pop909", shared);
    DIR *d = opendir(dir);
    char **names = NULL;
    size_t n_names = 0, cap = 0;
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            size_t len = strlen(e->d_name);
            if (len < 5 || strcmp(e->d_name + len - 4, ".mid") != 0) continue;
            xgrow((void **)&names, &cap, n_names + 1, sizeof *names);
            names[n_names++] = xstrdup(e->d_name);
        }
        closedir(d);
    }
    if (n_names < 909) { // the test must not pass on missing or partial data
        fprintf(stderr, "FAIL '%s': %zu MIDI files, want the 909 POP909 songs (set SHARED)\n", dir, n_names);
        n_fail++;
    }
    qsort(names, n_names, sizeof *names, cmp_str);
    size_t shown = 0;
    for (size_t i = 0; i < n_names; i++) {
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (diff_file(path) == 0) n_pass++;
        else n_fail++, shown++;
        free(names[i]);
    }
    free(names);
    fprintf(stderr, "test_midi_diff: %zu POP909 files, %d identical to libsmf, %zu differ; events compared: %zu "
            "channel, %zu meta, %zu SysEx\n", n_names, n_pass, shown, n_channel, n_meta, n_sysex);
    printf("%d passed, %d failed, 0 skipped\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
