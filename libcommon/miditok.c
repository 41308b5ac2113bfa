// miditok: MidiTok's tokenizer parameters file and JSON token files (see miditok.h).
#include "miditok.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

// ---- tokenizer.json ---------------------------------------------------------------------------
// The keys and values MidiTok 3.0.0's save_params writes for TokenizerConfig(num_velocities=16, use_chords=True,
// use_programs=True, remove_duplicated_notes=True, delete_equal_successive_tempo_changes=True,
// delete_equal_successive_time_sig_changes=True), in its order. Loading rebuilds the vocabulary from them: the
// token list is not stored. The numbers that fix the vocabulary come from remi.h; the rest are MidiTok's defaults
// for token types that are off (tempos, rests, time signatures, pitch bends), kept so the file loads as written.
// The chord maps are CHORD_MAPS in dict order, the order of remi.c's Chord ids.
static const char *const chord_maps_json =
    "\"min\": [0, 3, 7], \"maj\": [0, 4, 7], \"dim\": [0, 3, 6], \"aug\": [0, 4, 8], \"sus2\": [0, 2, 7], "
    "\"sus4\": [0, 5, 7], \"7dom\": [0, 4, 7, 10], \"7min\": [0, 3, 7, 10], \"7maj\": [0, 4, 7, 11], "
    "\"7halfdim\": [0, 3, 6, 10], \"7dim\": [0, 3, 6, 9], \"7aug\": [0, 4, 8, 11], \"9maj\": [0, 4, 7, 10, 14], "
    "\"9min\": [0, 4, 7, 10, 13]";

void miditok_write_params(FILE *out)
{
    fprintf(out, "{\n    \"config\": {\n");
    fprintf(out, "        \"pitch_range\": [%d, %d],\n", REMI_PITCH_MIN, REMI_PITCH_MAX + 1);
    fprintf(out, "        \"beat_res\": {\"0_4\": %d, \"4_12\": %d},\n", REMI_TPQ, REMI_TPQ / 2);
    fprintf(out, "        \"num_velocities\": %d,\n", REMI_DURATION0 - REMI_VELOCITY0);
    fprintf(out, "        \"special_tokens\": [");
    for (int id = REMI_PAD; id < REMI_BAR; id++) {
        fprintf(out, "%s", id ? ", " : "");
        json_write_string(out, remi_token_str(id));
    }
    fprintf(out, "],\n");
    fprintf(out, "        \"remove_duplicated_notes\": true,\n        \"use_chords\": true,\n"
                 "        \"use_rests\": false,\n        \"use_tempos\": false,\n"
                 "        \"use_time_signatures\": false,\n        \"use_sustain_pedals\": false,\n"
                 "        \"use_pitch_bends\": false,\n        \"use_programs\": true,\n"
                 "        \"use_pitch_intervals\": false,\n"
                 "        \"beat_res_rest\": {\"0_1\": 8, \"1_2\": 4, \"2_12\": 2},\n");
    fprintf(out, "        \"chord_maps\": {%s},\n", chord_maps_json);
    fprintf(out, "        \"chord_tokens_with_root_note\": false,\n        \"chord_unknown\": null,\n"
                 "        \"num_tempos\": 32,\n        \"tempo_range\": [40, 250],\n        \"log_tempos\": false,\n"
                 "        \"delete_equal_successive_tempo_changes\": true,\n"
                 "        \"time_signature_range\": {\"8\": [3, 12, 6], \"4\": [5, 6, 3, 2, 1, 4]},\n"
                 "        \"delete_equal_successive_time_sig_changes\": true,\n"
                 "        \"sustain_pedal_duration\": false,\n        \"pitch_bend_range\": [-8192, 8191, 32],\n");
    fprintf(out, "        \"programs\": [");
    for (int id = REMI_PROGRAM0; id < REMI_VOCAB_SIZE; id++)
        fprintf(out, "%s%d", id > REMI_PROGRAM0 ? ", " : "", remi_program(id));
    fprintf(out, "],\n");
    fprintf(out, "        \"one_token_stream_for_programs\": true,\n        \"program_changes\": false,\n"
                 "        \"max_pitch_interval\": 16,\n        \"pitch_intervals_max_time_dist\": 1,\n"
                 "        \"additional_params\": {\"max_bar_embedding\": null}\n    },\n");
    fprintf(out, "    \"one_token_stream\": true,\n    \"has_bpe\": false,\n    \"tokenization\": \"REMI\",\n"
                 "    \"miditok_version\": \"3.0.0\"\n}\n");
}

// ---- token files ------------------------------------------------------------------------------

int miditok_read_ids(const char *path, IdBuf *out, char *err)
{
    uint8_t *buf;
    size_t len;
    if (read_file(path, MIDITOK_MAX_BYTES, &buf, &len, err) < 0) return -1;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts((const char *)buf, len, &end, 0);
    int rc = -1;
    if (!root) {
        size_t at = end && end >= (const char *)buf ? (size_t)(end - (const char *)buf) : 0;
        err_set(err, "not JSON (error near byte %zu)", at);
        goto out;
    }
    const cJSON *ids = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "ids") : NULL;
    const cJSON *bpe = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "ids_bpe_encoded") : NULL;
    if (!ids) {
        err_set(err, "no \"ids\" list (not a MidiTok token file)");
        goto out;
    }
    if (cJSON_IsTrue(bpe)) {
        err_set(err, "\"ids_bpe_encoded\" is true: BPE ids are not this vocabulary's");
        goto out;
    }
    if (!cJSON_IsArray(ids)) {
        err_set(err, "\"ids\" is not a list");
        goto out;
    }
    size_t k = 0;
    for (const cJSON *v = ids->child; v; v = v->next, k++) {
        if (cJSON_IsArray(v)) {
            err_set(err, "\"ids\" is a list of lists (a tokenizer with one stream per track); this vocabulary is "
                         "one stream");
            goto out;
        }
        double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
        if (!(d >= 0 && d < REMI_VOCAB_SIZE && d == floor(d))) {
            err_set(err, "\"ids\"[%zu]: expected a token id in 0..%d", k, REMI_VOCAB_SIZE - 1);
            goto out;
        }
        idbuf_push(out, (int32_t)d);
    }
    rc = 0;
out:
    cJSON_Delete(root);
    free(buf);
    return rc;
}
