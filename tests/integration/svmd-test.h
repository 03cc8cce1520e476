/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Helpers for integration tests run under svmd-harness: a bus connection to
 * the daemon, method calls with a{sv} options, the GPU list, and the
 * emulator's kernel-side state to prove nothing leaked.
 */

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>
#include <systemd/sd-bus.h>

#include "emu-kernel.h"
#include "macro.h"
#include "unit-assert.h"

#define TEST_MAX_GPUS 64

typedef struct TestContext {
        sd_bus *bus;            /* the private bus */
        sd_bus *direct;         /* io.socket, connected on first use */
        EmuKernel *emu;
        uint32_t gpus[TEST_MAX_GPUS];
        size_t n_gpus;
} TestContext;

/* Connect and read ListGpus; aborts on failure (the harness set everything up). */
void test_setup(TestContext *t);
void test_teardown(TestContext *t);
sd_bus *test_direct(TestContext *t);
/* A new connection to the private bus, e.g. in a child that dropped to another uid. */
sd_bus *test_connect_bus(void);
/* A new connection of the calling process (e.g. a forked child of another uid): the bus, or io.socket. */
sd_bus *test_connect(bool direct);

/*
 * Call org.svmd1.Manager.<member> with arguments per sd_bus_message_append
 * conventions. Returns 0 or the negative errno of the error; *error holds the
 * D-Bus error (caller frees). *reply may be NULL.
 */
int test_call(sd_bus *bus, const char *member, sd_bus_error *error, sd_bus_message **reply, const char *types,
              ...);
/* A call's error says nothing about svmd's decision: svmd was down or died under it (kill -9 tests). */
bool test_outcome_unknown(int r, const sd_bus_error *e);
int test_callv(sd_bus *bus, const char *member, sd_bus_error *error, sd_bus_message **reply, const char *types,
               va_list ap);

/* The "id" of the first result of a Commit reply (asserted nonzero). */
uint64_t test_commit_first_id(sd_bus_message *reply);

/* The emulator's state as canonical JSON with the counters (ioctls, faults) left out. */
char *test_dump(TestContext *t);
/*
 * The dump once it equals want, or the last one after 5 s (for the caller's
 * ASSERT_STREQ to show the difference). Freeing a persistent range closes
 * svmd's copy of its fd at once, but the fd store (the harness, like systemd)
 * drops its copy when it gets to the FDSTOREREMOVE message: until then the
 * emulator still has the buffer.
 */
char *test_dump_settled(TestContext *t, const char *want);
/* The number of calls of each KFD ioctl so far (e.g. "MAP_MEMORY_TO_GPU"). */
uint64_t test_ioctl_count(TestContext *t, const char *name);

/* Arm a fault (kfdemu-ctl syntax); aborts on a bad spec. */
void test_fault(TestContext *t, const char *fmt, ...) _printf_(2, 3);
void test_fault_clear(TestContext *t);
/* How often the armed faults fired so far, summed. */
uint64_t test_faults_fired(TestContext *t);

/*
 * Kill svmd with SIGKILL and wait until svmd-harness has restarted it (as
 * Restart=on-failure does) and it reported READY=1 again.
 */
void test_kill_and_wait_restart(TestContext *t);
/* svmd-harness's DIR/svmd.state "<pid> <ready> <starts>": svmd's pid (0 once it exited for good) and starts. */
void test_svmd_state(int *ret_pid, int *ret_starts);
/* Whether svmd-harness's DIR/svmd.state says svmd sent READY=1. */
bool test_svmd_ready(void);
/* Wait (up to 2 min) until svmd has exited for good; asserts the harness did not restart it. */
void test_wait_svmd_exit(int starts_before);
/* The kernel's buffer handles, over every KFD process. */
uint64_t test_kernel_handles(TestContext *t);

/* What the kernel maps for svmd: "va size [gpu …]" lines sorted by VA (handles and buffer ids left out). */
char *test_kernel_mappings(TestContext *t);

/* ListRanges as a canonical string, for before/after comparisons of the daemon's tables. */
/* Free a range; aborts if svmd refuses. */
void test_free(sd_bus *bus, uint64_t id);

/* Allocate a range with no mapping; aborts if svmd refuses. Returns its id, its VA in *ret_va. */
uint64_t test_allocate(sd_bus *bus, uint64_t size, uint32_t gpu, const char *domain, bool persistent,
                       uint64_t *ret_va);
/* Export a range: the fd (the caller's to close) and the range's size; aborts if svmd refuses. */
int test_export(sd_bus *bus, uint64_t id, uint64_t *ret_size);
/* LostRanges as "id: reason" lines. */
char *test_lost_ranges(sd_bus *bus);

/* The Peers property of a GPU: up to max ids into ret, and how many there are (at most max). */
size_t test_gpu_peers(TestContext *t, uint32_t gpu, uint32_t *ret, size_t max);

char *test_list_ranges(sd_bus *bus);

/* GetUsage("") as one line, for before/after comparisons of the caller's accounting. */
char *test_usage(sd_bus *bus);

/* svmd's log so far, from a harness run with --svmd tests/hostile/svmd-log.sh. */
char *test_svmd_log(void);

/* Speak to the fd store as svmd would (svmd-harness plays systemd): msg, and fd if ≥ 0. */
void test_notify(const char *msg, int fd);
/* Range id's record as svmd last wrote it (snapshot.json, then the journal's lines); aborts if there is none. */
json_t *test_range_record(uint64_t id);
/* The name svmd gave range id's fd in the fd store (its record's "fd"); aborts if no record names one. */
char *test_fd_store_name(uint64_t id);

/* Drop to uid (and gid) for good: a forked child that plays another tenant. */
void test_become(uid_t uid);

/* A child of another uid that the test drives over two pipes. */
typedef struct TestChild {
        pid_t pid;
        int to_child, from_child;
} TestChild;
/* Fork a child that drops to uid (test_become()) and runs fn(in, out), then exits 0. */
TestChild test_spawn(uid_t uid, void (*fn)(int in, int out));

/* Assert that a call failed with the given D-Bus error name (and print its message). */
#define ASSERT_BUS_ERROR(r, error, ename)                                                        \
        do {                                                                                    \
                if ((r) >= 0 || !sd_bus_error_has_name((error), (ename))) {                      \
                        fprintf(stderr, "%s:%d: %s: expected %s, got r=%d %s: %s\n", __FILE__,  \
                                __LINE__, __func__, (ename), (int) (r),                          \
                                (error)->name ?: "(none)", (error)->message ?: "");             \
                        abort();                                                                \
                }                                                                               \
        } while (0)

#define ASSERT_BUS_OK(r, error)                                                                 \
        do {                                                                                    \
                if ((r) < 0) {                                                                  \
                        fprintf(stderr, "%s:%d: %s: call failed: r=%d %s: %s\n", __FILE__,      \
                                __LINE__, __func__, (int) (r), (error)->name ?: "(none)",       \
                                (error)->message ?: "");                                        \
                        abort();                                                                \
                }                                                                               \
        } while (0)
