/* ds.h - training data: corpora, the byte tokenizer, batches, and the built-in arithmetic corpus;
 * the byte-level BPE tokenizer and the JSON lines reader that corpora will be built on.
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


/* built-in arithmetic corpus: bytes of example text generated for each split (the token counts are a
   little larger: every example adds a BOS and an EOS) */
#define DS_ARITH_TRAIN_BYTES ((size_t)8 << 20)
#define DS_ARITH_VAL_BYTES ((size_t)512 << 10)
#define DS_ARITH_VAL_SEED_XOR 0x9E3779B97F4A7C15ull /* validation seed = seed ^ this */
#define DS_ARITH_MAX_DIFFICULTY 8 /* levels 6..8: long chains, about 2,000 to 6,000 bytes per example */
#define DS_ARITH_MIXED_MAX 5      /* difficulty 0 mixes levels 1..this */

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
   difficulty 0 draws a level uniformly from 1..DS_ARITH_MIXED_MAX for this example; a level
   outside 0..DS_ARITH_MAX_DIFFICULTY writes nothing and returns 0. */
size_t ds_arith_example(char *buf, size_t cap, MtpRng *rng, int difficulty);

/* ---- answers (answer.c) ------------------------------------------------------------------------
 *
 * Chain-of-thought examples (builtin:arith, GSM8K) end with a line "#### <answer>". */

/* The final answer of text (n bytes): what follows the LAST "####" in text, with spaces and tabs
   around it dropped, ending at the first newline (or the end), then normalized: thousands
   separators (',') removed, a leading '+' dropped, a trailing '.' dropped, and for a number
   "-0" made "0" and leading zeros dropped ("007" -> "7", "3.50" stays "3.50": only exact text is
   compared). Writes it NUL-terminated into out (cap >= 1) and returns its length, or -1 when text
   has no "####", the answer is empty, holds a NUL byte (callers compare C strings), or it does not
   fit in cap-1 bytes (out is then ""). */
int ds_answer_extract(const char *text, size_t n, char *out, size_t cap);

/* Self-consistency voting (Wang et al. 2022): the answer of several sampled chains is the one most
   of them give. answers[0..n) are normalized answers (ds_answer_extract); "" is a chain without
   one, which does not vote. Returns the index of the first occurrence of the majority answer, or -1
   when no chain has an answer. A tie goes to the answer that reached the winning count first. */
int ds_vote_majority(const char *const *answers, int n);

/* majority@k and pass@k of n_probs problems with n sampled answers each (answers[p * n + s]) and
   their references (refs[p]): for each k = ks[j] (1 <= k <= n), the fraction of problems whose
   majority over their first k answers is the reference, and the fraction where one of their first
   k answers is. Taking the first k of the same samples gives the whole curve from one run. */
void ds_vote_curve(double *majority, double *pass, const char *const *answers, const char *const *refs, int n_probs,
                   int n, const int *ks, int n_ks);

/* ---- byte-level BPE tokenizer (bpe.c) ----------------------------------------------------------
 *
 * Ids stay compatible with the byte tokenizer: 0..255 are the bytes, 256..258 BOS/EOS/PAD (never
 * produced by encode), and merge i makes token DS_BYTE_VOCAB + i. A tokenizer of size N (the
 * user's "bpe:N", DS_BPE_MIN_VOCAB <= N <= DS_BPE_MAX_VOCAB) has 256 byte tokens and N - 256
 * merges, so its model vocabulary is N + 3. Every byte is a token, so decode(encode(x)) == x for
 * any byte string (invalid UTF-8 and NUL included).
 *
 * Pre-tokenization: merges never cross a chunk boundary. Bytes fall into classes: letters (a-z,
 * A-Z and every byte >= 0x80, so UTF-8 characters stay inside words), digits (0-9), newlines
 * (\n, \r), blanks (space, tab) and punctuation (every other byte, NUL and control bytes
 * included). From the current position a chunk is the first that applies of:
 *   1. an optional single space, then exactly one digit (numbers are never merged, so arithmetic
 *      stays digit by digit), or a maximal run of letters, or a maximal run of punctuation (the
 *      space is taken only when one of these follows it: " word", " 7", " (");
 *   2. a maximal run of newlines;
 *   3. a maximal run of blanks; when a letter, digit or punctuation follows it and the run ends in
 *      a space, that last space is left out to begin the next chunk ("   x" -> "  ", " x").
 * A run is cut at DS_BPE_MAX_CHUNK bytes (the space of rule 1 included); a letter run is cut at
 * the last UTF-8 character start within 3 bytes before the limit, if there is one. So no chunk,
 * and no token, is longer than DS_BPE_MAX_CHUNK bytes, and the chunks concatenate back to the
 * input. The rule is versioned by the hash's format tag: changing it must change the tag.
 *
 * Errors are returned as -1 with a one-line message in the caller's buffer (no "error:" prefix). */
