/* bpe.c - byte-level BPE tokenizer: pre-tokenization into chunks, training with incremental pair
 * counts, the merge table, encoding with a per-call chunk cache, and decoding.
 *
 * Training works on unique chunks (words) weighted by their frequency, as in GPT-2 and Hugging
 * Face tokenizers: text has few distinct words, so each merge only rewrites the words that hold
 * the merged pair (found through a pair -> words index) and adjusts the counts of the pairs it
 * touches. A max-heap with lazy re-insertion finds the next pair. Encoding cuts the input into the
 * same chunks and, since natural text repeats its words, reuses the tokens of a chunk seen before
 * in the same call; a new chunk is encoded by applying its lowest-rank merge until none applies.
 *
 * Memory: training holds the unique chunks as int32 symbols, one entry per distinct adjacent pair
 * (with the list of words holding it) and a heap of at most one entry per pair; nothing grows with
 * vocab^2. A tokenizer holds its merges, a pair -> rank map and the bytes of every token (at most
 * DS_BPE_MAX_CHUNK each). */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/ds.h"
#include "mtp/core/core.h"

/* versions the encoding: the pre-tokenization rule and the id layout. Change it with either. */
static const char BPE_FORMAT_TAG[] = "mtp-bpe-v1 chunks64 ids259";

/* ---- pre-tokenization (the rule is documented in ds.h) ---- */

enum { CL_LETTER, CL_DIGIT, CL_PUNCT, CL_NEWLINE, CL_BLANK };

static inline int byte_class(uint8_t b) {
    /* b | 0x20 folds A-Z onto a-z and maps no other byte below 0x80 into a-z */
    if (b >= 0x80 || ((b | 0x20) >= 'a' && (b | 0x20) <= 'z')) return CL_LETTER;
    if (b >= '0' && b <= '9') return CL_DIGIT;
    if (b == '\n' || b == '\r') return CL_NEWLINE;
    if (b == ' ' || b == '\t') return CL_BLANK;
    return CL_PUNCT;
}

/* a class that a single leading space joins */
static inline int takes_space(int c) { return c == CL_LETTER || c == CL_DIGIT || c == CL_PUNCT; }

/* Length of the chunk that starts at b (n >= 1 bytes left): 1..DS_BPE_MAX_CHUNK. */
static size_t chunk_len(const uint8_t *b, size_t n) {
    size_t lim = n < DS_BPE_MAX_CHUNK ? n : DS_BPE_MAX_CHUNK;
    size_t i = 0;
    int c = byte_class(b[0]);
    if (b[0] == ' ' && n > 1 && takes_space(byte_class(b[1]))) {
        i = 1;
        c = byte_class(b[1]);
    }
    if (c == CL_DIGIT) return i + 1;
    size_t j = i + 1;
    while (j < lim && byte_class(b[j]) == c) j++;
    if (c == CL_BLANK) {
        /* j < lim or the class test failed: j is the true end of the run, not the length cut */
        if (j < n && j >= 2 && b[j - 1] == ' ' && takes_space(byte_class(b[j]))) j--;
    } else if (c == CL_LETTER && j == lim && j < n && byte_class(b[j]) == CL_LETTER) {
        /* cut before a UTF-8 lead byte, so the characters on both sides stay whole */
        for (size_t k = j; k + 3 >= j && k > i; k--)
            if ((b[k] & 0xC0) != 0x80) return k;
    }
    return j;
}

size_t ds_bpe_safe_split(const uint8_t *bytes, size_t n) {
    /* a chunk's end depends on at most the byte after it, so every chunk that ends before n is
       final: only the last one might grow (or split differently) once more bytes follow */
    size_t pos = 0, last = 0;
    while (pos < n) {
        last = pos;
        pos += chunk_len(bytes + pos, n - pos);
    }
    return last;
}

/* FNV-1a: chunks are short, and one multiply per byte is cheap next to the chunk scan */
static inline uint32_t chunk_hash(const uint8_t *b, size_t len) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) h = (h ^ b[i]) * 16777619u;
    return h;
}

/* ---- uint64 -> int32 map (open addressing, linear probing): pairs -> merge rank or pair index ---- */

#define MAP_EMPTY UINT64_MAX /* no pair key: ids are below 2^31 */

