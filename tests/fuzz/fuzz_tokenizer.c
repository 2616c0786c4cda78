/* fuzz_tokenizer.c - libFuzzer target: tokenizer files (mtp_tokenizer_load: a tokenizer file, or
 * the tokenizer of a checkpoint) on any bytes.
 *
 * A file that loads must give a tokenizer under which any bytes round-trip (the input itself and
 * a fixed text) with every id inside its vocabulary; a file that fails, a one-line message. */
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file(data, size);
    DsBpe *t = (DsBpe *)1;
    char err[1024] = "";
    if (mtp_tokenizer_load(path, &t, err, sizeof err)) {
        fuzz_check_message(err);
        FUZZ_CHECK(t == NULL, "a failed load returned a tokenizer");
        return 0;
    }
    fuzz_note("loaded");
    static const char text[] = "Natalia sold clips to 48 of her friends in April.\n#### 72\n\t  x\xe2\x82\xac\x00\x01";
    fuzz_roundtrip(t, (const uint8_t *)text, sizeof text - 1);
    fuzz_roundtrip(t, data, size);
    ds_bpe_free(t);
    return 0;
}
