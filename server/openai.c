/* openai.c: JSON <-> request/response translation for `ember serve` (see openai.h).
 * Follows docs/server.md: unknown fields are ignored, wrong types and out-of-range
 * values are 400 invalid_request_error, responses always carry usage, streamed chunks
 * repeat id/created/model. No sockets and no model state here: the server passes in what
 * it knows (ids, counts), so every function is deterministic and fuzzable. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "openai.h"

/* ---- UTF-8 ---------------------------------------------------------------------- */

/* Length of the valid sequence at s[0..n), 0 if invalid, -1 if valid so far but cut off.
 * Strict: no overlong forms, no surrogates, nothing above U+10FFFF (RFC 3629). */
static int utf8_seq(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    int len;
    unsigned lo = 0x80, hi = 0xBF;  /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; if (c == 0xE0) lo = 0xA0; if (c == 0xED) hi = 0x9F; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; if (c == 0xF0) lo = 0x90; if (c == 0xF4) hi = 0x8F; }
    else return 0;
    for (int i = 1; i < len; i++) {
        if ((size_t)i >= n) return -1;
        unsigned b = s[i];
        if (i == 1 ? (b < lo || b > hi) : (b & 0xC0) != 0x80) return 0;
    }
    return len;
}

int oai_utf8_valid(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        int k = utf8_seq(u + i, n - i);
        if (k <= 0) return 0;
        i += (size_t)k;
    }
    return 1;
}

size_t oai_utf8_complete_len(const char *s, size_t n) {
    /* Only the last 3 bytes can start an unfinished sequence. */
    size_t start = n > 3 ? n - 3 : 0;
    for (size_t i = start; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0xC2 && c <= 0xF4 && utf8_seq((const unsigned char *)s + i, n - i) < 0) return i;
    }
    return n;
}

/* Copy of s[0..n) with invalid bytes (and NULs, which would cut the C string) replaced
 * by U+FFFD, so generated text always makes valid JSON. */
static char *utf8_sanitize(const char *s, size_t n) {
    char *out = malloc(3 * n + 1);
    if (!out) return NULL;
    size_t o = 0;
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        int k = u[i] ? utf8_seq(u + i, n - i) : 0;
        if (k > 0) { memcpy(out + o, s + i, (size_t)k); o += (size_t)k; i += (size_t)k; }
        else { memcpy(out + o, "\xEF\xBF\xBD", 3); o += 3; i++; }
    }
    out[o] = 0;
    return out;
}

size_t oai_stop_scan(const char *text, size_t n, char *const *stops, int n_stop, size_t *hold) {
    size_t best = n, h = 0;
    for (int k = 0; k < n_stop; k++) {
        size_t sl = strlen(stops[k]);
        if (!sl) continue;
        for (size_t i = 0; i + sl <= n && i < best; i++)
            if (!memcmp(text + i, stops[k], sl)) { best = i; break; }
        /* Longest proper prefix of the stop string that ends the text. */
        for (size_t p = sl - 1 < n ? sl - 1 : n; p > h; p--)
            if (!memcmp(text + n - p, stops[k], p)) { h = p; break; }
    }
    if (hold) *hold = best < n ? 0 : h;
    return best;
}

/* ---- errors --------------------------------------------------------------------- */

void oai_set_error(oai_error *e, int status, const char *type, const char *fmt, ...) {
    memset(e, 0, sizeof *e);
    e->status = status;
    e->type = type;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
}

char *oai_error_json(const oai_error *e) {
    cJSON *root = cJSON_CreateObject(), *err = cJSON_AddObjectToObject(root, "error");
    char *msg = utf8_sanitize(e->message, strlen(e->message));
    cJSON_AddNumberToObject(err, "code", e->status);
    cJSON_AddStringToObject(err, "message", msg ? msg : "");
    cJSON_AddStringToObject(err, "type", e->type ? e->type : "server_error");
    if (e->n_prompt_tokens > 0 || e->n_ctx > 0) {
        cJSON_AddNumberToObject(err, "n_prompt_tokens", e->n_prompt_tokens);
        cJSON_AddNumberToObject(err, "n_ctx", e->n_ctx);
    }
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    free(msg);
    return s;
}

