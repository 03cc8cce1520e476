/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * Sharing bytes through svmd with libsvmd, from two processes:
 *
 *   svmd-share write ID TEXT            the owner writes TEXT at the start of range ID
 *                                       (through its exported memory)
 *   svmd-share read TOKEN [GPU,GPU…]    another process attaches the range locally: it is
 *                                       imported into this process's own KFD context at the
 *                                       same address, mapped to the GPUs, and read by the CPU
 *                                       at that address
 *
 * Build it with
 *
 *         cc svmd-share.c $(pkg-config --cflags --libs libsvmd) -o svmd-share
 */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <svmd/svmd.h>

static int write_text(svmd_client *c, uint64_t id, const char *text, svmd_error *error) {
        uint64_t va, size;
        void *p;
        int fd, r;

        r = svmd_export(c, id, &fd, &va, &size, error);
        if (r < 0)
                return r;
        if (strlen(text) + 1 > size) {
                close(fd);
                fprintf(stderr, "The text does not fit into range %" PRIu64 ".\n", id);
                return -1;
        }
        p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        close(fd);
        if (p == MAP_FAILED) {
                perror("mmap");
                return -1;
        }
        memcpy(p, text, strlen(text) + 1);
        munmap(p, size);
        printf("wrote \"%s\" into range %" PRIu64 " (VA 0x%" PRIx64 ")\n", text, id, va);
        return 0;
}

static int read_text(svmd_client *c, const char *token, const char *gpu_list, svmd_error *error) {
        uint32_t gpus[64];
        size_t n = 0;
        uint64_t va;
        int r;

        for (const char *p = gpu_list; p && *p && n < 64;) {
                char *end;
                gpus[n++] = (uint32_t) strtoul(p, &end, 0);
                p = *end == ',' ? end + 1 : end;
        }

        r = svmd_attach_local(c, token, gpus, n, &va, error);
        if (r < 0)
                return r;
        /* The same virtual address as in the owner's process and on every GPU. */
        printf("pid %d read at VA 0x%" PRIx64 ", mapped on %zu GPU(s) of its own KFD context: \"%s\"\n",
               (int) getpid(), va, n, (const char *) (uintptr_t) va);
        return svmd_detach_local(c, va, error);
}

int main(int argc, char *argv[]) {
        svmd_error error = SVMD_ERROR_NULL;
        svmd_client *c = NULL;
        int r;

        if (argc < 3 || (strcmp(argv[1], "write") == 0 && argc != 4) ||
            (strcmp(argv[1], "read") != 0 && strcmp(argv[1], "write") != 0)) {
                fprintf(stderr, "Usage: %s write ID TEXT | read TOKEN [GPU,GPU…]\n", argv[0]);
                return 2;
        }

        r = svmd_client_new(&c, NULL, NULL, 0, &error);
        if (r >= 0) {
                if (strcmp(argv[1], "write") == 0)
                        r = write_text(c, strtoull(argv[2], NULL, 10), argv[3], &error);
                else
                        r = read_text(c, argv[2], argc > 3 ? argv[3] : NULL, &error);
        }
        if (r < 0 && error.message)
                fprintf(stderr, "%s\n", error.message);
        svmd_error_free(&error);
        svmd_client_free(c);
        return r < 0 ? 1 : 0;
}
