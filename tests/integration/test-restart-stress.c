/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * svmd is killed with SIGKILL at random moments, 50 times, while 8 clients
 * stream Allocate (persistent, with a request id and a unique label), Map,
 * Unmap, Commit and Free. A client whose call got no answer learns the truth
 * from the daemon once it is back and checks it against what it knows was
 * acknowledged. At the end: every acknowledged range exists with its
 * acknowledged mappings, each request made at most one range, and the kernel
 * holds exactly what the daemon's table says (nothing leaked).
 */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "svmd-protocol.h"
#include "svmd-test.h"

#define N_CLIENTS 8
#define N_KILLS 50
#define MAX_LIVE 6

static TestContext T;

typedef struct Known {
        uint64_t id;
        char label[32];
        uint64_t mapped;        /* bit i: T.gpus[i] */
        bool live;
} Known;

typedef struct ClientState {
        int index;
        sd_bus *bus;
        Known known[256];
        size_t n_known;
        unsigned next_request;
        unsigned acked, unknown;
} ClientState;

static sd_bus *connect_bus(void) {
        sd_bus *bus = NULL;

        ASSERT_OK(sd_bus_new(&bus));
        ASSERT_OK(sd_bus_set_address(bus, getenv("SVMD_BUS_ADDRESS")));
        ASSERT_OK(sd_bus_set_bus_client(bus, 1));
        ASSERT_OK(sd_bus_start(bus));
        return bus;
}

/* A call whose error says nothing about the daemon's decision: it was down or died meanwhile. */
static bool outcome_unknown(int r, const sd_bus_error *e) {
        return r == -ETIMEDOUT || r == -ECONNRESET || r == -ENOTCONN || r == -EPIPE ||
               sd_bus_error_has_name(e, SD_BUS_ERROR_SERVICE_UNKNOWN) ||
               sd_bus_error_has_name(e, SD_BUS_ERROR_NAME_HAS_NO_OWNER) ||
               sd_bus_error_has_name(e, SD_BUS_ERROR_NO_REPLY) ||
               sd_bus_error_has_name(e, SD_BUS_ERROR_DISCONNECTED) ||
               sd_bus_error_has_name(e, "org.freedesktop.DBus.Error.UnknownObject") ||
               sd_bus_error_has_name(e, "org.freedesktop.DBus.Error.UnknownMethod");
}

static uint64_t mask_of(const uint32_t *ids, size_t n) {
        uint64_t m = 0;
        for (size_t i = 0; i < n; i++)
                for (size_t g = 0; g < T.n_gpus; g++)
                        if (T.gpus[g] == ids[i])
                                m |= UINT64_C(1) << g;
        return m;
}

/* The daemon's truth for this client's labels: label → (id, mapped). Retries until the daemon answers. */
typedef struct Truth {
        char label[32];
        uint64_t id, mapped;
} Truth;

static size_t read_truth(ClientState *c, Truth *out, size_t max) {
        for (;;) {
                _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
                sd_bus_error error = SD_BUS_ERROR_NULL;
                char prefix[16];
                size_t n = 0;
                int r;

                r = test_call(c->bus, "ListRanges", &error, &reply, "a{sv}", 1, "limit", "t", UINT64_C(4096));
                if (r < 0) {
                        sd_bus_error_free(&error);
                        usleep(20000);
                        continue;
                }
                snprintf(prefix, sizeof(prefix), "c%d-", c->index);
                ASSERT_OK(sd_bus_message_enter_container(reply, 'a', "(ttttsuausus)"));
                while ((r = sd_bus_message_enter_container(reply, 'r', "ttttsuausus")) > 0) {
                        uint64_t id, va, size, flags;
                        const char *domain, *label, *state;
                        uint32_t home, owner;
                        const uint32_t *mapped;
                        size_t nm;

                        ASSERT_OK(sd_bus_message_read(reply, "ttttsu", &id, &va, &size, &flags, &domain, &home));
                        ASSERT_OK(sd_bus_message_read_array(reply, 'u', (const void **) &mapped, &nm));
                        ASSERT_OK(sd_bus_message_read(reply, "sus", &label, &owner, &state));
                        ASSERT_OK(sd_bus_message_exit_container(reply));
                        if (strncmp(label, prefix, strlen(prefix)) != 0)
                                continue;
                        ASSERT_TRUE(n < max);
                        for (size_t i = 0; i < n; i++)
                                if (streq(out[i].label, label)) {
                                        fprintf(stderr, "client %d: label %s exists twice (ids %" PRIu64 ", %" PRIu64 ")\n",
                                                c->index, label, out[i].id, id);
                                        abort();
                                }
                        snprintf(out[n].label, sizeof(out[n].label), "%s", label);
                        out[n].id = id;
                        out[n].mapped = mask_of(mapped, nm / sizeof(uint32_t));
                        n++;
                }
                return n;
        }
}