/* ---- request parsing -------------------------------------------------------------- */

/* Sets a 400 invalid_request_error; returns -1 so callers can `return BAD(...)`. */
__attribute__((format(printf, 2, 3)))
static int bad(oai_error *err, const char *fmt, ...) {
    char msg[sizeof err->message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    oai_set_error(err, 400, "invalid_request_error", "%s", msg);
    return -1;
}
#define BAD(...) bad(err, __VA_ARGS__)

/* Optional number field: 1 present (in *out), 0 absent or null, -1 wrong type/range. */
static int get_num(const cJSON *o, const char *name, double lo, double hi, int integral,
                   double *out, oai_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsNumber(v)) return BAD("'%s' must be a number", name);
    double d = v->valuedouble;
    if (!isfinite(d) || d < lo || d > hi) return BAD("'%s' is out of range [%g, %g]", name, lo, hi);
    if (integral && d != floor(d)) return BAD("'%s' must be an integer", name);
    *out = d;
    return 1;
}

/* Optional bool field: same return convention as get_num. */
static int get_bool(const cJSON *o, const char *name, int *out, oai_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsBool(v)) return BAD("'%s' must be a boolean", name);
    *out = cJSON_IsTrue(v);
    return 1;
}

static int parse_sampling(const cJSON *o, oai_request *r, oai_error *err) {
    double d;
    int k;
    static const char *const max_names[] = { "max_tokens", "max_completion_tokens", "n_predict" };
    for (int i = 0; i < 3; i++) {
        if ((k = get_num(o, max_names[i], -1, 1 << 30, 1, &d, err)) < 0) return -1;
        if (k && d == 0) return BAD("'%s' must be at least 1 (-1: no limit)", max_names[i]);
        if (k) { r->max_tokens = (int)d; break; }
    }
    /* The ranges come from the library's table (ember_sampler_param_range), so the
     * server and the command line accept exactly the same values. */
    static const struct { const char *json, *lib; int integral; } fields[] = {
        { "temperature", "temp", 0 }, { "top_p", "top_p", 0 }, { "top_k", "top_k", 1 },
        { "min_p", "min_p", 0 }, { "repeat_penalty", "repeat_penalty", 0 },
        { "repeat_last_n", "repeat_last_n", 1 }, { "presence_penalty", "presence_penalty", 0 },
        { "frequency_penalty", "frequency_penalty", 0 },
    };
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) {
        double lo, hi;
        if (ember_sampler_param_range(fields[i].lib, &lo, &hi)) return BAD("internal: no range for '%s'", fields[i].json);
        if ((k = get_num(o, fields[i].json, lo, hi, fields[i].integral, &d, err)) < 0) return -1;
        if (!k) continue;
        switch (i) {
        case 0: r->sp.temp = (float)d; break;
        case 1: r->sp.top_p = (float)d; break;
        case 2: r->sp.top_k = (int)d; break;
        case 3: r->sp.min_p = (float)d; break;
        case 4: r->sp.repeat_penalty = (float)d; break;
        case 5: r->sp.repeat_last_n = (int)d; break;
        case 6: r->sp.presence_penalty = (float)d; break;
        default: r->sp.frequency_penalty = (float)d; break;
        }
    }
    /* Seeds beyond 2^53 lose precision in JSON doubles anyway; negative means random. */
    if ((k = get_num(o, "seed", -9.2e18, 1.8e19, 1, &d, err)) < 0) return -1;
    if (k) r->sp.seed = d < 0 ? 0xFFFFFFFFu : (uint64_t)d;
    if ((k = get_num(o, "n", 1, 1, 1, &d, err)) < 0) return BAD("only 'n': 1 is supported");
    return 0;
}

