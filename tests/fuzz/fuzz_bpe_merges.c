/* fuzz_bpe_merges.c - libFuzzer target: BPE merge lists (ds_bpe_from_merges), the list a
 * checkpoint or tokenizer file stores.
 *
 * The input is the merge list as the files hold it: (n, 2) little-endian int32, merge i = (left
 * id, right id) makes id 259 + i; a trailing part of less than 8 bytes is left out. A list that
 * is accepted must give a tokenizer of 259 + n ids whose every token has 1..64 bytes, under which
 * any bytes round-trip (the input itself and a fixed text), and whose safe split points really
 * are safe; a list that is refused, a one-line message. */
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const size_t n = size / 8;
    if (n > DS_BPE_MAX_MERGES) return -1; /* more than the files allow (the loaders refuse it first) */
    int32_t *merges = malloc(n ? n * 8 : 1);
    FUZZ_CHECK(merges != NULL, "out of memory");
    memcpy(merges, data, n * 8);
    DsBpe *t = (DsBpe *)1;
    char err[256] = "";
    int rc = ds_bpe_from_merges(&t, merges, (int)n, err, sizeof err);
    free(merges);
    if (rc) {
        fuzz_check_message(err);
        FUZZ_CHECK(t == NULL, "a refused list returned a tokenizer");
        return 0;
    }
    fuzz_note("loaded");
    FUZZ_CHECK(ds_bpe_n_merges(t) == (int)n && ds_bpe_vocab(t) == DS_BYTE_VOCAB + (int)n, "size");
    for (int32_t id = 0; id < ds_bpe_vocab(t); id++) {
        const uint8_t *b;
        int len = ds_bpe_token_bytes(t, id, &b);
        if (id >= 256 && id < DS_BYTE_VOCAB) FUZZ_CHECK(len == 0, "special %d has %d bytes", id, len);
        else FUZZ_CHECK(len >= 1 && len <= DS_BPE_MAX_CHUNK, "token %d has %d bytes", id, len);
    }
    FUZZ_CHECK(ds_bpe_token_bytes(t, ds_bpe_vocab(t), &(const uint8_t *){0}) == -1, "id past the vocabulary");
    static const char text[] = "the theme of the 1st thesis: 'then' + \"there\"\r\n\n  thereby\xc3\xa9t\xc3\xa9\x00";
    fuzz_roundtrip(t, (const uint8_t *)text, sizeof text - 1);
    fuzz_roundtrip(t, data, size);
    /* the streaming cut: encoding both sides of the safe split equals encoding the whole */
    if (size) {
        size_t p = ds_bpe_safe_split(data, size);
        FUZZ_CHECK(p <= size, "split %zu past %zu", p, size);
        int32_t *whole = malloc(size * sizeof *whole), *parts = malloc(size * sizeof *parts);
        FUZZ_CHECK(whole && parts, "out of memory");
        size_t kw = ds_bpe_encode(t, whole, data, size);
        size_t k1 = ds_bpe_encode(t, parts, data, p);
        size_t k2 = ds_bpe_encode(t, parts + k1, data + p, size - p);
        FUZZ_CHECK(kw == k1 + k2 && memcmp(whole, parts, kw * sizeof *whole) == 0, "split at %zu changes the tokens", p);
        free(whole);
        free(parts);
    }
    ds_bpe_free(t);
    return 0;
}
