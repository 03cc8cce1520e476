/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * kfdemu-ctl: look at and steer a running emulated node from outside.
 *
 *   kfdemu-ctl [--dir DIR] init --topology FILE [--profile P] [--kfd-version M.m]
 *   kfdemu-ctl [--dir DIR] dump
 *   kfdemu-ctl [--dir DIR] fault add 'ioctl=MAP_MEMORY_TO_GPU nth=2 errno=EINTR'
 *   kfdemu-ctl [--dir DIR] fault clear | fault list
 *   kfdemu-ctl [--dir DIR] profile none|realistic
 *   kfdemu-ctl [--dir DIR] kill PID
 *   kfdemu-ctl [--dir DIR] gpu reset GPU_ID [--begin|--end] [--cause TEXT] [--drop-begin-line]
 *   kfdemu-ctl [--dir DIR] gpu vmfault GPU_ID ADDR [PID]
 *
 * DIR defaults to $KFDEMU_DIR, which kfdemu-run exports to the programs it
 * runs. Exit status: 0 success, 1 failure, 2 bad usage.
 */

#include <errno.h>
#include <inttypes.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <jansson.h>

#include "emu-kernel.h"
#include "emu-smi.h"
#include "emu-topology.h"
#include "macro.h"

#define EXIT_USAGE 2

static const char *arg_dir;

static void help(FILE *f) {
        fprintf(f,
                "Usage: kfdemu-ctl [--dir DIR] COMMAND [ARGS...]\n"
                "\n"
                "Inspect and control an emulated KFD node (tests/kfd-emu).\n"
                "\n"
                "Commands:\n"
                "  init --topology FILE [--profile none|realistic] [--kfd-version M.m]\n"
                "                        create DIR with the topology's sysfs tree and kernel state\n"
                "  dump                  print the kernel-side state as JSON\n"
                "  fault add SPEC        arm a fault, e.g.\n"
                "                        'ioctl=MAP_MEMORY_TO_GPU gpu=0x1234 nth=1 errno=ENOMEM after=1'\n"
                "  fault clear           disarm every fault\n"
                "  fault list            print the armed faults as JSON\n"
                "  profile none|realistic\n"
                "                        switch the latency profile while programs run\n"
                "  kill PID              SIGKILL a process between two of its ioctls, as the kernel would\n"
                "  gpu reset GPU_ID [--begin|--end] [--cause TEXT] [--drop-begin-line]\n"
                "                        reset a GPU: pre-reset, VRAM contents lost, post-reset (--begin\n"
                "                        and --end do one half each); SMI listeners get the kernel's lines\n"
                "                        (--drop-begin-line: not the pre-reset one, as from a full FIFO)\n"
                "  gpu vmfault GPU_ID ADDR [PID]\n"
                "                        a VM fault at ADDR in process PID (default: the one process that\n"
                "                        maps ADDR on that GPU), reported to SMI listeners\n"
                "\n"
                "Options:\n"
                "  --dir DIR             emulator directory (default: $KFDEMU_DIR)\n"
                "  -h, --help            show this help\n"
                "\n"
                "Fault spec: ioctl=<NAME> [gpu=<id>] [nth=N] [count=N] errno=<ENAME>\n"
                "            [after=K] [at=fence] [op=set|get] [pid=P]   (see docs/emulator.md)\n"
                "\n"
                "Exit status: 0 success, 1 failure, 2 usage error.\n");
}