#define DS_BPE_MIN_VOCAB 257                               /* N: 256 bytes + at least one merge */
#define DS_BPE_MAX_VOCAB 65536
#define DS_BPE_MAX_MERGES (DS_BPE_MAX_VOCAB - 256)
#define DS_BPE_MAX_CHUNK 64                                /* bytes: longest chunk, so longest token */

typedef struct DsBpe DsBpe;

/* Learns merges on text (the training split's bytes) until the tokenizer has `vocab` = N tokens
   (DS_BPE_MIN_VOCAB..DS_BPE_MAX_VOCAB), or earlier when no adjacent pair occurs twice; then
   ds_bpe_n_merges() < N - 256 tells the actual size. Each step merges the most frequent pair of
   adjacent tokens inside chunks (counted with the chunk's frequency); ties go to the smaller
   (left id, right id). Deterministic: the same text and N give the same merges. text may be NULL
   when n is 0; n must be below 2^31. On error returns -1, *out = NULL and a message. */
int ds_bpe_train(DsBpe **out, const uint8_t *text, size_t n, int vocab, char *err, size_t errlen);

/* Rebuilds a tokenizer from its merge list (what a checkpoint stores): merges is (n_merges, 2)
   int32 (left id, right id), 0 <= n_merges <= DS_BPE_MAX_MERGES (0 gives the byte tokenizer).
   Every part of merge i must be a byte or an earlier merge's token (0..255, or 259..258+i; never
   a special), no pair may repeat, and no token may be longer than DS_BPE_MAX_CHUNK bytes; the
   message names the first bad merge index. On error returns -1 and *out = NULL. */
int ds_bpe_from_merges(DsBpe **out, const int32_t *merges, int n_merges, char *err, size_t errlen);

void ds_bpe_free(DsBpe *t);

int ds_bpe_vocab(const DsBpe *t);                     /* model vocabulary: DS_BYTE_VOCAB + merges */
int ds_bpe_n_merges(const DsBpe *t);
const int32_t *ds_bpe_merges(const DsBpe *t);         /* (n_merges, 2), owned by t */

/* FNV-1a 64: h = DS_FNV_OFFSET to start, the previous result to continue. The tokenizer hash, the
   sources' content samples and the token cache key use it (cheap, and fixed across hosts). */
#define DS_FNV_OFFSET 0xCBF29CE484222325ull
uint64_t ds_fnv1a64(uint64_t h, const void *p, size_t n);

/* FNV-1a 64 over a format tag (which versions the pre-tokenization rule) and the merge list:
   equal hashes mean equal encodings, for cache files and checkpoint checks. */
uint64_t ds_bpe_hash(const DsBpe *t);

/* Encodes n bytes into out and returns the number of tokens written, at most n (so out can be
   sized n). Thread-safe: t is only read, and the chunk cache lives in the call (if it cannot be
   allocated encode runs uncached, so it never fails). */
size_t ds_bpe_encode(const DsBpe *t, int32_t *out, const uint8_t *bytes, size_t n);

/* Where text may be cut so that encoding the two sides separately gives the tokens of encoding it
   whole: the start of the last chunk of bytes[0..n) (0 when it is one chunk). A streaming encoder
   encodes bytes[0..p), keeps bytes[p..n) and prepends them to the next block. */