/* "speculative": false | true | {"lookup": bool, "ngram", "n_max", "n_min", "p_min"}. */
static int parse_speculative(const cJSON *o, oai_request *r, oai_error *err) {
    oai_spec *sp = &r->spec;
    sp->mode = OAI_SPEC_DEFAULT;
    sp->n_max = sp->n_min = -1;
    sp->p_min = -1;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "speculative");
    if (!v || cJSON_IsNull(v)) return 0;
    if (cJSON_IsBool(v)) { sp->mode = cJSON_IsTrue(v) ? OAI_SPEC_ON : OAI_SPEC_OFF; return 0; }
    if (!cJSON_IsObject(v)) return BAD("'speculative' must be a boolean or an object");
    sp->mode = OAI_SPEC_ON;
    int lookup = -1, k;
    double d;
    if (get_bool(v, "lookup", &lookup, err) < 0) return -1;
    if (lookup >= 0) sp->mode = lookup ? OAI_SPEC_LOOKUP : OAI_SPEC_DRAFT;
    static const char *const ngram_names[] = { "ngram", "ngram_size_n" };
    for (int i = 0; i < 2; i++) {
        if ((k = get_num(v, ngram_names[i], 1, 64, 1, &d, err)) < 0) return -1;
        if (k) sp->ngram = (int)d;
    }
    if ((k = get_num(v, "n_max", 1, 64, 1, &d, err)) < 0) return -1;
    if (k) sp->n_max = (int)d;
    if ((k = get_num(v, "n_min", 0, 64, 1, &d, err)) < 0) return -1;
    if (k) sp->n_min = (int)d;
    if ((k = get_num(v, "p_min", 0, 1, 0, &d, err)) < 0) return -1;
    if (k) sp->p_min = d;
    if (sp->n_max >= 0 && sp->n_min > sp->n_max) return BAD("'speculative.n_min' must not exceed 'n_max'");
    return 0;
}

static int parse_stream_stop(const cJSON *o, oai_request *r, oai_error *err) {
    if (get_bool(o, "stream", &r->stream, err) < 0) return -1;
    if (r->kind == OAI_COMPLETION && get_bool(o, "parse_special", &r->parse_special, err) < 0) return -1;
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(o, "stream_options");
    if (so && !cJSON_IsNull(so)) {
        if (!cJSON_IsObject(so)) return BAD("'stream_options' must be an object");
        if (get_bool(so, "include_usage", &r->include_usage, err) < 0) return -1;
    }
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(o, "stop");
    if (!st || cJSON_IsNull(st)) return 0;
    if (cJSON_IsString(st)) {
        if (*st->valuestring && !(r->stop[r->n_stop++] = strdup(st->valuestring))) return BAD("out of memory");
        return 0;
    }
    if (!cJSON_IsArray(st)) return BAD("'stop' must be a string or an array of strings");
    if (cJSON_GetArraySize(st) > OAI_MAX_STOP) return BAD("'stop' has more than %d strings", OAI_MAX_STOP);
    const cJSON *s;
    cJSON_ArrayForEach(s, st) {
        if (!cJSON_IsString(s)) return BAD("'stop' must be a string or an array of strings");
        if (*s->valuestring && !(r->stop[r->n_stop++] = strdup(s->valuestring))) return BAD("out of memory");
    }
    return 0;
}

/* Message content: a string, null (assistant turns with tool calls), or an array of
 * content parts of which only {"type":"text","text":...} can be run by a text model. */