_printf_(1, 2) static int usage_error(const char *fmt, ...) {
        va_list ap;

        fputs("kfdemu-ctl: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputs("\nTry 'kfdemu-ctl --help'.\n", stderr);
        return EXIT_USAGE;
}

static void emu_kernel_detachp(EmuKernel **k) {
        if (*k)
                emu_kernel_detach(*k);
}

static int attach(EmuKernel **ret) {
        int r;

        r = emu_kernel_attach(arg_dir, ret);
        if (r < 0) {
                fprintf(stderr, "kfdemu-ctl: cannot attach to the emulator in %s: %s%s\n", arg_dir,
                        strerror(-r),
                        r == -ENOENT ? " (run 'kfdemu-ctl --dir DIR init --topology FILE' first)" : "");
                return EXIT_FAILURE;
        }
        return EXIT_SUCCESS;
}

static int mkdir_p(const char *path) {
        _cleanup_(freep) char *p = strdup(path);

        if (!p)
                return -ENOMEM;
        for (char *s = p + 1; *s; s++) {
                if (*s != '/')
                        continue;
                *s = '\0';
                if (mkdir(p, 0755) < 0 && errno != EEXIST)
                        return -errno;
                *s = '/';
        }
        if (mkdir(p, 0755) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

static int parse_kfd_version(const char *s, uint32_t *ret_major, uint32_t *ret_minor) {
        unsigned long ma, mi;
        char *end;

        errno = 0;
        ma = strtoul(s, &end, 10);
        if (errno != 0 || end == s || *end != '.')
                return -EINVAL;
        s = end + 1;
        mi = strtoul(s, &end, 10);
        if (errno != 0 || end == s || *end != '\0' || ma == 0 || ma > 255 || mi > 255)
                return -EINVAL;
        *ret_major = (uint32_t) ma;
        *ret_minor = (uint32_t) mi;
        return 0;
}

static int verb_init(int argc, char *argv[]) {
        static const struct option options[] = {
                { "topology",    required_argument, NULL, 't' },
                { "profile",     required_argument, NULL, 'p' },
                { "kfd-version", required_argument, NULL, 'k' },
                { "help",        no_argument,       NULL, 'h' },
                {}
        };
        EmuOptions opts = { .profile = EMU_PROFILE_NONE };
        _cleanup_(freep) EmuTopology *topo = NULL;
        _cleanup_(freep) char *error = NULL;
        const char *topology = NULL;
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, "+h", options, NULL)) >= 0)
                switch (c) {
                case 't':
                        topology = optarg;
                        break;
                case 'p':
                        opts.profile = emu_profile_from_string(optarg);
                        if ((int) opts.profile < 0 || (int) opts.profile >= _EMU_PROFILE_MAX)
                                return usage_error("unknown profile '%s' (none, realistic)", optarg);
                        break;
                case 'k':
                        if (parse_kfd_version(optarg, &opts.kfd_major, &opts.kfd_minor) < 0)
                                return usage_error("bad --kfd-version '%s' (expected MAJOR.MINOR, e.g. 1.19)", optarg);
                        break;
                case 'h':
                        help(stdout);
                        return EXIT_SUCCESS;
                default:
                        return EXIT_USAGE;
                }
        if (optind < argc)
                return usage_error("init: unexpected argument '%s'", argv[optind]);
        if (!topology)
                return usage_error("%s", "init: --topology FILE is required");

        topo = calloc(1, sizeof(*topo));
        if (!topo) {
                fputs("kfdemu-ctl: out of memory\n", stderr);
                return EXIT_FAILURE;
        }
        r = emu_topology_load(topology, topo, &error);
        if (r < 0) {
                fprintf(stderr, "kfdemu-ctl: cannot load topology %s: %s\n", topology,
                        error ?: strerror(-r));
                return EXIT_FAILURE;
        }

        r = mkdir_p(arg_dir);
        if (r < 0) {
                fprintf(stderr, "kfdemu-ctl: cannot create %s: %s\n", arg_dir, strerror(-r));
                return EXIT_FAILURE;
        }
        r = emu_topology_write_sysfs(topo, arg_dir);
        if (r < 0) {
                fprintf(stderr, "kfdemu-ctl: cannot write the sysfs tree under %s: %s\n", arg_dir,
                        strerror(-r));
                return EXIT_FAILURE;
        }
        r = emu_kernel_create(arg_dir, topo, &opts);
        if (r < 0) {
                fprintf(stderr, "kfdemu-ctl: cannot create the kernel state in %s: %s\n", arg_dir,
                        strerror(-r));
                return EXIT_FAILURE;
        }
        return EXIT_SUCCESS;
}

static int dump_state(json_t **ret) {
        _cleanup_(emu_kernel_detachp) EmuKernel *k = NULL;
        int r;

        r = attach(&k);
        if (r != EXIT_SUCCESS)
                return r;
        r = emu_kernel_dump(k, ret);
        if (r < 0) {
                fprintf(stderr, "kfdemu-ctl: cannot dump the kernel state: %s\n", strerror(-r));
                return EXIT_FAILURE;
        }
        return EXIT_SUCCESS;
}

static int print_json(json_t *j) {
        if (json_dumpf(j, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER) < 0 || fputc('\n', stdout) == EOF ||
            fflush(stdout) != 0) {
                fprintf(stderr, "kfdemu-ctl: cannot write to stdout: %m\n");
                return EXIT_FAILURE;
        }
        return EXIT_SUCCESS;
}

static int verb_dump(int argc, char *argv[]) {
        json_auto_t *j = NULL;
        int r;

        if (argc > 1)
                return usage_error("dump: unexpected argument '%s'", argv[1]);
        r = dump_state(&j);
        if (r != EXIT_SUCCESS)
                return r;
        return print_json(j);
}

