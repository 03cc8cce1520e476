/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * Hostile clients against svmd (under svmd-harness with hostile.conf). A
 * tenant (uid 1, "daemon") owns ranges and tokens; two others (uid 2 "bin" and
 * 65534 "nobody") attack them, over the bus and over the direct socket:
 *
 *   - other tenants' ids (every id near the victim's) and guessed tokens
 *     (random, and the real one with one character changed);
 *   - expired tokens (expires-usec) and tokens of freed ranges;
 *   - huge arrays: 10^6 GPU ids, 10^6 host ranges, 10^5 Commit operations,
 *     10^5 flags, a 1 MiB label (LimitsExceeded on the direct socket past
 *     "message-size");
 *   - a{sv} with variants nested 60 deep, wrong types, unknown keys, fds where
 *     none belong (the daemon must not keep them);
 *   - calls sent and the connection closed at once, 200 times;
 *   - flooding: ranges and tokens until the quota and limits refuse.
 *
 * After each: another client's ListGpus is answered, the victim's range is
 * unchanged, and at the end, with every client gone, the emulator's dump,
 * ListRanges and svmd's open fds are as at the start.
 */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hostile-direct.h"
#include "svmd-protocol.h"
#include "svmd-test.h"

#define MiB (UINT64_C(1) << 20)
#define UID_OWNER 1
#define UID_BIN 2
#define UID_NOBODY 65534

static TestContext T;
static unsigned n_scenarios;
#define n_attacks (V->attacks)

/* What the owner publishes for the attackers. */
typedef struct Victim {
        uint64_t id, va;
        char token[128];        /* granted to nobody */
        char expired[128];      /* granted to nobody, expired */
        char freed[128];        /* of a range freed since */
        char before[4096];      /* root's view of the victim range */
        unsigned attacks;       /* refused so far, by every child */
} Victim;

static Victim *V; /* shared with the children */

/* ---- connections ---- */

static sd_bus *connect_bus(bool direct) {
        char address[4096];
        sd_bus *bus = NULL;

        if (direct)
                snprintf(address, sizeof(address), "unix:path=%s/io.socket", getenv("SVMD_RUNTIME_DIR"));
        else
                snprintf(address, sizeof(address), "%s", getenv("SVMD_BUS_ADDRESS"));
        ASSERT_OK(sd_bus_new(&bus));
        ASSERT_OK(sd_bus_set_address(bus, address));
        ASSERT_OK(sd_bus_set_bus_client(bus, !direct));
        ASSERT_OK(sd_bus_negotiate_fds(bus, 1));
        ASSERT_OK(sd_bus_start(bus));
        return bus;
}

/* Run fn as uid in a child; it must exit 0. */
static void as_uid(uid_t uid, void (*fn)(void)) {
        pid_t pid = fork();
        int status;

        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                test_become(uid);
                fn();
                _exit(0);
        }
        ASSERT_TRUE(waitpid(pid, &status, 0) == pid);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                fprintf(stderr, "child as uid %u failed (status 0x%x)\n", (unsigned) uid, status);
                abort();
        }
}

static sd_bus_message *new_call(sd_bus *bus, const char *member) {
        sd_bus_message *m = NULL;

        ASSERT_OK(sd_bus_message_new_method_call(bus, &m, SVMD_BUS_NAME, SVMD_MANAGER_PATH, SVMD_MANAGER_INTERFACE,
                                                 member));
        return m;
}

static int send_call(sd_bus *bus, sd_bus_message *m, sd_bus_error *error, sd_bus_message **reply) {
        int r = sd_bus_call(bus, m, 60 * 1000 * 1000ULL, error, reply);
        sd_bus_message_unref(m);
        return r;
}

/* The attack must be refused with one of the names (NULL-terminated); counts it. */
static void expect_refused(const char *what, int r, sd_bus_error *error, ...) {
        va_list ap;
        const char *name;
        bool ok = false;

        va_start(ap, error);
        while ((name = va_arg(ap, const char *)))
                if (r < 0 && sd_bus_error_has_name(error, name))
                        ok = true;
        va_end(ap);
        if (!ok) {
                fprintf(stderr, "%s: expected a refusal, got r=%d %s: %s\n", what, r, strna(error->name),
                        strna(error->message));
                abort();
        }
        n_attacks++;
        sd_bus_error_free(error);
}