static char *content_text(const cJSON *c, int i, oai_error *err) {
    if (!c || cJSON_IsNull(c)) return strdup("");
    if (cJSON_IsString(c)) return strdup(c->valuestring);
    if (!cJSON_IsArray(c)) { BAD("messages[%d].content must be a string or an array of parts", i); return NULL; }
    size_t len = 0;
    const cJSON *p;
    cJSON_ArrayForEach(p, c) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(p, "type");
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(p, "text");
        if (!cJSON_IsObject(p) || !cJSON_IsString(t)) { BAD("messages[%d].content parts must be objects with a 'type'", i); return NULL; }
        if (strcmp(t->valuestring, "text")) { BAD("messages[%d]: content part type '%.40s' is not supported", i, t->valuestring); return NULL; }
        if (!cJSON_IsString(x)) { BAD("messages[%d]: text part needs a string 'text'", i); return NULL; }
        len += strlen(x->valuestring);
    }
    char *s = malloc(len + 1);
    if (!s) { BAD("out of memory"); return NULL; }
    size_t o = 0;
    cJSON_ArrayForEach(p, c) {
        const char *x = cJSON_GetObjectItemCaseSensitive(p, "text")->valuestring;
        size_t k = strlen(x);
        memcpy(s + o, x, k);
        o += k;
    }
    s[o] = 0;
    return s;
}

static int parse_messages(const cJSON *o, oai_request *r, oai_error *err) {
    const cJSON *ms = cJSON_GetObjectItemCaseSensitive(o, "messages");
    if (!ms) return BAD("'messages' is required");
    if (!cJSON_IsArray(ms)) return BAD("'messages' must be an array");
    int n = cJSON_GetArraySize(ms);
    if (n == 0) return BAD("'messages' must not be empty");
    if (!(r->messages = calloc((size_t)n, sizeof *r->messages))) return BAD("out of memory");
    const cJSON *m;
    cJSON_ArrayForEach(m, ms) {
        int i = r->n_messages;
        if (!cJSON_IsObject(m)) return BAD("messages[%d] must be an object", i);
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        if (!cJSON_IsString(role) || !*role->valuestring) return BAD("messages[%d].role must be a non-empty string", i);
        char *content = content_text(cJSON_GetObjectItemCaseSensitive(m, "content"), i, err);
        if (!content) return -1;
        r->messages[i].content = content;
        r->n_messages++;
        if (!(r->messages[i].role = strdup(role->valuestring))) return BAD("out of memory");
    }
    return 0;
}

/* An array of token ids (all integers in int32 range). 1 yes, 0 not ids, -1 error. */
static int parse_ids(const cJSON *a, oai_prompt *p, oai_error *err) {
    int n = cJSON_GetArraySize(a);
    const cJSON *x;
    cJSON_ArrayForEach(x, a) if (!cJSON_IsNumber(x)) return 0;
    if (!(p->tokens = malloc((size_t)(n ? n : 1) * sizeof *p->tokens))) return BAD("out of memory");
    cJSON_ArrayForEach(x, a) {
        double d = x->valuedouble;
        if (!isfinite(d) || d != floor(d) || d < 0 || d > 2147483647.0) return BAD("token ids must be non-negative integers");
        p->tokens[p->n_tokens++] = (int32_t)d;
    }
    return 1;
}

static int parse_prompt(const cJSON *o, oai_request *r, oai_error *err) {
    const cJSON *pr = cJSON_GetObjectItemCaseSensitive(o, "prompt");
    if (!pr) return BAD("'prompt' is required");
    const char *want = "'prompt' must be a string, an array of strings, or token ids";
    if (!cJSON_IsString(pr) && !cJSON_IsArray(pr)) return BAD("%s", want);
    int n = cJSON_IsString(pr) ? 1 : cJSON_GetArraySize(pr);
    if (n == 0) return BAD("'prompt' must not be empty");
    if (!(r->prompts = calloc((size_t)n, sizeof *r->prompts))) return BAD("out of memory");
    if (cJSON_IsString(pr)) {
        r->n_prompts = 1;
        return (r->prompts[0].text = strdup(pr->valuestring)) ? 0 : BAD("out of memory");
    }
    int k = parse_ids(pr, &r->prompts[0], err);  /* [1, 2, 3]: one tokenized prompt */
    if (k) { r->n_prompts = 1; return k < 0 ? -1 : 0; }
    if (n > OAI_MAX_PROMPTS) return BAD("'prompt' has more than %d entries", OAI_MAX_PROMPTS);
    const cJSON *x;
    cJSON_ArrayForEach(x, pr) {
        oai_prompt *p = &r->prompts[r->n_prompts++];
        if (cJSON_IsString(x)) {
            if (!(p->text = strdup(x->valuestring))) return BAD("out of memory");
        } else if (!cJSON_IsArray(x) || (k = parse_ids(x, p, err)) == 0) return BAD("%s", want);
        else if (k < 0) return -1;
    }
    return 0;
}

