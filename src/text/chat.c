/* chat.c: chat templates. The GGUF's tokenizer.chat_template (Jinja) is recognised by
 * family from distinctive text in it and rendered by C code written for that family; a
 * template that matches no family is an error that names the --chat-template choices, never
 * a silent ChatML fallback.
 *
 * The spec is transformers' apply_chat_template on each family's official template
 * (tests/golden/chat/templates; goldens by scripts/make_chat_goldens.py, checked byte for
 * byte by tests/test_chat.c). That covers Jinja details such as `| trim` and `.strip()`
 * (Python whitespace), bos/eos tokens (the family's own strings, since the template text does
 * not hold them), default system prompts written into the template (extracted from it),
 * Qwen3's <think> handling and Llama 3.1's date header. Where the official template refuses
 * a conversation (raise_exception: a system message for Gemma or Mistral v0.2), ember
 * renders something sensible instead (the system text goes in front of the first user
 * message, as llama.cpp does). Tool calls are out of scope. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "text/chat.h"
#include "runtime/internal.h"
#include "text/unicode.h"

enum style {
    ST_CHATML, ST_QWEN3, ST_LLAMA2, ST_LLAMA3, ST_LLAMA31, ST_MISTRAL, ST_MISTRAL_NEMO,
    ST_ZEPHYR, ST_PHI3_MINI, ST_PHI3, ST_GEMMA,
};

typedef struct {
    int style;
    int tool_wrap;     /* Qwen: "tool" messages go in a user turn as <tool_response> */
    int today;         /* Llama 3.2: the date comes from strftime_now */
    char sys[1024];    /* ChatML default system prompt ("" none) */
} spec;

static const struct { const char *name; int style; } k_names[] = {
    {"chatml", ST_CHATML}, {"qwen3", ST_QWEN3}, {"llama2", ST_LLAMA2}, {"llama3", ST_LLAMA3},
    {"llama3.1", ST_LLAMA31}, {"mistral", ST_MISTRAL}, {"mistral-nemo", ST_MISTRAL_NEMO},
    {"zephyr", ST_ZEPHYR}, {"phi3", ST_PHI3}, {"phi3-mini", ST_PHI3_MINI}, {"gemma", ST_GEMMA},
};

const char *em_chat_names(void) {
    return "chatml, qwen3, llama2, llama3, llama3.1, mistral, mistral-nemo, zephyr, phi3, phi3-mini, gemma";
}

/* ---- output buffer (snprintf contract) and string helpers ---- */

/* spans (may be NULL) records where message content lands: n_spans counts them all, the
 * first max_spans are stored. */
typedef struct { char *buf; size_t cap, len; ember_span *spans; size_t max_spans, n_spans, span_end; } sbuf;

static void putn(sbuf *b, const char *s, size_t n) {
    if (b->len < b->cap) {
        size_t room = b->cap - b->len - 1, k = n < room ? n : room;
        memcpy(b->buf + b->len, s, k);
        b->buf[b->len + k] = 0;
    }
    b->len += n;
}

static void put(sbuf *b, const char *s) { putn(b, s, strlen(s)); }

/* Text that came from a message (content or role), not from the template: recorded as a
 * span so that the tokenizer never turns it into control tokens. Adjacent spans merge. */
static void cputn(sbuf *b, const char *s, size_t n) {
    if (!n) return;
    if (b->n_spans && b->span_end == b->len) {
        if (b->n_spans <= b->max_spans) b->spans[b->n_spans - 1].len += n;
    } else {
        if (b->n_spans < b->max_spans) b->spans[b->n_spans] = (ember_span){b->len, n};
        b->n_spans++;
    }
    putn(b, s, n);
    b->span_end = b->len;
}

static void cput(sbuf *b, const char *s) { cputn(b, s, strlen(s)); }

static int is_role(const ember_chat_message *m, const char *r) { return m->role && !strcmp(m->role, r); }
static const char *content(const ember_chat_message *m) { return m->content ? m->content : ""; }

/* Python's str.isspace, which Jinja's trim and str.strip() use: Unicode White_Space plus
 * the information separators U+001C..U+001F. */
static int py_space(uint32_t cp) { return em_uisspace(cp) || (cp >= 0x1C && cp <= 0x1F); }

