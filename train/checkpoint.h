// Checkpoints: one shard file per rank (its parameters, AdamW moments and
// step count) and a manifest naming the layout, model, step, generation
// and every shard's checksum. Every file is written atomically (temp file,
// fsync, rename, directory fsync); the manifest goes last, once every
// shard is durable, so a directory with a manifest is a whole checkpoint.
#ifndef HGRID_TRAIN_CHECKPOINT_H
#define HGRID_TRAIN_CHECKPOINT_H

#include <stddef.h>

#include "train/train.h"

// Every rank calls it after `step` completed steps. Returns 0, or -1 with
// a one-line reason in err (then the directory has no new manifest).
int tr_checkpoint_save(tr_worker *w, const char *dir, int step, int generation, char *err,
                       size_t errlen);
// The same for every rank of the layout in this process (train/local.h's
// workers, one per rank, n the world size), one after the other.
int tr_checkpoint_save_all(tr_worker *const *workers, int n, const char *dir, int step,
                           int generation, char *err, size_t errlen);
// Restores this rank's shard; sets *step (steps completed) and
// *generation. Refuses a checkpoint of another layout or model, or a shard
// whose checksum does not match the manifest. Returns 0, or -1 with a
// one-line reason in err.
int tr_checkpoint_load(tr_worker *w, const char *dir, int *step, int *generation, char *err,
                       size_t errlen);

#endif
