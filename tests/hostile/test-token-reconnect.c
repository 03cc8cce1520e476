/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * Share tokens and holds are bounded per quota scope and per range, not per
 * connection (token-reconnect.conf: "tokens-per-client": 4, the rest
 * default). Tenant A (uid 1) shares one persistent range through 500
 * connections, 4 Shares each: at most "tokens-per-range" (64) are made. A
 * then shares 17 more ranges until "tokens-per-scope" (1024) refuses. B
 * (uid 2) attaches through 300 direct connections: at most "holds-per-range"
 * (256) holds, its first connection's included. Meanwhile B's Attach calls are timed and C's (uid 65534)
 * GetUsage median is measured, and every journal line stays small.
 */

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hostile-util.h"
#include "svmd-protocol.h"

#define MiB (UINT64_C(1) << 20)
#define CONNECTIONS 500U
#define SHARES_PER_CONNECTION 4U
#define MAX_TOKENS (CONNECTIONS * SHARES_PER_CONNECTION)
#define EXTRA_RANGES 17U
#define ATTACHES 500U
#define HOLD_CONNECTIONS 300U
#define USAGE_SAMPLES 300U

/* The defaults of docs/svmd.conf.5. */
#define TOKENS_PER_RANGE 64U
#define TOKENS_PER_SCOPE 1024U
#define HOLDS_PER_RANGE 256U

static TestContext T;

typedef struct Shared {
        uint64_t id;
        unsigned n_tokens;
        char tokens[MAX_TOKENS][40];
        char refusal[512];
        unsigned scope_tokens;
        char scope_refusal[512];
        unsigned holds;
        char holds_refusal[512];
        uint64_t attach_usec;
        uint64_t usage_usec[USAGE_SAMPLES];
        volatile int attaching, attach_done;
} Shared;

static Shared *S;

/* Share id through `connections` new connections, `per` each; tokens into out (may be NULL). */
static unsigned share_many(uint64_t id, unsigned connections, unsigned per, char (*out)[40], char *refusal,
                           size_t refusal_size) {
        unsigned n = 0;

        for (unsigned c = 0; c < connections; c++) {
                _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = hu_connect();

                for (unsigned i = 0; i < per; i++) {
                        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
                        sd_bus_error error = SD_BUS_ERROR_NULL;
                        const char *token;
                        int r;

                        r = test_call(bus, "Share", &error, &reply, "ta{sv}", id, 1, "uid", "u", (uint32_t) HU_UID_B);
                        if (r < 0) {
                                ASSERT_BUS_ERROR(r, &error, SVMD_ERROR_QUOTA_EXCEEDED);
                                if (!refusal[0])
                                        snprintf(refusal, refusal_size, "%s", error.message);
                                sd_bus_error_free(&error);
                                continue;
                        }
                        ASSERT_OK(sd_bus_message_read(reply, "s", &token));
                        if (out)
                                snprintf(out[n], sizeof(out[n]), "%s", token);
                        n++;
                }
        }
        return n;
}

static void owner(void *arg) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = hu_connect();

        S->id = hu_allocate_persistent(bus, T.gpus[0], 4 * MiB);
        S->n_tokens = share_many(S->id, CONNECTIONS, SHARES_PER_CONNECTION, S->tokens, S->refusal,
                                 sizeof(S->refusal));

        /* More ranges, as many tokens as each takes: the scope's bound comes first. */
        S->scope_tokens = S->n_tokens;
        for (unsigned i = 0; i < EXTRA_RANGES; i++)
                S->scope_tokens += share_many(hu_allocate_persistent(bus, T.gpus[0], 64 * 1024), TOKENS_PER_RANGE / 4, 4, NULL,
                                              S->scope_refusal, sizeof(S->scope_refusal));
}

static sd_bus *connect_direct(void) {
        char address[4096];
        sd_bus *bus = NULL;

        snprintf(address, sizeof(address), "unix:path=%s/" SVMD_IO_SOCKET_NAME, getenv("SVMD_RUNTIME_DIR"));
        ASSERT_OK(sd_bus_new(&bus));
        ASSERT_OK(sd_bus_set_address(bus, address));
        ASSERT_OK(sd_bus_negotiate_fds(bus, 1));
        ASSERT_OK(sd_bus_start(bus));
        return bus;
}

static int attach(sd_bus *bus, const char *token, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        uint64_t id, va, size;
        int fd, r;

        r = test_call(bus, "Attach", error, &reply, "s", token);
        if (r < 0)
                return r;
        ASSERT_OK(sd_bus_message_read(reply, "ttth", &id, &va, &size, &fd));
        ASSERT_UEQ(id, S->id);
        return 0;
}