/* After a call with an unknown outcome: the daemon must still have everything acknowledged. */
static void reconcile(ClientState *c, Known *touched, const char *pending_label) {
        Truth truth[512];
        size_t n = read_truth(c, truth, ELEMENTSOF(truth));

        for (size_t i = 0; i < c->n_known; i++) {
                Known *k = &c->known[i];
                Truth *t = NULL;

                for (size_t j = 0; j < n; j++)
                        if (streq(truth[j].label, k->label))
                                t = &truth[j];
                if (k == touched) {
                        /* The call in doubt may or may not have happened: adopt what is. */
                        k->live = t != NULL;
                        if (t)
                                k->mapped = t->mapped;
                        continue;
                }
                if (k->live != (t != NULL) || (t && (t->id != k->id || t->mapped != k->mapped))) {
                        fprintf(stderr, "client %d: acknowledged range %s (id %" PRIu64 ", mapped 0x%" PRIx64 ", live %d) "
                                "differs from the daemon's (%s, mapped 0x%" PRIx64 ")\n", c->index, k->label, k->id,
                                k->mapped, k->live, t ? "present" : "absent", t ? t->mapped : 0);
                        abort();
                }
        }
        for (size_t j = 0; j < n; j++) {
                bool known = false;

                for (size_t i = 0; i < c->n_known; i++)
                        known = known || streq(c->known[i].label, truth[j].label);
                if (known)
                        continue;
                /* Only the allocation in doubt may have made a range we did not hear of. */
                if (!pending_label || !streq(pending_label, truth[j].label)) {
                        fprintf(stderr, "client %d: the daemon has range %s that was never requested\n", c->index,
                                truth[j].label);
                        abort();
                }
        }
}

static Known *pick_live(ClientState *c) {
        size_t n = 0, pick;

        for (size_t i = 0; i < c->n_known; i++)
                n += c->known[i].live;
        if (n == 0)
                return NULL;
        pick = (size_t) rand() % n;
        for (size_t i = 0; i < c->n_known; i++)
                if (c->known[i].live && pick-- == 0)
                        return &c->known[i];
        return NULL;
}

static size_t live_count(ClientState *c) {
        size_t n = 0;
        for (size_t i = 0; i < c->n_known; i++)
                n += c->known[i].live;
        return n;
}

static void op_allocate(ClientState *c) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        Known *k = &c->known[c->n_known];
        char request[32];
        const char *path;
        uint64_t va;
        uint32_t g = T.gpus[rand() % T.n_gpus];
        const char *domain = rand() % 2 ? "vram" : "host";
        int r;

        ASSERT_TRUE(c->n_known < ELEMENTSOF(c->known));
        snprintf(k->label, sizeof(k->label), "c%d-%u", c->index, c->next_request);
        snprintf(request, sizeof(request), "req-%s", k->label);
        c->next_request++;
        k->mapped = 0;
        k->live = false;
        c->n_known++;

        /* Retried with the same request id and arguments until the daemon answers: at most one range per
         * request (other arguments under the same id are refused). */
        for (;;) {
                r = test_call(c->bus, "Allocate", &error, &reply, "tusa{sv}", UINT64_C(65536), g,
                              domain, 4, "persistent", "b", 1, "label", "s", k->label,
                              "request-id", "s", request, "map", "au", 1, g);
                if (r >= 0) {
                        ASSERT_OK(sd_bus_message_read(reply, "tto", &k->id, &va, &path));
                        k->live = true;
                        k->mapped = mask_of(&g, 1);
                        c->acked++;
                        return;
                }
                if (!outcome_unknown(r, &error)) {
                        fprintf(stderr, "client %d: Allocate failed: %s\n", c->index, error.message);
                        abort();
                }
                c->unknown++;
                sd_bus_error_free(&error);
                usleep(10000);
        }
}

static void op_free(ClientState *c, Known *k) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r = test_call(c->bus, "Free", &error, NULL, "t", k->id);

        if (r >= 0) {
                k->live = false;
                c->acked++;
        } else if (outcome_unknown(r, &error)) {
                c->unknown++;
                reconcile(c, k, NULL);
        } else {
                fprintf(stderr, "client %d: Free %" PRIu64 " failed: %s\n", c->index, k->id, error.message);
                abort();
        }
        sd_bus_error_free(&error);
}

