/* fuzz_checkpoint.c - libFuzzer target: the checkpoint loader (mtp_checkpoint_load) on any bytes.
 *
 * The input is the whole file. A file that loads is then used as the commands use it: its
 * tokenizer round-trips text, its calibration passes the check generate and bench rely on, and
 * the model and the checkpoint's extras are freed (LeakSanitizer checks every path frees all). A
 * file that fails must give a one-line message. */
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file(data, size);
    MtpModel m;
    MtpCheckpointExtra x;
    char err[1024] = "";
    if (mtp_checkpoint_load(path, &m, &x, err, sizeof err)) {
        fuzz_check_message(err);
        FUZZ_CHECK(m.params == NULL && x.m == NULL && x.v == NULL && !x.has_train, "a failed load kept memory");
        return 0;
    }
    fuzz_note("loaded");
    char msg[256];
    FUZZ_CHECK(mtp_config_check(&m.cfg, msg, sizeof msg) == 0, "a loaded config fails its check: %s", msg);
    FUZZ_CHECK(mtp_tokenizer_vocab(m.tokenizer) <= m.cfg.trunk.vocab, "tokenizer wider than the model");
    FUZZ_CHECK(!x.has_train || (x.m && x.v), "train state without moments");
    if (x.has_calibration) {
        FUZZ_CHECK(decode_calibration_check(&x.cal, msg, sizeof msg) == 0, "loaded calibration fails: %s", msg);
        FUZZ_CHECK(x.cal.heads == m.cfg.heads.n, "calibration of %d heads, model of %d", x.cal.heads, m.cfg.heads.n);
    }
    static const char text[] = "Compute 12 + 7.\n12 + 7 = 19\n#### 19\n \xff\x00 caf\xc3\xa9!";
    fuzz_roundtrip(m.tokenizer, (const uint8_t *)text, sizeof text - 1);
    mtp_checkpoint_extra_free(&x);
    mtp_model_free(&m);
    return 0;
}