typedef struct {
    uint64_t *keys;
    int32_t *vals;
    size_t n, bits; /* capacity 2^bits, kept at most half full */
} Map;

static inline uint64_t pair_key(int32_t l, int32_t r) { return (uint64_t)(uint32_t)l << 32 | (uint32_t)r; }

static inline size_t map_slot(uint64_t key, size_t bits) {
    return (size_t)((key * 0x9E3779B97F4A7C15ull) >> (64 - bits));
}

static int map_init(Map *m, size_t want) {
    memset(m, 0, sizeof *m);
    m->bits = 4;
    while (((size_t)1 << m->bits) < 2 * want) m->bits++;
    size_t cap = (size_t)1 << m->bits;
    m->keys = malloc(cap * sizeof *m->keys);
    m->vals = malloc(cap * sizeof *m->vals);
    if (!m->keys || !m->vals) return -1;
    memset(m->keys, 0xFF, cap * sizeof *m->keys); /* MAP_EMPTY */
    return 0;
}

static void map_free(Map *m) {
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

static inline int32_t map_get(const Map *m, uint64_t key) {
    size_t mask = ((size_t)1 << m->bits) - 1;
    for (size_t s = map_slot(key, m->bits);; s = (s + 1) & mask) {
        if (m->keys[s] == key) return m->vals[s];
        if (m->keys[s] == MAP_EMPTY) return -1;
    }
}

/* Inserts key (which must be absent) with val; -1 when growing the table fails. */
static int map_put(Map *m, uint64_t key, int32_t val) {
    if (2 * (m->n + 1) > ((size_t)1 << m->bits)) {
        Map big;
        if (map_init(&big, m->n + 1)) {
            map_free(&big);
            return -1;
        }
        for (size_t s = 0; s < ((size_t)1 << m->bits); s++)
            if (m->keys[s] != MAP_EMPTY) map_put(&big, m->keys[s], m->vals[s]);
        map_free(m);
        *m = big;
    }
    size_t mask = ((size_t)1 << m->bits) - 1, s = map_slot(key, m->bits);
    while (m->keys[s] != MAP_EMPTY) {
        assert(m->keys[s] != key);
        s = (s + 1) & mask;
    }
    m->keys[s] = key;
    m->vals[s] = val;
    m->n++;
    return 0;
}

/* ---- the tokenizer ---- */

struct DsBpe {
    int n_merges;
    int32_t *merges;     /* (n_merges, 2) */
    Map rank;            /* pair_key(left, right) -> merge index */
    uint32_t *tok_off;   /* vocab + 1 offsets into tok_bytes; the specials' spans are empty */
    uint8_t *tok_bytes;
    uint64_t hash;
};

void ds_bpe_free(DsBpe *t) {
    if (!t) return;
    free(t->merges);
    map_free(&t->rank);
    free(t->tok_off);
    free(t->tok_bytes);
    free(t);
}

int ds_bpe_vocab(const DsBpe *t) { return DS_BYTE_VOCAB + t->n_merges; }
int ds_bpe_n_merges(const DsBpe *t) { return t->n_merges; }
const int32_t *ds_bpe_merges(const DsBpe *t) { return t->merges; }
uint64_t ds_bpe_hash(const DsBpe *t) { return t->hash; }

uint64_t ds_fnv1a64(uint64_t h, const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001B3ull;
    return h;
}

static uint64_t fnv1a64_i32(uint64_t h, int32_t v) {
    uint8_t le[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    return ds_fnv1a64(h, le, 4); /* little-endian whatever the host, so the hash is portable */
}

/* Why part id p of merge i is not acceptable, or NULL. */
static const char *bad_part(int32_t p, int i) {
    if (p < 0) return "is negative";
    if (p >= DS_BOS && p <= DS_PAD) return "is a special token (256..258: BOS, EOS, PAD)";
    if (p >= DS_BYTE_VOCAB + i) return "is not defined before this merge";
    return NULL;
}

int ds_bpe_from_merges(DsBpe **out, const int32_t *merges, int n_merges, char *err, size_t errlen) {
    if (err && errlen) err[0] = '\0';
    if (!out) return mtp_fail(err, errlen, "ds_bpe_from_merges: no place for the tokenizer");
    *out = NULL;
    if (n_merges < 0 || n_merges > DS_BPE_MAX_MERGES)
        return mtp_fail(err, errlen, "bpe merge count %d must be between 0 and %d", n_merges, DS_BPE_MAX_MERGES);
    if (n_merges > 0 && !merges) return mtp_fail(err, errlen, "bpe: %d merges but no merge list", n_merges);

    DsBpe *t = calloc(1, sizeof *t);
    int vocab = DS_BYTE_VOCAB + n_merges;
    if (!t || !(t->merges = malloc(((size_t)n_merges * 2 + 1) * sizeof *t->merges)) ||
        !(t->tok_off = malloc(((size_t)vocab + 1) * sizeof *t->tok_off)) || map_init(&t->rank, (size_t)n_merges)) {
        ds_bpe_free(t);
        return mtp_fail(err, errlen, "bpe: out of memory for %d merges", n_merges);
    }
    t->n_merges = n_merges;
    if (n_merges) memcpy(t->merges, merges, (size_t)n_merges * 2 * sizeof *merges);

    /* one pass in merge order, so the message names the first bad merge; token lengths become
       offsets (a merged token is its two parts' bytes) */
    t->tok_off[0] = 0;
    for (int id = 0; id < vocab; id++) {
        uint32_t len = id < 256 ? 1 : 0;
        if (id >= DS_BYTE_VOCAB) {
            int i = id - DS_BYTE_VOCAB;
            int32_t l = merges[2 * i], r = merges[2 * i + 1], p = l;
            const char *why = bad_part(l, i);
            if (!why) why = bad_part(p = r, i);
            if (why) {
                ds_bpe_free(t);
                return mtp_fail(err, errlen, "bpe merge %d (%d, %d): part %d %s (merge %d makes token %d)", i, l, r, p,
                            why, i, id);
            }
            int32_t dup = map_get(&t->rank, pair_key(l, r));
            if (dup >= 0) {
                ds_bpe_free(t);
                return mtp_fail(err, errlen, "bpe merge %d (%d, %d) repeats merge %d", i, l, r, dup);
            }
            len = (t->tok_off[l + 1] - t->tok_off[l]) + (t->tok_off[r + 1] - t->tok_off[r]);
            if (len > DS_BPE_MAX_CHUNK) {
                ds_bpe_free(t);
                return mtp_fail(err, errlen,
                            "bpe merge %d (%d, %d) makes a token of %u bytes, longer than the %d-byte chunk limit", i,
                            l, r, len, DS_BPE_MAX_CHUNK);
            }
            if (map_put(&t->rank, pair_key(l, r), i)) {
                ds_bpe_free(t);
                return mtp_fail(err, errlen, "bpe: out of memory for %d merges", n_merges);
            }
        }
        t->tok_off[id + 1] = t->tok_off[id] + len; /* at most 65539 * 64 bytes: no overflow */
    }
    t->tok_bytes = malloc(t->tok_off[vocab] ? t->tok_off[vocab] : 1);
    if (!t->tok_bytes) {
        ds_bpe_free(t);
        return mtp_fail(err, errlen, "bpe: out of memory for %d merges", n_merges);
    }
    for (int id = 0; id < vocab; id++) {
        uint8_t *dst = t->tok_bytes + t->tok_off[id];
        if (id < 256) {
            dst[0] = (uint8_t)id;
        } else if (id >= DS_BYTE_VOCAB) {
            int32_t l = merges[2 * (id - DS_BYTE_VOCAB)], r = merges[2 * (id - DS_BYTE_VOCAB) + 1];
            uint32_t ll = t->tok_off[l + 1] - t->tok_off[l];
            memcpy(dst, t->tok_bytes + t->tok_off[l], ll);
            memcpy(dst + ll, t->tok_bytes + t->tok_off[r], t->tok_off[r + 1] - t->tok_off[r]);
        }
    }

    uint64_t h = ds_fnv1a64(DS_FNV_OFFSET, BPE_FORMAT_TAG, sizeof BPE_FORMAT_TAG - 1);
    h = fnv1a64_i32(h, n_merges);
    for (int i = 0; i < 2 * n_merges; i++) h = fnv1a64_i32(h, merges[i]);
    t->hash = h;
    *out = t;
    return 0;
}

int ds_bpe_token_bytes(const DsBpe *t, int32_t id, const uint8_t **bytes) {
    if (id < 0 || id >= ds_bpe_vocab(t)) return -1;
    *bytes = t->tok_bytes + t->tok_off[id];
    return (int)(t->tok_off[id + 1] - t->tok_off[id]);
}

size_t ds_bpe_decode(const DsBpe *t, uint8_t *out, size_t cap, const int32_t *ids, size_t n) {
    int vocab = ds_bpe_vocab(t);
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= vocab) continue;
        uint32_t off = t->tok_off[ids[i]], len = t->tok_off[ids[i] + 1] - off;
        if (total < cap) memcpy(out + total, t->tok_bytes + off, cap - total < len ? cap - total : len);
        total += len;
    }
    return total;
}

