/* chat.h: chat-template rendering without a model, for ember_chat_apply_template and
 * tests/test_chat.c. The family is detected from the Jinja text (or chosen by name) and
 * rendered by C code written to match transformers' apply_chat_template byte for byte on
 * the official templates in tests/golden/chat/templates. */
#ifndef EMBER_CHAT_H
#define EMBER_CHAT_H
#include <stddef.h>
#include "ember.h"

/* Renders msgs with the template text tmpl, or with the family `name` when name is
 * non-empty (see em_chat_names). add_ass appends the assistant turn opener where the
 * template has one. date ("26 Jul 2024" style) is what templates that ask for today's date
 * get (Llama 3.2); NULL means today. snprintf contract on buf; returns the full length, or
 * -1 with ember_last_error() set when the name or template is not recognised. */
int em_chat_render(const char *tmpl, const char *name, const ember_chat_message *msgs, size_t n,
                   int add_ass, const char *date, char *buf, size_t len);
/* em_chat_render, and where text from the messages (contents, free-form roles) landed in
 * the output: see ember_chat_apply_template_spans. */
int em_chat_render_spans(const char *tmpl, const char *name, const ember_chat_message *msgs, size_t n,
                         int add_ass, const char *date, char *buf, size_t len,
                         ember_span *spans, size_t max_spans, size_t *n_spans);
/* The family names accepted by --chat-template, comma separated. */
const char *em_chat_names(void);
#endif