static int verb_fault(int argc, char *argv[]) {
        _cleanup_(emu_kernel_detachp) EmuKernel *k = NULL;
        int r;

        if (argc < 2)
                return usage_error("%s", "fault: expected 'add SPEC', 'clear' or 'list'");

        if (strcmp(argv[1], "add") == 0) {
                _cleanup_(freep) char *error = NULL;

                if (argc != 3)
                        return usage_error("%s", "fault add: expected exactly one SPEC (quote it)");
                r = attach(&k);
                if (r != EXIT_SUCCESS)
                        return r;
                r = emu_kernel_fault_add(k, argv[2], &error);
                if (r < 0) {
                        fprintf(stderr, "kfdemu-ctl: bad fault spec '%s': %s\n", argv[2],
                                error ?: strerror(-r));
                        /* A spec the grammar refuses is a usage error, anything else a failure. */
                        return r == -EINVAL ? EXIT_USAGE : EXIT_FAILURE;
                }
                return EXIT_SUCCESS;
        }

        if (strcmp(argv[1], "clear") == 0) {
                if (argc != 2)
                        return usage_error("fault clear: unexpected argument '%s'", argv[2]);
                r = attach(&k);
                if (r != EXIT_SUCCESS)
                        return r;
                r = emu_kernel_fault_clear(k);
                if (r < 0) {
                        fprintf(stderr, "kfdemu-ctl: cannot clear faults: %s\n", strerror(-r));
                        return EXIT_FAILURE;
                }
                return EXIT_SUCCESS;
        }

        if (strcmp(argv[1], "list") == 0) {
                json_auto_t *j = NULL;
                json_t *faults;

                if (argc != 2)
                        return usage_error("fault list: unexpected argument '%s'", argv[2]);
                r = dump_state(&j);
                if (r != EXIT_SUCCESS)
                        return r;
                faults = json_object_get(j, "faults");
                if (!faults) {
                        json_t *empty = json_array();

                        r = print_json(empty);
                        json_decref(empty);
                        return r;
                }
                return print_json(faults);
        }

        return usage_error("fault: unknown subcommand '%s' (add, clear, list)", argv[1]);
}

static int verb_profile(int argc, char *argv[]) {
        _cleanup_(emu_kernel_detachp) EmuKernel *k = NULL;
        EmuProfile p;
        int r;

        if (argc != 2)
                return usage_error("%s", "profile: expected 'none' or 'realistic'");
        p = emu_profile_from_string(argv[1]);
        if ((int) p < 0 || (int) p >= _EMU_PROFILE_MAX)
                return usage_error("unknown profile '%s' (none, realistic)", argv[1]);

        r = attach(&k);
        if (r != EXIT_SUCCESS)
                return r;
        r = emu_kernel_set_profile(k, p);
        if (r < 0) {
                fprintf(stderr, "kfdemu-ctl: cannot set profile %s: %s\n", argv[1], strerror(-r));
                return EXIT_FAILURE;
        }
        return EXIT_SUCCESS;
}

static int verb_kill(int argc, char *argv[]) {
        _cleanup_(emu_kernel_detachp) EmuKernel *k = NULL;
        char *end;
        long pid;
        int r;

        if (argc != 2)
                return usage_error("%s", "kill: expected exactly one PID");
        errno = 0;
        pid = strtol(argv[1], &end, 10);
        if (errno != 0 || *end || pid <= 0 || pid > INT32_MAX)
                return usage_error("kill: '%s' is not a process id", argv[1]);
        r = attach(&k);
        if (r != EXIT_SUCCESS)
                return r;
        r = emu_kernel_kill(k, (pid_t) pid, UINT64_C(10) * 1000 * 1000);
        if (r < 0) {
                fprintf(stderr, "kfdemu-ctl: cannot kill %ld: %s\n", pid, strerror(-r));
                return EXIT_FAILURE;
        }
        return EXIT_SUCCESS;
}

static int parse_u64(const char *s, uint64_t *ret) {
        unsigned long long v;
        char *end;

        errno = 0;
        v = strtoull(s, &end, 0);
        if (errno != 0 || end == s || *end || *s == '-')
                return -EINVAL;
        *ret = v;
        return 0;
}