int oai_parse_request(const char *body, size_t len, oai_kind kind,
                      const ember_sampler_params *defaults, oai_request *r, oai_error *err) {
    memset(r, 0, sizeof *r);
    memset(err, 0, sizeof *err);
    r->kind = kind;
    r->max_tokens = -1;
    r->sp = defaults ? *defaults : ember_sampler_default_params();
    if (!oai_utf8_valid(body, len)) { BAD("the request body is not valid UTF-8"); return 400; }
    const char *end = NULL;
    cJSON *o = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    if (!o) { BAD("the request body is not valid JSON"); return 400; }
    /* One JSON value, then only whitespace: "{...} garbage" or "{...}{...}" is refused. */
    for (const char *p = end; p < body + len; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            cJSON_Delete(o);
            BAD("the request body has data after the JSON value (at byte %zu)", (size_t)(p - body));
            return 400;
        }
    int rc = -1;
    if (!cJSON_IsObject(o)) { BAD("the request body must be a JSON object"); goto done; }
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(o, "model");
    if (model && !cJSON_IsNull(model) && !cJSON_IsString(model)) { BAD("'model' must be a string"); goto done; }
    if (cJSON_IsString(model) && !(r->model = strdup(model->valuestring))) { BAD("out of memory"); goto done; }
    if (parse_sampling(o, r, err) || parse_stream_stop(o, r, err) || parse_speculative(o, r, err)) goto done;
    rc = kind == OAI_CHAT ? parse_messages(o, r, err) : parse_prompt(o, r, err);
done:
    cJSON_Delete(o);
    return rc ? err->status : 0;
}

void oai_request_free(oai_request *r) {
    if (!r) return;
    for (int i = 0; i < r->n_messages; i++) { free(r->messages[i].role); free(r->messages[i].content); }
    free(r->messages);
    /* parse_prompt may fail half-way through an entry; n_prompts counts it already. */
    for (int i = 0; i < r->n_prompts; i++) { free(r->prompts[i].text); free(r->prompts[i].tokens); }
    if (r->prompts && r->n_prompts == 0) free(r->prompts[0].tokens);
    free(r->prompts);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    free(r->model);
    memset(r, 0, sizeof *r);
}

/* ---- responses -------------------------------------------------------------------- */

static void add_text(cJSON *o, const char *name, const char *s, size_t n) {
    char *t = utf8_sanitize(s ? s : "", s ? n : 0);
    cJSON_AddStringToObject(o, name, t ? t : "");
    free(t);
}

static void add_usage(cJSON *root, const oai_usage *u) {
    cJSON *us = cJSON_AddObjectToObject(root, "usage");
    cJSON_AddNumberToObject(us, "prompt_tokens", u->prompt_tokens);
    cJSON_AddNumberToObject(us, "completion_tokens", u->completion_tokens);
    cJSON_AddNumberToObject(us, "total_tokens", u->prompt_tokens + u->completion_tokens);
    cJSON *d = cJSON_AddObjectToObject(us, "prompt_tokens_details");
    cJSON_AddNumberToObject(d, "cached_tokens", u->cached_tokens);
    if (u->speculative) {
        cJSON_AddNumberToObject(us, "draft_n", u->draft_n);
        cJSON_AddNumberToObject(us, "draft_n_accepted", u->draft_n_accepted);
    }
}