/* ---- encoding ---- */

static inline int32_t merge_rank(const DsBpe *t, int32_t l, int32_t r) {
    int32_t k = map_get(&t->rank, pair_key(l, r));
    return k < 0 ? INT32_MAX : k;
}

/* Encodes one chunk (len <= DS_BPE_MAX_CHUNK) into out; returns the token count. Applies the
   lowest-rank merge present, leftmost first, until none applies: the same result as applying
   every merge in rank order over the chunk, which is how training segmented it. rank[i] caches
   the rank of pair (sym[i], sym[i+1]), so a step is a scan of ints plus two map lookups. */
static size_t encode_chunk(const DsBpe *t, const uint8_t *b, size_t len, int32_t *out) {
    assert(len >= 1 && len <= DS_BPE_MAX_CHUNK);
    int32_t sym[DS_BPE_MAX_CHUNK], rank[DS_BPE_MAX_CHUNK];
    size_t m = len;
    for (size_t i = 0; i < m; i++) sym[i] = b[i];
    for (size_t i = 0; i + 1 < m; i++) rank[i] = merge_rank(t, sym[i], sym[i + 1]);
    while (m > 1) {
        size_t best = 0;
        int32_t r = INT32_MAX;
        for (size_t i = 0; i + 1 < m; i++)
            if (rank[i] < r) {
                r = rank[i];
                best = i;
            }
        if (r == INT32_MAX) break;
        sym[best] = DS_BYTE_VOCAB + r;
        /* drop sym[best + 1] and the rank of the merged pair; the two neighbouring pairs change */
        memmove(sym + best + 1, sym + best + 2, (m - best - 2) * sizeof *sym);
        memmove(rank + best, rank + best + 1, (m - best - 2) * sizeof *rank);
        m--;
        if (best > 0) rank[best - 1] = merge_rank(t, sym[best - 1], sym[best]);
        if (best + 1 < m) rank[best] = merge_rank(t, sym[best], sym[best + 1]);
    }
    memcpy(out, sym, m * sizeof *out);
    return m;
}

