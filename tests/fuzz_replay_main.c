/* Replays a libFuzzer corpus without libFuzzer: each file in the directories given on the
 * command line is fed to LLVMFuzzerTestOneInput once. Used by `make test` under gcc and the
 * sanitizers, so every corpus input stays crash-free. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "test.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(int argc, char **argv) {
    for (int a = 1; a < argc; a++) {
        DIR *d = opendir(argv[a]);
        if (!d) { printf("skipped: no corpus at %s\n", argv[a]); t_skip++; continue; }
        struct dirent *e;
        int n = 0;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.') continue;
            char p[4096];
            snprintf(p, sizeof p, "%s/%s", argv[a], e->d_name);
            size_t sz;
            unsigned char *buf = read_file(p, &sz);
            if (!buf) continue;
            LLVMFuzzerTestOneInput(buf, sz);  /* a crash here fails the run */
            free(buf);
            n++;
        }
        closedir(d);
        printf("replayed %d inputs from %s\n", n, argv[a]);
        t_pass++;
    }
    return test_done();
}