/* Writes s without leading/trailing Python whitespace (str.strip()). */
static void put_strip(sbuf *b, const char *s) {
    size_t n = strlen(s), i = 0, adv, start = 0, end = 0;
    int seen = 0;
    while (i < n) {
        uint32_t cp = em_utf8_decode(s + i, n - i, &adv);
        if (!py_space(cp)) {
            if (!seen) start = i;
            seen = 1;
            end = i + adv;
        }
        i += adv;
    }
    if (seen) cputn(b, s + start, end - start);
}

/* Writes s[0..n) without leading and/or trailing '\n' (Python's strip('\n') family). */
static void put_nl_strip(sbuf *b, const char *s, size_t n, int left, int right) {
    while (left && n && *s == '\n') { s++; n--; }
    while (right && n && s[n - 1] == '\n') n--;
    cputn(b, s, n);
}

/* Concatenates a and c into a new string (NULL on out of memory). */
static char *concat(const char *a, const char *c) {
    size_t na = strlen(a), nc = strlen(c);
    char *s = malloc(na + nc + 1);
    if (!s) return NULL;
    memcpy(s, a, na);
    memcpy(s + na, c, nc + 1);
    return s;
}

/* ---- ChatML: SmolLM2, Qwen2/2.5, OpenHermes...; Qwen3 ---- */

/* Qwen's tool messages: consecutive ones share one user turn. */
static void put_tool(sbuf *b, const ember_chat_message *m, size_t n, size_t i) {
    if (i == 0 || !is_role(&m[i - 1], "tool")) put(b, "<|im_start|>user");
    put(b, "\n<tool_response>\n"); cput(b, content(&m[i])); put(b, "\n</tool_response>");
    if (i + 1 == n || !is_role(&m[i + 1], "tool")) put(b, "<|im_end|>\n");
}

static void turn(sbuf *b, const char *role, const char *text) {
    put(b, "<|im_start|>"); cput(b, role); put(b, "\n"); cput(b, text); put(b, "<|im_end|>\n");
}

static void render_chatml(sbuf *b, const spec *sp, const ember_chat_message *m, size_t n, int add) {
    if (n > 0 && sp->sys[0] && !is_role(&m[0], "system")) turn(b, "system", sp->sys);
    for (size_t i = 0; i < n; i++) {
        if (sp->tool_wrap && is_role(&m[i], "tool")) put_tool(b, m, n, i);
        else turn(b, m[i].role ? m[i].role : "", content(&m[i]));
    }
    if (add) put(b, "<|im_start|>assistant\n");
}

static int tool_response(const char *s) {
    size_t n = strlen(s);
    return !strncmp(s, "<tool_response>", 15) && n >= 16 && !strcmp(s + n - 16, "</tool_response>");
}

/* One Qwen3 assistant message: reasoning between <think> and </think> is split off; after
 * the last user query it is written back in a <think> block (always for the last message). */
static void qwen3_assistant(sbuf *b, const char *c, int after_query, int last) {
    const char *end = strstr(c, "</think>"), *text = c, *r = "";
    size_t rn = 0;
    if (end) {
        const char *e = end, *p;
        while ((p = strstr(e + 8, "</think>"))) e = p;  /* content: after the last </think> */
        text = e + 8;
        while (*text == '\n') text++;
        rn = (size_t)(end - c);                          /* reasoning: before the first one */
        while (rn && c[rn - 1] == '\n') rn--;
        r = c;
        for (const char *q = c; (q = strstr(q, "<think>")) && q < c + rn; q += 7) r = q + 7;
        rn -= (size_t)(r - c);
        while (rn && *r == '\n') { r++; rn--; }
    }
    put(b, "<|im_start|>assistant\n");
    if (after_query && (last || rn)) {
        put(b, "<think>\n"); put_nl_strip(b, r, rn, 1, 1); put(b, "\n</think>\n\n");
        put_nl_strip(b, text, strlen(text), 1, 0);
    } else {
        cput(b, text);
    }
    put(b, "<|im_end|>\n");
}

static void render_qwen3(sbuf *b, const ember_chat_message *m, size_t n, int add) {
    size_t last_query = n ? n - 1 : 0;
    for (size_t k = n; k-- > 0;)
        if (is_role(&m[k], "user") && !tool_response(content(&m[k]))) { last_query = k; break; }
    for (size_t i = 0; i < n; i++) {
        if (is_role(&m[i], "user") || is_role(&m[i], "system")) turn(b, m[i].role, content(&m[i]));
        else if (is_role(&m[i], "assistant")) qwen3_assistant(b, content(&m[i]), i > last_query, i + 1 == n);
        else if (is_role(&m[i], "tool")) put_tool(b, m, n, i);
    }
    if (add) put(b, "<|im_start|>assistant\n");
}

