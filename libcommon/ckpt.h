// ckpt: model.safetensors (spec/formats.md §4): the Hugging Face safetensors layout (u64 little-endian header
// length, JSON header of {name: {dtype, shape, data_offsets}} plus __metadata__, raw little-endian data).
// Tensors are the model's parameter table plus the positional_encoding.pe buffer (L, 1, C), so the file loads
// into the PyTorch reference with load_state_dict(strict=True). The header is parsed with cJSON here: it is a
// format this module owns, like the configs config.c will own.
#ifndef CKPT_H
#define CKPT_H

#include "config.h"
#include "hg.h"

// Writes m's weights to path atomically (temporary + fsync + rename). metadata_config: the resolved config JSON
// (stored as __metadata__.config); vocab_hash goes to __metadata__.vocab_hash. Dies on I/O failure.
void ckpt_save(const HgModel *m, const char *path, const char *metadata_config, uint64_t vocab_hash);
// Whether ckpt_save's file for m (with this config) can be read back: its header within the safetensors limit
// (100,000,000 bytes), which a deeply nested config's tensor names can pass. 0, or -1 with err.
int ckpt_check(const HgModel *m, const char *metadata_config, char *err);

// Reads path into m->w; m must be built for the configuration the file was saved with. Validates the header
// length against the file, the JSON, every dtype (F32 only), every shape against m's table, every data range
// (inside the data area, the right size, no overlap), that every expected tensor is present once and nothing
// else is. *metadata_config (if not NULL) receives a malloc'd copy of __metadata__.config or NULL.
// Returns 0, or -1 with err naming the tensor and the reason.
int ckpt_load(HgModel *m, const char *path, char **metadata_config, char *err);

// The resolved config JSON in path's __metadata__ (malloc'd), so a reader can build the model before ckpt_load.
// NULL with err when the file cannot be read or has none.
char *ckpt_read_config(const char *path, char *err);

// Opens a trained model: path is a run directory (its model.safetensors) or a model.safetensors file. Reads the
// config from the metadata into rc, builds m for it (the REMI vocabulary) and loads the weights. Returns 0, or -1
// with err naming the file. The caller frees both (hg_free, config_free).
int ckpt_open_model(const char *path, RunConfig *rc, HgModel *m, char *err);

#endif