size_t ds_bpe_safe_split(const uint8_t *bytes, size_t n);

/* Writes the bytes of ids into out, at most cap of them, and returns the full decoded length
   (like snprintf: call with cap 0 to size the buffer). Specials and ids outside 0..vocab-1 are
   dropped, so decode(encode(b)) == b exactly. */
size_t ds_bpe_decode(const DsBpe *t, uint8_t *out, size_t cap, const int32_t *ids, size_t n);

/* The bytes of token id: sets *bytes and returns their count (0 for the specials, which decode to
   nothing), or -1 for an id outside the vocabulary. */
int ds_bpe_token_bytes(const DsBpe *t, int32_t id, const uint8_t **bytes);

/* ---- JSON lines (json.c) ------------------------------------------------------------------------
 *
 * One JSON object per line; the string values of a few keys are taken out of it. The whole line
 * is checked (RFC 8259 syntax: a malformed line is always an error, whatever part of it is bad);
 * other values, nested objects and arrays included, are skipped, nesting at most 64 deep. Strings
 * are unescaped into UTF-8, \uXXXX included (surrogate pairs joined, a lone one is an error). */
#define DS_JSON_MAX_KEYS 8

typedef struct {
    char *data;                 /* the values found, each NUL-terminated (a value may hold NULs) */
    size_t len, cap;
    long off[DS_JSON_MAX_KEYS]; /* value of key k: data + off[k], n[k] bytes; -1 when absent or null */
    size_t n[DS_JSON_MAX_KEYS];
} DsJsonOut;

/* Parses line (n bytes, an object; surrounding whitespace and a trailing \r are fine) for the
 * string values of keys[0..n_keys). out starts zeroed and is reused across lines. A key whose value
 * is not a string (nor null) is an error. On error returns -1 with "byte B: what" in err (B counts
 * from 1 within the line). */
int ds_json_strings(const char *line, size_t n, const char *const *keys, int n_keys, DsJsonOut *out, char *err,
                    size_t errlen);
void ds_json_out_free(DsJsonOut *out);


/* ---- JSONL corpora (records.c) -----------------------------------------------------------------
 *
 * A JSONL source is read line by line (streamed: the file is never held whole) and each non-blank
 * line becomes one record, rendered to text:
 *   - when the object has both the question field and the answer field (strings), the template
 *         <question> "\n" <answer> ["\n" unless the answer already ends with one]
 *     so a GSM8K line renders as the question, a newline, the worked answer ending "#### 72", and a
 *     newline; the record's prompt is <question> "\n";
 *   - otherwise, when it has the text field (a string), the text as it is; its prompt is the text
 *     up to and including its first newline (all of it when it has none);
 *   - otherwise the line is bad ("no \"question\"/\"answer\" pair and no \"text\" field").
 * A line ends at "\n"; a "\r" before it is dropped (CRLF files), and a last line without "\n" is
 * read like any other (a truncated JSON object on it is a malformed line). Blank lines (only spaces,
 * tabs, \r) are skipped without counting as bad. A malformed line, or one longer than
 * DS_JSONL_MAX_LINE bytes, is an error "PATH:LINE: byte B: what" (B from 1 within the line), or,
 * with skip_bad_lines, skipped and counted. */
#define DS_JSONL_MAX_LINE ((size_t)256 << 20)

typedef struct {
    const char *question, *answer; /* template fields (default "question", "answer") */
    const char *text;              /* single-field records (default "text") */
    int skip_bad_lines;            /* 0: a bad line is an error (default); 1: skip and count it */
} DsJsonlOptions;

void ds_jsonl_options_init(DsJsonlOptions *o);

typedef struct {
    const char *text; /* the rendered record, text[len] == 0; valid until the next call (may hold NULs) */
    size_t len;
    size_t prompt_len; /* text[0..prompt_len) is the prompt (see above), 1 <= prompt_len <= len unless len is 0 */
    long line;         /* 1-based line number in the file */
} DsRecord;

typedef struct DsJsonl DsJsonl;

