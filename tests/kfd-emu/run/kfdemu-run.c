/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * kfdemu-run: run a command on an emulated KFD node.
 *
 *   kfdemu-run --topology FILE [--dir DIR] [--profile none|realistic]
 *              [--kfd-version MAJ.MIN] [--max-buffers N] [--max-handles N]
 *              [--keep] [--verbose] -- CMD...
 *
 * Builds the node (sysfs tree and kernel arena) in DIR, runs CMD with
 * libkfdemu.so preloaded and KFDEMU_DIR pointing there, forwards SIGINT and
 * SIGTERM, and exits with CMD's status. DIR is removed afterwards unless it
 * was given or --keep was.
 */

#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "emu-kernel.h"
#include "emu-topology.h"
#include "macro.h"

#ifndef KFDEMU_LIBRARY_PATH
#define KFDEMU_LIBRARY_PATH "libkfdemu.so"
#endif

static volatile sig_atomic_t child_pid;

static void forward_signal(int sig) {
        if (child_pid > 0)
                kill(child_pid, sig);
}

static void help(void) {
        printf("%s --topology FILE [OPTIONS] -- CMD [ARG...]\n\n"
               "Run CMD on an emulated AMD KFD node.\n\n"
               "  -h --help                 Show this help\n"
               "  -t --topology FILE        Topology JSON (tests/kfd-emu/topologies/*.json)\n"
               "  -d --dir DIR              Emulator directory (kept afterwards)\n"
               "                            default: a new directory under /dev/shm\n"
               "  -p --profile PROFILE      Latency profile: none (default) or realistic\n"
               "     --kfd-version MAJ.MIN  KFD interface version to emulate (default: topology's)\n"
               "     --max-buffers N        Capacity of the buffer table\n"
               "     --max-handles N        Handles per process and GPU\n"
               "     --max-processes N      KFD processes\n"
               "  -k --keep                 Keep the emulator directory\n"
               "  -v --verbose              Print the emulator directory to stderr\n\n"
               "Environment: KFDEMU_LIBRARY overrides the path of libkfdemu.so.\n",
               program_invocation_short_name);
}

static int parse_u32(const char *s, uint32_t *ret) {
        unsigned long long v;
        char *end;

        errno = 0;
        v = strtoull(s, &end, 0);
        if (errno != 0 || *end || end == s || v > UINT32_MAX || s[0] == '-')
                return -EINVAL;
        *ret = (uint32_t) v;
        return 0;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
        if (remove(path) < 0)
                fprintf(stderr, "kfdemu-run: cannot remove %s: %m, ignoring\n", path);
        return 0;
}

static int make_dir(char **ret) {
        const char *bases[] = { "/dev/shm", getenv("TMPDIR"), "/tmp" };

        /* tmpfs: buffer objects are shmem files there, like the kernel's. */
        for (size_t i = 0; i < ELEMENTSOF(bases); i++) {
                char *p;

                if (!bases[i] || !*bases[i])
                        continue;
                if (asprintf(&p, "%s/kfdemu.XXXXXX", bases[i]) < 0)
                        return -ENOMEM;
                if (mkdtemp(p)) {
                        *ret = p;
                        return 0;
                }
                free(p);
        }
        return -errno;
}

static int build_preload(char **ret) {
        const char *lib = getenv("KFDEMU_LIBRARY") ?: KFDEMU_LIBRARY_PATH;
        const char *old = getenv("LD_PRELOAD");
        _cleanup_free_ char *extra = strdup(KFDEMU_PRELOAD_EXTRA);
        char *r;

        if (!extra)
                return -ENOMEM;
        /* Sanitizer runtimes must come first; ld.so takes ':' and ' ' alike. */
        for (char *c = extra; *c; c++)
                if (*c == ' ')
                        *c = ':';
        if (asprintf(&r, "%s%s%s%s%s", extra, *extra ? ":" : "", lib, old && *old ? ":" : "",
                     old && *old ? old : "") < 0)
                return -ENOMEM;
        *ret = r;
        return 0;
}

