/* ds.h - training data: corpora, the byte tokenizer, batches, and the built-in arithmetic corpus.
 *
 * A corpus is two arrays of token ids, a training split and a validation split. Tokens are bytes
 * (ids 0..255) plus three specials, so any file can be trained on without a vocabulary file and
 * decode(encode(x)) gives back x exactly.
 *
 * Corpora come from a spec string: a file path (read whole as bytes), or "builtin:arith", a
 * generated corpus of worked arithmetic problems whose long, systematic solutions show off
 * multi-token prediction. Everything is deterministic given the options (and the rng state for
 * batches), so a run can be reproduced or resumed exactly.
 *
 * Errors are returned as -1 with a one-line message in the caller's buffer (no "error:" prefix). */
#ifndef MTP_DATASETS_DS_H
#define MTP_DATASETS_DS_H

#include <stddef.h>
#include <stdint.h>

#include "mtp/core/rng.h"

#define DS_BYTE_VOCAB 259 /* ids 0..255 are bytes */
#define DS_BOS 256        /* begins a file stream and every arithmetic example */
#define DS_EOS 257        /* ends every arithmetic example */
#define DS_PAD 258        /* fills rows past the end of a split; never a real token, skip it as a target */

/* files larger than this are refused: the whole file is held in memory as int32 tokens (4x its size) */
#define DS_MAX_FILE_BYTES ((int64_t)2 << 30)

/* built-in arithmetic corpus: bytes of example text generated for each split (the token counts are a
   little larger: every example adds a BOS and an EOS) */
#define DS_ARITH_TRAIN_BYTES ((size_t)8 << 20)
#define DS_ARITH_VAL_BYTES ((size_t)512 << 10)
#define DS_ARITH_VAL_SEED_XOR 0x9E3779B97F4A7C15ull /* validation seed = seed ^ this */
#define DS_ARITH_MAX_DIFFICULTY 5

typedef struct {
    int32_t *train; size_t n_train;   /* training split, token ids */
    int32_t *val;   size_t n_val;     /* validation split */
    char desc[256];                   /* human-readable: "tinyshakespeare.txt: 1115394 bytes, 1003855 train / 111540 val tokens" */
} DsCorpus;

typedef struct {
    const char *spec;     /* "builtin:arith" or a file path */
    double val_frac;      /* files: fraction at the END used for validation, 0 < val_frac < 1 (default 0.1) */
    uint64_t seed;        /* builtin:arith: data seed of the training stream; the validation stream uses its own seed derived from it */
    int difficulty;       /* builtin:arith: 0 = mixed levels (default), 1..DS_ARITH_MAX_DIFFICULTY = one level */
    size_t min_tokens;    /* each split must hold at least this many tokens (the caller passes ctx+1), else a clear error */
} DsOptions;

/* Fills opt with the defaults: spec NULL, val_frac 0.1, seed 1, difficulty 0, min_tokens 2. */
void ds_options_init(DsOptions *opt);

/* Loads the corpus named by opt->spec into c (which need not be initialized). On error returns -1,
   leaves c empty (safe to ds_free) and writes a one-line message naming the spec into err.
   Each split holds at least max(min_tokens, 2) tokens: one (input, target) pair at the least.
   File: stream = DS_BOS then the file's bytes; the last round(val_frac * stream length) tokens are
   the validation split. builtin:arith: independent training and validation streams of examples,
   each example DS_BOS, its text, DS_EOS. train and val are separate allocations. */
int  ds_load(DsCorpus *c, const DsOptions *opt, char *err, size_t errlen);
void ds_free(DsCorpus *c);

/* byte tokenizer: encode is the identity on bytes; decode writes the bytes of byte ids and drops
   specials (BOS/EOS/PAD) and any id outside 0..258, so decode(encode(b)) == b exactly for any byte
   string. Return count written. */
size_t ds_encode_bytes(int32_t *out, const uint8_t *bytes, size_t n);
size_t ds_decode_bytes(uint8_t *out, const int32_t *ids, size_t n);

/* training batch: B rows of T1 consecutive tokens, each row a window starting at a uniformly random
   offset in [0, n - T1], drawn from rng (rng state fully determines the batch, so saving it saves the data position).
   out holds B*T1 ids. If n < T1 (ds_load's min_tokens prevents it) each row is the whole split then
   DS_PAD, and rng is not used. */
void ds_sample_batch(int32_t *out, const int32_t *tok, size_t n, int B, int T1, MtpRng *rng);

/* evaluation batch number `index`: deterministic, sequential windows of T1 tokens with stride T1-1
   (so consecutive windows overlap by one token and every token after the first is a target exactly once).
   Fills up to B rows; returns the number of rows filled (0 once the split is exhausted).
   The last window of a split may be short: its tail is DS_PAD, and so are rows past the filled ones,
   so the caller must skip positions whose target is DS_PAD. T1 < 2 or B < 1 returns 0. */
int ds_eval_batch(int32_t *out, const int32_t *tok, size_t n, int B, int T1, size_t index);

/* number of evaluation windows (rows over all batches) for a split of n tokens: ceil((n-1)/(T1-1)) */
size_t ds_eval_windows(size_t n, int T1);

/* built-in chain-of-thought arithmetic: one example into buf (NUL-terminated if room), returns its length
   in bytes (the text only), or the length it would need if cap is too small (like snprintf).
   The rng advances the same way whatever cap is, so a caller can retry with a copy of the state.
   The text is a question line "Compute <a> <op> <b> ... .", a worked solution (one canonical form per
   question), and a last line "#### <answer>", every line ending in "\n". Kinds: addition of several
   numbers, subtraction of one or more numbers, multiplication, exact long division.
   difficulty 0 draws a level uniformly from 1..DS_ARITH_MAX_DIFFICULTY for this example; a level
   outside 0..DS_ARITH_MAX_DIFFICULTY writes nothing and returns 0. */
size_t ds_arith_example(char *buf, size_t cap, MtpRng *rng, int difficulty);

#endif