/* Opens path for reading records. Errors: the file cannot be opened, is a directory or is not a
   regular file ("PATH: ..."). */
int ds_jsonl_open(DsJsonl **out, const char *path, const DsJsonlOptions *o, char *err, size_t errlen);
/* Next record: 1 with *rec filled, 0 at the end of the file, -1 on error (a bad line without
   skip_bad_lines, a read error) with the message in err. */
int ds_jsonl_next(DsJsonl *j, DsRecord *rec, char *err, size_t errlen);
long ds_jsonl_skipped(const DsJsonl *j);  /* bad lines skipped so far */
long ds_jsonl_lines(const DsJsonl *j);    /* lines read so far, blank and bad ones included */
void ds_jsonl_close(DsJsonl *j);          /* NULL is fine */

/* Number of lines of a file (newline bytes, plus one for a last line without a newline), by a
   streaming pass. -1 with "PATH: ..." on error. */
long ds_count_lines(const char *path, char *err, size_t errlen);


/* ---- corpora (corpus.c) ------------------------------------------------------------------------
 *
 * A corpus is one or more sources mixed with weights. A source is a spec string:
 *   builtin:arith     generated worked arithmetic (DS_ARITH_TRAIN_BYTES of training text from
 *                     `seed`, DS_ARITH_VAL_BYTES of validation text from seed ^ DS_ARITH_VAL_SEED_XOR);
 *                     each example is DS_BOS, its text, DS_EOS;
 *   PATH.jsonl        (also .ndjson) JSON lines, one record per line (see records.c); each record is
 *                     DS_BOS, its rendered text, DS_EOS; the last round(val_frac * lines) lines are
 *                     the validation split;
 *   any other PATH    a file of any bytes: DS_BOS then the file's bytes; the last
 *                     round(val_frac * (size + 1)) bytes are the validation split.
 * Text is encoded with the corpus's tokenizer (NULL: bytes). Files are streamed in blocks, never
 * held whole, and a block is cut at a BPE chunk boundary (ds_bpe_safe_split), so the tokens equal
 * those of encoding the file in one call.
 *
 * Token ids of all sources' training splits lie in one array (source after source), the
 * validation splits in another. With a cache path the two arrays are a token cache file, mapped
 * read-only: a corpus larger than memory trains from the page cache. The file is
 *     "MTPTOKS1", u32 header length, u32 data offset (a multiple of 4096), a msgpack header map
 *     (format, version, tokenizer hash and vocab, val_frac, seed, difficulty, JSONL fields, and per
 *     source its spec, size, mtime and token counts), zero padding, then int32 little-endian
 *     tokens: every training split, then every validation split;
 * it is written to a temp file beside it, fsync'd and renamed, so an interrupted build leaves no
 * file that is later trusted. A cache whose header disagrees with the options (another tokenizer,
 * a source resized or touched, other fields...) is stale and is rebuilt; a cache that is not a
 * token cache at all (bad magic) is an error rather than overwritten. */
#define DS_MAX_SOURCES 16
#define DS_MAX_SPEC 1024                       /* bytes of a source spec, NUL included */
#define DS_BPE_SAMPLE_BYTES ((size_t)64 << 20) /* BPE training reads at most this much training text */
#define DS_CACHE_MAGIC "MTPTOKS1"

typedef struct {
    char spec[DS_MAX_SPEC];
    double weight; /* > 0; sources are drawn with probability weight / sum of weights */
} DsSource;

typedef struct {
    int n_sources;
    DsSource sources[DS_MAX_SOURCES];
    const char *spec;     /* shorthand: with n_sources == 0, this one source with weight 1 */
    double val_frac;      /* files: fraction at the END used for validation, 0 < val_frac < 1 (default 0.1) */
    uint64_t seed;        /* builtin:arith: data seed of the training stream; the validation stream uses its own seed derived from it */
    int difficulty;       /* builtin:arith: 0 = mixed levels (default), 1..DS_ARITH_MAX_DIFFICULTY = one level */
    size_t min_tokens;    /* each source's training split, and all validation splits together, must hold at least
                             this many tokens (the caller passes ctx+1), else a clear error */
    DsJsonlOptions jsonl; /* fields and bad-line policy of .jsonl sources */
    const DsBpe *tokenizer; /* NULL: bytes */
    const char *cache_path; /* NULL: tokens in memory; else the token cache file to use or (re)build */
    int val_only;         /* 1: the training splits are left empty (evaluation needs only validation) */
    int quiet;            /* 0: a line on stderr when a cache is (re)built, and progress on long builds */
} DsOptions;

