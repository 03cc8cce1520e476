/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * Acknowledged means kept, across kill -9 (docs/reliability.md, "Durability").
 *
 *   test-durable-kill [--clients N] [--kills N]
 *
 * svmd is killed with SIGKILL at random moments, N times (default 50), while
 * N clients (default 8, at most 8) create persistent ranges (vram, gtt, host; each filled with a
 * pattern of its id; also two at a time in one Commit, which a kill in doubt must leave
 * whole or not at all), map and unmap them (directly and through Commit), share
 * them (Share, RevokeToken) and free them; each client also keeps one range it
 * holds itself (Share + Attach). svmd-harness plays systemd's fd store and
 * restarts svmd. The runtime directory is a small tmpfs (svmd-harness
 * --runtime-tmpfs-size) that the journal fills between compactions: a change
 * svmd refuses for want of room (QuotaExceeded) must not have happened.
 *
 * Whenever a call's outcome is unknown (svmd died under it) the client reads
 * the daemon's truth once it is back and compares it exactly with what it
 * knows was acknowledged: every range whose creation was acknowledged and
 * whose free was not is there, with its id, VA, size and mappings; no other
 * range of the client is (none lost, none resurrected) — only the call in
 * doubt may have gone either way. At the end every client checks its ranges
 * once more, with their tokens, holders and bytes, and the kernel holds
 * exactly the ranges svmd lists.
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

#include "svmd-protocol.h"
#include "svmd-test.h"

#define MAX_CLIENTS 8
#define MAX_LIVE 5
#define RANGE_SIZE (UINT64_C(64) << 10)
#define TOKEN_MAX 128
#define MAX_TOKENS 6

static TestContext T;

typedef struct Known {
        uint64_t id, va, size;
        char label[32];
        uint64_t mapped;        /* bit i: T.gpus[i] */
        unsigned tokens;        /* tokens svmd has for it */
        char token[MAX_TOKENS][TOKEN_MAX];      /* the ones we know (a token made in doubt is not) */
        unsigned n_token;
        bool held;              /* the client's held range: never freed */
        bool filled;            /* its pattern is written */
        bool live;
} Known;

typedef struct ClientState {
        int index;
        sd_bus *bus;
        Known known[64];
        size_t n_known;
        unsigned next_request;
        unsigned acked, unknown, frees, shares, refused;
} ClientState;

/* Refused because the runtime directory is full: nothing changed (the point of the test). */
static bool refused_for_room(int r, const sd_bus_error *e) {
        return r < 0 && sd_bus_error_has_name(e, SVMD_ERROR_QUOTA_EXCEEDED) && e->message &&
               strstr(e->message, "runtime directory");
}

static uint64_t mask_of(const uint32_t *ids, size_t n) {
        uint64_t m = 0;
        for (size_t i = 0; i < n; i++)
                for (size_t g = 0; g < T.n_gpus; g++)
                        if (T.gpus[g] == ids[i])
                                m |= UINT64_C(1) << g;
        return m;
}

/* A call retried until the daemon answers it (for reads, whose outcome cannot be in doubt). */
static int call_retry(ClientState *c, const char *member, sd_bus_error *error, sd_bus_message **reply,
                      const char *types, ...) {
        for (;;) {
                va_list ap;
                int r;

                va_start(ap, types);
                r = test_callv(c->bus, member, error, reply, types, ap);
                va_end(ap);
                if (r >= 0 || !test_outcome_unknown(r, error))
                        return r;
                sd_bus_error_free(error);
                usleep(20000);
        }
}

/* The daemon's truth for this client's labels. */
typedef struct Truth {
        char label[32];
        uint64_t id, va, size, mapped;
} Truth;

static size_t read_truth(ClientState *c, Truth *out, size_t max) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        char prefix[16];
        size_t n = 0;
        int r;

        r = call_retry(c, "ListRanges", &error, &reply, "a{sv}", 1, "limit", "t", UINT64_C(4096));
        ASSERT_BUS_OK(r, &error);
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
                                fprintf(stderr, "client %d: label %s exists twice\n", c->index, label);
                                abort();
                        }
                snprintf(out[n].label, sizeof(out[n].label), "%s", label);
                out[n].id = id;
                out[n].va = va;
                out[n].size = size;
                out[n].mapped = mask_of(mapped, nm / sizeof(uint32_t));
                n++;
        }
        return n;
}