static void attacher(void *arg) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = hu_connect();
        sd_bus *holders[HOLD_CONNECTIONS] = {};
        sd_bus_error error = SD_BUS_ERROR_NULL;
        uint64_t t0;
        int r;

        /* Attach after Attach on one connection, while C measures. */
        S->attaching = 1;
        t0 = hu_now_usec();
        for (unsigned i = 0; i < ATTACHES; i++) {
                r = attach(bus, S->tokens[i % S->n_tokens], &error);
                ASSERT_BUS_OK(r, &error);
        }
        S->attach_usec = hu_now_usec() - t0;
        S->attach_done = 1;

        /* A hold per connection: the range's bound. */
        for (unsigned i = 0; i < HOLD_CONNECTIONS; i++) {
                holders[i] = connect_direct();
                r = attach(holders[i], S->tokens[i % S->n_tokens], &error);
                if (r < 0) {
                        ASSERT_BUS_ERROR(r, &error, SVMD_ERROR_QUOTA_EXCEEDED);
                        if (!S->holds_refusal[0])
                                snprintf(S->holds_refusal, sizeof(S->holds_refusal), "%s", error.message);
                        sd_bus_error_free(&error);
                } else
                        S->holds++;
        }
        for (unsigned i = 0; i < HOLD_CONNECTIONS; i++)
                sd_bus_flush_close_unref(holders[i]);
}

static void bystander(void *arg) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = hu_connect();

        hu_wait_flag(&S->attaching);
        for (unsigned i = 0; i < USAGE_SAMPLES; i++) {
                uint64_t t0 = hu_now_usec();

                (void) hu_usage(bus, "ranges");
                S->usage_usec[i] = hu_now_usec() - t0;
        }
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
        return x < y ? -1 : x > y;
}

/* The journal under the runtime directory: its size and longest line. */
static void journal_stats(uint64_t *ret_size, uint64_t *ret_longest) {
        char path[4096];
        FILE *f;
        uint64_t size = 0, longest = 0, line = 0;
        int c;

        snprintf(path, sizeof(path), "%s/journal", getenv("SVMD_RUNTIME_DIR"));
        f = fopen(path, "re");
        ASSERT_TRUE(f);
        while ((c = fgetc(f)) != EOF) {
                size++;
                if (c == '\n') {
                        longest = line > longest ? line : longest;
                        line = 0;
                } else
                        line++;
        }
        fclose(f);
        *ret_size = size;
        *ret_longest = longest;
}

int main(void) {
        uint64_t journal_size, longest;
        pid_t b, c;

        test_setup(&T);
        S = hu_shared(sizeof(Shared));

        hu_as_uid(HU_UID_A, owner, NULL);
        journal_stats(&journal_size, &longest);
        fprintf(stderr, "%u tokens made on one range through %u connections (%u Shares); refusal: %s\n",
                S->n_tokens, CONNECTIONS, MAX_TOKENS, S->refusal);
        fprintf(stderr, "%u tokens in A's scope; refusal: %s\n", S->scope_tokens, S->scope_refusal);
        fprintf(stderr, "journal after the Shares: %" PRIu64 " bytes, longest line %" PRIu64 " bytes\n",
                journal_size, longest);

        c = hu_spawn(HU_UID_C, bystander, NULL);
        b = hu_spawn(HU_UID_B, attacher, NULL);
        hu_wait(c);
        hu_wait(b);
        qsort(S->usage_usec, USAGE_SAMPLES, sizeof(uint64_t), cmp_u64);
        journal_stats(&journal_size, &longest);
        fprintf(stderr, "Attach: %.3f ms per call; C's GetUsage median %.3f ms, max %.3f ms\n",
                S->attach_usec / 1e3 / ATTACHES, S->usage_usec[USAGE_SAMPLES / 2] / 1e3,
                S->usage_usec[USAGE_SAMPLES - 1] / 1e3);
        fprintf(stderr, "%u holds through %u connections; refusal: %s\n", S->holds, HOLD_CONNECTIONS,
                S->holds_refusal);
        fprintf(stderr, "journal after the Attaches: %" PRIu64 " bytes, longest line %" PRIu64 " bytes\n",
                journal_size, longest);

        ASSERT_UEQ(S->n_tokens, TOKENS_PER_RANGE);
        ASSERT_UEQ(S->scope_tokens, TOKENS_PER_SCOPE);
        ASSERT_UEQ(S->holds + 1, HOLDS_PER_RANGE); /* B's first connection holds one */
        ASSERT_TRUE(longest < 1024);

        test_teardown(&T);
        return 0;
}
