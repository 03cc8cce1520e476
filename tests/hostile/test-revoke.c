/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * Tokens and holds can be revoked by the range's owner or an admin, by nobody
 * else. Tenant A (uid 1) shares a persistent range with B (uid 2) and C
 * (uid 65534). C cannot list A's tokens nor revoke B's token or hold; A lists
 * and revokes B's token (Attach with it then fails NoSuchToken) and B's hold
 * (B's Release then finds none); root revokes C's hold. Then the case of a
 * restart: A frees a range B holds, svmd restarts with B's hold restored
 * (no connection of B's adopts it) and A's quota still charged; A lists the
 * hold and its remaining token and revokes the hold, which frees the range and
 * A's quota. A token revoked before the restart stays revoked.
 */

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "hostile-util.h"
#include "svmd-protocol.h"

#define MiB (UINT64_C(1) << 20)

static TestContext T;

typedef struct Shared {
        uint64_t r1, r2;
        char tok_b[40], tok_c[40], tok_any[40], tok2[40], tok2_revoked[40];
        uint64_t host_before_restart;
        volatile int b_attached, b_check, b_checked, b_exit;
        volatile int c_attached, c_exit;
        volatile int b2_attached, b2_exit;
} Shared;

static Shared *S;

static int attach(sd_bus *bus, const char *token, sd_bus_error *error) {
        return test_call(bus, "Attach", error, NULL, "s", token);
}

/* Whether ListTokens(id) lists token; aborts if it is refused. */
static bool lists_token(sd_bus *bus, uint64_t id, const char *token) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        const char *t;
        bool found = false;
        int r;

        r = test_call(bus, "ListTokens", &error, &reply, "t", id);
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_enter_container(reply, 'a', "(sa{sv})"));
        while ((r = sd_bus_message_enter_container(reply, 'r', "sa{sv}")) > 0) {
                ASSERT_OK(sd_bus_message_read(reply, "s", &t));
                found = found || streq(t, token);
                ASSERT_OK(sd_bus_message_skip(reply, "a{sv}"));
                ASSERT_OK(sd_bus_message_exit_container(reply));
        }
        ASSERT_OK(r);
        return found;
}

static void owner_setup(void *arg) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = hu_connect();

        S->r1 = hu_allocate_persistent(bus, T.gpus[0], 4 * MiB);
        hu_share(bus, S->r1, HU_UID_B, S->tok_b);
        hu_share(bus, S->r1, HU_UID_C, S->tok_c);
        hu_share(bus, S->r1, 0, S->tok_any);
}

static void tenant_b(void *arg) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = hu_connect();
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        r = attach(bus, S->tok_b, &error);
        ASSERT_BUS_OK(r, &error);
        S->b_attached = 1;

        /* Once revoked: the token is gone, and so is B's reference. */
        hu_wait_flag(&S->b_check);
        r = attach(bus, S->tok_b, &error);
        hu_expect_error(r, &error, SVMD_ERROR_NO_SUCH_TOKEN);
        r = test_call(bus, "Release", &error, NULL, "t", S->r1);
        hu_expect_error(r, &error, SVMD_ERROR_NO_SUCH_RANGE);
        S->b_checked = 1;
        hu_wait_flag(&S->b_exit);
}

static void tenant_c(void *arg) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = hu_connect();
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        /* Not C's range: C can neither list nor revoke, even with B's token in hand. A range C may not
         * see is no range to it (as for every method that takes an id); the token it holds, it knows. */
        r = test_call(bus, "ListTokens", &error, NULL, "t", S->r1);
        hu_expect_error(r, &error, SVMD_ERROR_NO_SUCH_RANGE);
        r = test_call(bus, "RevokeToken", &error, NULL, "s", S->tok_b);
        hu_expect_error(r, &error, SD_BUS_ERROR_ACCESS_DENIED);
        r = test_call(bus, "RevokeHold", &error, NULL, "tu", S->r1, (uint32_t) HU_UID_B);
        hu_expect_error(r, &error, SVMD_ERROR_NO_SUCH_RANGE);
        r = test_call(bus, "RevokeToken", &error, NULL, "s", "00000000000000000000000000000000");
        hu_expect_error(r, &error, SVMD_ERROR_NO_SUCH_TOKEN);

        r = attach(bus, S->tok_c, &error);
        ASSERT_BUS_OK(r, &error);
        S->c_attached = 1;
        hu_wait_flag(&S->c_exit);
}

static void owner_revokes(void *arg) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = hu_connect();
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        ASSERT_TRUE(lists_token(bus, S->r1, S->tok_b));
        ASSERT_TRUE(lists_token(bus, S->r1, S->tok_any));
        r = test_call(bus, "RevokeToken", &error, NULL, "s", S->tok_b);
        ASSERT_BUS_OK(r, &error);
        ASSERT_TRUE(!lists_token(bus, S->r1, S->tok_b));
        ASSERT_TRUE(lists_token(bus, S->r1, S->tok_c));

        r = test_call(bus, "RevokeHold", &error, NULL, "tu", S->r1, (uint32_t) HU_UID_B);
        ASSERT_BUS_OK(r, &error);
        ASSERT_UEQ(hu_holds_of(bus, S->r1, HU_UID_B), 0);
        r = test_call(bus, "RevokeHold", &error, NULL, "tu", S->r1, (uint32_t) HU_UID_B);
        hu_expect_error(r, &error, SVMD_ERROR_NO_SUCH_RANGE);
}