static Truth *find_truth(Truth *truth, size_t n, const char *label) {
        for (size_t j = 0; j < n; j++)
                if (streq(truth[j].label, label))
                        return &truth[j];
        return NULL;
}

/* After a call with an unknown outcome: the daemon has exactly what was acknowledged, but for it. */
static void reconcile(ClientState *c, Known *doubt, const char *pending_label) {
        Truth truth[128];
        size_t n = read_truth(c, truth, ELEMENTSOF(truth));

        for (size_t i = 0; i < c->n_known; i++) {
                Known *k = &c->known[i];
                Truth *t = find_truth(truth, n, k->label);

                if (k == doubt) {
                        /* The call in doubt may or may not have happened: adopt what is. */
                        k->live = t != NULL;
                        if (t)
                                k->mapped = t->mapped;
                        continue;
                }
                if (k->live != (t != NULL) ||
                    (t && (t->id != k->id || t->va != k->va || t->size != k->size || t->mapped != k->mapped))) {
                        fprintf(stderr, "client %d: acknowledged range %s (id %" PRIu64 ", va 0x%" PRIx64 ", %s, "
                                "mapped 0x%" PRIx64 ") differs from the daemon's (%s, id %" PRIu64 ", va 0x%" PRIx64
                                ", mapped 0x%" PRIx64 ")\n", c->index, k->label, k->id, k->va,
                                k->live ? "live" : "freed", k->mapped, t ? "present" : "absent", t ? t->id : 0,
                                t ? t->va : 0, t ? t->mapped : 0);
                        abort();
                }
        }
        for (size_t j = 0; j < n; j++) {
                bool known = false;

                for (size_t i = 0; i < c->n_known; i++)
                        known = known || streq(c->known[i].label, truth[j].label);
                if (known || (pending_label && streq(pending_label, truth[j].label)))
                        continue;
                fprintf(stderr, "client %d: the daemon has range %s, which was never acknowledged or whose free "
                        "was acknowledged\n", c->index, truth[j].label);
                abort();
        }
}

static uint8_t pattern(uint64_t id, uint64_t page) {
        return (uint8_t) (id * 31 + page + 1);
}

/* Map the range's memory (Export) and write or check its pattern. */
static void bytes(ClientState *c, Known *k, bool write) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        uint64_t va, size;
        uint8_t *p;
        int fd, r;

        r = call_retry(c, "Export", &error, &reply, "t", k->id);
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_read(reply, "htt", &fd, &va, &size));
        ASSERT_UEQ(size, k->size);
        p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        ASSERT_TRUE(p != MAP_FAILED);
        for (uint64_t i = 0; i < size; i += 4096) {
                if (write)
                        p[i] = pattern(k->id, i / 4096);
                else if (p[i] != pattern(k->id, i / 4096)) {
                        fprintf(stderr, "client %d: range %s lost its bytes at offset %" PRIu64 "\n", c->index,
                                k->label, i);
                        abort();
                }
        }
        munmap(p, size);
        k->filled = true;
}

static size_t live_count(ClientState *c) {
        size_t n = 0;
        for (size_t i = 0; i < c->n_known; i++)
                n += c->known[i].live;
        return n;
}

static Known *pick_live(ClientState *c, bool freeable) {
        size_t n = 0, pick;

        for (size_t i = 0; i < c->n_known; i++)
                n += c->known[i].live && !(freeable && c->known[i].held);
        if (n == 0)
                return NULL;
        pick = (size_t) rand() % n;
        for (size_t i = 0; i < c->n_known; i++)
                if (c->known[i].live && !(freeable && c->known[i].held) && pick-- == 0)
                        return &c->known[i];
        return NULL;
}