typedef struct {
    int32_t *train; size_t n_train;   /* training splits, token ids (source after source) */
    int32_t *val;   size_t n_val;     /* validation splits */
    int n_parts;                      /* sources; 0 (a hand-made corpus) counts as one */
    size_t part_start[DS_MAX_SOURCES + 1]; /* source i's training tokens: train[part_start[i] .. part_start[i+1]) */
    double part_cum[DS_MAX_SOURCES];  /* cumulative normalized weights, last one 1 */
    long skipped_lines;               /* bad JSONL lines skipped (skip_bad_lines) */
    int from_cache;                   /* 1: mapped from the cache file, 2: ... which this call (re)built */
    void *map; size_t map_size;       /* the cache mapping, or NULL (train and val are then allocations) */
    char desc[512];                   /* human-readable: "tinyshakespeare.txt: 1115394 bytes, 1003855 train / 111540 val tokens" */
} DsCorpus;

/* Fills opt with the defaults: no source, val_frac 0.1, seed 1, difficulty 0, min_tokens 2, the
   default JSONL options, byte tokenizer, no cache. */
void ds_options_init(DsOptions *opt);

/* Parses a --data argument "SPEC[:WEIGHT]" into src: when the whole argument names an existing file,
   or what follows its last ':' is not a number, it is all spec with weight 1 ("builtin:arith",
   "a.txt", "builtin:arith:0.3" -> weight 0.3). A weight must be finite and > 0. */
int ds_source_parse(DsSource *src, const char *arg, char *err, size_t errlen);

/* Loads (or maps, or builds) the corpus of opt into c (which need not be initialized). On error
   returns -1, leaves c empty (safe to ds_free) and writes a one-line message naming the source. */
int  ds_load(DsCorpus *c, const DsOptions *opt, char *err, size_t errlen);
void ds_free(DsCorpus *c);

/* Training batch over the corpus: each row first draws its source by weight (only when there are
   several), then a window as ds_sample_batch does within that source's training tokens. */
void ds_corpus_sample(int32_t *out, const DsCorpus *c, int B, int T1, MtpRng *rng);

/* The training text of opt's sources, for learning a tokenizer: up to max_bytes in all, each source
   contributing in proportion to its weight (records and examples joined by "\n"). *text is malloc'd. */
int ds_training_text(uint8_t **text, size_t *n, const DsOptions *opt, size_t max_bytes, char *err, size_t errlen);

/* The hash that identifies a tokenizer's encoding (NULL: bytes). */
uint64_t ds_tokenizer_hash(const DsBpe *t);

/* ---- the shared token cache folder (tokcache.c, cachedir.c) -------------------------------------
 *
 * mtp train keeps its token caches in one folder that every model shares: $XDG_CACHE_HOME/mtp/tokens
 * (the XDG base directory convention; an unset, empty or relative XDG_CACHE_HOME means
 * $HOME/.cache). A cache there is named "<key>.tokens", the key being 16 hex digits of
 * ds_cache_key: a hash of everything in the header that decides the tokens except the state of the
 * source files (format version, tokenizer hash and vocabulary, val_frac, val_only, each source by
 * canonical path, builtin:arith's seed and difficulty, the JSONL fields and bad-line policy). Two
 * models trained on the same corpus with the same tokenizer find the same file; a source that
 * changed makes that file stale, and it is rebuilt in place. */
#define DS_CACHE_KEY_HEX 16

/* The key of o's cache (o as ds_load takes it: sources or the spec shorthand). */
uint64_t ds_cache_key(const DsOptions *o);

