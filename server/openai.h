/* openai.h: the OpenAI-compatible JSON <-> request/response translation used by
 * `ember serve` (docs/server.md). Pure functions over byte buffers: no sockets, no
 * model, no threads, so it can be unit-tested (tests/test_openai.c) and fuzzed
 * (fuzz/fuzz_openai.c) on its own. Depends on cJSON and on ember.h only for the
 * ember_sampler_params struct.
 *
 * Invariants: every string a builder returns is valid UTF-8 JSON (invalid bytes in
 * generated text become U+FFFD) and is malloc'ed (caller frees); a parsed request owns all
 * of its strings; oai_request_free() on a zeroed or partially filled request is safe. */
#ifndef EMBER_TOOLS_OPENAI_H
#define EMBER_TOOLS_OPENAI_H
#include <stddef.h>
#include <stdint.h>
#include "ember.h"

#define OAI_MAX_STOP 16         /* stop strings per request (OpenAI allows 4) */
#define OAI_MAX_PROMPTS 64      /* prompts in one /v1/completions array */

typedef enum oai_kind { OAI_CHAT, OAI_COMPLETION } oai_kind;

typedef struct oai_message { char *role; char *content; } oai_message;

/* One /v1/completions prompt: text, or token ids when the client sent an id array. */
typedef struct oai_prompt { char *text; int32_t *tokens; int n_tokens; } oai_prompt;

/* The request's "speculative" field (docs/server.md): absent or null: the server's default;
 * false: off; true: on (the server's draft model, else prompt lookup); an object: on, with
 * "lookup": true (prompt lookup) or false (the draft model) and the optional sizes. */
typedef enum oai_spec_mode { OAI_SPEC_DEFAULT, OAI_SPEC_OFF, OAI_SPEC_ON, OAI_SPEC_LOOKUP, OAI_SPEC_DRAFT } oai_spec_mode;
typedef struct oai_spec {
    oai_spec_mode mode;
    int ngram;                   /* "ngram" / "ngram_size_n": longest lookup n-gram, 1..64; 0: default */
    int n_max, n_min;            /* "n_max" 1..64, "n_min" 0..64: draft length; -1: default */
    double p_min;                /* "p_min" [0, 1]: the draft model's confidence floor; -1: default */
} oai_spec;

typedef struct oai_request {
    oai_kind kind;
    char *model;                 /* as sent, or NULL */
    oai_message *messages;       /* chat: n_messages >= 1 */
    int n_messages;
    oai_prompt *prompts;         /* completions: n_prompts >= 1 */
    int n_prompts;
    int max_tokens;              /* -1: until end of generation or context */
    ember_sampler_params sp;     /* server defaults overridden by the request */
    char *stop[OAI_MAX_STOP];
    int n_stop;
    int stream, include_usage;
    int parse_special;           /* completions: control-token text in the prompt becomes
                                    control tokens ("parse_special": true; default false) */
    oai_spec spec;               /* "speculative" */
} oai_request;

/* An error reply. n_prompt_tokens/n_ctx > 0 add the exceed_context_size_error fields. */
typedef struct oai_error {
    int status;                  /* HTTP status, also "code" in the body */
    const char *type;            /* "invalid_request_error", ... (static string) */
    char message[256];
    int n_prompt_tokens, n_ctx;
} oai_error;

/* draft_n / draft_n_accepted (llama.cpp's server's names) appear when speculative is set:
 * tokens drafted and sent to verification, and of those the ones accepted (counted up to
 * where the generation ended). */
typedef struct oai_usage {
    int prompt_tokens, completion_tokens, cached_tokens;
    int speculative, draft_n, draft_n_accepted;
} oai_usage;

/* Parses a request body of `len` bytes. Returns 0, or the HTTP status (400) with *err
 * filled: malformed JSON or UTF-8, anything but whitespace after the JSON value, wrong
 * field types, numbers outside the library's ranges (ember_sampler_param_range), missing
 * messages/prompt. Unknown fields are ignored. `defaults` seeds req->sp. */
int oai_parse_request(const char *body, size_t len, oai_kind kind,
                      const ember_sampler_params *defaults, oai_request *req, oai_error *err);
void oai_request_free(oai_request *req);

void oai_set_error(oai_error *e, int status, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* {"error":{"code","message","type"[, "n_prompt_tokens","n_ctx"]}} */
char *oai_error_json(const oai_error *e);

/* Non-streamed response with n choices (texts[i], finish[i] = "stop" | "length"). */
char *oai_response_json(oai_kind kind, const char *id, long created, const char *model,
                        const char *const *texts, const char *const *finish, int n,
                        const oai_usage *u);
/* One streamed chunk (the JSON only, without "data: "). role: chat role chunk; finish:
 * the finish chunk (empty delta); usage != NULL: the usage chunk with "choices":[]. */
char *oai_chunk_json(oai_kind kind, const char *id, long created, const char *model,
                     const char *role, const char *content, size_t content_len,
                     const char *finish, const oai_usage *usage);
/* GET /v1/models. */
char *oai_models_json(const char *id, long created, const ember_model *m);

/* UTF-8 helpers for streamed text. */
int oai_utf8_valid(const char *s, size_t n);
/* Length of the longest prefix of s that does not end inside an incomplete (but so far
 * valid) multi-byte sequence: the part that may be sent now. */
size_t oai_utf8_complete_len(const char *s, size_t n);
/* Earliest full stop-string match in text[0..n): returns its offset, or n if none; *hold
 * gets how many trailing bytes could still begin a stop string (held back when streaming). */
size_t oai_stop_scan(const char *text, size_t n, char *const *stops, int n_stop, size_t *hold);
#endif
