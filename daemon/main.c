/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <systemd/sd-daemon.h>

#include "config.h"
#include "log.h"
#include "manager.h"
#include "probe.h"
#include "svmd-protocol.h"

static void help(void) {
        printf("Usage: svmd [OPTIONS]\n\n"
               "The node's GPU memory manager: owns /dev/kfd and serves org.svmd1 on D-Bus.\n\n"
               "  -h --help              Show this help\n"
               "     --version           Show the version\n"
               "     --config=PATH       Configuration file (default: %s)\n"
               "     --bus=BUS           system (default), session, none, or a D-Bus address\n"
               "     --runtime-dir=DIR   State directory for io.socket (default: %s)\n"
               "     --log-level=LEVEL   emerg, alert, crit, err, warning, notice, info, debug\n"
               "     --probe             Check this node's kernel against what svmd relies on, then exit\n"
               "                         (runs next to a running svmd; non-zero exit: svmd cannot run)\n"
               "     --json              With --probe: print the report as JSON\n"
               "\nSee svmd(8).\n",
               SVMD_CONFIG_FILE, SVMD_RUNTIME_DIR);
}

typedef struct Arguments {
        ManagerOptions manager;
        int log_level;
        bool probe;
        bool json;
} Arguments;

static int parse_argv(int argc, char *argv[], Arguments *a) {
        enum {
                ARG_VERSION = 0x100,
                ARG_CONFIG,
                ARG_BUS,
                ARG_RUNTIME_DIR,
                ARG_LOG_LEVEL,
                ARG_PROBE,
                ARG_JSON,
        };
        static const struct option options[] = {
                { "help",        no_argument,       NULL, 'h' },
                { "version",     no_argument,       NULL, ARG_VERSION },
                { "config",      required_argument, NULL, ARG_CONFIG },
                { "bus",         required_argument, NULL, ARG_BUS },
                { "runtime-dir", required_argument, NULL, ARG_RUNTIME_DIR },
                { "log-level",   required_argument, NULL, ARG_LOG_LEVEL },
                { "probe",       no_argument,       NULL, ARG_PROBE },
                { "json",        no_argument,       NULL, ARG_JSON },
                {}
        };
        int c;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("svmd " PACKAGE_VERSION "\n");
                        return 0;
                case ARG_CONFIG:
                        a->manager.config_path = optarg;
                        break;
                case ARG_BUS:
                        if (streq(optarg, "system"))
                                a->manager.bus_kind = BUS_KIND_SYSTEM;
                        else if (streq(optarg, "session"))
                                a->manager.bus_kind = BUS_KIND_SESSION;
                        else if (streq(optarg, "none"))
                                a->manager.bus_kind = BUS_KIND_NONE;
                        else if (strchr(optarg, ':')) {
                                a->manager.bus_kind = BUS_KIND_ADDRESS;
                                a->manager.bus_address = optarg;
                        } else {
                                log_error("--bus= takes system, session, none or a D-Bus address, not \"%s\".", optarg);
                                return -EINVAL;
                        }
                        break;
                case ARG_RUNTIME_DIR:
                        a->manager.runtime_dir = optarg;
                        break;
                case ARG_LOG_LEVEL:
                        a->log_level = log_level_from_string(optarg);
                        if (a->log_level < 0) {
                                log_error("Unknown log level \"%s\".", optarg);
                                return -EINVAL;
                        }
                        break;
                case ARG_PROBE:
                        a->probe = true;
                        break;
                case ARG_JSON:
                        a->json = true;
                        break;
                case '?':
                        return -EINVAL;
                default:
                        return -EINVAL;
                }

        if (optind < argc) {
                log_error("svmd takes no positional arguments.");
                return -EINVAL;
        }
        if (a->json && !a->probe) {
                log_error("--json only applies to --probe.");
                return -EINVAL;
        }
        return 1;
}

/* svmd --probe: the kernel-contract report (docs/hardware.md). Exit 0 when svmd can run here. */
static int run_probe(bool json) {
        _cleanup_(probe_report_freep) ProbeReport *report = NULL;
        int r;

        r = probe_run(&report);
        if (r < 0) {
                log_error_errno(r, "Running the kernel-contract probe failed: %m");
                return EXIT_FAILURE;
        }

        if (json) {
                json_auto_t *j = NULL;

                r = probe_report_to_json(report, &j);
                if (r < 0 || json_dumpf(j, stdout, JSON_INDENT(2)) < 0) {
                        log_error("Writing the probe report as JSON failed.");
                        return EXIT_FAILURE;
                }
                putchar('\n');
        } else
                probe_report_print(report, stdout);

        if (fflush(stdout) != 0) {
                log_error_errno(errno, "Writing the probe report failed: %m");
                return EXIT_FAILURE;
        }
        return probe_report_svmd_can_run(report) ? EXIT_SUCCESS : EXIT_FAILURE;
}

int main(int argc, char *argv[]) {
        _cleanup_(manager_freep) Manager *m = NULL;
        Arguments a = { .manager.bus_kind = BUS_KIND_SYSTEM, .log_level = -1 };
        int r;

        log_setup();
        r = parse_argv(argc, argv, &a);
        if (r <= 0)
                return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
        if (a.log_level >= 0)
                log_set_max_level(a.log_level);
        if (a.probe)
                return run_probe(a.json);

        r = sd_bus_error_add_map(svmd_error_map);
        if (r < 0) {
                log_error_errno(r, "Registering the error names failed: %m");
                return EXIT_FAILURE;
        }

        r = manager_new(&m, &a.manager);
        if (r < 0) {
                log_error_errno(r, "Out of memory.");
                return EXIT_FAILURE;
        }

        r = manager_start(m);
        if (r < 0) {
                (void) sd_notifyf(false, "STATUS=Failed to start: %s\nERRNO=%i", strerror(-r), -r);
                return EXIT_FAILURE;
        }

        r = manager_run(m);
        if (r < 0) {
                log_error_errno(r, "Exiting on an error: %m");
                return EXIT_FAILURE;
        }
        return EXIT_SUCCESS;
}