/* The shared folder into dir (created, mode 0700, with its parents when create is set). -1 with a
   message when there is no HOME to put it in or it cannot be created. */
int ds_cache_dir(char *dir, size_t cap, int create, char *err, size_t errlen);

/* The default cache path of o: "<folder>/<key>.tokens" (the folder created). -1 with a message. */
int ds_cache_default_path(char *path, size_t cap, const DsOptions *o, char *err, size_t errlen);

/* 1 when name (a file name, no folder) is one the folder's caches get: "<16 hex>.tokens". */
int ds_cache_is_cache_name(const char *name);

typedef enum {
    DS_CACHE_CURRENT,  /* well-formed, and every source file as it was when the cache was built */
    DS_CACHE_STALE,    /* well-formed, but a source changed or is gone: the next run rebuilds it */
    DS_CACHE_DAMAGED,  /* the magic is right but the header or the data is not */
    DS_CACHE_FOREIGN,  /* not a token cache (wrong magic, too short, not a regular file) */
} DsCacheStatus;

/* What ds_cache_inspect reads of a cache file. */
typedef struct {
    DsCacheStatus status;
    char reason[DS_MAX_SPEC + 64];   /* why it is stale, damaged or foreign ("" when current) */
    uint64_t bytes;                  /* the file's size */
    int64_t mtime_ns, atime_ns;      /* built; last read (as the filesystem keeps access times) */
    uint64_t tokenizer_hash;         /* the header's, for a cache that is not foreign */
    int64_t vocab;
    uint64_t train_tokens, val_tokens;
    int val_only, n_sources;
    char spec[DS_MAX_SOURCES][DS_MAX_SPEC]; /* the sources as the run that built it named them */
} DsCacheInfo;

/* Reads the cache file at path into info without using or changing it: its header, the data's
   size, and whether each source file is still what the cache was built from (sizes, times and
   content samples; 128 KiB read per source). -1 with a message only when path cannot be
   examined at all (it does not exist, out of memory); a file that is not a cache is FOREIGN. */
int ds_cache_inspect(const char *path, DsCacheInfo *info, char *err, size_t errlen);


/* ---- held-out problems (problems.c) --------------------------------------------------------------
 *
 * The questions of a corpus's validation split with their final answers, for checking generated
 * chains of thought: builtin:arith's validation examples (the prompt is the question line, newline
 * included), and the validation records of .jsonl sources (the prompt is the record's prompt, see
 * records.c). The answer is ds_answer_extract of the whole record; records without one are left
 * out. Plain text files have no problems. */
typedef struct {
    char *text;        /* the whole record (prompt, then the reference chain), NUL-terminated */
    size_t len, prompt_len;
    char answer[64];   /* normalized reference answer */
} DsProblem;

/* Up to limit problems (0: all) of opt's sources, source after source, into a new array. An error
   when no source can give any ("... has no held-out problems: use a .jsonl file or builtin:arith"). */
int ds_heldout_problems(DsProblem **out, int *n, const DsOptions *opt, int limit, char *err, size_t errlen);
/* The same from the training split (builtin:arith's training stream, a .jsonl file's training lines),
   for training on problems (mtp star). */
int ds_train_problems(DsProblem **out, int *n, const DsOptions *opt, int limit, char *err, size_t errlen);
/* Removes from p[0..n) every problem whose prompt is that of one of drop[0..n_drop) (freeing it),
   keeping the order; returns the new count. Training on problems must never see a held-out one,
   and two streams or lines can repeat a short question. O(n * n_drop) prompt compares. */
int ds_problems_drop(DsProblem *p, int n, const DsProblem *drop, int n_drop);
void ds_problems_free(DsProblem *p, int n);

/* STaR's filter (Zelikman et al. 2022; rejection-sampling fine-tuning, Yuan et al. 2023): of a
   problem's n sampled chains (chains[s], lens[s] bytes), the indices of the distinct ones whose
   answer (ds_answer_extract) is ref, in order, into keep; returns their count. */
int ds_star_filter(int *keep, const char *const *chains, const size_t *lens, int n, const char *ref);

#endif