/* ---- the daemon is up and the victim untouched ---- */

static char *victim_state(void) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        char path[64], *s = NULL, *state = NULL;
        sd_bus_message *reply = NULL;
        const uint32_t *mapped = NULL;
        size_t n = 0;
        int r;

        snprintf(path, sizeof(path), SVMD_RANGE_PATH_PREFIX "/%" PRIu64, V->id);
        r = sd_bus_get_property_string(T.bus, SVMD_BUS_NAME, path, SVMD_RANGE_INTERFACE, "State", &error, &state);
        ASSERT_BUS_OK(r, &error);
        r = sd_bus_get_property(T.bus, SVMD_BUS_NAME, path, SVMD_RANGE_INTERFACE, "MappedGpus", &error, &reply, "au");
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_read_array(reply, 'u', (const void **) &mapped, &n));
        ASSERT_TRUE(asprintf(&s, "%s mapped on %zu", state, n / sizeof(uint32_t)) >= 0);
        sd_bus_message_unref(reply);
        free(state);
        return s;
}

static void check_alive(const char *scenario) {
        sd_bus *other = connect_bus(false);
        sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_free_ char *now = NULL;
        int r;

        r = test_call(other, "ListGpus", &error, NULL, "");
        ASSERT_BUS_OK(r, &error);
        sd_bus_flush_close_unref(other);
        if (V->id != 0) {
                now = victim_state();
                if (!streq(now, V->before)) {
                        fprintf(stderr, "%s changed the victim range: %s → %s\n", scenario, V->before, now);
                        abort();
                }
        }
        n_scenarios++;
        printf("  %-44s ok, daemon answers (%u attacks refused so far)\n", scenario, n_attacks);
}

/* ---- the owner ---- */

static uint64_t realtime_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000;
}

static int ready_pipe[2], done_pipe[2];

static void share(sd_bus *bus, uint64_t id, uint64_t expires, char *out, size_t size) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        const char *token;
        int r;

        if (expires)
                r = test_call(bus, "Share", &error, &reply, "ta{sv}", id, 2, "uid", "u", (uint32_t) UID_NOBODY,
                              "expires-usec", "t", expires);
        else
                r = test_call(bus, "Share", &error, &reply, "ta{sv}", id, 1, "uid", "u", (uint32_t) UID_NOBODY);
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_read(reply, "s", &token));
        snprintf(out, size, "%s", token);
        sd_bus_message_unref(reply);
}

static uint64_t allocate(sd_bus *bus, uint64_t size, const char *domain, uint64_t *ret_va) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        const char *path;
        uint64_t id, va;
        int r;

        r = test_call(bus, "Allocate", &error, &reply, "tusa{sv}", size, T.gpus[0], domain, 1, "map", "au", 2,
                      T.gpus[0], T.gpus[1]);
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_read(reply, "tto", &id, &va, &path));
        sd_bus_message_unref(reply);
        if (ret_va)
                *ret_va = va;
        return id;
}

/* Owns the victim; keeps its connection (and so its ranges) until the pipe closes. */
static void owner_main(void) {
        sd_bus *bus = connect_bus(false);
        sd_bus_error error = SD_BUS_ERROR_NULL;
        uint64_t freed;
        char c;
        int r;

        V->id = allocate(bus, 2 * MiB, "vram", &V->va);
        share(bus, V->id, 0, V->token, sizeof(V->token));
        share(bus, V->id, realtime_usec() + 200 * 1000, V->expired, sizeof(V->expired));
        freed = allocate(bus, 64 * 1024, "gtt", NULL);
        share(bus, freed, 0, V->freed, sizeof(V->freed));
        r = test_call(bus, "Free", &error, NULL, "t", freed);
        ASSERT_BUS_OK(r, &error);
        ASSERT_TRUE(write(ready_pipe[1], "r", 1) == 1);
        /* Wait for the end: the parent closes its end. */
        while (read(done_pipe[0], &c, 1) > 0)
                ;
        sd_bus_flush_close_unref(bus);
}

