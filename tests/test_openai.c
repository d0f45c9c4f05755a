/* test_openai.c: unit tests of the OpenAI JSON translation (server/openai.c), no sockets
 * and no model: request parsing (fields, defaults, type and range errors), response and
 * chunk shapes (usage always present, choices [] in the usage chunk), error bodies, the
 * UTF-8 and stop-string helpers the server streams with. */
#include <cjson/cJSON.h>
#include "openai.h"
#include "test.h"

static int parse(oai_kind kind, const char *body, oai_request *r, oai_error *e) {
    return oai_parse_request(body, strlen(body), kind, NULL, r, e);
}

TEST(chat_fields) {
    oai_request r;
    oai_error e;
    const char *body =
        "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"be brief\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\",\"text\":\"b\"}]}],"
        "\"max_tokens\":7,\"temperature\":0,\"top_p\":0.5,\"top_k\":3,\"min_p\":0.1,\"seed\":42,"
        "\"repeat_penalty\":1.2,\"stop\":[\"x\",\"\",\"yz\"],\"stream\":true,"
        "\"stream_options\":{\"include_usage\":true},\"tools\":[],\"unknown\":{\"a\":[1]}}";
    CHECK(parse(OAI_CHAT, body, &r, &e) == 0);
    CHECK(r.n_messages == 2);
    CHECK(!strcmp(r.messages[0].role, "system") && !strcmp(r.messages[0].content, "be brief"));
    CHECK(!strcmp(r.messages[1].content, "ab"));
    CHECK(r.max_tokens == 7 && r.sp.temp == 0 && r.sp.top_p == 0.5f && r.sp.top_k == 3);
    CHECK_NEAR(r.sp.min_p, 0.1, 1e-6);
    CHECK_NEAR(r.sp.repeat_penalty, 1.2, 1e-6);
    CHECK(r.sp.seed == 42 && r.stream && r.include_usage);
    CHECK(r.n_stop == 2 && !strcmp(r.stop[0], "x") && !strcmp(r.stop[1], "yz"));  /* "" dropped */
    CHECK(r.model && !strcmp(r.model, "m"));
    oai_request_free(&r);
}

TEST(defaults_from_server) {
    ember_sampler_params d = ember_sampler_default_params();
    d.temp = 0.25f;
    oai_request r;
    oai_error e;
    CHECK(oai_parse_request("{\"prompt\":\"hi\"}", 15, OAI_COMPLETION, &d, &r, &e) == 0);
    CHECK(r.sp.temp == 0.25f && r.max_tokens == -1 && !r.stream && r.n_stop == 0);
    CHECK(r.n_prompts == 1 && !strcmp(r.prompts[0].text, "hi"));
    oai_request_free(&r);
}

TEST(prompt_forms) {
    oai_request r;
    oai_error e;
    CHECK(parse(OAI_COMPLETION, "{\"prompt\":[\"a\",\"b\"],\"stop\":\"\\n\"}", &r, &e) == 0);
    CHECK(r.n_prompts == 2 && !strcmp(r.prompts[1].text, "b") && r.n_stop == 1);
    oai_request_free(&r);
    CHECK(parse(OAI_COMPLETION, "{\"prompt\":[1,2,3]}", &r, &e) == 0);
    CHECK(r.n_prompts == 1 && r.prompts[0].n_tokens == 3 && r.prompts[0].tokens[2] == 3);
    oai_request_free(&r);
    CHECK(parse(OAI_COMPLETION, "{\"prompt\":[[1],[2,3],\"x\"]}", &r, &e) == 0);
    CHECK(r.n_prompts == 3 && r.prompts[1].n_tokens == 2 && !strcmp(r.prompts[2].text, "x"));
    oai_request_free(&r);
}