int main(int argc, char *argv[]) {
        enum {
                ARG_KFD_VERSION = 0x100,
                ARG_MAX_BUFFERS,
                ARG_MAX_HANDLES,
                ARG_MAX_PROCESSES,
        };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "topology", required_argument, NULL, 't' },
                { "dir", required_argument, NULL, 'd' },
                { "profile", required_argument, NULL, 'p' },
                { "kfd-version", required_argument, NULL, ARG_KFD_VERSION },
                { "max-buffers", required_argument, NULL, ARG_MAX_BUFFERS },
                { "max-handles", required_argument, NULL, ARG_MAX_HANDLES },
                { "max-processes", required_argument, NULL, ARG_MAX_PROCESSES },
                { "keep", no_argument, NULL, 'k' },
                { "verbose", no_argument, NULL, 'v' },
                {}
        };
        _cleanup_free_ EmuTopology *topo = NULL;
        _cleanup_free_ char *dir = NULL, *error = NULL, *preload = NULL;
        const char *topology = NULL;
        EmuOptions opts = {};
        bool keep = false, verbose = false, own_dir;
        struct sigaction sa = { .sa_handler = forward_signal };
        int c, r, status, ret = EXIT_FAILURE;
        pid_t pid;

        /* '+': options stop at the command, whose own options are its business. */
        while ((c = getopt_long(argc, argv, "+ht:d:p:kv", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return EXIT_SUCCESS;
                case 't':
                        topology = optarg;
                        break;
                case 'd':
                        free(dir);
                        dir = strdup(optarg);
                        if (!dir)
                                return EXIT_FAILURE;
                        break;
                case 'p':
                        opts.profile = emu_profile_from_string(optarg);
                        if (opts.profile >= _EMU_PROFILE_MAX) {
                                fprintf(stderr, "kfdemu-run: unknown profile '%s' (none, realistic)\n", optarg);
                                return EXIT_FAILURE;
                        }
                        break;
                case ARG_KFD_VERSION:
                        if (sscanf(optarg, "%" SCNu32 ".%" SCNu32, &opts.kfd_major, &opts.kfd_minor) != 2 ||
                            opts.kfd_major == 0) {
                                fprintf(stderr, "kfdemu-run: bad --kfd-version '%s' (MAJOR.MINOR)\n", optarg);
                                return EXIT_FAILURE;
                        }
                        break;
                case ARG_MAX_BUFFERS:
                case ARG_MAX_HANDLES:
                case ARG_MAX_PROCESSES:
                        if (parse_u32(optarg, c == ARG_MAX_BUFFERS ? &opts.max_buffers :
                                              c == ARG_MAX_HANDLES ? &opts.max_handles : &opts.max_processes) < 0) {
                                fprintf(stderr, "kfdemu-run: bad number '%s'\n", optarg);
                                return EXIT_FAILURE;
                        }
                        break;
                case 'k':
                        keep = true;
                        break;
                case 'v':
                        verbose = true;
                        break;
                default:
                        return EXIT_FAILURE;
                }

        if (!topology) {
                fprintf(stderr, "kfdemu-run: --topology is required (see --help)\n");
                return EXIT_FAILURE;
        }
        if (optind >= argc) {
                fprintf(stderr, "kfdemu-run: no command given (… -- CMD ARGS)\n");
                return EXIT_FAILURE;
        }

        topo = calloc(1, sizeof(*topo));
        if (!topo)
                return EXIT_FAILURE;
        r = emu_topology_load(topology, topo, &error);
        if (r < 0) {
                fprintf(stderr, "kfdemu-run: %s: %s\n", topology, error ?: strerror(-r));
                return EXIT_FAILURE;
        }

        own_dir = !dir;
        if (own_dir) {
                r = make_dir(&dir);
                if (r < 0) {
                        fprintf(stderr, "kfdemu-run: cannot create the emulator directory: %s\n", strerror(-r));
                        return EXIT_FAILURE;
                }
        } else if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
                fprintf(stderr, "kfdemu-run: cannot create %s: %m\n", dir);
                return EXIT_FAILURE;
        }
        r = build_preload(&preload);
        if (r < 0)
                return EXIT_FAILURE;
        if (!own_dir) {
                _cleanup_free_ char *state = NULL;

                /* An existing node: its kernel belongs to whoever runs on it. Leave it untouched. */
                if (asprintf(&state, "%s/state", dir) < 0)
                        return EXIT_FAILURE;
                if (access(state, F_OK) == 0) {
                        fprintf(stderr,
                                "kfdemu-run: %s already holds an emulated node. To run a program on it, run it with\n"
                                "  KFDEMU_DIR=%s LD_PRELOAD='%s'\n"
                                "(kfdemu-ctl --dir %s dump shows its state); for a new node, remove the directory or\n"
                                "give another --dir.\n",
                                dir, dir, preload, dir);
                        return EXIT_FAILURE;
                }
        }
        if (verbose)
                fprintf(stderr, "kfdemu-run: emulator directory %s\n", dir);

        r = emu_topology_write_sysfs(topo, dir);
        if (r < 0) {
                fprintf(stderr, "kfdemu-run: cannot write the sysfs tree to %s: %s\n", dir, strerror(-r));
                goto cleanup;
        }
        r = emu_kernel_create(dir, topo, &opts);
        if (r < 0) {
                fprintf(stderr, "kfdemu-run: cannot create the emulated kernel in %s: %s\n", dir, strerror(-r));
                goto cleanup;
        }

        if (setenv("KFDEMU_DIR", dir, 1) < 0 || setenv("LD_PRELOAD", preload, 1) < 0) {
                fprintf(stderr, "kfdemu-run: cannot set up the environment\n");
                goto cleanup;
        }

        sigemptyset(&sa.sa_mask);
        sa.sa_flags = SA_RESTART;
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);

        pid = fork();
        if (pid < 0) {
                fprintf(stderr, "kfdemu-run: fork: %m\n");
                goto cleanup;
        }
        if (pid == 0) {
                signal(SIGINT, SIG_DFL);
                signal(SIGTERM, SIG_DFL);
                execvp(argv[optind], argv + optind);
                fprintf(stderr, "kfdemu-run: cannot execute %s: %m\n", argv[optind]);
                _exit(127);
        }
        child_pid = pid;

        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR) {
                        fprintf(stderr, "kfdemu-run: waitpid: %m\n");
                        goto cleanup;
                }
        child_pid = 0;

        if (WIFEXITED(status))
                ret = WEXITSTATUS(status);
        else if (WIFSIGNALED(status))
                ret = 128 + WTERMSIG(status);

cleanup:
        if (own_dir && !keep && dir)
                (void) nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
        return ret;
}
