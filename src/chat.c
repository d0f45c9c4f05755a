/* chat.c: chat templates. The GGUF's tokenizer.chat_template (Jinja) is recognised by
 * family and rendered by code written for that family; a template that matches no family
 * is an error that names the --chat-template choices, never a silent ChatML fallback.
 * Families: chatml (SmolLM2, Qwen2/2.5/3), llama2, llama3, zephyr, mistral, phi3, gemma. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"

typedef struct { char *buf; size_t len, cap_used; } sbuf;  /* snprintf-style appender */

static void put(sbuf *b, const char *s) {
    size_t n = strlen(s);
    if (b->cap_used + n < b->len) memcpy(b->buf + b->cap_used, s, n + 1);
    else if (b->cap_used < b->len) { memcpy(b->buf + b->cap_used, s, b->len - b->cap_used - 1); b->buf[b->len - 1] = 0; }
    b->cap_used += n;
}

static const char *families[] = { "chatml", "llama2", "llama3", "zephyr", "mistral", "phi3", "gemma" };

/* Picks a family from the Jinja source by its distinctive markers. */
static const char *detect(const char *t) {
    if (strstr(t, "<|im_start|>")) return "chatml";
    if (strstr(t, "<|start_header_id|>")) return "llama3";
    if (strstr(t, "<start_of_turn>")) return "gemma";
    if (strstr(t, "<|assistant|>") && strstr(t, "<|end|>")) return "phi3";
    if (strstr(t, "<|assistant|>") || strstr(t, "<|user|>")) return "zephyr";
    if (strstr(t, "[INST]") && strstr(t, "<<SYS>>")) return "llama2";
    if (strstr(t, "[INST]")) return "mistral";
    return NULL;
}

/* A default system prompt written into a ChatML template as a literal
 * ('<|im_start|>system\n...<|im_end|>'), used when the conversation has none. */
static int default_system(const char *t, char *out, size_t len) {
    const char *tag = "<|im_start|>system\\n", *p = t ? strstr(t, tag) : NULL;
    if (!p) { tag = "<|im_start|>system\n"; p = t ? strstr(t, tag) : NULL; }
    if (!p) return 0;
    p += strlen(tag);
    if (*p == '\'' || *p == '{' || *p == '"') return 0;  /* system text comes from a variable */
    const char *e = strstr(p, "<|im_end|>");
    if (!e || (size_t)(e - p) >= len) return 0;
    memcpy(out, p, (size_t)(e - p));
    out[e - p] = 0;
    return 1;
}

int ember_chat_apply_template(const ember_model *m, const char *name, const ember_chat_message *msgs,
                              size_t n, int add_ass, char *buf, size_t len) {
    const char *tmpl = m ? m->chat_template : NULL;
    const char *fam = NULL;
    if (name && *name) {
        for (size_t i = 0; i < sizeof families / sizeof families[0]; i++)
            if (!strcmp(name, families[i])) fam = families[i];
        if (!fam) { em_fail(EMBER_E_INVALID, "unknown chat template '%s' (choose chatml, llama2, llama3, zephyr, mistral, phi3, gemma)", name); return -1; }
    } else if (!tmpl) {
        em_fail(EMBER_E_UNSUPPORTED, "the model has no chat template; choose one with --chat-template NAME (chatml, llama2, llama3, zephyr, mistral, phi3, gemma)");
        return -1;
    } else if (!(fam = detect(tmpl))) {
        em_fail(EMBER_E_UNSUPPORTED, "unrecognised chat template; choose one with --chat-template NAME (chatml, llama2, llama3, zephyr, mistral, phi3, gemma)");
        return -1;
    }
    sbuf b = { buf, buf ? len : 0, 0 };
    if (buf && len) buf[0] = 0;
    char sys[1024];
    const int has_sys = n > 0 && !strcmp(msgs[0].role, "system");
    for (size_t i = 0; i < n; i++) {
        const char *r = msgs[i].role, *c = msgs[i].content ? msgs[i].content : "";
        if (!strcmp(fam, "chatml")) {
            if (i == 0 && !has_sys && default_system(tmpl, sys, sizeof sys)) {
                put(&b, "<|im_start|>system\n"); put(&b, sys); put(&b, "<|im_end|>\n");
            }
            put(&b, "<|im_start|>"); put(&b, r); put(&b, "\n"); put(&b, c); put(&b, "<|im_end|>\n");
        } else if (!strcmp(fam, "llama3")) {
            if (i == 0) put(&b, "<|begin_of_text|>");
            put(&b, "<|start_header_id|>"); put(&b, r); put(&b, "<|end_header_id|>\n\n"); put(&b, c); put(&b, "<|eot_id|>");
        } else if (!strcmp(fam, "zephyr") || !strcmp(fam, "phi3")) {
            const int phi = fam[0] == 'p';
            put(&b, "<|"); put(&b, r); put(&b, "|>\n"); put(&b, c); put(&b, phi ? "<|end|>\n" : "</s>\n");
        } else if (!strcmp(fam, "gemma")) {
            if (!strcmp(r, "system")) continue;  /* merged into the first user turn below */
            put(&b, "<start_of_turn>"); put(&b, !strcmp(r, "assistant") ? "model" : r); put(&b, "\n");
            if (has_sys && i == 1) { put(&b, msgs[0].content ? msgs[0].content : ""); put(&b, "\n\n"); }
            put(&b, c); put(&b, "<end_of_turn>\n");
        } else {  /* llama2 / mistral: [INST] pairs; the system prompt goes in the first one */
            if (!strcmp(r, "system")) continue;
            if (!strcmp(r, "user")) {
                put(&b, "<s>[INST] ");
                if (has_sys && i == 1) {
                    if (fam[0] == 'l') { put(&b, "<<SYS>>\n"); put(&b, msgs[0].content); put(&b, "\n<</SYS>>\n\n"); }
                    else { put(&b, msgs[0].content); put(&b, "\n\n"); }
                }
                put(&b, c); put(&b, " [/INST]");
            } else { put(&b, " "); put(&b, c); put(&b, " </s>"); }
        }
    }
    if (add_ass) {
        if (!strcmp(fam, "chatml")) put(&b, "<|im_start|>assistant\n");
        else if (!strcmp(fam, "llama3")) put(&b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
        else if (!strcmp(fam, "zephyr") || !strcmp(fam, "phi3")) put(&b, "<|assistant|>\n");
        else if (!strcmp(fam, "gemma")) put(&b, "<start_of_turn>model\n");
    }
    return b.cap_used > 0x7fffffff ? 0x7fffffff : (int)b.cap_used;
}