TEST(rejections) {
    static const struct { oai_kind k; const char *body; const char *needle; } cases[] = {
        { OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}", "JSON" },
        { OAI_CHAT, "[]", "object" },
        { OAI_CHAT, "{}", "'messages' is required" },
        { OAI_CHAT, "{\"messages\":[]}", "empty" },
        { OAI_CHAT, "{\"messages\":{}}", "array" },
        { OAI_CHAT, "{\"messages\":[1]}", "object" },
        { OAI_CHAT, "{\"messages\":[{\"content\":\"x\"}]}", "role" },
        { OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":5}]}", "content" },
        { OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}", "not supported" },
        { OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":\"5\"}", "number" },
        { OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":1e300}", "range" },
        { OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":2.5}", "integer" },
        { OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":0}", "at least 1" },
        { OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":-1}", "range" },
        { OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"top_p\":2}", "range" },
        { OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stream\":1}", "boolean" },
        { OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stream_options\":1}", "object" },
        { OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stop\":[1]}", "stop" },
        { OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":3}", "'n'" },
        { OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"model\":1}", "model" },
        { OAI_COMPLETION, "{}", "'prompt' is required" },
        { OAI_COMPLETION, "{\"prompt\":[]}", "empty" },
        { OAI_COMPLETION, "{\"prompt\":{}}", "prompt" },
        { OAI_COMPLETION, "{\"prompt\":[1.5]}", "token" },
        { OAI_COMPLETION, "{\"prompt\":[-3]}", "token" },
        { OAI_COMPLETION, "{\"prompt\":[\"a\",{}]}", "prompt" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        oai_request r;
        oai_error e;
        int st = parse(cases[i].k, cases[i].body, &r, &e);
        CHECKF(st == 400, "case %zu: status %d", i, st);
        CHECKF(strstr(e.message, cases[i].needle) != NULL, "case %zu: message '%s'", i, e.message);
        CHECK(!strcmp(e.type, "invalid_request_error"));
        oai_request_free(&r);
    }
}

/* One JSON value per body: anything but whitespace after it is a 400. */
TEST(trailing_garbage) {
    static const char *const bad[] = {
        "{\"prompt\":\"x\"} garbage", "{\"prompt\":\"x\"}{\"prompt\":\"y\"}", "{\"prompt\":\"x\"}]",
        "{\"prompt\":\"x\"}\n\nx", "{\"prompt\":\"x\"},",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        oai_request r;
        oai_error e;
        int st = parse(OAI_COMPLETION, bad[i], &r, &e);
        CHECKF(st == 400 && strstr(e.message, "after the JSON"), "case %zu: status %d '%s'", i, st, e.message);
        oai_request_free(&r);
    }
    /* A NUL after the value is not whitespace either. */
    oai_request r;
    oai_error e;
    CHECK(oai_parse_request("{\"prompt\":\"x\"}\0x", 16, OAI_COMPLETION, NULL, &r, &e) == 400);
    oai_request_free(&r);
    CHECK(parse(OAI_COMPLETION, " \t{\"prompt\":\"x\"} \r\n\t ", &r, &e) == 0);
    oai_request_free(&r);
}

/* The sampling ranges are the library's (ember_sampler_param_range): each bound is
 * accepted, just outside it is refused, whatever the table says. */
TEST(sampling_ranges_from_library) {
    static const char *const fields[][2] = {
        { "temperature", "temp" }, { "top_p", "top_p" }, { "top_k", "top_k" }, { "min_p", "min_p" },
        { "repeat_penalty", "repeat_penalty" }, { "repeat_last_n", "repeat_last_n" },
        { "presence_penalty", "presence_penalty" }, { "frequency_penalty", "frequency_penalty" },
    };
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) {
        double lo, hi;
        CHECK(ember_sampler_param_range(fields[i][1], &lo, &hi) == 0);
        int integral = !strcmp(fields[i][1], "top_k") || !strcmp(fields[i][1], "repeat_last_n");
        double step = integral ? 1 : (hi - lo) * 1e-3;
        const double vals[4] = { lo, hi, lo - step, hi + step };
        for (int v = 0; v < 4; v++) {
            char body[256];
            snprintf(body, sizeof body, "{\"prompt\":\"x\",\"%s\":%.17g}", fields[i][0], vals[v]);
            oai_request r;
            oai_error e;
            int st = parse(OAI_COMPLETION, body, &r, &e);
            CHECKF(st == (v < 2 ? 0 : 400), "%s", body);
            if (v < 2 && !st) {
                CHECKF(ember_sampler_params_check(&r.sp, NULL) == EMBER_OK, "%s: %s", body, ember_last_error());
            }
            oai_request_free(&r);
        }
    }
    /* top_k's range is [0, 2^30] now: -1 is refused as it is by the command line. */
    oai_request r;
    oai_error e;
    CHECK(parse(OAI_COMPLETION, "{\"prompt\":\"x\",\"top_k\":-1}", &r, &e) == 400);
    oai_request_free(&r);
}