static int verb_gpu(int argc, char *argv[]) {
        _cleanup_(emu_kernel_detachp) EmuKernel *k = NULL;
        uint64_t gpu_id, addr, pid = 0;
        int r;

        if (argc < 3)
                return usage_error("%s", "gpu: expected 'reset GPU_ID' or 'vmfault GPU_ID ADDR [PID]'");
        if (parse_u64(argv[2], &gpu_id) < 0 || gpu_id == 0 || gpu_id > UINT32_MAX)
                return usage_error("gpu: '%s' is not a GPU id", argv[2]);
        /* The emulator writes into listeners' FIFOs; one closing meanwhile must not kill us. */
        signal(SIGPIPE, SIG_IGN);

        if (strcmp(argv[1], "reset") == 0) {
                bool begin = true, end = true, drop = false;
                const char *cause = NULL;

                for (int i = 3; i < argc; i++) {
                        if (strcmp(argv[i], "--begin") == 0)
                                end = false;
                        else if (strcmp(argv[i], "--end") == 0)
                                begin = false;
                        else if (strcmp(argv[i], "--drop-begin-line") == 0)
                                drop = true;
                        else if (strcmp(argv[i], "--cause") == 0 && i + 1 < argc)
                                cause = argv[++i];
                        else
                                return usage_error("gpu reset: unexpected argument '%s'", argv[i]);
                }
                if (!begin && !end)
                        return usage_error("%s", "gpu reset: --begin and --end exclude each other");
                if (drop && !begin)
                        return usage_error("%s", "gpu reset: --drop-begin-line needs the beginning of a reset");
                r = attach(&k);
                if (r != EXIT_SUCCESS)
                        return r;
                if (begin) {
                        r = emu_smi_reset_begin(k, (uint32_t) gpu_id, cause, drop);
                        if (r < 0) {
                                fprintf(stderr, "kfdemu-ctl: cannot reset GPU 0x%" PRIx64 ": %s\n", gpu_id,
                                        r == -EBUSY ? "it is resetting already (finish with --end)" : strerror(-r));
                                return EXIT_FAILURE;
                        }
                }
                if (end) {
                        r = emu_smi_reset_end(k, (uint32_t) gpu_id);
                        if (r < 0) {
                                fprintf(stderr, "kfdemu-ctl: cannot end the reset of GPU 0x%" PRIx64 ": %s\n",
                                        gpu_id, r == -EALREADY ? "it is not resetting" : strerror(-r));
                                return EXIT_FAILURE;
                        }
                }
                return EXIT_SUCCESS;
        }

        if (strcmp(argv[1], "vmfault") == 0) {
                pid_t faulted;

                if (argc < 4 || argc > 5)
                        return usage_error("%s", "gpu vmfault: expected GPU_ID ADDR [PID]");
                if (parse_u64(argv[3], &addr) < 0)
                        return usage_error("gpu vmfault: '%s' is not an address", argv[3]);
                if (argc == 5 && (parse_u64(argv[4], &pid) < 0 || pid == 0 || pid > INT32_MAX))
                        return usage_error("gpu vmfault: '%s' is not a process id", argv[4]);
                r = attach(&k);
                if (r != EXIT_SUCCESS)
                        return r;
                r = emu_smi_vmfault(k, (uint32_t) gpu_id, addr, (pid_t) pid, &faulted);
                if (r < 0) {
                        fprintf(stderr, "kfdemu-ctl: cannot fault at 0x%" PRIx64 " on GPU 0x%" PRIx64 ": %s\n", addr,
                                gpu_id,
                                r == -ENOENT ? "no process maps that address there; give the PID" :
                                r == -ENOTUNIQ ? "several processes map that address there; give the PID" :
                                strerror(-r));
                        return EXIT_FAILURE;
                }
                printf("%d\n", (int) faulted);
                return EXIT_SUCCESS;
        }

        return usage_error("gpu: unknown subcommand '%s' (reset, vmfault)", argv[1]);
}

int main(int argc, char *argv[]) {
        static const struct option options[] = {
                { "dir",  required_argument, NULL, 'd' },
                { "help", no_argument,       NULL, 'h' },
                {}
        };
        static const struct {
                const char *name;
                int (*run)(int argc, char *argv[]);
        } verbs[] = {
                { "init",    verb_init },
                { "dump",    verb_dump },
                { "fault",   verb_fault },
                { "profile", verb_profile },
                { "kill",    verb_kill },
                { "gpu",     verb_gpu },
        };
        int c;

        /* "+": stop at the command, whose own options are parsed by the verb. */
        while ((c = getopt_long(argc, argv, "+hd:", options, NULL)) >= 0)
                switch (c) {
                case 'd':
                        arg_dir = optarg;
                        break;
                case 'h':
                        help(stdout);
                        return EXIT_SUCCESS;
                default:
                        return EXIT_USAGE;
                }

        if (!arg_dir)
                arg_dir = getenv("KFDEMU_DIR");
        if (optind >= argc)
                return usage_error("%s", "missing command (init, dump, fault, profile)");
        if (!arg_dir || !*arg_dir)
                return usage_error("%s", "no emulator directory: pass --dir DIR or set KFDEMU_DIR");

        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                if (strcmp(argv[optind], verbs[i].name) == 0)
                        return verbs[i].run(argc - optind, argv + optind);

        return usage_error("unknown command '%s' (init, dump, fault, profile)", argv[optind]);
}