/* A cached chunk points into the call's own input and output: its bytes are bytes[in_off..],
   its tokens out[out_off..], written when it was first encoded. Nothing is copied in. */
typedef struct {
    size_t in_off, out_off;
    uint32_t hash;
    uint8_t len, ntok; /* len 0: empty slot */
} CacheSlot;

size_t ds_bpe_encode(const DsBpe *t, int32_t *out, const uint8_t *bytes, size_t n) {
    /* direct-mapped: a colliding chunk replaces the slot's, so the cache stays bounded and needs
       no eviction policy; 2^15 slots (768 KiB) hold the working set of ordinary text */
    size_t bits = 0;
    if (n >= 4096)
        for (bits = 8; bits < 15 && ((size_t)1 << bits) * 16 < n; bits++) {}
    CacheSlot *cache = bits ? calloc((size_t)1 << bits, sizeof *cache) : NULL; /* NULL: run uncached */
    size_t mask = ((size_t)1 << bits) - 1, k = 0, pos = 0;
    while (pos < n) {
        size_t len = chunk_len(bytes + pos, n - pos);
        if (len == 1) {
            out[k++] = bytes[pos++];
            continue;
        }
        if (!cache) {
            k += encode_chunk(t, bytes + pos, len, out + k);
            pos += len;
            continue;
        }
        uint32_t h = chunk_hash(bytes + pos, len);
        CacheSlot *s = &cache[h & mask];
        if (s->len == len && s->hash == h && memcmp(bytes + s->in_off, bytes + pos, len) == 0) {
            memcpy(out + k, out + s->out_off, s->ntok * sizeof *out); /* an earlier, disjoint span */
            k += s->ntok;
        } else {
            size_t m = encode_chunk(t, bytes + pos, len, out + k);
            *s = (CacheSlot){.in_off = pos, .out_off = k, .hash = h, .len = (uint8_t)len, .ntok = (uint8_t)m};
            k += m;
        }
        pos += len;
    }
    free(cache);
    assert(k <= n);
    return k;
}