static void op_allocate(ClientState *c, bool held) {
        static const char *const domains[] = { SVMD_DOMAIN_VRAM, SVMD_DOMAIN_GTT, SVMD_DOMAIN_HOST };
        Known *k = &c->known[c->n_known];
        uint32_t g = T.gpus[rand() % T.n_gpus];
        const char *domain = domains[rand() % 3];
        char request[48];

        ASSERT_TRUE(c->n_known < ELEMENTSOF(c->known));
        *k = (Known) { .held = held };
        if (held)
                snprintf(k->label, sizeof(k->label), "c%d-held", c->index);
        else
                snprintf(k->label, sizeof(k->label), "c%d-%u", c->index, c->next_request);
        snprintf(request, sizeof(request), "req-%s", k->label);
        c->next_request++;
        c->n_known++;

        /* Retried with the same request id and arguments until the daemon answers: at most one range per
         * request. Until then the range may or may not exist. */
        for (;;) {
                _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
                sd_bus_error error = SD_BUS_ERROR_NULL;
                const char *path;
                int r;

                r = test_call(c->bus, "Allocate", &error, &reply, "tusa{sv}", RANGE_SIZE, g, domain, 4, "persistent",
                              "b", 1, "label", "s", k->label, "request-id", "s", request, "map", "au", 1, g);
                if (r >= 0) {
                        ASSERT_OK(sd_bus_message_read(reply, "tto", &k->id, &k->va, &path));
                        k->size = RANGE_SIZE;
                        k->live = true;
                        k->mapped = mask_of(&g, 1);
                        c->acked++;
                        break;
                }
                if (refused_for_room(r, &error) && !held) {
                        /* Not made, and never to appear: its label stays unknown to the truth. */
                        c->refused++;
                        sd_bus_error_free(&error);
                        return;
                }
                if (!test_outcome_unknown(r, &error) && !refused_for_room(r, &error)) {
                        fprintf(stderr, "client %d: Allocate failed: %s\n", c->index, error.message);
                        abort();
                }
                c->unknown++;
                sd_bus_error_free(&error);
                usleep(10000);
        }
        bytes(c, k, true);
}

/*
 * Two persistent ranges in one Commit, whose changes are one journal line (docs/architecture.md,
 * "The commit record"): acknowledged, both are there; refused, neither; in doubt after a kill,
 * both or neither — never one of them.
 */
static void op_commit_pair(ClientState *c) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        uint32_t g = T.gpus[rand() % T.n_gpus];
        Known *k = &c->known[c->n_known];
        int r;

        ASSERT_TRUE(c->n_known + 2 <= ELEMENTSOF(c->known));
        for (size_t i = 0; i < 2; i++) {
                k[i] = (Known) {};
                snprintf(k[i].label, sizeof(k[i].label), "c%d-%u", c->index, c->next_request++);
        }
        r = test_call(c->bus, "Commit", &error, &reply, "a(sa{sv})a{sv}", 2,
                      "Allocate", 5, "size", "t", RANGE_SIZE, "gpu", "u", g, "domain", "s", SVMD_DOMAIN_GTT,
                      "persistent", "b", 1, "label", "s", k[0].label,
                      "Allocate", 5, "size", "t", RANGE_SIZE, "gpu", "u", g, "domain", "s", SVMD_DOMAIN_HOST,
                      "persistent", "b", 1, "label", "s", k[1].label, 0);
        if (r >= 0) {
                ASSERT_OK(sd_bus_message_enter_container(reply, 'a', "(a{sv})"));
                for (size_t i = 0; i < 2; i++) {
                        const char *key[3], *path;

                        ASSERT_OK(sd_bus_message_read(reply, "(a{sv})", 3, &key[0], "t", &k[i].id, &key[1], "t",
                                                      &k[i].va, &key[2], "o", &path));
                        ASSERT_TRUE(streq(key[0], "id") && streq(key[1], "va") && streq(key[2], "path"));
                        k[i].size = RANGE_SIZE;
                        k[i].live = true;
                }
                c->n_known += 2;
                c->acked++;
        } else if (refused_for_room(r, &error)) {
                c->refused++;
                return;
        } else if (test_outcome_unknown(r, &error)) {
                Truth truth[128];
                size_t n = read_truth(c, truth, ELEMENTSOF(truth));
                Truth *t[2] = { find_truth(truth, n, k[0].label), find_truth(truth, n, k[1].label) };

                c->unknown++;
                if (!t[0] != !t[1]) {
                        fprintf(stderr, "client %d: a Commit in doubt made range %s but not %s: half applied\n",
                                c->index, t[0] ? k[0].label : k[1].label, t[0] ? k[1].label : k[0].label);
                        abort();
                }
                if (t[0])
                        for (size_t i = 0; i < 2; i++) {
                                k[i].id = t[i]->id;
                                k[i].va = t[i]->va;
                                k[i].size = t[i]->size;
                                k[i].mapped = t[i]->mapped;
                                k[i].live = true;
                        }
                if (t[0])
                        c->n_known += 2;
                sd_bus_error_free(&error);
                reconcile(c, NULL, NULL);
                if (!t[0])
                        return;
        } else {
                fprintf(stderr, "client %d: Commit of two allocations failed: %s\n", c->index, error.message);
                abort();
        }
        bytes(c, &k[0], true);
        bytes(c, &k[1], true);
}

