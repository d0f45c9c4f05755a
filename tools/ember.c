/* ember.c: the `ember` command: dispatch to one subcommand per file (cmd_*.c). */
#include <stdio.h>
#include <string.h>
#include "common.h"

#ifdef EMBER_NO_SERVE  /* built without libmicrohttpd/cJSON (see the Makefile) */
int cmd_serve(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "error: this ember was built without the server: install libmicrohttpd-dev and "
                    "libcjson-dev, then rebuild (make clean && make)\n");
    return 1;
}
#endif

static void usage(FILE *f) {
    fprintf(f,
        "ember %s: run language models on CPUs\n\n"
        "usage: ember <command> [options]    (ember <command> -h, or ember help <command>: its options)\n\n"
        "commands:\n"
        "  run         generate a continuation of a prompt\n"
        "  chat        interactive chat with the model's chat template\n"
        "  info        model architecture, hyper-parameters, tensor types, sizes\n"
        "  tokenize    print the token ids (or --pieces) of -p TEXT / -f FILE\n"
        "  detokenize  print the text of token ids\n"
        "  bench       llama-bench-style pp/tg throughput (see 'ember bench -h')\n"
        "  perplexity  llama.cpp's perplexity and KL divergence of a text (see 'ember perplexity -h')\n"
        "  quantize    IN.gguf OUT.gguf TYPE: llama-quantize's types and mixes (see 'ember quantize -h')\n"
        "  imatrix     llama-imatrix's importance matrix of a text, for quantize (see 'ember imatrix -h')\n"
        "  serve       OpenAI-compatible HTTP server: --host 127.0.0.1 --port 8080 -np 4\n"
        "              --api-key-file F --cors ORIGIN -a ALIAS (see 'ember serve -h'; chat page at /)\n\n"
        "common options:\n"
        "  -m FILE             model (.gguf, or llama2.c .bin with -z TOKENIZER);\n"
        "                      default %s\n"
        "  -p TEXT | -f FILE   prompt (run, tokenize); -f - reads standard input\n"
        "  -n N                tokens to generate (-1: until end of text or context)\n"
        "  -c N                context size (0: model's, at most 4096)\n"
        "  -t N                threads (default: physical cores)\n"
        "  -ctk T / -ctv T     K / V cache type: f32, f16 (default), bf16, q8_0, q4_0, bfp4\n"
        "  -s SEED             sampling seed (-1: random)\n"
        "  --temp T --top-k K --top-p P --min-p P --repeat-penalty R --repeat-last-n N\n"
        "                      sampling (llama.cpp defaults 0.8 40 0.95 0.05 1.0 64; --temp 0 is greedy)\n"
        "  --ids               print generated token ids instead of text\n"
        "  --ignore-eos        keep generating past end-of-generation tokens\n"
        "  --no-bos            do not add BOS   --special  parse/print control tokens\n"
        "  -sys TEXT           chat system prompt   --chat-template NAME  chatml, qwen3, llama2, llama3, mistral, zephyr, phi3, gemma, ...\n"
        "  -z FILE             llama2.c tokenizer.bin   --isa NAME  kernel set (ref, ...)\n"
        "  -v                  print model, seed and timings to stderr\n",
        ember_version(), DEFAULT_MODEL);
}

static const struct { const char *name; int (*fn)(int, char **); } commands[] = {
    { "run", cmd_run }, { "chat", cmd_chat }, { "info", cmd_info }, { "tokenize", cmd_tokenize },
    { "detokenize", cmd_detokenize }, { "bench", cmd_bench }, { "perplexity", cmd_perplexity },
    { "quantize", cmd_quantize }, { "imatrix", cmd_imatrix },
    { "serve", cmd_serve },
};

static int (*find_command(const char *name))(int, char **) {
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (!strcmp(name, commands[i].name)) return commands[i].fn;
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) { usage(stderr); return 1; }
    ember_log_set(cli_log, NULL);  /* load-time warnings from the library, as "warning: ..." */
    const char *cmd = argv[1];
    if (!strcmp(cmd, "help") || !strcmp(cmd, "-h") || !strcmp(cmd, "--help")) {
        if (argc < 3) { usage(stdout); return 0; }
        int (*fn)(int, char **) = find_command(argv[2]);  /* `ember help run` = `ember run --help` */
        if (!fn) { fprintf(stderr, "error: unknown command '%s' (see 'ember help')\n", argv[2]); return 1; }
        char help[] = "--help";
        char *hargv[] = { help, NULL };
        cli_command = argv[2];
        return fn(1, hargv);
    }
    if (!strcmp(cmd, "--version")) { printf("ember %s\n", ember_version()); return 0; }
    int (*fn)(int, char **) = find_command(cmd);
    if (!fn) {
        fprintf(stderr, "error: unknown command '%s'\n\n", cmd);
        usage(stderr);
        return 1;
    }
    cli_command = cmd;
    return fn(argc - 2, argv + 2);
}
