/* common.h: what the ember subcommands share: the llama.cpp-style flags, the default
 * model path, model/context set-up, and a streaming printer that never emits a broken
 * UTF-8 sequence when a character spans several tokens. */
#ifndef EMBER_TOOLS_COMMON_H
#define EMBER_TOOLS_COMMON_H
#include <stdio.h>
#include "ember.h"

#define DEFAULT_MODEL "models/SmolLM2-135M-Instruct.Q4_1.gguf"
/* --spec-overlap when neither it nor --no-spec-overlap is given (SPECULATIVE.md measures both) */
#define SPEC_OVERLAP_DEFAULT 0

typedef struct opts {
    const char *model;        /* -m */
    const char *prompt;       /* -p */
    const char *prompt_file;  /* -f */
    const char *tokenizer;    /* -z (llama2.c checkpoints) */
    const char *system;       /* -sys (chat) */
    const char *chat_template;/* --chat-template NAME */
    const char *isa;          /* --isa */
    const char *cache_k, *cache_v; /* -ctk / -ctv: K and V cache types (NULL: f16) */
    const char *kv_policy;    /* --kv-policy full|shift (--context-shift); NULL: chat shift, else full */
    int n_keep;               /* --keep N: tokens kept by a context shift, after BOS */
    int n_sink, n_window;     /* --kv-sink, --kv-window (sink, elastic); 0: the library's defaults */
    float kv_ratio;           /* --kv-ratio (elastic); 0: the library's default */
    int n_predict;            /* -n; -1 = until end of generation or context */
    int n_ctx, n_threads, n_batch;
    int ids;                  /* --ids: print generated ids instead of text */
    int ignore_eos;           /* --ignore-eos */
    int no_bos;               /* --no-bos */
    int special;              /* --special: parse/print control tokens */
    int pieces;               /* --pieces (tokenize) */
    int verbose;              /* -v */
    int progress;             /* --progress: prompt progress on stderr even when it is no terminal */
    ember_sampler_params sp;
    /* speculative decoding (run, chat, serve) */
    const char *model_draft;  /* -md: a draft model with the target's vocabulary */
    int lookup;               /* --lookup: prompt-lookup drafts */
    ember_spec_params spec;   /* --draft-max, --draft-min, --draft-p-min, --lookup-ngram */
    int n_threads_draft;      /* -td: the draft model's threads (0: as -t) */
    int spec_overlap;         /* --spec-overlap 1, --no-spec-overlap 0, neither -1 (the default) */
    uint64_t mem_budget;      /* --mem-budget SIZE (bytes; 0: none) */
    int prefetch;             /* --prefetch N (default 1) */
    char **rest;              /* positional arguments */
    int n_rest;
} opts;

/* The subcommand being run ("run", "chat", ...): set by main, names the -h usage. */
extern const char *cli_command;
/* Prints the usage and flags of a subcommand (run, chat, info, tokenize, detokenize). */
void opts_usage(const char *cmd, FILE *f);
/* Parses argv into o (after the subcommand) and checks the sampling flags against the
 * library's ranges. Returns 0; 1 after printing an error; 2 after printing the usage of
 * cli_command for -h/--help (exit 0). Warns once when -t exceeds the CPUs online. */
int opts_parse(opts *o, int argc, char **argv);
/* Warns once on stderr when n threads exceed the online CPUs (flag names the option). */
void warn_threads(const char *flag, int n);
/* The library's log hook for the CLI: warnings as "warning: ..." on stderr (info and debug
 * messages only with -v). */
void cli_log(ember_log_level level, const char *text, void *user_data);
/* -m, or the default model (models/... relative to the working directory, then to the
 * binary's directory). NULL with a message if the default model is missing. */
const char *opts_model_path(const opts *o);
/* "600M", "2G", "1.5G", "65536": M and G are MiB and GiB, K KiB, no suffix bytes. 0 and
 * *out set, or 1 after printing an error naming flag. */
int parse_size(const char *flag, const char *s, uint64_t *out);
/* Loads the model named by the options; prints the error and returns NULL on failure. */
ember_model *load_model(const opts *o, int vocab_only);
/* The prompt: -p, or the bytes of -f's file ("-": standard input), NUL bytes included;
 * *len gets the length (a NUL follows it). Malloc'ed; caller frees. NULL if neither, or
 * after printing an error (a file that cannot be read, or is not a regular file). */
char *read_prompt(const opts *o, size_t *len);

/* Streams token pieces to a FILE, holding back an incomplete UTF-8 tail. */
typedef struct utf8_out { FILE *f; char buf[8]; int n; } utf8_out;
void utf8_put(utf8_out *u, const char *s, int n);
void utf8_flush(utf8_out *u);

int cmd_run(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);  /* cmd_perplexity.c: llama.cpp's perplexity and KL divergence */
int cmd_serve(int argc, char **argv);  /* cmd_serve.c: OpenAI-compatible HTTP server */
int cmd_quantize(int argc, char **argv);  /* cmd_quantize.c: llama-quantize's quantizer */
int cmd_imatrix(int argc, char **argv);   /* cmd_imatrix.c: llama-imatrix's importance matrix */
#endif
