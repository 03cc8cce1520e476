/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The fuzz targets in the normal build: feed every file named on the command
 * line (directories: every file inside) to LLVMFuzzerTestOneInput() once. The
 * corpus holds the seeds and every input that ever crashed a target, so this
 * is the regression test; under ASan/UBSan (build-asan) it also catches what
 * the fuzzer would.
 */

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

static unsigned n_inputs;

static int replay_file(const char *path) {
        FILE *f = fopen(path, "re");
        uint8_t *buf = NULL;
        size_t size = 0, allocated = 0;

        if (!f) {
                fprintf(stderr, "%s: %m\n", path);
                return -errno;
        }
        for (;;) {
                if (size == allocated) {
                        allocated = allocated ? allocated * 2 : 4096;
                        buf = realloc(buf, allocated);
                        if (!buf)
                                abort();
                }
                size_t k = fread(buf + size, 1, allocated - size, f);
                if (k == 0)
                        break;
                size += k;
        }
        fclose(f);
        (void) LLVMFuzzerTestOneInput(buf, size);
        free(buf);
        n_inputs++;
        return 0;
}

static int cmp(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

static int replay(const char *path) {
        struct stat st;
        char **names = NULL;
        size_t n = 0;
        struct dirent *de;
        DIR *d;
        int r = 0;

        if (stat(path, &st) < 0) {
                fprintf(stderr, "%s: %m\n", path);
                return -errno;
        }
        if (!S_ISDIR(st.st_mode))
                return replay_file(path);
        d = opendir(path);
        if (!d)
                return -errno;
        while ((de = readdir(d))) {
                if (de->d_name[0] == '.')
                        continue;
                names = realloc(names, (n + 1) * sizeof(char *));
                if (!names || asprintf(&names[n], "%s/%s", path, de->d_name) < 0)
                        abort();
                n++;
        }
        closedir(d);
        qsort(names, n, sizeof(char *), cmp);
        for (size_t i = 0; i < n; i++) {
                if (r >= 0)
                        r = replay(names[i]);
                free(names[i]);
        }
        free(names);
        return r;
}

int main(int argc, char *argv[]) {
        if (argc < 2) {
                fprintf(stderr, "Usage: %s FILE|DIR…\n", argv[0]);
                return 2;
        }
        for (int i = 1; i < argc; i++)
                if (replay(argv[i]) < 0)
                        return 1;
        printf("%s: %u inputs replayed, 0 crashes\n", argv[0], n_inputs);
        return n_inputs > 0 ? 0 : 1;
}