/* ---- scenarios ---- */

static void attack_ids(sd_bus *bus, const char *via) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        char what[128];
        int r;

        /* The victim's id and every id around it. */
        for (uint64_t id = V->id > 8 ? V->id - 8 : 1; id < V->id + 8; id++) {
                snprintf(what, sizeof(what), "%s: Free(%" PRIu64 ")", via, id);
                r = test_call(bus, "Free", &error, NULL, "t", id);
                expect_refused(what, r, &error, SD_BUS_ERROR_ACCESS_DENIED, SVMD_ERROR_NO_SUCH_RANGE, NULL);
                snprintf(what, sizeof(what), "%s: Map(%" PRIu64 ")", via, id);
                r = test_call(bus, "Map", &error, NULL, "taua{sv}", id, 1, T.gpus[2], 0);
                expect_refused(what, r, &error, SD_BUS_ERROR_ACCESS_DENIED, SVMD_ERROR_NO_SUCH_RANGE, NULL);
                snprintf(what, sizeof(what), "%s: Unmap(%" PRIu64 ")", via, id);
                r = test_call(bus, "Unmap", &error, NULL, "tau", id, 1, T.gpus[0]);
                expect_refused(what, r, &error, SD_BUS_ERROR_ACCESS_DENIED, SVMD_ERROR_NO_SUCH_RANGE, NULL);
                snprintf(what, sizeof(what), "%s: Export(%" PRIu64 ")", via, id);
                r = test_call(bus, "Export", &error, NULL, "t", id);
                expect_refused(what, r, &error, SD_BUS_ERROR_ACCESS_DENIED, SVMD_ERROR_NO_SUCH_RANGE, NULL);
                snprintf(what, sizeof(what), "%s: Share(%" PRIu64 ")", via, id);
                r = test_call(bus, "Share", &error, NULL, "ta{sv}", id, 0);
                expect_refused(what, r, &error, SD_BUS_ERROR_ACCESS_DENIED, SVMD_ERROR_NO_SUCH_RANGE, NULL);
                snprintf(what, sizeof(what), "%s: Release(%" PRIu64 ")", via, id);
                r = test_call(bus, "Release", &error, NULL, "t", id);
                expect_refused(what, r, &error, SD_BUS_ERROR_ACCESS_DENIED, SVMD_ERROR_NO_SUCH_RANGE, NULL);
                snprintf(what, sizeof(what), "%s: Commit(Free %" PRIu64 ")", via, id);
                r = test_call(bus, "Commit", &error, NULL, "a(sa{sv})a{sv}", 1, "Free", 1, "id", "t", id, 0);
                expect_refused(what, r, &error, SD_BUS_ERROR_ACCESS_DENIED, SVMD_ERROR_NO_SUCH_RANGE, NULL);
        }
        /* Somebody else's usage, everybody's ranges, the configuration. */
        r = test_call(bus, "GetUsage", &error, NULL, "s", "uid:1");
        expect_refused("GetUsage(uid:1)", r, &error, SD_BUS_ERROR_ACCESS_DENIED, NULL);
        r = test_call(bus, "ListRanges", &error, NULL, "a{sv}", 1, "all", "b", 1);
        expect_refused("ListRanges(all)", r, &error, SD_BUS_ERROR_ACCESS_DENIED, NULL);
        r = test_call(bus, "Reload", &error, NULL, "");
        expect_refused("Reload", r, &error, SD_BUS_ERROR_ACCESS_DENIED, NULL);
}

