/* test_cli.c: the `ember` command as a user runs it: golden output through the CLI,
 * exit codes and messages for bad input. Runs build/ember (or $EMBER_BIN). */
#include <sys/wait.h>
#include <unistd.h>
#include "test.h"

static char out[1 << 16], err[1 << 14];

/* Runs `ember ARGS` with `input` on stdin (NULL: none), capturing stdout/stderr; returns
 * the exit status (-1 if killed). */
static int ember_in(const char *args, const char *input) {
    const char *bin = getenv("EMBER_BIN");
    if (!bin) bin = "build/ember";
    const char *run = getenv("RUN");  /* e.g. qemu wrapper */
    char cmd[4096], o[64], e[64];
    snprintf(o, sizeof o, "/tmp/ember_cli_%d.out", (int)getpid());
    snprintf(e, sizeof e, "/tmp/ember_cli_%d.err", (int)getpid());
    char in[64] = "/dev/null";
    if (input) {
        snprintf(in, sizeof in, "/tmp/ember_cli_%d.in", (int)getpid());
        FILE *f = fopen(in, "wb");
        if (f) { fputs(input, f); fclose(f); }
    }
    snprintf(cmd, sizeof cmd, "%s %s %s >%s 2>%s <%s", run ? run : "", bin, args, o, e, in);
    int st = system(cmd);
    if (input) unlink(in);
    size_t n;
    unsigned char *b = read_file(o, &n);
    snprintf(out, sizeof out, "%s", b ? (char *)b : "");
    free(b);
    b = read_file(e, &n);
    snprintf(err, sizeof err, "%s", b ? (char *)b : "");
    free(b);
    unlink(o);
    unlink(e);
    if (WIFSIGNALED(st)) return -1;
    return WEXITSTATUS(st);
}

static int ember(const char *args) { return ember_in(args, NULL); }

TEST(run_stories_text_and_ids) {
    const char *m = fixture_path("models/stories260K.bin"), *z = fixture_path("models/tok512.bin");
    if (!file_exists(m) || !file_exists(z)) SKIP("fixture missing: %s", m);
    char args[2048];
    snprintf(args, sizeof args, "run -m %s -z %s --temp 0 -n 256 -p ''", m, z);
    CHECK(ember(args) == 0);
    size_t n;
    char *gold = (char *)read_file(fixture_path("golden/stories260K_greedy_bos_256.txt"), &n);
    CHECKF(gold && !strcmp(out, gold), "stdout:\n%s", out);
    free(gold);
    snprintf(args, sizeof args, "run -m %s -z %s --temp 0 -n 256 -p '' --ids", m, z);
    CHECK(ember(args) == 0);
    gold = (char *)read_file(fixture_path("golden/stories260K_greedy_bos_256.ids"), &n);
    /* compare as whitespace-separated lists */
    int same = gold != NULL;
    char *a = out, *b = gold;
    while (same) {
        long x, y;
        char *ea, *eb;
        x = strtol(a, &ea, 10);
        y = strtol(b ? b : "", &eb, 10);
        if (ea == a || eb == b) { same = (ea == a) == (eb == b); break; }
        same = x == y;
        a = ea;
        b = eb;
    }
    CHECKF(same, "--ids output differs:\n%s", out);
    free(gold);
}

TEST(run_gguf_prompt) {
    const char *m = fixture_path("models/stories260K.gguf");
    if (!file_exists(m)) SKIP("fixture missing: %s", m);
    char args[2048];
    snprintf(args, sizeof args, "run -m %s --temp 0 -n 20 -p 'Once upon a time'", m);
    CHECK(ember(args) == 0);
    CHECKF(!strncmp(out, "Once upon a time, there was a little girl named Lily", 52), "%s", out);
    /* same seed, same output with sampling on */
    snprintf(args, sizeof args, "run -m %s -s 42 --temp 1.0 -n 30 -p 'Once'", m);
    CHECK(ember(args) == 0);
    static char first[sizeof out];
    snprintf(first, sizeof first, "%s", out);
    CHECK(ember(args) == 0);
    CHECK(!strcmp(first, out));
    snprintf(args, sizeof args, "run -m %s -s 42 --temp 1.0 -n 30 -p 'Once' -t 1", m);
    CHECK(ember(args) == 0);
    CHECKF(!strcmp(first, out), "thread count changed the output");
}