/* ---- training ---- */

typedef struct {
    int64_t freq;   /* occurrences of this chunk in the text */
    uint32_t off;   /* its symbols: sym[off .. off + len) */
    int32_t len;    /* shrinks as merges apply */
    int32_t stamp;  /* last merge that rewrote it: the index lists may repeat a word */
} Word;

typedef struct {
    int32_t l, r;
    int64_t count;  /* sum of freq over adjacent occurrences; exact at all times */
    int32_t *words; /* words that held the pair when it was counted; may be stale or repeated */
    int32_t nw, capw;
    int32_t fresh;  /* last merge that created occurrences of it */
} Pair;

typedef struct {
    int64_t count; /* the pair's count when pushed: an upper bound of its count now */
    int32_t pair;
} HeapItem;

typedef struct {
    Word *words;
    int32_t n_words;
    int32_t *sym;
    Pair *pairs;
    int32_t n_pairs, cap_pairs;
    Map pair_ix; /* pair_key -> index in pairs */
    HeapItem *heap;
    size_t n_heap, cap_heap;
    int32_t *fresh; /* pairs that the current merge created occurrences of */
    int32_t n_fresh, cap_fresh;
} Trainer;

/* grows *p (elements of size sz, capacity *cap) to hold need; -1 when out of memory */
static int grow(void **p, size_t sz, size_t need, size_t *cap) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 8;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * sz);
    if (!q) return -1;
    *p = q;
    *cap = c;
    return 0;
}

static int grow32(void **p, size_t sz, int32_t need, int32_t *cap) {
    size_t c = (size_t)*cap;
    if (grow(p, sz, (size_t)need, &c)) return -1;
    *cap = c > INT32_MAX ? INT32_MAX : (int32_t)c;
    return 0;
}

/* heap order: higher count first, then the smaller (left, right): the deterministic tie-break */
static inline int heap_before(const Trainer *T, HeapItem a, HeapItem b) {
    if (a.count != b.count) return a.count > b.count;
    const Pair *x = &T->pairs[a.pair], *y = &T->pairs[b.pair];
    return pair_key(x->l, x->r) < pair_key(y->l, y->r);
}

static void heap_down(Trainer *T, size_t i) {
    HeapItem *h = T->heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= T->n_heap) return;
        if (c + 1 < T->n_heap && heap_before(T, h[c + 1], h[c])) c++;
        if (!heap_before(T, h[c], h[i])) return;
        HeapItem tmp = h[i];
        h[i] = h[c];
        h[c] = tmp;
        i = c;
    }
}

static int heap_push(Trainer *T, int32_t pair) {
    if (grow((void **)&T->heap, sizeof *T->heap, T->n_heap + 1, &T->cap_heap)) return -1;
    size_t i = T->n_heap++;
    T->heap[i] = (HeapItem){T->pairs[pair].count, pair};
    while (i > 0 && heap_before(T, T->heap[i], T->heap[(i - 1) / 2])) {
        HeapItem tmp = T->heap[i];
        T->heap[i] = T->heap[(i - 1) / 2];
        T->heap[(i - 1) / 2] = tmp;
        i = (i - 1) / 2;
    }
    return 0;
}

static HeapItem heap_pop(Trainer *T) {
    HeapItem top = T->heap[0];
    T->heap[0] = T->heap[--T->n_heap];
    heap_down(T, 0);
    return top;
}

/* Adds delta to the count of pair (l, r), creating it if new. Positive deltas come from words
   that now hold the pair: w joins its word list, and during merge m (>= 0) the pair is noted as
   fresh so that it enters the heap once the merge is done. */
