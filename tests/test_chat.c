/* tests/test_chat.c: chat templates against transformers.
 *  - every case of tests/golden/chat/goldens.txt (scripts/make_chat_goldens.py renders
 *    official templates with transformers' apply_chat_template renderer) must come out of
 *    em_chat_render byte for byte, given the template text;
 *  - the same through the --chat-template family name of each template;
 *  - the snprintf contract, and errors (with the --chat-template hint) for unknown names
 *    and unrecognised templates, never a silent ChatML fallback;
 *  - the SmolLM2 model's own template through ember_chat_apply_template, when present. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "test.h"
#include "chat.h"
#include "ember.h"

#define CHAT_DIR "tests/golden/chat/"
#define MAX_MSGS 16

typedef struct {
    char tmpl_file[64];
    int add;
    size_t n;
    ember_chat_message msgs[MAX_MSGS];
    char *want;
} chat_case;

static int hexv(char c) { return c <= '9' ? c - '0' : (c | 32) - 'a' + 10; }

/* Decodes the hex after the last space of line into a new NUL-terminated string. */
static char *unhex_tail(const char *line) {
    const char *h = strrchr(line, ' ');
    h = h ? h + 1 : line;
    size_t n = strlen(h) / 2;
    char *s = malloc(n + 1);
    for (size_t i = 0; i < n; i++) s[i] = (char)(hexv(h[2 * i]) << 4 | hexv(h[2 * i + 1]));
    s[n] = 0;
    return s;
}

static void free_case(chat_case *c) {
    for (size_t i = 0; i < c->n; i++) { free((char *)c->msgs[i].role); free((char *)c->msgs[i].content); }
    free(c->want);
    memset(c, 0, sizeof *c);
}