static cJSON *envelope(const char *object, const char *id, long created, const char *model) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "id", id);
    cJSON_AddStringToObject(root, "object", object);
    cJSON_AddNumberToObject(root, "created", (double)created);
    add_text(root, "model", model, strlen(model));
    return root;
}

static char *finish_print(cJSON *root) {
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

char *oai_response_json(oai_kind kind, const char *id, long created, const char *model,
                        const char *const *texts, const char *const *finish, int n,
                        const oai_usage *u) {
    cJSON *root = envelope(kind == OAI_CHAT ? "chat.completion" : "text_completion", id, created, model);
    cJSON *choices = cJSON_AddArrayToObject(root, "choices");
    for (int i = 0; i < n; i++) {
        cJSON *c = cJSON_CreateObject();
        cJSON_AddNumberToObject(c, "index", i);
        if (kind == OAI_CHAT) {
            cJSON *m = cJSON_AddObjectToObject(c, "message");
            cJSON_AddStringToObject(m, "role", "assistant");
            add_text(m, "content", texts[i], strlen(texts[i]));
        } else {
            add_text(c, "text", texts[i], strlen(texts[i]));
            cJSON_AddNullToObject(c, "logprobs");
        }
        cJSON_AddStringToObject(c, "finish_reason", finish[i]);
        cJSON_AddItemToArray(choices, c);
    }
    add_usage(root, u);
    return finish_print(root);
}

char *oai_chunk_json(oai_kind kind, const char *id, long created, const char *model,
                     const char *role, const char *content, size_t content_len,
                     const char *finish, const oai_usage *usage) {
    cJSON *root = envelope(kind == OAI_CHAT ? "chat.completion.chunk" : "text_completion", id, created, model);
    cJSON *choices = cJSON_AddArrayToObject(root, "choices");
    if (usage) { add_usage(root, usage); return finish_print(root); }
    cJSON *c = cJSON_CreateObject();
    cJSON_AddNumberToObject(c, "index", 0);
    if (kind == OAI_CHAT) {
        cJSON *d = cJSON_AddObjectToObject(c, "delta");
        if (role) cJSON_AddStringToObject(d, "role", role);
        if (role || content) add_text(d, "content", content, content_len);
    } else {
        add_text(c, "text", content, content_len);
        cJSON_AddNullToObject(c, "logprobs");
    }
    if (finish) cJSON_AddStringToObject(c, "finish_reason", finish);
    else cJSON_AddNullToObject(c, "finish_reason");
    cJSON_AddItemToArray(choices, c);
    return finish_print(root);
}

char *oai_models_json(const char *id, long created, const ember_model *m) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "object", "list");
    cJSON *data = cJSON_AddArrayToObject(root, "data");
    cJSON *e = cJSON_CreateObject();
    add_text(e, "id", id, strlen(id));
    cJSON_AddStringToObject(e, "object", "model");
    cJSON_AddNumberToObject(e, "created", (double)created);
    cJSON_AddStringToObject(e, "owned_by", "llamacpp");
    if (m) {
        char type[32] = "";
        ember_model_meta_str(m, "tokenizer.ggml.model", type, sizeof type);
        cJSON *meta = cJSON_AddObjectToObject(e, "meta");
        cJSON_AddStringToObject(meta, "vocab_type", !strcmp(type, "llama") ? "spm" : !strcmp(type, "gpt2") ? "bpe" : type);
        cJSON_AddNumberToObject(meta, "n_vocab", ember_model_n_vocab(m));
        cJSON_AddNumberToObject(meta, "n_ctx_train", ember_model_n_ctx_train(m));
        cJSON_AddNumberToObject(meta, "n_embd", ember_model_n_embd(m));
        cJSON_AddNumberToObject(meta, "n_params", (double)ember_model_n_params(m));
        cJSON_AddNumberToObject(meta, "size", (double)ember_model_size(m));
    } else {
        cJSON_AddNullToObject(e, "meta");
    }
    cJSON_AddItemToArray(data, e);
    return finish_print(root);
}