static void op_free(ClientState *c, Known *k) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r = test_call(c->bus, "Free", &error, NULL, "t", k->id);

        if (r >= 0) {
                k->live = false;
                c->acked++;
                c->frees++;
        } else if (test_outcome_unknown(r, &error)) {
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
        } else if (refused_for_room(r, &error))
                c->refused++;
        else if (test_outcome_unknown(r, &error)) {
                c->unknown++;
                reconcile(c, k, NULL);
        } else {
                fprintf(stderr, "client %d: %s failed: %s\n", c->index, unmap ? "Unmap" : "Map", error.message);
                abort();
        }
        sd_bus_error_free(&error);
}

/* The number of tokens svmd lists for a range. */
static unsigned count_tokens(ClientState *c, Known *k) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        unsigned n = 0;
        int r;

        r = call_retry(c, "ListTokens", &error, &reply, "t", k->id);
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_enter_container(reply, 'a', "(sa{sv})"));
        while ((r = sd_bus_message_skip(reply, "(sa{sv})")) > 0 && n < 1000)
                n++;
        return n;
}

/* Share (a new token) or revoke the last one: a token survives exactly when acknowledged. */
static void op_share(ClientState *c, Known *k) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        bool revoke = k->n_token > 0 && (k->tokens >= MAX_TOKENS || rand() % 2);
        const char *token;
        int r;

        if (!revoke && k->tokens >= MAX_TOKENS)
                return;
        if (revoke)
                r = test_call(c->bus, "RevokeToken", &error, NULL, "s", k->token[k->n_token - 1]);
        else
                r = test_call(c->bus, "Share", &error, &reply, "ta{sv}", k->id, 0);
        if (r >= 0) {
                if (revoke) {
                        k->tokens--;
                        k->n_token--;
                } else {
                        ASSERT_OK(sd_bus_message_read(reply, "s", &token));
                        snprintf(k->token[k->n_token++], TOKEN_MAX, "%s", token);
                        k->tokens++;
                }
                c->acked++;
                c->shares++;
        } else if (refused_for_room(r, &error))
                c->refused++;
        else if (test_outcome_unknown(r, &error)) {
                c->unknown++;
                reconcile(c, NULL, NULL);
                /* Whether the token was made or revoked: adopt what is (the other tokens must stay). */
                unsigned n = count_tokens(c, k);
                if (n != k->tokens && n != (revoke ? k->tokens - 1 : k->tokens + 1)) {
                        fprintf(stderr, "client %d: range %s has %u tokens, %u were acknowledged\n", c->index,
                                k->label, n, k->tokens);
                        abort();
                }
                k->tokens = n;
                if (revoke)
                        k->n_token--;   /* revoked or not: not ours to revoke again */
        } else {
                fprintf(stderr, "client %d: %s failed: %s\n", c->index, revoke ? "RevokeToken" : "Share",
                        error.message);
                abort();
        }
        sd_bus_error_free(&error);
}