/* A range B holds, freed by A: it lives on for B, charged to A. */
static void owner_before_restart(void *arg) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = hu_connect();
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        S->r2 = hu_allocate_persistent(bus, T.gpus[0], 8 * MiB);
        hu_share(bus, S->r2, HU_UID_B, S->tok2);
        hu_share(bus, S->r2, HU_UID_B, S->tok2_revoked);
        r = test_call(bus, "RevokeToken", &error, NULL, "s", S->tok2_revoked);
        ASSERT_BUS_OK(r, &error);
}

static void owner_frees(void *arg) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = hu_connect();

        test_free(bus, S->r2);
        ASSERT_UEQ(hu_holds_of(bus, S->r2, HU_UID_B), 1);
        S->host_before_restart = hu_usage(bus, "host");
}

static void tenant_b_holds(void *arg) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = hu_connect();
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        r = attach(bus, S->tok2, &error);
        ASSERT_BUS_OK(r, &error);
        S->b2_attached = 1;
        /* Through the restart: this connection's hold is restored, with nobody to adopt it. */
        hu_wait_flag(&S->b2_exit);
}

static void owner_after_restart(void *arg) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = hu_connect();
        sd_bus_error error = SD_BUS_ERROR_NULL;
        uint64_t host;
        int r;

        /* Restored: the orphan hold, the token made before, not the one revoked before. */
        ASSERT_UEQ(hu_holds_of(bus, S->r2, HU_UID_B), 1);
        ASSERT_TRUE(lists_token(bus, S->r2, S->tok2));
        ASSERT_TRUE(!lists_token(bus, S->r2, S->tok2_revoked));
        host = hu_usage(bus, "host");
        fprintf(stderr, "A's host usage: %" PRIu64 " before the restart, %" PRIu64 " after\n",
                S->host_before_restart, host);
        ASSERT_UEQ(host, S->host_before_restart);

        /* Revoking the last hold of the range A let go of frees it, and A's quota. */
        r = test_call(bus, "RevokeHold", &error, NULL, "tu", S->r2, (uint32_t) HU_UID_B);
        ASSERT_BUS_OK(r, &error);
        ASSERT_UEQ(hu_usage(bus, "host"), host - 8 * MiB);
        r = test_call(bus, "RevokeHold", &error, NULL, "tu", S->r2, (uint32_t) HU_UID_B);
        hu_expect_error(r, &error, SVMD_ERROR_NO_SUCH_RANGE);
}

static void tenant_b_after_restart(void *arg) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = hu_connect();
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        r = attach(bus, S->tok2_revoked, &error);
        hu_expect_error(r, &error, SVMD_ERROR_NO_SUCH_TOKEN);
}

int main(void) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        pid_t b, c, b2;
        int r;

        test_setup(&T);
        S = hu_shared(sizeof(Shared));

        hu_as_uid(HU_UID_A, owner_setup, NULL);
        b = hu_spawn(HU_UID_B, tenant_b, NULL);
        hu_wait_flag(&S->b_attached);
        c = hu_spawn(HU_UID_C, tenant_c, NULL);
        hu_wait_flag(&S->c_attached);
        ASSERT_UEQ(hu_holds_of(T.bus, S->r1, HU_UID_B), 1); /* C's attempts changed nothing */

        hu_as_uid(HU_UID_A, owner_revokes, NULL);
        S->b_check = 1;
        hu_wait_flag(&S->b_checked);

        /* An admin revokes C's hold. */
        ASSERT_UEQ(hu_holds_of(T.bus, S->r1, HU_UID_C), 1);
        r = test_call(T.bus, "RevokeHold", &error, NULL, "tu", S->r1, (uint32_t) HU_UID_C);
        ASSERT_BUS_OK(r, &error);
        ASSERT_UEQ(hu_holds_of(T.bus, S->r1, HU_UID_C), 0);
        S->b_exit = S->c_exit = 1;
        hu_wait(b);
        hu_wait(c);

        /* The restart. */
        hu_as_uid(HU_UID_A, owner_before_restart, NULL);
        b2 = hu_spawn(HU_UID_B, tenant_b_holds, NULL);
        hu_wait_flag(&S->b2_attached);
        hu_as_uid(HU_UID_A, owner_frees, NULL);
        test_kill_and_wait_restart(&T);
        hu_as_uid(HU_UID_A, owner_after_restart, NULL);
        hu_as_uid(HU_UID_B, tenant_b_after_restart, NULL);
        S->b2_exit = 1;
        hu_wait(b2);

        test_free(T.bus, S->r1);
        test_teardown(&T);
        return 0;
}
