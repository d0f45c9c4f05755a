/* fuzz/fuzz_openai.c: libFuzzer target for the OpenAI JSON translation (server/openai.c).
 * The first input byte picks the endpoint (chat or completions); the rest is the request
 * body. Every accepted request must be well-formed (counts and strings consistent), every
 * rejection a 4xx with a message, and the builders fed the parsed strings must produce
 * JSON that cJSON parses back. Also exercises the UTF-8 and stop-string helpers on the
 * raw bytes, as the server does on generated text. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "openai.h"

static void check_json(char *s) {
    if (!s) abort();
    cJSON *j = cJSON_Parse(s);
    if (!j) abort();
    cJSON_Delete(j);
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    oai_kind kind = (data[0] & 1) ? OAI_COMPLETION : OAI_CHAT;
    const char *body = (const char *)data + 1;
    size_t n = size - 1;
    oai_request r;
    oai_error e;
    int st = oai_parse_request(body, n, kind, NULL, &r, &e);
    if (st) {
        if (st < 400 || st > 499 || !e.message[0]) abort();
        check_json(oai_error_json(&e));
    } else {
        if (kind == OAI_CHAT && r.n_messages < 1) abort();
        if (kind == OAI_COMPLETION && r.n_prompts < 1) abort();
        if (r.n_stop < 0 || r.n_stop > OAI_MAX_STOP) abort();
        const char *texts[OAI_MAX_PROMPTS], *fin[OAI_MAX_PROMPTS];
        int k = kind == OAI_CHAT ? r.n_messages : r.n_prompts;
        if (k > OAI_MAX_PROMPTS) k = OAI_MAX_PROMPTS;
        for (int i = 0; i < k; i++) {
            texts[i] = kind == OAI_CHAT ? r.messages[i].content : (r.prompts[i].text ? r.prompts[i].text : "");
            fin[i] = "stop";
        }
        oai_usage u = { 1, 2, 0, 1, 3, 2 };
        check_json(oai_response_json(kind, "id", 1, r.model ? r.model : "m", texts, fin, k, &u));
        size_t hold;
        const char *t0 = texts[0];
        size_t at = oai_stop_scan(t0, strlen(t0), r.stop, r.n_stop, &hold);
        if (at > strlen(t0) || hold > strlen(t0)) abort();
    }
    oai_request_free(&r);
    /* Generated text can be any bytes: chunks must still be valid JSON. */
    check_json(oai_chunk_json(kind, "id", 1, "m", NULL, body, n, NULL, NULL));
    size_t c = oai_utf8_complete_len(body, n);
    if (c > n || n - c > 3) abort();
    if (oai_utf8_valid(body, n) && c != n) abort();
    return 0;
}