/* The held range: shared and attached by its own client, so that it has a holder to keep. */
static void make_held(ClientState *c) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        Known *k;
        const char *token;
        uint64_t id, va, size;
        int fd, r;

        op_allocate(c, true);
        k = &c->known[c->n_known - 1];
        while ((r = call_retry(c, "Share", &error, &reply, "ta{sv}", k->id, 0)) < 0 && refused_for_room(r, &error)) {
                sd_bus_error_free(&error);
                usleep(10000);
        }
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_read(reply, "s", &token));
        snprintf(k->token[0], TOKEN_MAX, "%s", token);
        k->tokens = 1;
        reply = sd_bus_message_unref(reply);
        while ((r = call_retry(c, "Attach", &error, &reply, "s", k->token[0])) < 0 && refused_for_room(r, &error)) {
                sd_bus_error_free(&error);
                usleep(10000);
        }
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_read(reply, "ttth", &id, &va, &size, &fd));
        ASSERT_UEQ(id, k->id);
        k->n_token = 1;
        /* A Share retried after a restart may have made a second token. */
        k->tokens = count_tokens(c, k);
}

static unsigned count_holders(ClientState *c, Known *k) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        char path[64];
        unsigned n = 0;
        int r;

        snprintf(path, sizeof(path), SVMD_RANGE_PATH_PREFIX "/%" PRIu64, k->id);
        for (;;) {
                r = sd_bus_get_property(c->bus, SVMD_BUS_NAME, path, SVMD_RANGE_INTERFACE, "Holders", &error, &reply,
                                        "a(us)");
                if (r >= 0 || !test_outcome_unknown(r, &error))
                        break;
                sd_bus_error_free(&error);
                usleep(20000);
        }
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_enter_container(reply, 'a', "(us)"));
        while ((r = sd_bus_message_skip(reply, "(us)")) > 0)
                n++;
        return n;
}

/* Everything acknowledged, exactly: the ranges, their tokens and holders, and their bytes. */
static void final_check(ClientState *c) {
        reconcile(c, NULL, NULL);
        for (size_t i = 0; i < c->n_known; i++) {
                Known *k = &c->known[i];

                if (!k->live)
                        continue;
                bytes(c, k, false);
                if (count_tokens(c, k) != k->tokens) {
                        fprintf(stderr, "client %d: range %s has %u tokens, %u were acknowledged\n", c->index,
                                k->label, count_tokens(c, k), k->tokens);
                        abort();
                }
                if (count_holders(c, k) != (k->held ? 1U : 0U)) {
                        fprintf(stderr, "client %d: range %s has %u holders, %u acknowledged\n", c->index, k->label,
                                count_holders(c, k), k->held ? 1U : 0U);
                        abort();
                }
        }
}

/* Forget freed ranges: labels are unique, so the truth must never show them again. */
static void compact(ClientState *c) {
        size_t j = 0;

        for (size_t i = 0; i < c->n_known; i++)
                if (c->known[i].live)
                        c->known[j++] = c->known[i];
        c->n_known = j;
}