static void attack_tokens(sd_bus *bus, bool granted) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        char guess[128];
        int r;

        /* Random guesses of the same shape, and the real token one character off. */
        for (int i = 0; i < 64; i++) {
                snprintf(guess, sizeof(guess), "%s", V->token);
                for (char *p = guess; *p; p++)
                        if (i < 32 ? (rand() % 2) : (p - guess) == i - 32)
                                *p = *p == 'a' ? 'b' : 'a';
                if (streq(guess, V->token))
                        continue;
                r = test_call(bus, "Attach", &error, NULL, "s", guess);
                expect_refused("Attach(guessed token)", r, &error, SVMD_ERROR_NO_SUCH_TOKEN,
                               SD_BUS_ERROR_ACCESS_DENIED, SD_BUS_ERROR_INVALID_ARGS, NULL);
        }
        r = test_call(bus, "Attach", &error, NULL, "s", V->expired);
        expect_refused("Attach(expired token)", r, &error, SVMD_ERROR_NO_SUCH_TOKEN, SD_BUS_ERROR_ACCESS_DENIED, NULL);
        r = test_call(bus, "Attach", &error, NULL, "s", V->freed);
        expect_refused("Attach(token of a freed range)", r, &error, SVMD_ERROR_NO_SUCH_TOKEN, NULL);
        if (!granted) {
                r = test_call(bus, "Attach", &error, NULL, "s", V->token);
                expect_refused("Attach(token granted to another uid)", r, &error, SD_BUS_ERROR_ACCESS_DENIED,
                               SVMD_ERROR_NO_SUCH_TOKEN, NULL);
        }
}

static void bin_ids_main(void) {
        sd_bus *bus = connect_bus(false), *direct = connect_bus(true);

        attack_ids(bus, "bin over the bus");
        attack_ids(direct, "bin direct");
        attack_tokens(bus, false);
        attack_tokens(direct, false);
        printf("    uid %d: %u attacks refused\n", UID_BIN, n_attacks);
        sd_bus_flush_close_unref(bus);
        sd_bus_flush_close_unref(direct);
}

static void nobody_ids_main(void) {
        sd_bus *bus = connect_bus(false), *direct = connect_bus(true);
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        uint64_t id, va, size;
        int fd, r;

        attack_ids(bus, "nobody over the bus");
        attack_ids(direct, "nobody direct");
        attack_tokens(bus, true);
        /* The one legitimate use: the granted token attaches; the holder still cannot free or re-share it. */
        r = test_call(bus, "Attach", &error, &reply, "s", V->token);
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_read(reply, "ttth", &id, &va, &size, &fd));
        ASSERT_UEQ(id, V->id);
        sd_bus_message_unref(reply);
        r = test_call(bus, "Free", &error, NULL, "t", id);
        expect_refused("holder: Free", r, &error, SD_BUS_ERROR_ACCESS_DENIED, NULL);
        r = test_call(bus, "Unmap", &error, NULL, "tau", id, 1, T.gpus[0]);
        expect_refused("holder: Unmap", r, &error, SD_BUS_ERROR_ACCESS_DENIED, NULL);
        r = test_call(bus, "Release", &error, NULL, "t", id);
        ASSERT_BUS_OK(r, &error);
        r = test_call(bus, "Release", &error, NULL, "t", id);
        expect_refused("holder: Release twice", r, &error, SD_BUS_ERROR_ACCESS_DENIED, SVMD_ERROR_NO_SUCH_RANGE,
                       SD_BUS_ERROR_INVALID_ARGS, NULL);
        printf("    uid %d: %u attacks refused\n", UID_NOBODY, n_attacks);
        sd_bus_flush_close_unref(bus);
        sd_bus_flush_close_unref(direct);
}