/* ---- Llama 2, Mistral ---- */

static void render_llama2(sbuf *b, const ember_chat_message *m, size_t n) {
    const int has_sys = n > 0 && is_role(&m[0], "system");
    for (size_t i = has_sys; i < n; i++) {
        char *c = NULL;
        if (has_sys && i == 1) {  /* the system prompt joins the first message, then strip */
            char *head = concat("<<SYS>>\n", content(&m[0]));
            char *mid = head ? concat(head, "\n<</SYS>>\n\n") : NULL;
            c = mid ? concat(mid, content(&m[i])) : NULL;
            free(head);
            free(mid);
        }
        const char *text = c ? c : content(&m[i]);
        if (is_role(&m[i], "user")) { put(b, "<s>[INST] "); put_strip(b, text); put(b, " [/INST]"); }
        else if (is_role(&m[i], "assistant")) { put(b, " "); put_strip(b, text); put(b, " </s>"); }
        free(c);
    }
}

/* Mistral v0.1/v0.2: BOS once, "[INST] user [/INST]assistant</s>". v3-tekken (Nemo):
 * no spaces inside [INST], and the system prompt goes in front of the last message when
 * that message is the user's. */
static void render_mistral(sbuf *b, const ember_chat_message *m, size_t n, int nemo) {
    const int has_sys = n > 0 && is_role(&m[0], "system");
    const char *sys = has_sys ? content(&m[0]) : NULL;
    put(b, "<s>");
    for (size_t i = has_sys; i < n; i++) {
        if (is_role(&m[i], "user")) {
            const int with_sys = sys && (nemo ? i + 1 == n : i == 1);
            put(b, nemo ? "[INST]" : "[INST] ");
            if (with_sys) { cput(b, sys); put(b, "\n\n"); }
            cput(b, content(&m[i]));
            put(b, nemo ? "[/INST]" : " [/INST]");
        } else if (is_role(&m[i], "assistant")) {
            cput(b, content(&m[i])); put(b, "</s>");
        }
    }
}

/* ---- Llama 3 ---- */

static void llama3_turn(sbuf *b, const char *role, const char *text) {
    put(b, "<|start_header_id|>"); cput(b, role); put(b, "<|end_header_id|>\n\n");
    put_strip(b, text); put(b, "<|eot_id|>");
}

/* "26 Jul 2024" for today, in the C locale's spelling whatever the process locale. */
static void today(char *out, size_t len) {
    static const char *const mon[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug",
                                      "Sep", "Oct", "Nov", "Dec"};
    time_t t = time(NULL);
    struct tm tm;
    if (!localtime_r(&t, &tm)) { snprintf(out, len, "26 Jul 2024"); return; }
    snprintf(out, len, "%02d %s %d", tm.tm_mday, mon[tm.tm_mon % 12], tm.tm_year + 1900);
}