/* Family name that stands for each committed template (NULL: none). */
static const char *name_for(const char *file) {
    static const char *const map[][2] = {
        {"chatml.jinja", "chatml"}, {"qwen3.jinja", "qwen3"}, {"llama2.jinja", "llama2"},
        {"llama3.jinja", "llama3"}, {"llama3.1.jinja", "llama3.1"}, {"mistral-v0.2.jinja", "mistral"},
        {"mistral-nemo.jinja", "mistral-nemo"}, {"zephyr.jinja", "zephyr"}, {"phi3.5.jinja", "phi3"},
        {"phi3-mini.jinja", "phi3-mini"}, {"gemma2.jinja", "gemma"},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (!strcmp(file, map[i][0])) return map[i][1];
    return NULL;
}

/* Renders one case from the template text and by name; 1 if both match (prints a diff). */
static int run_case(const chat_case *c, int *by_name) {
    char path[256], out[16384];
    snprintf(path, sizeof path, CHAT_DIR "templates/%s", c->tmpl_file);
    char *tmpl = (char *)read_file(path, NULL);
    if (!tmpl) { printf("  missing %s\n", path); return 0; }
    int n = em_chat_render(tmpl, NULL, c->msgs, c->n, c->add, "26 Jul 2024", out, sizeof out);
    int ok = n == (int)strlen(c->want) && !strcmp(out, c->want);
    if (!ok) {
        printf("  %s add=%d n=%zu:\n    want '%s'\n    got  '%s' (%d)\n", c->tmpl_file, c->add, c->n,
               c->want, n >= 0 ? out : ember_last_error(), n);
    }
    const char *name = name_for(c->tmpl_file);
    if (name) {
        n = em_chat_render(NULL, name, c->msgs, c->n, c->add, "26 Jul 2024", out, sizeof out);
        int ok2 = n == (int)strlen(c->want) && !strcmp(out, c->want);
        if (!ok2) printf("  by name '%s' add=%d n=%zu: got '%s'\n", name, c->add, c->n, out);
        ok = ok && ok2;
        (*by_name)++;
    }
    free(tmpl);
    return ok;
}

TEST(goldens) {
    char *txt = (char *)read_file(CHAT_DIR "goldens.txt", NULL);
    CHECKF(txt != NULL, "missing %sgoldens.txt (scripts/make_chat_goldens.py)", CHAT_DIR);
    if (!txt) return;
    chat_case c = {0};
    int pass = 0, total = 0, by_name = 0;
    for (char *line = strtok(txt, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == 'C') {
            free_case(&c);
            sscanf(line, "C %63s %d", c.tmpl_file, &c.add);
        } else if (line[0] == 'M' && c.n < MAX_MSGS) {
            char role[32] = "";
            sscanf(line, "M %31s", role);
            c.msgs[c.n].role = strdup(role);
            c.msgs[c.n++].content = unhex_tail(line);
        } else if (line[0] == 'R') {
            c.want = unhex_tail(line);
            pass += run_case(&c, &by_name);
            total++;
        }
    }
    free_case(&c);
    printf("  %d/%d golden renderings match (%d also by family name)\n", pass, total, by_name);
    CHECKF(pass == total && total > 100, "%d/%d", pass, total);
    free(txt);
}

TEST(contract_and_errors) {
    const ember_chat_message m[2] = {{"system", "S"}, {"user", "Hi"}};
    char small[8];
    int n = em_chat_render(NULL, "chatml", m, 2, 1, NULL, NULL, 0);
    CHECK(n > 0);
    CHECK(em_chat_render(NULL, "chatml", m, 2, 1, NULL, small, sizeof small) == n);
    CHECK(strlen(small) == sizeof small - 1 && !strncmp(small, "<|im_st", 7));
    CHECK(em_chat_render(NULL, "nonesuch", m, 2, 1, NULL, small, sizeof small) == -1);
    CHECK(strstr(ember_last_error(), "nonesuch") && strstr(ember_last_error(), "chatml"));
    CHECK(em_chat_render("{{ messages }}", NULL, m, 2, 1, NULL, small, sizeof small) == -1);
    CHECK(strstr(ember_last_error(), "--chat-template"));
    CHECK(em_chat_render(NULL, NULL, m, 2, 1, NULL, small, sizeof small) == -1);
    CHECK(strstr(ember_last_error(), "--chat-template"));
    /* No messages: nothing but what the template prints unconditionally. */
    CHECK(em_chat_render(NULL, "llama2", NULL, 0, 1, NULL, small, sizeof small) == 0 && small[0] == 0);
}

/* Llama 3.2 takes today's date when none is given. */
TEST(llama32_date) {
    char *tmpl = (char *)read_file(CHAT_DIR "templates/llama3.2.jinja", NULL);
    if (!tmpl) SKIP("missing llama3.2.jinja");
    const ember_chat_message m[1] = {{"user", "Hi"}};
    char out[512];
    CHECK(em_chat_render(tmpl, NULL, m, 1, 1, NULL, out, sizeof out) > 0);
    const char *d = strstr(out, "Today Date: ");
    CHECK(d && d[12 + 2] == ' ' && strncmp(d + 12, "26 Jul 2024", 11) != 0);
    free(tmpl);
}

TEST(smollm2_model) {
    const char *path = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
    FILE *f = fopen(path, "rb");
    if (!f) SKIP("model missing: %s", path);
    fclose(f);
    ember_model *m = NULL;
    ember_model_params mp = ember_model_default_params();
    mp.vocab_only = 1;
    CHECK(ember_model_load(path, &mp, &m) == EMBER_OK);
    if (!m) return;
    const ember_chat_message msgs[1] = {{"user", "Hello"}};
    char out[512];
    int n = ember_chat_apply_template(m, NULL, msgs, 1, 1, out, sizeof out);
    CHECK(n > 0 && !strcmp(out, "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
                                "Hugging Face<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"));
    ember_model_free(m);
}

int main(void) {
    RUN(goldens);
    RUN(contract_and_errors);
    RUN(llama32_date);
    RUN(smollm2_model);
    return test_done();
}