/* 10^6 GPU ids, 10^6 host ranges, 10^5 Commit ops, 10^5 flags, a 1 MiB label. */
static void huge_main(void) {
        for (int d = 0; d < 2; d++) {
                sd_bus *bus = connect_bus(d == 1);
                const char *via = d ? "direct" : "bus";
                sd_bus_error error = SD_BUS_ERROR_NULL;
                sd_bus_message *m;
                uint32_t *ids = calloc(1000000, sizeof(uint32_t));
                char *label = malloc(MiB + 1);
                char what[128];
                int r;

                ASSERT_TRUE(ids && label);
                for (size_t i = 0; i < 1000000; i++)
                        ids[i] = T.gpus[i % T.n_gpus];
                memset(label, 'x', MiB);
                label[MiB] = '\0';

                m = new_call(bus, "Map");
                ASSERT_OK(sd_bus_message_append(m, "t", V->id));
                ASSERT_OK(sd_bus_message_append_array(m, 'u', ids, 1000000 * sizeof(uint32_t)));
                ASSERT_OK(sd_bus_message_append(m, "a{sv}", 0));
                r = send_call(bus, m, &error, NULL);
                snprintf(what, sizeof(what), "%s: Map with 10^6 GPU ids", via);
                expect_refused(what, r, &error, SD_BUS_ERROR_INVALID_ARGS, SD_BUS_ERROR_ACCESS_DENIED,
                               SVMD_ERROR_LIMITS_EXCEEDED, NULL);

                m = new_call(bus, "Allocate");
                ASSERT_OK(sd_bus_message_append(m, "tus", 2 * MiB, T.gpus[0], "vram"));
                ASSERT_OK(sd_bus_message_open_container(m, 'a', "{sv}"));
                ASSERT_OK(sd_bus_message_open_container(m, 'e', "sv"));
                ASSERT_OK(sd_bus_message_append(m, "s", "map"));
                ASSERT_OK(sd_bus_message_open_container(m, 'v', "au"));
                ASSERT_OK(sd_bus_message_append_array(m, 'u', ids, 1000000 * sizeof(uint32_t)));
                ASSERT_OK(sd_bus_message_close_container(m));
                ASSERT_OK(sd_bus_message_close_container(m));
                ASSERT_OK(sd_bus_message_close_container(m));
                r = send_call(bus, m, &error, NULL);
                snprintf(what, sizeof(what), "%s: Allocate with map of 10^6 GPU ids", via);
                expect_refused(what, r, &error, SD_BUS_ERROR_INVALID_ARGS, SVMD_ERROR_LIMITS_EXCEEDED, NULL);

                m = new_call(bus, "AllocateBatch");
                ASSERT_OK(sd_bus_message_open_container(m, 'a', "(tt)"));
                for (size_t i = 0; i < 1000000; i++)
                        ASSERT_OK(sd_bus_message_append(m, "(tt)", V->va + 4096 * (i % 4), UINT64_C(4096)));
                ASSERT_OK(sd_bus_message_close_container(m));
                ASSERT_OK(sd_bus_message_append(m, "ua{sv}", T.gpus[0], 0));
                r = send_call(bus, m, &error, NULL);
                snprintf(what, sizeof(what), "%s: AllocateBatch with 10^6 host ranges", via);
                expect_refused(what, r, &error, SD_BUS_ERROR_INVALID_ARGS, SVMD_ERROR_LIMITS_EXCEEDED, NULL);

                m = new_call(bus, "Commit");
                ASSERT_OK(sd_bus_message_open_container(m, 'a', "(sa{sv})"));
                for (size_t i = 0; i < 100000; i++)
                        ASSERT_OK(sd_bus_message_append(m, "(sa{sv})", "Free", 1, "id", "t", V->id));
                ASSERT_OK(sd_bus_message_close_container(m));
                ASSERT_OK(sd_bus_message_append(m, "a{sv}", 0));
                r = send_call(bus, m, &error, NULL);
                snprintf(what, sizeof(what), "%s: Commit of 10^5 operations", via);
                expect_refused(what, r, &error, SD_BUS_ERROR_INVALID_ARGS, SVMD_ERROR_LIMITS_EXCEEDED, NULL);

                m = new_call(bus, "Allocate");
                ASSERT_OK(sd_bus_message_append(m, "tus", 2 * MiB, T.gpus[0], "vram"));
                ASSERT_OK(sd_bus_message_open_container(m, 'a', "{sv}"));
                ASSERT_OK(sd_bus_message_open_container(m, 'e', "sv"));
                ASSERT_OK(sd_bus_message_append(m, "s", "flags"));
                ASSERT_OK(sd_bus_message_open_container(m, 'v', "as"));
                ASSERT_OK(sd_bus_message_open_container(m, 'a', "s"));
                for (size_t i = 0; i < 100000; i++)
                        ASSERT_OK(sd_bus_message_append(m, "s", "writable"));
                ASSERT_OK(sd_bus_message_close_container(m));
                ASSERT_OK(sd_bus_message_close_container(m));
                ASSERT_OK(sd_bus_message_close_container(m));
                ASSERT_OK(sd_bus_message_append(m, "{sv}", "label", "s", label));
                ASSERT_OK(sd_bus_message_close_container(m));
                r = send_call(bus, m, &error, NULL);
                snprintf(what, sizeof(what), "%s: Allocate with 10^5 flags and a 1 MiB label", via);
                expect_refused(what, r, &error, SD_BUS_ERROR_INVALID_ARGS, SVMD_ERROR_LIMITS_EXCEEDED, NULL);

                /* A 1 MiB label alone, and a 1 MiB token. */
                r = test_call(bus, "Allocate", &error, NULL, "tusa{sv}", 2 * MiB, T.gpus[0], "vram", 1, "label", "s",
                              label);
                expect_refused("1 MiB label", r, &error, SD_BUS_ERROR_INVALID_ARGS, NULL);
                r = test_call(bus, "Attach", &error, NULL, "s", label);
                expect_refused("1 MiB token", r, &error, SVMD_ERROR_NO_SUCH_TOKEN, SD_BUS_ERROR_INVALID_ARGS, NULL);

                free(ids);
                free(label);
                sd_bus_flush_close_unref(bus);
        }
}