/* Llama 3.1/3.2/3.3: a system header always, with the knowledge cut-off and a date. */
static void render_llama3(sbuf *b, const spec *sp, const ember_chat_message *m, size_t n, int add,
                          const char *date) {
    size_t i = 0;
    if (sp->style == ST_LLAMA31) {
        char d[32];
        if (!sp->today) date = "26 Jul 2024";
        else if (!date) { today(d, sizeof d); date = d; }
        put(b, "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n");
        put(b, "Cutting Knowledge Date: December 2023\nToday Date: "); put(b, date); put(b, "\n\n");
        if (n > 0 && is_role(&m[0], "system")) put_strip(b, content(&m[i++]));
        put(b, "<|eot_id|>");
    } else if (n > 0) {
        put(b, "<|begin_of_text|>");
    }
    for (; i < n; i++) llama3_turn(b, m[i].role ? m[i].role : "", content(&m[i]));
    if (add) put(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

/* ---- Zephyr/TinyLlama, Phi-3, Gemma ---- */

static void render_tagged(sbuf *b, const spec *sp, const ember_chat_message *m, size_t n, int add) {
    const int zephyr = sp->style == ST_ZEPHYR, mini = sp->style == ST_PHI3_MINI;
    const char *end = zephyr ? "</s>\n" : "<|end|>\n";
    if (mini) put(b, "<s>");
    for (size_t i = 0; i < n; i++) {
        const int user = is_role(&m[i], "user"), assistant = is_role(&m[i], "assistant");
        const int system = is_role(&m[i], "system") && (zephyr || *content(&m[i]));
        if (mini) {  /* Phi-3-mini drops system messages and opens the reply after each user turn */
            if (user) { put(b, "<|user|>\n"); cput(b, content(&m[i])); put(b, "<|end|>\n<|assistant|>\n"); }
            else if (assistant) { cput(b, content(&m[i])); put(b, "<|end|>\n"); }
            continue;
        }
        if (!user && !assistant && !system) continue;
        /* The role is one of user/assistant/system here: part of the markup. */
        put(b, "<|"); put(b, m[i].role); put(b, "|>\n"); cput(b, content(&m[i])); put(b, end);
    }
    if (zephyr && add && n > 0) put(b, "<|assistant|>\n");  /* inside the loop there: not for 0 messages */
    if (sp->style == ST_PHI3) put(b, add ? "<|assistant|>\n" : "<|endoftext|>");
}

static void render_gemma(sbuf *b, const ember_chat_message *m, size_t n, int add) {
    const int has_sys = n > 0 && is_role(&m[0], "system");
    put(b, "<bos>");
    for (size_t i = has_sys; i < n; i++) {
        char *c = NULL;
        if (has_sys && i == 1) {
            char *head = concat(content(&m[0]), "\n\n");
            c = head ? concat(head, content(&m[i])) : NULL;
            free(head);
        }
        put(b, "<start_of_turn>");
        if (is_role(&m[i], "assistant")) put(b, "model");
        else cput(b, m[i].role ? m[i].role : "");
        put(b, "\n"); put_strip(b, c ? c : content(&m[i])); put(b, "<end_of_turn>\n");
        free(c);
    }
    if (add) put(b, "<start_of_turn>model\n");
}

/* ---- family detection ---- */

/* A default system prompt written into a ChatML template as a literal
 * ('<|im_start|>system\n...<|im_end|>'), used when the conversation has none. The "\n" may
 * be a real newline or the two characters of a Jinja string escape. */
static void default_system(const char *t, char *out, size_t len) {
    static const char *const tags[] = {"<|im_start|>system\\n", "<|im_start|>system\n"};
    out[0] = 0;
    for (int k = 0; k < 2; k++) {
        const size_t tl = strlen(tags[k]);
        for (const char *p = strstr(t, tags[k]); p; p = strstr(p + 1, tags[k])) {
            const char *s = p + tl, *e = strstr(s, "<|im_end|>");
            /* Skip '<|im_start|>system\n' + variable: a quote, brace or '+' before the end. */
            const char *q = strpbrk(s, "'\"{+");
            if (!e || (size_t)(e - s) >= len || (q && q < e)) continue;
            memcpy(out, s, (size_t)(e - s));
            out[e - s] = 0;
            return;
        }
    }
}

static int detect(const char *t, spec *sp) {
    memset(sp, 0, sizeof *sp);
    if (strstr(t, "<|im_start|>")) {
        if (strstr(t, "</think>") && strstr(t, "last_query_index")) sp->style = ST_QWEN3;
        else default_system(t, sp->sys, sizeof sp->sys);
        sp->tool_wrap = strstr(t, "<tool_response>") != NULL;
    } else if (strstr(t, "<|start_header_id|>")) {
        sp->style = strstr(t, "Cutting Knowledge Date") ? ST_LLAMA31 : ST_LLAMA3;
        sp->today = strstr(t, "strftime_now") != NULL;
    } else if (strstr(t, "<start_of_turn>")) {
        sp->style = ST_GEMMA;
    } else if (strstr(t, "<|assistant|>") && strstr(t, "<|end|>")) {
        /* Phi-3-mini's template never prints a role name from the message. */
        sp->style = strstr(t, "'<|user|>' + '\\n'") && !strstr(t, "message['role'] + '|>'") &&
                    !strstr(t, "<|system|>") ? ST_PHI3_MINI : ST_PHI3;
    } else if (strstr(t, "<|assistant|>") || strstr(t, "<|user|>")) {
        sp->style = ST_ZEPHYR;
    } else if (strstr(t, "[INST]")) {
        sp->style = strstr(t, "<<SYS>>") ? ST_LLAMA2 : strstr(t, "\"[INST]\"") ? ST_MISTRAL_NEMO : ST_MISTRAL;
    } else {
        return -1;
    }
    return 0;
}

int em_chat_render(const char *tmpl, const char *name, const ember_chat_message *msgs, size_t n,
                   int add_ass, const char *date, char *buf, size_t len) {
    return em_chat_render_spans(tmpl, name, msgs, n, add_ass, date, buf, len, NULL, 0, NULL);
}

int em_chat_render_spans(const char *tmpl, const char *name, const ember_chat_message *msgs, size_t n,
                         int add_ass, const char *date, char *buf, size_t len,
                         ember_span *spans, size_t max_spans, size_t *n_spans) {
    if (n_spans) *n_spans = 0;
    spec sp;
    if (name && *name) {
        int found = -1;
        for (size_t i = 0; i < sizeof k_names / sizeof k_names[0]; i++)
            if (!strcmp(name, k_names[i].name)) found = k_names[i].style;
        if (found < 0) {
            em_fail(EMBER_E_INVALID, "unknown chat template '%s' (choose one of: %s)", name, em_chat_names());
            return -1;
        }
        memset(&sp, 0, sizeof sp);
        sp.style = found;
        sp.tool_wrap = found == ST_QWEN3;
    } else if (!tmpl) {
        em_fail(EMBER_E_UNSUPPORTED, "the model has no chat template; choose one with --chat-template NAME (%s)",
                em_chat_names());
        return -1;
    } else if (detect(tmpl, &sp)) {
        em_fail(EMBER_E_UNSUPPORTED, "unrecognised chat template; choose one with --chat-template NAME (%s)",
                em_chat_names());
        return -1;
    }
    if (!msgs) n = 0;
    sbuf b = {buf, buf ? len : 0, 0, spans, spans ? max_spans : 0, 0, 0};
    if (buf && len) buf[0] = 0;
    switch (sp.style) {
    case ST_CHATML: render_chatml(&b, &sp, msgs, n, add_ass); break;
    case ST_QWEN3: render_qwen3(&b, msgs, n, add_ass); break;
    case ST_LLAMA2: render_llama2(&b, msgs, n); break;
    case ST_LLAMA3: case ST_LLAMA31: render_llama3(&b, &sp, msgs, n, add_ass, date); break;
    case ST_MISTRAL: case ST_MISTRAL_NEMO: render_mistral(&b, msgs, n, sp.style == ST_MISTRAL_NEMO); break;
    case ST_GEMMA: render_gemma(&b, msgs, n, add_ass); break;
    default: render_tagged(&b, &sp, msgs, n, add_ass); break;
    }
    if (n_spans) *n_spans = b.n_spans;
    return b.len > 0x7fffffff ? 0x7fffffff : (int)b.len;
}

/* The family to use when neither a name nor the file's template gives one: Gemma 3 files
 * often carry no tokenizer.chat_template (the 270M one does not), and the architecture
 * (gemma3 or gemma2) leaves no doubt about the format. Otherwise name as given (NULL: the file's template). */
static const char *family(const ember_model *m, const char *name) {
    if ((!name || !*name) && m && !m->chat_template && !m->vocab_only &&
        (m->hp.arch == EM_ARCH_GEMMA3 || m->hp.arch == EM_ARCH_GEMMA2))
        return "gemma";
    return name;
}

int ember_chat_apply_template(const ember_model *m, const char *name, const ember_chat_message *msgs,
                              size_t n, int add_ass, char *buf, size_t len) {
    return em_chat_render(m ? m->chat_template : NULL, family(m, name), msgs, n, add_ass, NULL, buf, len);
}

int ember_chat_apply_template_spans(const ember_model *m, const char *name, const ember_chat_message *msgs,
                                    size_t n, int add_ass, char *buf, size_t len,
                                    ember_span *spans, size_t max_spans, size_t *n_spans) {
    return em_chat_render_spans(m ? m->chat_template : NULL, family(m, name), msgs, n, add_ass, NULL, buf, len,
                                spans, max_spans, n_spans);
}