static void client_main(int index, int stop_fd, int out_fd) {
        ClientState c = { .index = index };
        char line[128];

        srand((unsigned) (index * 7919 + 17));
        c.bus = test_connect_bus();
        make_held(&c);
        for (;;) {
                char b;
                int roll = rand() % 12;
                Known *k;

                if (read(stop_fd, &b, 1) == 1)
                        break;
                k = pick_live(&c, false);
                if (roll == 2 && live_count(&c) + 1 < MAX_LIVE)
                        op_commit_pair(&c);
                else if (roll < 3 && live_count(&c) < MAX_LIVE)
                        op_allocate(&c, false);
                else if (roll < 5)
                        op_map(&c, k, false, roll == 4);
                else if (roll < 7)
                        op_map(&c, k, true, roll == 6);
                else if (roll < 9)
                        op_share(&c, k);
                else if ((k = pick_live(&c, true)))
                        op_free(&c, k);
                compact(&c);
        }
        final_check(&c);
        snprintf(line, sizeof(line), "%zu %u %u %u %u %u\n", live_count(&c), c.acked, c.unknown, c.frees, c.shares,
                 c.refused);
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

static uint64_t now_usec(void) {
        struct timespec ts;

        ASSERT_OK(clock_gettime(CLOCK_MONOTONIC, &ts));
        return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

int main(int argc, char *argv[]) {
        int stop[2], out[2];
        pid_t pids[MAX_CLIENTS];
        size_t live = 0;
        unsigned n_clients = MAX_CLIENTS, kills = 50, acked = 0, unknown = 0, frees = 0, shares = 0, refused = 0;
        uint64_t restart_sum = 0, restart_max = 0;

        for (int i = 1; i < argc; i += 2) {
                if (i + 1 < argc && streq(argv[i], "--kills"))
                        kills = (unsigned) strtoul(argv[i + 1], NULL, 10);
                else if (i + 1 < argc && streq(argv[i], "--clients"))
                        n_clients = (unsigned) strtoul(argv[i + 1], NULL, 10);
                else
                        n_clients = 0;
                if (n_clients < 1 || n_clients > MAX_CLIENTS) {
                        fprintf(stderr, "Usage: %s [--clients 1…%d] [--kills N]\n", argv[0], MAX_CLIENTS);
                        return 2;
                }
        }

        setvbuf(stdout, NULL, _IOLBF, 0);
        test_setup(&T);
        ASSERT_OK(pipe2(stop, O_CLOEXEC | O_NONBLOCK));
        ASSERT_OK(pipe2(out, O_CLOEXEC));

        for (unsigned i = 0; i < n_clients; i++) {
                pids[i] = fork();
                ASSERT_TRUE(pids[i] >= 0);
                if (pids[i] == 0) {
                        close(stop[1]);
                        close(out[0]);
                        client_main((int) i, stop[0], out[1]);
                }
        }
        close(out[1]);

        srand(4243);
        for (unsigned k = 0; k < kills; k++) {
                struct timespec ts = { 0, (20 + rand() % 100) * 1000 * 1000 };
                uint64_t t0, dt;

                nanosleep(&ts, NULL);
                t0 = now_usec();
                test_kill_and_wait_restart(&T);
                dt = now_usec() - t0;
                restart_sum += dt;
                restart_max = MAX(restart_max, dt);
        }

        /* Stop the clients (one byte each): each checks everything it knows, then reports. */
        for (unsigned i = 0; i < n_clients; i++)
                ASSERT_TRUE(write(stop[1], "x", 1) == 1);
        for (unsigned i = 0; i < n_clients; i++) {
                char line[128] = "";
                size_t l;
                unsigned a, u, f, s, x;
                int status;

                for (size_t got = 0; got < sizeof(line) - 1; got++)
                        if (read(out[0], line + got, 1) != 1 || line[got] == '\n')
                                break;
                ASSERT_EQ(sscanf(line, "%zu %u %u %u %u %u", &l, &a, &u, &f, &s, &x), 6);
                live += l;
                acked += a;
                unknown += u;
                frees += f;
                shares += s;
                refused += x;
                ASSERT_TRUE(waitpid(pids[i], &status, 0) > 0);
                ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        }

        /* The kernel holds exactly the ranges the clients hold: nothing leaked, nothing lost. */
        ASSERT_EQ(count_handles(), live);
        printf("%u clients, %u kills of svmd; %u acknowledged operations (%u frees, %u shares/revocations), %u answered only "
               "after a restart, %u refused for a full runtime directory; %zu ranges live, all with their VAs, "
               "mappings, tokens, holders and bytes; none lost, none resurrected; restart after kill -9: mean %"
               PRIu64 " ms, max %" PRIu64 " ms\n",
               n_clients, kills, acked, frees, shares, unknown, refused, live, kills ? restart_sum / kills / 1000 : 0,
               restart_max / 1000);
        test_teardown(&T);
        return 0;
}