/* An a{sv} whose "map" is a variant in a variant in … (depth levels), then au. */
static sd_bus_message *nested_allocate(sd_bus *bus, unsigned depth) {
        sd_bus_message *m = new_call(bus, "Allocate");

        ASSERT_OK(sd_bus_message_append(m, "tus", 2 * MiB, T.gpus[0], "vram"));
        ASSERT_OK(sd_bus_message_open_container(m, 'a', "{sv}"));
        ASSERT_OK(sd_bus_message_open_container(m, 'e', "sv"));
        ASSERT_OK(sd_bus_message_append(m, "s", "map"));
        for (unsigned i = 0; i < depth; i++)
                ASSERT_OK(sd_bus_message_open_container(m, 'v', "v"));
        ASSERT_OK(sd_bus_message_append(m, "v", "au", 1, T.gpus[0]));
        for (unsigned i = 0; i < depth; i++)
                ASSERT_OK(sd_bus_message_close_container(m));
        ASSERT_OK(sd_bus_message_close_container(m));
        ASSERT_OK(sd_bus_message_close_container(m));
        return m;
}

static void variants_main(void) {
        for (int d = 0; d < 2; d++) {
                sd_bus *bus = connect_bus(d == 1);
                sd_bus_error error = SD_BUS_ERROR_NULL;
                sd_bus_message *m;
                int fds[2], r;

                r = send_call(bus, nested_allocate(bus, 60), &error, NULL);
                expect_refused("map as a variant nested 60 deep", r, &error, SD_BUS_ERROR_INVALID_ARGS, NULL);
                r = send_call(bus, nested_allocate(bus, 1), &error, NULL);
                expect_refused("map as a variant in a variant", r, &error, SD_BUS_ERROR_INVALID_ARGS, NULL);

                r = test_call(bus, "Allocate", &error, NULL, "tusa{sv}", 2 * MiB, T.gpus[0], "vram", 1, "map", "s",
                              "0,1");
                expect_refused("map as a string", r, &error, SD_BUS_ERROR_INVALID_ARGS, NULL);
                r = test_call(bus, "Allocate", &error, NULL, "tusa{sv}", 2 * MiB, T.gpus[0], "vram", 1, "persistent",
                              "u", 1u);
                expect_refused("persistent as u", r, &error, SD_BUS_ERROR_INVALID_ARGS, NULL);
                r = test_call(bus, "Allocate", &error, NULL, "tusa{sv}", 2 * MiB, T.gpus[0], "vram", 2, "label", "s",
                              "a", "label", "s", "b");
                expect_refused("a key twice", r, &error, SD_BUS_ERROR_INVALID_ARGS, NULL);
                r = test_call(bus, "Allocate", &error, NULL, "tusa{sv}", 2 * MiB, T.gpus[0], "vram", 1, "size", "t",
                              UINT64_C(1));
                expect_refused("an unknown key", r, &error, SD_BUS_ERROR_INVALID_ARGS, NULL);
                r = test_call(bus, "Allocate", &error, NULL, "tusa{sv}", UINT64_MAX, T.gpus[0], "vram", 0);
                expect_refused("size 2^64-1", r, &error, SD_BUS_ERROR_INVALID_ARGS, SVMD_ERROR_OUT_OF_MEMORY,
                               SVMD_ERROR_QUOTA_EXCEEDED, NULL);
                r = test_call(bus, "Allocate", &error, NULL, "tusa{sv}", 2 * MiB, T.gpus[0], "doorbell", 0);
                expect_refused("domain doorbell", r, &error, SD_BUS_ERROR_INVALID_ARGS, NULL);
                r = test_call(bus, "Allocate", &error, NULL, "tus", 2 * MiB, T.gpus[0], "vram");
                expect_refused("arguments missing", r, &error, SD_BUS_ERROR_INVALID_ARGS, NULL);

                /* Bogus fds: an fd where a label belongs, and an fd instead of the id. */
                ASSERT_OK(pipe2(fds, O_CLOEXEC));
                m = new_call(bus, "Allocate");
                ASSERT_OK(sd_bus_message_append(m, "tusa{sv}", 2 * MiB, T.gpus[0], "vram", 1, "label", "h", fds[0]));
                r = send_call(bus, m, &error, NULL);
                expect_refused("an fd as label", r, &error, SD_BUS_ERROR_INVALID_ARGS, NULL);
                m = new_call(bus, "Free");
                ASSERT_OK(sd_bus_message_append(m, "h", fds[1]));
                r = send_call(bus, m, &error, NULL);
                expect_refused("an fd as id", r, &error, SD_BUS_ERROR_INVALID_ARGS, NULL);
                close(fds[0]);
                close(fds[1]);
                sd_bus_flush_close_unref(bus);
        }
}

