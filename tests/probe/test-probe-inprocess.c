/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The probe run inside this process on an emulated node (under kfdemu-run),
 * optionally with a kernel fault armed first, so that the emulator's state can
 * be read while the probe's KFD process is still alive: it must hold no
 * buffer, no handle and no SVM range once probe_run() returns, whatever
 * failed.
 *
 *   test-probe-inprocess KFDEMU_CTL [FAULT_SPEC CHECK STATUS yes|no]
 *
 * With a fault: CHECK must end with STATUS, and "svmd can run" must be yes/no.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "macro.h"
#include "probe.h"

static const char *ctl_path;

/* kfdemu-ctl maps the arena itself: run it without the preloaded emulator. Returns its stdout. */
static char *ctl(const char *arg1, const char *arg2, const char *arg3) {
        char *argv[] = { (char *) ctl_path, (char *) arg1, (char *) arg2, (char *) arg3, NULL };
        char *out = NULL;
        size_t size = 0;
        int p[2], status;
        FILE *f;
        pid_t pid;

        if (pipe(p) < 0)
                abort();
        pid = fork();
        if (pid < 0)
                abort();
        if (pid == 0) {
                dup2(p[1], STDOUT_FILENO);
                close(p[0]);
                close(p[1]);
                unsetenv("LD_PRELOAD");
                execv(ctl_path, argv);
                _exit(127);
        }
        close(p[1]);
        f = open_memstream(&out, &size);
        for (char buf[4096];;) {
                ssize_t n = read(p[0], buf, sizeof(buf));
                if (n <= 0)
                        break;
                fwrite(buf, 1, (size_t) n, f);
        }
        fclose(f);
        close(p[0]);
        if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                fprintf(stderr, "FAIL: kfdemu-ctl %s %s failed\n", arg1, strna(arg2));
                exit(EXIT_FAILURE);
        }
        return out;
}

#define CHECK(expr)                                                                     \
        do {                                                                            \
                if (!(expr)) {                                                          \
                        fprintf(stderr, "FAIL: %s:%d: %s\n", __FILE__, __LINE__, #expr); \
                        exit(EXIT_FAILURE);                                             \
                }                                                                       \
        } while (0)

int main(int argc, char *argv[]) {
        _cleanup_(probe_report_freep) ProbeReport *report = NULL;
        _cleanup_free_ char *dump = NULL;
        json_auto_t *j = NULL;
        json_t *processes, *proc;
        size_t i;

        CHECK(argc == 2 || argc == 6);
        ctl_path = argv[1];

        if (argc == 6)
                free(ctl("fault", "add", argv[2]));

        CHECK(probe_run(&report) == 0);
        probe_report_print(report, stdout);
        fflush(stdout);

        if (argc == 6) {
                ProbeStatus want = _PROBE_STATUS_MAX;
                bool found = false;

                for (ProbeStatus s = 0; s < _PROBE_STATUS_MAX; s++)
                        if (streq(probe_status_to_string(s), argv[4]))
                                want = s;
                CHECK(want != _PROBE_STATUS_MAX);
                for (ProbeCheck c = 0; c < _PROBE_CHECK_MAX; c++)
                        if (streq(report->results[c].name, argv[3])) {
                                CHECK(report->results[c].status == want);
                                found = true;
                        }
                CHECK(found);
                CHECK(probe_report_svmd_can_run(report) == streq(argv[5], "yes"));
        } else
                CHECK(probe_report_svmd_can_run(report));

        /* Still alive: the emulator's view of this process must be empty. */
        dump = ctl("dump", NULL, NULL);
        j = json_loads(dump, 0, NULL);
        CHECK(j);
        CHECK(json_array_size(json_object_get(j, "buffers")) == 0);
        processes = json_object_get(j, "processes");
        json_array_foreach(processes, i, proc) {
                if (json_integer_value(json_object_get(proc, "pid")) != getpid())
                        continue;
                CHECK(json_array_size(json_object_get(proc, "handles")) == 0);
                CHECK(json_array_size(json_object_get(proc, "svm")) == 0);
        }
        printf("ok: nothing of the probe is left in the emulator\n");
        return EXIT_SUCCESS;
}