/* Completions: control-token text is plain text unless the request asks. */
TEST(parse_special_field) {
    oai_request r;
    oai_error e;
    CHECK(parse(OAI_COMPLETION, "{\"prompt\":\"x\"}", &r, &e) == 0 && r.parse_special == 0);
    oai_request_free(&r);
    CHECK(parse(OAI_COMPLETION, "{\"prompt\":\"x\",\"parse_special\":true}", &r, &e) == 0 && r.parse_special == 1);
    oai_request_free(&r);
    CHECK(parse(OAI_COMPLETION, "{\"prompt\":\"x\",\"parse_special\":1}", &r, &e) == 400);
    oai_request_free(&r);
    /* Chat never parses message text: the field is ignored there. */
    CHECK(parse(OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"parse_special\":true}", &r, &e) == 0 &&
          r.parse_special == 0);
    oai_request_free(&r);
}

TEST(invalid_utf8_and_nesting) {
    oai_request r;
    oai_error e;
    const char bad[] = "{\"prompt\":\"\xC0\xAF\"}";
    CHECK(oai_parse_request(bad, sizeof bad - 1, OAI_COMPLETION, NULL, &r, &e) == 400);
    CHECK(strstr(e.message, "UTF-8") != NULL);
    oai_request_free(&r);
    size_t n = 100000;
    char *deep = malloc(n + 1);
    memset(deep, '[', n);
    deep[n] = 0;
    CHECK(oai_parse_request(deep, n, OAI_CHAT, NULL, &r, &e) == 400);
    oai_request_free(&r);
    free(deep);
}

/* Parses s (freed) and returns the tree; the test frees it. */
static cJSON *json(char *s) {
    cJSON *j = s ? cJSON_Parse(s) : NULL;
    free(s);
    return j;
}

/* "speculative": absent (the server's default), false, true, an object with "lookup"
 * and the sizes (llama.cpp's "ngram_size_n" spelling too); wrong types and ranges are 400. */
TEST(speculative_field) {
    oai_request r;
    oai_error e;
    CHECK(parse(OAI_COMPLETION, "{\"prompt\":\"a\"}", &r, &e) == 0);
    CHECK(r.spec.mode == OAI_SPEC_DEFAULT && r.spec.n_max == -1 && r.spec.n_min == -1 && r.spec.p_min < 0 &&
          r.spec.ngram == 0);
    oai_request_free(&r);
    CHECK(parse(OAI_COMPLETION, "{\"prompt\":\"a\",\"speculative\":false}", &r, &e) == 0 && r.spec.mode == OAI_SPEC_OFF);
    oai_request_free(&r);
    CHECK(parse(OAI_COMPLETION, "{\"prompt\":\"a\",\"speculative\":true}", &r, &e) == 0 && r.spec.mode == OAI_SPEC_ON);
    oai_request_free(&r);
    CHECK(parse(OAI_COMPLETION, "{\"prompt\":\"a\",\"speculative\":null}", &r, &e) == 0 &&
          r.spec.mode == OAI_SPEC_DEFAULT);
    oai_request_free(&r);
    CHECK(parse(OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"speculative\":"
                "{\"lookup\":true,\"ngram\":2,\"n_max\":5,\"n_min\":1,\"p_min\":0.25}}", &r, &e) == 0);
    CHECK(r.spec.mode == OAI_SPEC_LOOKUP && r.spec.ngram == 2 && r.spec.n_max == 5 && r.spec.n_min == 1 &&
          r.spec.p_min == 0.25);
    oai_request_free(&r);
    CHECK(parse(OAI_COMPLETION, "{\"prompt\":\"a\",\"speculative\":{\"lookup\":false,\"ngram_size_n\":4}}", &r, &e) == 0);
    CHECK(r.spec.mode == OAI_SPEC_DRAFT && r.spec.ngram == 4);
    oai_request_free(&r);
    CHECK(parse(OAI_COMPLETION, "{\"prompt\":\"a\",\"speculative\":{}}", &r, &e) == 0 && r.spec.mode == OAI_SPEC_ON);
    oai_request_free(&r);
    static const char *const bad[] = {
        "\"yes\"", "1", "[]", "{\"lookup\":1}", "{\"n_max\":0}", "{\"n_max\":65}", "{\"n_max\":2.5}",
        "{\"n_min\":-1}", "{\"p_min\":1.5}", "{\"ngram\":0}", "{\"ngram\":65}", "{\"n_min\":3,\"n_max\":2}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char body[160];
        snprintf(body, sizeof body, "{\"prompt\":\"a\",\"speculative\":%s}", bad[i]);
        int st = parse(OAI_COMPLETION, body, &r, &e);
        CHECKF(st == 400 && !strcmp(e.type, "invalid_request_error"), "%s: %d", bad[i], st);
        oai_request_free(&r);
    }
}