TEST(bad_inputs_exit_1) {
    CHECK(ember("run -m /nonexistent.gguf -p hi") == 1 && strstr(err, "error:"));
    CHECK(ember("bogus") == 1);
    CHECK(ember("run --temp") == 1 && strstr(err, "needs a value"));
    CHECK(ember("run -n abc") == 1 && strstr(err, "integer"));
    CHECK(ember("run --no-such-flag") == 1 && strstr(err, "unknown option"));
    CHECK(ember("run -ctk f32 -ctv f16") == 1 && strstr(err, "differ"));
    const char *m = fixture_path("models/stories260K.gguf");
    if (!file_exists(m)) SKIP("fixture missing: %s", m);
    size_t n;
    unsigned char *d = read_file(m, &n);
    const char *tmp = "/tmp/ember_cli_trunc.gguf";
    const size_t cuts[] = { 0, 3, 7, 23, 100, 5000, n / 2, n - 1 };
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        FILE *f = fopen(tmp, "wb");
        fwrite(d, 1, cuts[i], f);
        fclose(f);
        char args[256];
        snprintf(args, sizeof args, "run -m %s -p hi -n 4", tmp);
        int rc = ember(args);
        CHECKF(rc == 1 && strstr(err, "error:"), "cut at %zu: exit %d, stderr '%s'", cuts[i], rc, err);
    }
    unlink(tmp);
    free(d);
}

TEST(info_and_tokenize) {
    const char *m = fixture_path("models/stories260K.gguf");
    if (!file_exists(m)) SKIP("fixture missing: %s", m);
    char args[2048];
    snprintf(args, sizeof args, "info -m %s", m);
    CHECK(ember(args) == 0);
    CHECK(strstr(out, "llama") && strstr(out, "n_layer") && strstr(out, "parameters"));
    snprintf(args, sizeof args, "tokenize -m %s -p 'Once upon a time' --no-bos", m);
    CHECK(ember(args) == 0);
    CHECKF(!strcmp(out, "403 407 261 378\n"), "%s", out);
    snprintf(args, sizeof args, "detokenize -m %s 403 407 261 378", m);
    CHECK(ember(args) == 0);
    CHECKF(!strcmp(out, " Once upon a time\n"), "'%s'", out);
    const char *v = fixture_path("vocab/ggml-vocab-gpt-2.gguf");
    if (file_exists(v)) {
        snprintf(args, sizeof args, "tokenize -m %s -p 'Hello world'", v);
        CHECK(ember(args) == 0);
        CHECKF(!strcmp(out, "15496 995\n"), "%s", out);
    }
}

TEST(default_model_run) {
    if (!file_exists("models/SmolLM2-135M-Instruct.Q4_1.gguf")) SKIP("default model missing: run scripts/fetch-model.sh");
    CHECK(ember("run -p 'The capital of France is' -n 8 --temp 0") == 0);
    CHECKF(!strncmp(out, "The capital of France is", 24) && strlen(out) > 30, "%s", out);
    CHECK(ember("run -p 'The capital of France is' -n 8 --temp 0 -ctk f32") == 0 && strlen(out) > 30);
    CHECK(ember("run -p hi -n 2 -ctk q3_x") == 1 && strstr(err, "not supported"));
}

/* Chat renders SmolLM2's ChatML template (with its default system prompt) and streams
 * the reply: the first reply must equal `run` on the same rendered prompt, and a second
 * turn must answer too (it reuses the cache of the first). */
TEST(chat_default_model) {
    if (!file_exists("models/SmolLM2-135M-Instruct.Q4_1.gguf")) SKIP("default model missing: run scripts/fetch-model.sh");
    const char *p1 = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
                     "<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n";
    FILE *f = fopen("/tmp/ember_cli_chat.txt", "wb");
    CHECK(f);
    if (!f) return;
    fputs(p1, f);
    fclose(f);
    CHECK(ember("run -f /tmp/ember_cli_chat.txt --special --temp 0 -n 24") == 0);
    unlink("/tmp/ember_cli_chat.txt");
    static char want[sizeof out];
    snprintf(want, sizeof want, "%s", out + (strncmp(out, p1, strlen(p1)) ? 0 : strlen(p1)));
    CHECK(strlen(want) > 2);
    CHECK(ember_in("chat --temp 0 -n 24", "What is 2+2?\nAnd 3+3?\n") == 0);
    CHECKF(!strncmp(out, want, strlen(want)), "chat:\n%s\nrun:\n%s", out, want);
    CHECKF(strlen(out) > strlen(want) + 2, "no second reply:\n%s", out);
    CHECK(ember_in("chat --chat-template nosuch", "hi\n") == 1 && strstr(err, "unknown chat template"));
    const char *m = fixture_path("models/stories260K.gguf");  /* no chat template */
    if (file_exists(m)) {
        char args[1024];
        snprintf(args, sizeof args, "chat -m %s", m);
        CHECK(ember_in(args, "hi\n") == 1 && strstr(err, "--chat-template"));
    }
}

int main(void) {
    RUN(run_stories_text_and_ids);
    RUN(run_gguf_prompt);
    RUN(bad_inputs_exit_1);
    RUN(info_and_tokenize);
    RUN(default_model_run);
    RUN(chat_default_model);
    return test_done();
}