static int pair_add(Trainer *T, int32_t l, int32_t r, int64_t delta, int32_t w, int32_t m) {
    uint64_t key = pair_key(l, r);
    int32_t p = map_get(&T->pair_ix, key);
    if (p < 0) {
        assert(delta > 0);
        if (grow32((void **)&T->pairs, sizeof *T->pairs, T->n_pairs + 1, &T->cap_pairs) ||
            map_put(&T->pair_ix, key, T->n_pairs))
            return -1;
        p = T->n_pairs++;
        T->pairs[p] = (Pair){.l = l, .r = r, .fresh = -1};
    }
    Pair *P = &T->pairs[p];
    P->count += delta;
    assert(P->count >= 0);
    if (delta <= 0) return 0;
    if (P->nw == 0 || P->words[P->nw - 1] != w) {
        if (grow32((void **)&P->words, sizeof *P->words, P->nw + 1, &P->capw)) return -1;
        P->words[P->nw++] = w;
    }
    if (m >= 0 && P->fresh != m) {
        P->fresh = m;
        if (grow32((void **)&T->fresh, sizeof *T->fresh, T->n_fresh + 1, &T->cap_fresh)) return -1;
        T->fresh[T->n_fresh++] = p;
    }
    return 0;
}

/* Rewrites word w with every occurrence of (a, b) replaced by x, left to right and without overlap
   (as encode_chunk does), and updates the counts of the pairs around each occurrence. Reading the
   left neighbour from the rewritten prefix makes overlapping runs ("a b a b", "a a a") exact. */
static int merge_word(Trainer *T, int32_t w, int32_t a, int32_t b, int32_t x, int32_t m) {
    Word *W = &T->words[w];
    int32_t *s = T->sym + W->off, len = W->len, o = 0, i = 0;
    int64_t f = W->freq;
    while (i < len) {
        if (i + 1 < len && s[i] == a && s[i + 1] == b) {
            if (o > 0 && (pair_add(T, s[o - 1], a, -f, w, m) || pair_add(T, s[o - 1], x, f, w, m))) return -1;
            if (i + 2 < len && (pair_add(T, b, s[i + 2], -f, w, m) || pair_add(T, x, s[i + 2], f, w, m))) return -1;
            if (pair_add(T, a, b, -f, w, m)) return -1;
            s[o++] = x;
            i += 2;
        } else {
            s[o++] = s[i++];
        }
    }
    W->len = o;
    return 0;
}

/* Counts the unique chunks of text into T->words (chunks of one byte hold no pair: left out). */
static int count_words(Trainer *T, const uint8_t *text, size_t n) {
    typedef struct {
        uint32_t off, hash;
        int64_t freq; /* 0: empty */
        uint8_t len;
    } Slot;
    size_t bits = 10, used = 0;
    Slot *tab = calloc((size_t)1 << bits, sizeof *tab);
    if (!tab) return -1;
    for (size_t pos = 0; pos < n;) {
        size_t len = chunk_len(text + pos, n - pos);
        if (len < 2) {
            pos += len;
            continue;
        }
        if (2 * (used + 1) > ((size_t)1 << bits)) { /* keep it at most half full */
            Slot *big = calloc((size_t)1 << (bits + 1), sizeof *big);
            if (!big) {
                free(tab);
                return -1;
            }
            for (size_t s = 0; s < ((size_t)1 << bits); s++) {
                if (!tab[s].freq) continue;
                size_t d = tab[s].hash & (((size_t)1 << (bits + 1)) - 1);
                while (big[d].freq) d = (d + 1) & (((size_t)1 << (bits + 1)) - 1);
                big[d] = tab[s];
            }
            free(tab);
            tab = big;
            bits++;
        }
        uint32_t h = chunk_hash(text + pos, len);
        size_t mask = ((size_t)1 << bits) - 1, s = h & mask;
        while (tab[s].freq && !(tab[s].hash == h && tab[s].len == len && !memcmp(text + tab[s].off, text + pos, len)))
            s = (s + 1) & mask;
        if (!tab[s].freq) {
            tab[s] = (Slot){.off = (uint32_t)pos, .hash = h, .len = (uint8_t)len};
            used++;
        }
        tab[s].freq++;
        pos += len;
    }
    size_t total = 0;
    T->words = malloc((used ? used : 1) * sizeof *T->words);
    for (size_t s = 0; s < ((size_t)1 << bits); s++) total += tab[s].freq ? tab[s].len : 0;
    T->sym = malloc((total ? total : 1) * sizeof *T->sym);
    if (!T->words || !T->sym) {
        free(tab);
        return -1;
    }
    uint32_t off = 0;
    for (size_t s = 0; s < ((size_t)1 << bits); s++) {
        if (!tab[s].freq) continue;
        T->words[T->n_words++] = (Word){.freq = tab[s].freq, .off = off, .len = tab[s].len, .stamp = -1};
        for (size_t i = 0; i < tab[s].len; i++) T->sym[off++] = text[tab[s].off + i];
    }
    free(tab);
    return 0;
}