/* usage carries draft_n / draft_n_accepted (llama.cpp's names) only for a speculative request. */
TEST(usage_draft_counts) {
    const char *texts[] = { "Hi" }, *fin[] = { "stop" };
    oai_usage u = { 3, 4, 0, 0, 0, 0 };
    char *s = oai_response_json(OAI_COMPLETION, "c", 1, "m", texts, fin, 1, &u);
    CHECK(s && !strstr(s, "draft_n"));
    free(s);
    u.speculative = 1;
    u.draft_n = 9;
    u.draft_n_accepted = 6;
    s = oai_chunk_json(OAI_CHAT, "id", 1, "m", NULL, NULL, 0, NULL, &u);
    CHECK(s && strstr(s, "\"draft_n\":9,\"draft_n_accepted\":6"));
    free(s);
}

TEST(response_shapes) {
    const char *texts[] = { "Hello", "bad \xFF byte" }, *fin[] = { "stop", "length" };
    oai_usage u = { 10, 5, 4, 0, 0, 0 };
    cJSON *j = json(oai_response_json(OAI_CHAT, "chatcmpl-1", 7, "m", texts, fin, 1, &u));
    CHECK(j != NULL);
    if (!j) return;
    CHECK(!strcmp(cJSON_GetObjectItem(j, "object")->valuestring, "chat.completion"));
    cJSON *c0 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0);
    CHECK(!strcmp(cJSON_GetObjectItem(cJSON_GetObjectItem(c0, "message"), "content")->valuestring, "Hello"));
    cJSON *us = cJSON_GetObjectItem(j, "usage");
    CHECK(cJSON_GetObjectItem(us, "total_tokens")->valueint == 15);
    CHECK(cJSON_GetObjectItem(cJSON_GetObjectItem(us, "prompt_tokens_details"), "cached_tokens")->valueint == 4);
    cJSON_Delete(j);
    j = json(oai_response_json(OAI_COMPLETION, "cmpl-1", 7, "m", texts, fin, 2, &u));
    CHECK(j && cJSON_GetArraySize(cJSON_GetObjectItem(j, "choices")) == 2);
    cJSON *c1 = j ? cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 1) : NULL;
    CHECK(c1 && !strcmp(cJSON_GetObjectItem(c1, "text")->valuestring, "bad \xEF\xBF\xBD byte"));
    CHECK(c1 && !strcmp(cJSON_GetObjectItem(c1, "finish_reason")->valuestring, "length"));
    cJSON_Delete(j);
}