static void op_map(ClientState *c, Known *k, bool unmap, bool via_commit) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        size_t gi = (size_t) rand() % T.n_gpus;
        uint64_t bit = UINT64_C(1) << gi;
        uint32_t g = T.gpus[gi];
        int r;

        if (unmap && !(k->mapped & bit))
                return;
        if (via_commit)
                r = test_call(c->bus, "Commit", &error, NULL, "a(sa{sv})a{sv}", 1, unmap ? "Unmap" : "Map", 2, "id",
                              "t", k->id, "gpus", "au", 1, g, 0);
        else if (unmap)
                r = test_call(c->bus, "Unmap", &error, NULL, "tau", k->id, 1, g);
        else
                r = test_call(c->bus, "Map", &error, NULL, "taua{sv}", k->id, 1, g, 0);
        if (r >= 0) {
                k->mapped = unmap ? k->mapped & ~bit : k->mapped | bit;
                c->acked++;
        } else if (outcome_unknown(r, &error)) {
                c->unknown++;
                reconcile(c, k, NULL);
        } else {
                fprintf(stderr, "client %d: %s failed: %s\n", c->index, unmap ? "Unmap" : "Map", error.message);
                abort();
        }
        sd_bus_error_free(&error);
}

/* Forget freed ranges: labels are unique, so the truth can never show them again. */
static void compact(ClientState *c) {
        size_t j = 0;

        for (size_t i = 0; i < c->n_known; i++)
                if (c->known[i].live)
                        c->known[j++] = c->known[i];
        c->n_known = j;
}

static void client_main(int index, int stop_fd, int out_fd) {
        ClientState c = { .index = index };
        char line[64];

        srand((unsigned) (index * 7919 + 17));
        c.bus = connect_bus();
        for (;;) {
                char b;
                int roll = rand() % 10;
                Known *k;

                if (read(stop_fd, &b, 1) == 1)
                        break;
                k = pick_live(&c);
                if (!k || (roll < 4 && live_count(&c) < MAX_LIVE))
                        op_allocate(&c);
                else if (roll < 6)
                        op_map(&c, k, false, roll == 5);
                else if (roll < 8)
                        op_map(&c, k, true, roll == 7);
                else
                        op_free(&c, k);
                compact(&c);
        }
        /* Final check against the truth, then report what is live. */
        reconcile(&c, NULL, NULL);
        snprintf(line, sizeof(line), "%zu %u %u\n", live_count(&c), c.acked, c.unknown);
        ASSERT_TRUE(write(out_fd, line, strlen(line)) == (ssize_t) strlen(line));
        _exit(0);
}

static size_t count_handles(void) {
        _cleanup_free_ char *maps = test_kernel_mappings(&T);
        size_t n = 0;
        for (const char *p = maps; *p; p++)
                n += *p == '\n';
        return n;
}

int main(void) {
        int stop[2], out[2];
        pid_t pids[N_CLIENTS];
        size_t live = 0;
        unsigned acked = 0, unknown = 0;

        setvbuf(stdout, NULL, _IOLBF, 0);
        test_setup(&T);
        ASSERT_OK(pipe2(stop, O_CLOEXEC | O_NONBLOCK));
        ASSERT_OK(pipe2(out, O_CLOEXEC));

        for (int i = 0; i < N_CLIENTS; i++) {
                pids[i] = fork();
                ASSERT_TRUE(pids[i] >= 0);
                if (pids[i] == 0) {
                        close(stop[1]);
                        close(out[0]);
                        client_main(i, stop[0], out[1]);
                }
        }
        close(out[1]);

        srand(4242);
        for (int k = 0; k < N_KILLS; k++) {
                struct timespec ts = { 0, (20 + rand() % 80) * 1000 * 1000 };
                nanosleep(&ts, NULL);
                test_kill_and_wait_restart(&T);
        }

        /* Stop the clients (one byte each), collect what they hold. */
        for (int i = 0; i < N_CLIENTS; i++)
                ASSERT_TRUE(write(stop[1], "x", 1) == 1);
        for (int i = 0; i < N_CLIENTS; i++) {
                char line[64] = "";
                size_t l, a, u;
                ssize_t n = 0;
                int status;

                for (size_t got = 0; got < sizeof(line) - 1; got++) {
                        n = read(out[0], line + got, 1);
                        if (n != 1 || line[got] == '\n')
                                break;
                }
                ASSERT_EQ(sscanf(line, "%zu %zu %zu", &l, &a, &u), 3);
                live += l;
                acked += (unsigned) a;
                unknown += (unsigned) u;
                (void) n;
                ASSERT_TRUE(waitpid(pids[i], &status, 0) > 0);
                ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        }

        /* The kernel holds exactly the ranges the daemon lists: nothing leaked, nothing lost. */
        ASSERT_EQ(count_handles(), live);
        printf("%d kills of svmd, %u acknowledged operations, %u answered only after a restart; "
               "%zu ranges live and accounted for, 0 leaked\n", N_KILLS, acked, unknown, live);
        test_teardown(&T);
        return 0;
}