static void trainer_free(Trainer *T) {
    for (int32_t p = 0; p < T->n_pairs; p++) free(T->pairs[p].words);
    free(T->pairs);
    free(T->words);
    free(T->sym);
    map_free(&T->pair_ix);
    free(T->heap);
    free(T->fresh);
}

/* Learns up to max_merges merges into merges (2 per merge); returns the count, or -1 when out of memory. */
static int learn(Trainer *T, const uint8_t *text, size_t n, int max_merges, int32_t *merges) {
    if (count_words(T, text, n) || map_init(&T->pair_ix, 1024)) return -1;
    for (int32_t w = 0; w < T->n_words; w++) {
        const int32_t *s = T->sym + T->words[w].off;
        for (int32_t i = 0; i + 1 < T->words[w].len; i++)
            if (pair_add(T, s[i], s[i + 1], T->words[w].freq, w, -1)) return -1;
    }
    /* only pairs seen twice can ever be merged: counts of existing pairs never grow */
    for (int32_t p = 0; p < T->n_pairs; p++)
        if (T->pairs[p].count >= 2 && heap_push(T, p)) return -1;

    int m = 0;
    while (m < max_merges && T->n_heap > 0) {
        HeapItem top = heap_pop(T);
        Pair *P = &T->pairs[top.pair];
        if (top.count != P->count) { /* stale: its count fell since the push; requeue at the true count */
            assert(top.count > P->count);
            if (P->count >= 2 && heap_push(T, top.pair)) return -1;
            continue;
        }
        /* the top is exact, and every other entry bounds its pair's count from above: this is the max */
        int32_t a = P->l, b = P->r, x = DS_BYTE_VOCAB + m, *ws = P->words, nw = P->nw;
        P->words = NULL; /* detached: this pair's occurrences are all about to go */
        P->nw = P->capw = 0;
        merges[2 * m] = a;
        merges[2 * m + 1] = b;
        T->n_fresh = 0;
        for (int32_t k = 0; k < nw; k++) {
            if (T->words[ws[k]].stamp == m) continue;
            T->words[ws[k]].stamp = m;
            if (merge_word(T, ws[k], a, b, x, m)) {
                free(ws);
                return -1;
            }
        }
        free(ws);
        assert(T->pairs[top.pair].count == 0);
        /* pairs with the new token only grow during this merge, so each enters the heap once, now */
        for (int32_t k = 0; k < T->n_fresh; k++)
            if (T->pairs[T->fresh[k]].count >= 2 && heap_push(T, T->fresh[k])) return -1;
        m++;
    }
    return m;
}

int ds_bpe_train(DsBpe **out, const uint8_t *text, size_t n, int vocab, char *err, size_t errlen) {
    if (err && errlen) err[0] = '\0';
    if (!out) return mtp_fail(err, errlen, "ds_bpe_train: no place for the tokenizer");
    *out = NULL;
    if (vocab < DS_BPE_MIN_VOCAB || vocab > DS_BPE_MAX_VOCAB)
        return mtp_fail(err, errlen, "bpe vocabulary %d must be between %d and %d", vocab, DS_BPE_MIN_VOCAB,
                    DS_BPE_MAX_VOCAB);
    if (n > (size_t)INT32_MAX)
        return mtp_fail(err, errlen, "bpe training text of %zu bytes is over the %d-byte limit", n, INT32_MAX);
    if (n > 0 && !text) return mtp_fail(err, errlen, "bpe: no training text");

    int max_merges = vocab - 256;
    int32_t *merges = malloc((size_t)max_merges * 2 * sizeof *merges);
    Trainer T = {0};
    int got = merges ? learn(&T, text, n, max_merges, merges) : -1;
    trainer_free(&T);
    if (got < 0) {
        free(merges);
        return mtp_fail(err, errlen, "bpe: out of memory training on %zu bytes", n);
    }
    int rc = ds_bpe_from_merges(out, merges, got, err, errlen);
    free(merges);
    return rc;
}