/* Send and hang up before the reply, 200 times, half of them over each transport. */
static void hangup_main(void) {
        for (int i = 0; i < 200; i++) {
                sd_bus *bus = connect_bus(i % 2 == 1);
                sd_bus_message *m = new_call(bus, i % 4 < 2 ? "Allocate" : "Commit");

                if (i % 4 < 2)
                        ASSERT_OK(sd_bus_message_append(m, "tusa{sv}", 2 * MiB, T.gpus[i % T.n_gpus], "vram", 1, "map",
                                                        "au", 2, T.gpus[0], T.gpus[1]));
                else
                        ASSERT_OK(sd_bus_message_append(m, "a(sa{sv})a{sv}", 2, "Allocate", 3, "size", "t", 64 * 1024ULL,
                                                        "gpu", "u", T.gpus[0], "domain", "s", "gtt", "Map", 2, "ref", "u",
                                                        0u, "gpus", "au", 1, T.gpus[1], 0));
                ASSERT_OK(sd_bus_send(bus, m, NULL));
                sd_bus_message_unref(m);
                ASSERT_OK(sd_bus_flush(bus));
                sd_bus_close(bus); /* gone before the reply */
                sd_bus_unref(bus);
        }
}

/* Many ranges and tokens: the quota and the per-client limits refuse, nothing else. */
static void flood_main(void) {
        sd_bus *bus = connect_bus(true);
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        unsigned made = 0, tokens = 0;
        const char *path;
        uint64_t first = 0, id, va;
        int r;

        for (int i = 0; i < 200; i++) {
                r = test_call(bus, "Allocate", &error, &reply, "tusa{sv}", UINT64_C(4096), T.gpus[0], "gtt", 0);
                if (r < 0) {
                        expect_refused("flooding ranges", r, &error, SVMD_ERROR_QUOTA_EXCEEDED, NULL);
                        break;
                }
                ASSERT_OK(sd_bus_message_read(reply, "tto", &id, &va, &path));
                reply = sd_bus_message_unref(reply);
                if (!first)
                        first = id;
                made++;
        }
        ASSERT_TRUE(made > 0 && made < 200);
        for (int i = 0; i < 200; i++) {
                r = test_call(bus, "Share", &error, &reply, "ta{sv}", first, 0);
                if (r < 0) {
                        expect_refused("flooding tokens", r, &error, SVMD_ERROR_QUOTA_EXCEEDED, NULL);
                        break;
                }
                reply = sd_bus_message_unref(reply);
                tokens++;
        }
        ASSERT_TRUE(tokens > 0 && tokens < 200);
        printf("    uid %d: %u ranges, then QuotaExceeded; %u tokens, then QuotaExceeded\n", UID_BIN, made, tokens);
        sd_bus_flush_close_unref(bus); /* the daemon frees them all */
}

