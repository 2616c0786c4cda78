/* fuzz_jsonl.c - libFuzzer target: the JSON lines reader (json.c) with the record templates
 * (records.c) on any bytes, read as a JSONL corpus file is.
 *
 * The input is the file. It is read three ways: strictly with the default fields (question/answer
 * template, text field), which stops at the first bad line; with --skip-bad-lines, which reads to
 * the end; and with other field names (--fields q,a and --fields body). Every record must be
 * well-formed (its text NUL-terminated, its prompt inside it, lines counted up), its final answer
 * is extracted as eval --task answers does, and the line count must agree with ds_count_lines. */
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    /* lines longer than this are errors: small enough for fuzzed inputs to reach that path */
    setenv("MTP_JSONL_MAX_LINE", "2048", 1);
    return 0;
}

static void read_all(const char *path, const DsJsonlOptions *o, long file_lines) {
    DsJsonl *j = NULL;
    char err[512] = "";
    if (ds_jsonl_open(&j, path, o, err, sizeof err)) {
        fuzz_check_message(err);
        FUZZ_CHECK(j == NULL, "a failed open returned a reader");
        return;
    }
    DsRecord rec;
    int r;
    long last = 0, records = 0;
    while ((r = ds_jsonl_next(j, &rec, err, sizeof err)) == 1) {
        records++;
        FUZZ_CHECK(rec.text && rec.text[rec.len] == 0, "record text not NUL-terminated");
        FUZZ_CHECK(rec.len == 0 || (rec.prompt_len >= 1 && rec.prompt_len <= rec.len), "prompt %zu of %zu",
                   rec.prompt_len, rec.len);
        FUZZ_CHECK(rec.line > last && rec.line <= ds_jsonl_lines(j), "line %ld after %ld", rec.line, last);
        last = rec.line;
        char answer[64];
        int a = ds_answer_extract(rec.text, rec.len, answer, sizeof answer);
        FUZZ_CHECK(a == -1 ? answer[0] == 0 : (a >= 1 && (size_t)a == strlen(answer)), "answer %d '%s'", a, answer);
    }
    if (r < 0) fuzz_check_message(err);
    else if (file_lines >= 0) {
        FUZZ_CHECK(ds_jsonl_lines(j) == file_lines, "read %ld lines, ds_count_lines says %ld", ds_jsonl_lines(j),
                   file_lines);
        FUZZ_CHECK(records + ds_jsonl_skipped(j) <= file_lines, "more records than lines");
    }
    FUZZ_CHECK(o->skip_bad_lines || ds_jsonl_skipped(j) == 0, "skipped a line without skip_bad_lines");
    ds_jsonl_close(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file(data, size);
    char err[512] = "";
    long lines = ds_count_lines(path, err, sizeof err);
    if (lines < 0) fuzz_check_message(err);
    DsJsonlOptions o;
    ds_jsonl_options_init(&o);
    read_all(path, &o, lines);
    o.skip_bad_lines = 1;
    read_all(path, &o, lines);
    o.question = "q", o.answer = "a", o.text = "body";
    read_all(path, &o, lines);
    return 0;
}
