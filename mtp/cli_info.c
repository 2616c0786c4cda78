/* cli_info.c - `mtp info`: a checkpoint's configuration, parameter counts, training state and
 * decoding calibration, as text or one JSON object. It reads the file only: the core is never
 * started. */
#include "mtp/cli.h"

static const char *INFO_HELP =
    "usage: mtp info FILE [--json]\n"
    "\n"
    "Print a checkpoint's configuration and parameter counts (embedding, trunk, heads,\n"
    "unembedding), and its training state and decoding calibration if it has them.\n"
    "\n"
    "  --json    one JSON object on stdout instead of text\n";

typedef struct {
    const char *path;
    int json, help;
} InfoArgs;

static int info_parse(int argc, char **argv, InfoArgs *a) {
    *a = (InfoArgs){0};
    CliOpt opts[] = {{"--json", OPT_FLAG, &a->json, 0, 0, 0}, {0}};
    if (cli_parse("info", argc, argv, 2, opts, &a->path, &a->help)) return EXIT_USAGE;
    if (a->help) return fputs(INFO_HELP, stdout), 0;
    if (!a->path) {
        cli_error("info", "missing checkpoint FILE (see mtp info --help)");
        return EXIT_USAGE;
    }
    return 0;
}

static void info_json(const CliModel *cm) {
    const MtpModel *m = &cm->m;
    const MtpCheckpointExtra *x = &cm->x;
    const TrunkConfig *c = &m->cfg.trunk;
    MtpParamCounts p = mtp_param_counts(&m->cfg);
    printf("{\"format\":\"%s\",\"version\":%d,\"file_bytes\":%zu,", MTP_FORMAT_NAME, MTP_FORMAT_VERSION, x->file_size);
    printf("\"config\":{\"vocab\":%d,\"dim\":%d,\"layers\":%d,\"attn_heads\":%d,\"ffn\":%d,\"ctx\":%d,"
           "\"heads\":%d,\"head_type\":\"%s\"},",
           c->vocab, c->dim, c->layers, c->attn_heads, c->ffn, c->ctx, m->cfg.heads.n,
           heads_type_name(m->cfg.heads.type));
    if (m->tokenizer)
        printf("\"tokenizer\":{\"type\":\"bpe\",\"vocab\":%d,\"merges\":%d},", ds_bpe_vocab(m->tokenizer),
               ds_bpe_n_merges(m->tokenizer));
    else printf("\"tokenizer\":{\"type\":\"bytes\",\"vocab\":%d},", DS_BYTE_VOCAB);
    printf("\"params\":{\"embedding\":%zu,\"trunk\":%zu,\"heads\":%zu,\"final_norm\":%zu,\"unembedding\":%zu,"
           "\"total\":%zu},",
           p.embedding, p.trunk, p.heads, p.final_norm, p.unembedding, p.total);
    printf("\"train\":");
    if (x->has_train) printf("{\"step\":%d,\"steps\":%d}", x->step, x->opt.steps);
    else printf("null");
    printf(",\"calibration\":"); /* tokens per pass expected of the tree of k+1 nodes, k = 0.. */
    if (x->has_calibration) {
        printf("{\"positions\":%ld,\"expected\":[", x->cal.positions);
        for (int k = 0; k < x->cal.n_trees; k++) printf("%s%.4f", k ? "," : "", x->cal.expected[k]);
        printf("]}");
    } else printf("null");
    printf("}\n");
}

/* Two lines: the tokens per pass of the trees of 1, 2, 4, ... nodes (and of the largest), and how
   often each drafting head's first candidate was right (given that the heads before it were). */
static void info_calibration(const DecodeCalibration *c) {
    printf("calibration: %ld positions; tokens per pass by tree size:", c->positions);
    for (int k = 0; k < c->n_trees; k++)
        if (((k + 1) & k) == 0 || k == c->n_trees - 1) printf(" %d:%.2f", k + 1, c->expected[k]);
    if (c->n_trees == 0) printf(" none");
    printf("\n");
    if (c->heads < 2) return;
    if (c->heads == 2) printf("             first candidate right, head 2:");
    else printf("             first candidate right, heads 2..%d:", c->heads);
    for (int d = 0; d + 1 < c->heads; d++) printf(" %.0f%%", 100 * c->rate[d][0]);
    printf("\n");
}

static void info_text(const char *path, const CliModel *cm) {
    const MtpModel *m = &cm->m;
    const MtpCheckpointExtra *x = &cm->x;
    const TrunkConfig *c = &m->cfg.trunk;
    MtpParamCounts p = mtp_param_counts(&m->cfg);
    printf("%s: mtp checkpoint version %d, %zu bytes\n", path, MTP_FORMAT_VERSION, x->file_size);
    char tok[64] = "byte tokenizer";
    if (m->tokenizer) snprintf(tok, sizeof tok, "BPE tokenizer of %d tokens", 256 + ds_bpe_n_merges(m->tokenizer));
    printf("config:     vocab %d (%s), dim %d, layers %d, attn-heads %d, ffn %d, ctx %d\n", c->vocab, tok, c->dim,
           c->layers, c->attn_heads, c->ffn, c->ctx);
    printf("heads:      %d %s head%s (head i predicts token t+i)\n", m->cfg.heads.n,
           heads_type_name(m->cfg.heads.type), m->cfg.heads.n == 1 ? "" : "s");
    printf("parameters: %12zu total\n", p.total);
    printf("  embedding   %12zu\n  trunk       %12zu\n  heads       %12zu\n  final norm  %12zu\n"
           "  unembedding %12zu\n",
           p.embedding, p.trunk, p.heads, p.final_norm, p.unembedding);
    if (x->has_train)
        printf("training:   step %d of %d, data %s%s, %s\n", x->step, x->opt.steps, x->run.data_spec,
               x->run.n_sources > 1 ? " (and more)" : "", mtp_precision_name(x->run.precision));
    else
        printf("training:   no optimizer state (cannot be resumed)\n");
    if (x->has_calibration) info_calibration(&x->cal);
}

int cmd_info(int argc, char **argv) {
    InfoArgs a;
    int rc = info_parse(argc, argv, &a);
    if (rc || a.help) return rc;
    CliModel cm = {0};
    const CliOpen how = {.path = a.path, .train_state = 1}; /* the training state is part of the report */
    rc = cli_open_model("info", &how, &cm);
    if (rc == 0 && a.json) info_json(&cm);
    else if (rc == 0) info_text(a.path, &cm);
    cli_close_model(&cm);
    return rc;
}