static void wait_for(const char *want_dump, const char *want_list, unsigned want_fds) {
        _cleanup_free_ char *dump = NULL, *list = NULL;
        unsigned fds = 0;

        for (int i = 0; i < 200; i++) {
                free(dump);
                free(list);
                dump = test_dump(&T);
                list = test_list_ranges(T.bus);
                fds = hd_svmd_fds();
                if (streq(dump, want_dump) && streq(list, want_list) && fds <= want_fds)
                        return;
                nanosleep(&(struct timespec) { 0, 25 * 1000 * 1000 }, NULL);
        }
        ASSERT_STREQ(want_list, list);
        ASSERT_STREQ(want_dump, dump);
        fprintf(stderr, "svmd has %u fds open, %u at the start\n", fds, want_fds);
        abort();
}

int main(void) {
        _cleanup_free_ char *base = NULL, *base_list = NULL, *s = NULL;
        unsigned base_fds;
        char c;

        setvbuf(stdout, NULL, _IOLBF, 0);
        srand((unsigned) time(NULL));
        test_setup(&T);
        ASSERT_TRUE(T.n_gpus >= 3);
        V = mmap(NULL, sizeof(Victim), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        ASSERT_TRUE(V != MAP_FAILED);
        base = test_dump(&T);
        base_list = test_list_ranges(T.bus);
        base_fds = hd_svmd_fds();

        /* The owner runs for the whole test. */
        ASSERT_OK(pipe2(ready_pipe, O_CLOEXEC));
        ASSERT_OK(pipe2(done_pipe, O_CLOEXEC));
        pid_t owner = fork();
        ASSERT_TRUE(owner >= 0);
        if (owner == 0) {
                close(ready_pipe[0]);
                close(done_pipe[1]);
                test_become(UID_OWNER);
                owner_main();
                _exit(0);
        }
        close(ready_pipe[1]);
        close(done_pipe[0]);
        ASSERT_TRUE(read(ready_pipe[0], &c, 1) == 1);
        close(ready_pipe[0]);
        s = victim_state();
        snprintf(V->before, sizeof(V->before), "%s", s);
        printf("victim: range %" PRIu64 " of uid %d, %s\n", V->id, UID_OWNER, V->before);

        /* Let the expiring token expire. */
        nanosleep(&(struct timespec) { 0, 300 * 1000 * 1000 }, NULL);

        printf("hostile clients:\n");
        as_uid(UID_BIN, bin_ids_main);
        check_alive("other tenants' ids and guessed tokens (bin)");
        as_uid(UID_NOBODY, nobody_ids_main);
        check_alive("ids, expired and freed tokens (nobody)");
        as_uid(UID_NOBODY, huge_main);
        check_alive("huge arrays, bus and direct");
        as_uid(UID_BIN, variants_main);
        check_alive("nested variants, wrong types, bogus fds");
        as_uid(UID_NOBODY, hangup_main);
        check_alive("200 calls with the caller gone");
        as_uid(UID_BIN, flood_main);
        check_alive("flooding ranges and tokens");

        /* Everyone leaves: nothing may remain. */
        close(done_pipe[1]);
        {
                int status;
                ASSERT_TRUE(waitpid(owner, &status, 0) == owner);
                ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        }
        wait_for(base, base_list, base_fds);
        printf("hostile: %u scenarios, %u attacks refused, the daemon stayed up, leaks found: 0 "
               "(emulator dump, ListRanges and svmd's %u fds as at the start)\n", n_scenarios, n_attacks, base_fds);
        test_teardown(&T);
        return 0;
}
