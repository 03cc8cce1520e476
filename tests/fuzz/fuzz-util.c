/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"

static char scratch[PATH_MAX];

static void remove_scratch(void) {
        fuzz_clear_dir(scratch);
        (void) rmdir(scratch);
}

const char *fuzz_scratch_dir(void) {
        if (scratch[0] == '\0') {
                const char *tmp = getenv("TMPDIR") ?: "/tmp";

                snprintf(scratch, sizeof(scratch), "%s/svmd-fuzz-XXXXXX", tmp);
                if (!mkdtemp(scratch)) {
                        perror("mkdtemp");
                        abort();
                }
                atexit(remove_scratch);
        }
        return scratch;
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        if (ftw->level > 0)
                (void) remove(path);
        return 0;
}

void fuzz_clear_dir(const char *dir) {
        (void) nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

int fuzz_write_file(const char *dir, const char *name, const void *data, size_t size) {
        char path[PATH_MAX];
        int fd, n;

        n = snprintf(path, sizeof(path), "%s/%s", dir, name);
        if (n < 0 || (size_t) n >= sizeof(path))
                return -ENAMETOOLONG;
        /* mkdir -p of the parents */
        for (char *slash = strchr(path + strlen(dir) + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
                *slash = '\0';
                if (mkdir(path, 0755) < 0 && errno != EEXIST) {
                        *slash = '/';
                        return -errno;
                }
                *slash = '/';
        }
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0)
                return -errno;
        while (size > 0) {
                ssize_t k = write(fd, data, size);
                if (k < 0) {
                        close(fd);
                        return -errno;
                }
                data = (const char *) data + k;
                size -= (size_t) k;
        }
        close(fd);
        return 0;
}