TEST(chunk_shapes) {
    char *s = oai_chunk_json(OAI_CHAT, "id", 1, "m", "assistant", "", 0, NULL, NULL);
    CHECK(s && strstr(s, "\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null"));
    free(s);
    s = oai_chunk_json(OAI_CHAT, "id", 1, "m", NULL, "Hel", 3, NULL, NULL);
    CHECK(s && strstr(s, "\"delta\":{\"content\":\"Hel\"}"));
    free(s);
    s = oai_chunk_json(OAI_CHAT, "id", 1, "m", NULL, NULL, 0, "stop", NULL);
    CHECK(s && strstr(s, "\"delta\":{},\"finish_reason\":\"stop\""));
    free(s);
    oai_usage u = { 3, 4, 0, 0, 0, 0 };
    s = oai_chunk_json(OAI_CHAT, "id", 1, "m", NULL, NULL, 0, NULL, &u);
    CHECK(s && strstr(s, "\"choices\":[]") && strstr(s, "\"total_tokens\":7"));
    free(s);
    s = oai_chunk_json(OAI_COMPLETION, "id", 1, "m", NULL, "ab", 1, NULL, NULL);
    CHECK(s && strstr(s, "\"object\":\"text_completion\"") && strstr(s, "\"text\":\"a\""));
    free(s);
}

TEST(error_body) {
    oai_error e;
    oai_set_error(&e, 400, "exceed_context_size_error", "request (%d tokens) exceeds", 9000);
    e.n_prompt_tokens = 9000;
    e.n_ctx = 4096;
    cJSON *j = json(oai_error_json(&e));
    cJSON *er = j ? cJSON_GetObjectItem(j, "error") : NULL;
    CHECK(er && cJSON_GetObjectItem(er, "code")->valueint == 400);
    CHECK(er && !strcmp(cJSON_GetObjectItem(er, "type")->valuestring, "exceed_context_size_error"));
    CHECK(er && cJSON_GetObjectItem(er, "n_prompt_tokens")->valueint == 9000);
    CHECK(er && cJSON_GetObjectItem(er, "n_ctx")->valueint == 4096);
    cJSON_Delete(j);
}

TEST(utf8_helpers) {
    CHECK(oai_utf8_valid("a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80", 10));
    CHECK(!oai_utf8_valid("\xC0\x80", 2));          /* overlong */
    CHECK(!oai_utf8_valid("\xED\xA0\x80", 3));      /* surrogate */
    CHECK(!oai_utf8_valid("\xF4\x90\x80\x80", 4));  /* > U+10FFFF */
    CHECK(oai_utf8_complete_len("ab\xE2\x82", 4) == 2);
    CHECK(oai_utf8_complete_len("ab\xF0\x9F\x98", 5) == 2);
    CHECK(oai_utf8_complete_len("ab\xE2\x82\xAC", 5) == 5);
    CHECK(oai_utf8_complete_len("ab\xFF", 3) == 3);  /* invalid: sent (as U+FFFD), not held */
}

TEST(stop_scan) {
    char *stops[] = { "END", "\n\n" };
    size_t hold;
    CHECK(oai_stop_scan("abc END x", 9, stops, 2, &hold) == 4 && hold == 0);
    CHECK(oai_stop_scan("abc EN", 6, stops, 2, &hold) == 6 && hold == 2);
    CHECK(oai_stop_scan("abc\n", 4, stops, 2, &hold) == 4 && hold == 1);
    CHECK(oai_stop_scan("a\n\nEND", 6, stops, 2, &hold) == 1);
    CHECK(oai_stop_scan("plain", 5, stops, 0, &hold) == 5 && hold == 0);
}

int main(void) {
    RUN(chat_fields);
    RUN(defaults_from_server);
    RUN(prompt_forms);
    RUN(rejections);
    RUN(trailing_garbage);
    RUN(sampling_ranges_from_library);
    RUN(parse_special_field);
    RUN(invalid_utf8_and_nesting);
    RUN(speculative_field);
    RUN(usage_draft_counts);
    RUN(response_shapes);
    RUN(chunk_shapes);
    RUN(error_body);
    RUN(utf8_helpers);
    RUN(stop_scan);
    return test_done();
}
