/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * Revoke with a deadline (docs/dbus-api.md, "Revoke"), with holders of other uids:
 *
 *   - bad input and other tenants change nothing: a deadline of 0 or past a week,
 *     an unknown option, a uid that holds nothing; a tenant that may not see the
 *     range hears what an unused id gets; a holder may not revoke others;
 *   - a holder that does not cooperate (uid 2, ignores RevokeRequested): the
 *     Revoking property shows its deadline; at the deadline its hold is taken, the
 *     range its owner had freed goes with it (the emulator's dump equals the one
 *     before the range existed), RevokeFinished says 0 in time and 1 taken, and
 *     its later Release and Export fail with org.svmd1.Error.Revoked;
 *   - a cooperating holder svmd did not write (tests/hostile/revoke-holder.py,
 *     dbus-python, uid 65534): it gets RevokeRequested without subscribing and
 *     releases; the revoker hears RevokeFinished (1 in time, 0 taken) long
 *     before the deadline; the other holder (uid 2) keeps its hold;
 *   - a holder that disconnects counts as acknowledged; an administrator
 *     revokes a range that is not its own;
 *   - a holder's Release racing the deadline: whichever comes first, the
 *     outcome is consistent (released: 1 in time and Release succeeded; taken:
 *     Release fails with Revoked);
 *   - svmd restarts while a revocation runs: the revocation is gone (as
 *     documented), the hold comes back as a restored hold, and a new Revoke
 *     drops it at once, with nobody to wait for.
 */

#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hostile-util.h"
#include "svmd-protocol.h"

#define MiB (UINT64_C(1) << 20)
#define MSEC (UINT64_C(1000))
#define SEC (UINT64_C(1000000))

/* Long enough for the test to read the Revoking property before it passes, on a busy machine too. */
#define STUBBORN_DEADLINE (2500 * MSEC)

static TestContext T;

typedef struct Shared {
        uint64_t r1, r2, r3;
        char tok_b[40], tok_c[40], tok_b3[40];
        unsigned asked, acknowledged, forced;
        uint64_t finished_after_usec;
        volatile int revoke_ready, revoke_done;
        volatile int b_attached, b_got_request, b_check, b_checked, b_exit;
        volatile int c_attached, c_got_request;
        volatile int race_attached, race_done;
        volatile int quiet_attached, quiet_exit;
        volatile int restart_attached, restart_exit;
        uint64_t race_sleep_usec;
        int race_release_ok;
} Shared;

static Shared *S;

/* The Revoking property: the deadline of uid's hold (0: not being revoked). */
static uint64_t revoking_deadline(sd_bus *bus, uint64_t id, uid_t uid) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        char path[64];
        uint64_t deadline, found = 0;
        uint32_t u;
        int r;

        snprintf(path, sizeof(path), SVMD_RANGE_PATH_PREFIX "/%" PRIu64, id);
        r = sd_bus_get_property(bus, SVMD_BUS_NAME, path, SVMD_RANGE_INTERFACE, "Revoking", &error, &reply, "a(ut)");
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_enter_container(reply, 'a', "(ut)"));
        while ((r = sd_bus_message_read(reply, "(ut)", &u, &deadline)) > 0)
                if (u == uid)
                        found = deadline;
        ASSERT_OK(r);
        return found;
}

static uint64_t realtime_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t) ts.tv_sec * SEC + (uint64_t) ts.tv_nsec / 1000;
}

/* ---- signals: counted by match callbacks ---- */

typedef struct Seen {
        uint64_t id;
        unsigned n;
        uint32_t a, b;          /* RevokeRequested: uid; RevokeFinished: acknowledged, forced */
        uint64_t deadline_usec;
} Seen;

static int on_requested(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Seen *s = userdata;
        uint64_t id, deadline;
        uint32_t uid;

        ASSERT_OK(sd_bus_message_read(m, "tut", &id, &uid, &deadline));
        if (id == s->id) {
                s->n++;
                s->a = uid;
                s->deadline_usec = deadline;
        }
        return 0;
}

static int on_finished(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Seen *s = userdata;
        uint64_t id;
        uint32_t ack, forced;

        ASSERT_OK(sd_bus_message_read(m, "tuu", &id, &ack, &forced));
        if (id == s->id) {
                s->n++;
                s->a = ack;
                s->b = forced;
        }
        return 0;
}

static sd_bus_slot *watch(sd_bus *bus, const char *member, Seen *s) {
        sd_bus_slot *slot = NULL;

        ASSERT_OK(sd_bus_match_signal(bus, &slot, NULL, SVMD_MANAGER_PATH, SVMD_MANAGER_INTERFACE, member,
                                      streq(member, "RevokeFinished") ? on_finished : on_requested, s));
        return slot;
}

/* Process bus until s has seen a signal or timeout_usec passed; whether it has. */
static bool wait_seen(sd_bus *bus, Seen *s, uint64_t timeout_usec) {
        uint64_t end = hu_now_usec() + timeout_usec;

        while (s->n == 0 && hu_now_usec() < end) {
                int r = sd_bus_process(bus, NULL);

                ASSERT_OK(r);
                if (r == 0)
                        ASSERT_OK(sd_bus_wait(bus, 100 * MSEC));
        }
        return s->n > 0;
}

/* Revoke (uid, or every hold if uid is -1) and wait for RevokeFinished; results in S. */
static void revoke_and_wait(sd_bus *bus, uint64_t id, uid_t uid, uint64_t timeout_usec) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(sd_bus_slot_unrefp) sd_bus_slot *slot = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        Seen fin = { .id = id };
        uint64_t start, deadline;
        uint32_t asked;
        int r;

        slot = watch(bus, "RevokeFinished", &fin);
        start = hu_now_usec();
        if (uid == (uid_t) -1)
                r = test_call(bus, "Revoke", &error, &reply, "tta{sv}", id, timeout_usec, 0);
        else
                r = test_call(bus, "Revoke", &error, &reply, "tta{sv}", id, timeout_usec, 1, "uid", "u",
                              (uint32_t) uid);
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_read(reply, "ut", &asked, &deadline));
        ASSERT_TRUE(deadline >= realtime_usec() + timeout_usec - 5 * SEC && deadline <= realtime_usec() + timeout_usec);
        S->asked = asked;
        S->revoke_ready = 1;
        ASSERT_TRUE(wait_seen(bus, &fin, timeout_usec + 10 * SEC));
        S->finished_after_usec = hu_now_usec() - start;
        S->acknowledged = fin.a;
        S->forced = fin.b;
        fprintf(stderr, "range %" PRIu64 ": %u asked, RevokeFinished after %" PRIu64 " ms: %u in time, %u taken\n",
                id, asked, S->finished_after_usec / MSEC, fin.a, fin.b);
        S->revoke_done = 1;
}

/* ---- bad input and other tenants ---- */

static void owner_bad_input(void *arg) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = hu_connect();
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        r = test_call(bus, "Revoke", &error, NULL, "tta{sv}", S->r1, UINT64_C(0), 0);
        hu_expect_error(r, &error, SD_BUS_ERROR_INVALID_ARGS);
        r = test_call(bus, "Revoke", &error, NULL, "tta{sv}", S->r1, UINT64_MAX, 0);
        hu_expect_error(r, &error, SD_BUS_ERROR_INVALID_ARGS);
        r = test_call(bus, "Revoke", &error, NULL, "tta{sv}", S->r1, 7 * 24 * 3600 * SEC + 1, 0);
        hu_expect_error(r, &error, SD_BUS_ERROR_INVALID_ARGS);
        r = test_call(bus, "Revoke", &error, NULL, "tta{sv}", S->r1, SEC, 1, "bogus", "u", (uint32_t) 1);
        hu_expect_error(r, &error, SD_BUS_ERROR_INVALID_ARGS);
        r = test_call(bus, "Revoke", &error, NULL, "tta{sv}", S->r1, SEC, 1, "uid", "s", "2");
        hu_expect_error(r, &error, SD_BUS_ERROR_INVALID_ARGS);
        r = test_call(bus, "Revoke", &error, NULL, "tta{sv}", S->r1, SEC, 1, "uid", "u", (uint32_t) 4242);
        hu_expect_error(r, &error, SVMD_ERROR_NO_SUCH_RANGE);
        r = test_call(bus, "Revoke", &error, NULL, "tta{sv}", UINT64_C(999999), SEC, 0);
        hu_expect_error(r, &error, SVMD_ERROR_NO_SUCH_RANGE);
}

/* A tenant that may not see the range hears what an unused id gets, word for word. */
static void stranger(void *arg) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = hu_connect();
        sd_bus_error error = SD_BUS_ERROR_NULL, unused = SD_BUS_ERROR_NULL;
        char expected[256];
        const char *p;
        int r;

        r = test_call(bus, "Revoke", &unused, NULL, "tta{sv}", UINT64_C(999999), SEC, 0);
        ASSERT_BUS_ERROR(r, &unused, SVMD_ERROR_NO_SUCH_RANGE);
        r = test_call(bus, "Revoke", &error, NULL, "tta{sv}", S->r1, SEC, 0);
        ASSERT_BUS_ERROR(r, &error, SVMD_ERROR_NO_SUCH_RANGE);
        /* The same sentence with the id put in. */
        p = strstr(unused.message, "999999");
        ASSERT_TRUE(p);
        snprintf(expected, sizeof(expected), "%.*s%" PRIu64 "%s", (int) (p - unused.message), unused.message, S->r1,
                 p + strlen("999999"));
        ASSERT_STREQ(error.message, expected);
        fprintf(stderr, "stranger refused as for an unused id: %s\n", error.message);
        sd_bus_error_free(&error);
        r = test_call(bus, "Revoke", &error, NULL, "tta{sv}", S->r1, SEC, 1, "uid", "u", (uint32_t) HU_UID_B);
        hu_expect_error(r, &error, SVMD_ERROR_NO_SUCH_RANGE);
        sd_bus_error_free(&unused);
}

/* ---- uid 2: holds r1 and ignores the revocation ---- */

static void stubborn_holder(void *arg) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = hu_connect();
        _cleanup_(sd_bus_slot_unrefp) sd_bus_slot *slot = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        Seen req = {};
        int r;

        r = test_call(bus, "Attach", &error, NULL, "s", S->tok_b);
        ASSERT_BUS_OK(r, &error);
        req.id = S->r1;
        slot = watch(bus, "RevokeRequested", &req);

        /* A holder may not revoke the others. */
        r = test_call(bus, "Revoke", &error, NULL, "tta{sv}", S->r1, SEC, 0);
        hu_expect_error(r, &error, SD_BUS_ERROR_ACCESS_DENIED);
        r = test_call(bus, "Revoke", &error, NULL, "tta{sv}", S->r1, SEC, 1, "uid", "u", (uint32_t) HU_UID_C);
        hu_expect_error(r, &error, SD_BUS_ERROR_ACCESS_DENIED);
        S->b_attached = 1;

        /* It gets the signal, never having subscribed, and does nothing about it. */
        ASSERT_TRUE(wait_seen(bus, &req, 60 * SEC));
        ASSERT_UEQ(req.a, HU_UID_B);
        S->b_got_request = 1;
        fprintf(stderr, "uid 2 told to release range %" PRIu64 " by %" PRIu64 " (in %" PRIi64 " ms); ignoring it\n",
                req.id, req.deadline_usec, (int64_t) (req.deadline_usec - realtime_usec()) / 1000);
        /* While the revocation runs, the holder may take no new fd. */
        r = test_call(bus, "Export", &error, NULL, "t", S->r1);
        hu_expect_error(r, &error, SVMD_ERROR_REVOKED);

        hu_wait_flag(&S->b_check);
        r = test_call(bus, "Release", &error, NULL, "t", S->r1);
        hu_expect_error(r, &error, SVMD_ERROR_REVOKED);
        r = test_call(bus, "Export", &error, NULL, "t", S->r1);
        hu_expect_error(r, &error, SVMD_ERROR_REVOKED);
        S->b_checked = 1;
        hu_wait_flag(&S->b_exit);
}

static void owner_frees_and_revokes_all(void *arg) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = hu_connect();

        test_free(bus, S->r1);                  /* detached: it lives for uid 2 */
        revoke_and_wait(bus, S->r1, (uid_t) -1, STUBBORN_DEADLINE);
}

/* ---- the cooperating holder: revoke-holder.py as uid 65534 ---- */

static pid_t start_python_holder(const char *token, FILE **ret_out) {
        const char *script = getenv("REVOKE_HOLDER");
        int p[2];
        pid_t pid;

        ASSERT_TRUE(script);
        ASSERT_OK(pipe2(p, O_CLOEXEC) < 0 ? -errno : 0);
        pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                ASSERT_OK(dup2(p[1], STDOUT_FILENO) < 0 ? -errno : 0);
                test_become(HU_UID_C);
                execl("/usr/bin/python3", "python3", script, token, (char *) NULL);
                _exit(127);
        }
        close(p[1]);
        *ret_out = fdopen(p[0], "r");
        ASSERT_TRUE(*ret_out);
        return pid;
}

static void owner_revokes_c(void *arg) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = hu_connect();

        revoke_and_wait(bus, S->r2, HU_UID_C, 20 * SEC);
}

/*
 * uid 2 holds r2 too: a revocation of uid 65534's holds leaves it alone, and, although it
 * subscribed, it does not hear of the other holder's revocation.
 */
static void quiet_holder(void *arg) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = hu_connect();
        _cleanup_(sd_bus_slot_unrefp) sd_bus_slot *slot = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        Seen req = { .id = S->r2 };
        int r;

        r = test_call(bus, "Attach", &error, NULL, "s", S->tok_b);
        ASSERT_BUS_OK(r, &error);
        slot = watch(bus, "RevokeRequested", &req);
        r = test_call(bus, "Subscribe", &error, NULL, "");
        ASSERT_BUS_OK(r, &error);
        S->quiet_attached = 1;
        hu_wait_flag(&S->quiet_exit);
        /* The revocation is over: whatever svmd sent has arrived by a round trip. */
        r = test_call(bus, "GetUsage", &error, NULL, "s", "");
        ASSERT_BUS_OK(r, &error);
        ASSERT_TRUE(!wait_seen(bus, &req, 200 * MSEC));
}

/* ---- uid 65534 again (C): disconnects instead of releasing ---- */

static void leaving_holder(void *arg) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = hu_connect();
        _cleanup_(sd_bus_slot_unrefp) sd_bus_slot *slot = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        Seen req = { .id = S->r2 };
        int r;

        r = test_call(bus, "Attach", &error, NULL, "s", S->tok_c);
        ASSERT_BUS_OK(r, &error);
        slot = watch(bus, "RevokeRequested", &req);
        S->c_attached = 1;
        ASSERT_TRUE(wait_seen(bus, &req, 60 * SEC));
        S->c_got_request = 1;
        /* Returning closes the connection. */
}

/* ---- the race: uid 2's Release against a short deadline ---- */

static void racing_holder(void *arg) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = hu_connect();
        _cleanup_(sd_bus_slot_unrefp) sd_bus_slot *slot = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        Seen req = { .id = S->r3 };
        struct timespec ts;
        int r;

        r = test_call(bus, "Attach", &error, NULL, "s", S->tok_b3);
        ASSERT_BUS_OK(r, &error);
        slot = watch(bus, "RevokeRequested", &req);
        S->race_attached = 1;
        ASSERT_TRUE(wait_seen(bus, &req, 60 * SEC));
        ts = (struct timespec) { 0, (long) (S->race_sleep_usec * 1000) };
        nanosleep(&ts, NULL);
        r = test_call(bus, "Release", &error, NULL, "t", S->r3);
        if (r >= 0)
                S->race_release_ok = 1;
        else
                hu_expect_error(r, &error, SVMD_ERROR_REVOKED);
        S->race_done = 1;
}

static void owner_race(void *arg) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = hu_connect();

        revoke_and_wait(bus, S->r3, HU_UID_B, 200 * MSEC);
}

static void owner_setup(void *arg) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = hu_connect();
        char tok_any[40];

        S->r1 = hu_allocate_persistent(bus, T.gpus[0], 4 * MiB);
        hu_share(bus, S->r1, HU_UID_B, S->tok_b);
        hu_share(bus, S->r1, HU_UID_C, tok_any);   /* a whole-range revocation removes every token */
}

static void owner_setup2(void *arg) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = hu_connect();

        S->r2 = hu_allocate_persistent(bus, T.gpus[0], 4 * MiB);
        hu_share(bus, S->r2, HU_UID_B, S->tok_b);
        hu_share(bus, S->r2, HU_UID_C, S->tok_c);
}

static void owner_setup_race(void *arg) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = hu_connect();

        S->r3 = hu_allocate_persistent(bus, T.gpus[0], 4 * MiB);
        hu_share(bus, S->r3, HU_UID_B, S->tok_b3);
}

static void owner_lists_no_token(void *arg) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = hu_connect();
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        /* r1 is gone with its last hold: its tokens went at the revocation (and with the range). */
        r = test_call(bus, "ListTokens", &error, &reply, "t", S->r1);
        hu_expect_error(r, &error, SVMD_ERROR_NO_SUCH_RANGE);
}

static void run_race(uint64_t sleep_usec) {
        pid_t holder;

        S->race_attached = S->race_done = S->race_release_ok = 0;
        S->revoke_done = 0;
        S->race_sleep_usec = sleep_usec;
        holder = hu_spawn(HU_UID_B, racing_holder, NULL);
        hu_wait_flag(&S->race_attached);
        hu_as_uid(HU_UID_A, owner_race, NULL);
        hu_wait(holder);
        fprintf(stderr, "race, Release %" PRIu64 " ms after the request: %s\n", sleep_usec / MSEC,
                S->race_release_ok ? "released in time" : "taken at the deadline");
        ASSERT_UEQ(S->asked, 1);
        ASSERT_UEQ(S->acknowledged + S->forced, 1);
        ASSERT_UEQ(S->acknowledged, (unsigned) S->race_release_ok);
        ASSERT_UEQ(hu_holds_of(T.bus, S->r3, HU_UID_B), 0);
}

/* ---- a restart in the middle ---- */

static void restart_holder(void *arg) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = hu_connect();
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        r = test_call(bus, "Attach", &error, NULL, "s", S->tok_b3);
        ASSERT_BUS_OK(r, &error);
        S->restart_attached = 1;
        hu_wait_flag(&S->restart_exit);
}

/* Revoke uid 2's holds on r3 with a minute's deadline; how many holds it waits for. */
static unsigned revoke_b_r3(sd_bus *bus) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        uint64_t deadline;
        uint32_t asked;
        int r;

        r = test_call(bus, "Revoke", &error, &reply, "tta{sv}", S->r3, 60 * SEC, 1, "uid", "u", (uint32_t) HU_UID_B);
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_read(reply, "ut", &asked, &deadline));
        return asked;
}

static void owner_revokes_before_restart(void *arg) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = hu_connect();

        ASSERT_UEQ(revoke_b_r3(bus), 1);
}

static void owner_revokes_after_restart(void *arg) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = hu_connect();

        /* The restored hold has no connection to ask: it goes at once, nothing to wait for. */
        ASSERT_UEQ(revoke_b_r3(bus), 0);
}

int main(void) {
        _cleanup_free_ char *base = NULL, *after = NULL;
        char line[256], token[40];
        uint64_t deadline, id;
        FILE *out;
        pid_t b, py, owner, c;
        double left;
        int status;

        test_setup(&T);
        S = hu_shared(sizeof(Shared));

        /* ---- uid 2 does not let go ---- */
        base = test_dump(&T);
        hu_as_uid(HU_UID_A, owner_setup, NULL);
        b = hu_spawn(HU_UID_B, stubborn_holder, NULL);
        hu_wait_flag(&S->b_attached);
        hu_as_uid(HU_UID_A, owner_bad_input, NULL);
        hu_as_uid(HU_UID_C, stranger, NULL);
        ASSERT_UEQ(hu_holds_of(T.bus, S->r1, HU_UID_B), 1);
        ASSERT_UEQ(revoking_deadline(T.bus, S->r1, HU_UID_B), 0); /* the refusals changed nothing */

        owner = hu_spawn(HU_UID_A, owner_frees_and_revokes_all, NULL);
        hu_wait_flag(&S->b_got_request);
        deadline = revoking_deadline(T.bus, S->r1, HU_UID_B);
        fprintf(stderr, "Revoking shows uid 2's deadline: %" PRIu64 "\n", deadline);
        ASSERT_TRUE(deadline > realtime_usec() && deadline <= realtime_usec() + STUBBORN_DEADLINE);
        hu_wait(owner);
        ASSERT_UEQ(S->asked, 1);
        ASSERT_UEQ(S->acknowledged, 0);
        ASSERT_UEQ(S->forced, 1);
        ASSERT_TRUE(S->finished_after_usec >= STUBBORN_DEADLINE - 100 * MSEC);
        /* The last hold of a range its owner freed: svmd's buffer and mappings are gone with it. */
        after = test_dump_settled(&T, base);
        ASSERT_STREQ(after, base);
        S->b_check = 1;
        hu_wait_flag(&S->b_checked);
        hu_as_uid(HU_UID_A, owner_lists_no_token, NULL);
        S->b_exit = 1;
        hu_wait(b);

        /* ---- the cooperating holder, which svmd did not write ---- */
        hu_as_uid(HU_UID_A, owner_setup2, NULL);
        snprintf(token, sizeof(token), "%s", S->tok_c);
        b = hu_spawn(HU_UID_B, quiet_holder, NULL);
        hu_wait_flag(&S->quiet_attached);
        py = start_python_holder(token, &out);
        ASSERT_TRUE(fgets(line, sizeof(line), out));
        ASSERT_TRUE(sscanf(line, "attached %" SCNu64, &id) == 1);
        ASSERT_UEQ(id, S->r2);
        S->revoke_done = 0;
        hu_as_uid(HU_UID_A, owner_revokes_c, NULL);
        ASSERT_TRUE(fgets(line, sizeof(line), out));
        fprintf(stderr, "revoke-holder.py: %s", line);
        ASSERT_TRUE(sscanf(line, "released %" SCNu64 " %lf", &id, &left) == 2);
        ASSERT_UEQ(id, S->r2);
        ASSERT_TRUE(left > 10.0);       /* of 20 s */
        ASSERT_UEQ(S->asked, 1);
        ASSERT_UEQ(S->acknowledged, 1);
        ASSERT_UEQ(S->forced, 0);
        ASSERT_TRUE(S->finished_after_usec < 10 * SEC);
        ASSERT_OK(waitpid(py, &status, 0) < 0 ? -errno : 0);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        fclose(out);
        ASSERT_UEQ(hu_holds_of(T.bus, S->r2, HU_UID_C), 0);
        ASSERT_UEQ(hu_holds_of(T.bus, S->r2, HU_UID_B), 1);
        ASSERT_UEQ(revoking_deadline(T.bus, S->r2, HU_UID_B), 0);
        S->quiet_exit = 1;
        hu_wait(b);

        /* ---- a holder that disconnects; an administrator revokes ---- */
        c = hu_spawn(HU_UID_C, leaving_holder, NULL);
        hu_wait_flag(&S->c_attached);
        {
                _cleanup_(sd_bus_flush_close_unrefp) sd_bus *root = test_connect_bus();

                S->revoke_done = 0;
                revoke_and_wait(root, S->r2, HU_UID_C, 30 * SEC);
        }
        hu_wait(c);
        ASSERT_UEQ(S->acknowledged, 1);
        ASSERT_UEQ(S->forced, 0);
        ASSERT_TRUE(S->finished_after_usec < 10 * SEC);

        /* ---- Release against the deadline ---- */
        for (uint64_t ms = 100; ms <= 300; ms += 100) {
                hu_as_uid(HU_UID_A, owner_setup_race, NULL);
                run_race(ms * MSEC);
        }

        /* ---- svmd restarts during a revocation: documented not to survive it ---- */
        hu_as_uid(HU_UID_A, owner_setup_race, NULL);
        b = hu_spawn(HU_UID_B, restart_holder, NULL);
        hu_wait_flag(&S->restart_attached);
        hu_as_uid(HU_UID_A, owner_revokes_before_restart, NULL);
        ASSERT_TRUE(revoking_deadline(T.bus, S->r3, HU_UID_B) > 0);
        test_kill_and_wait_restart(&T);
        ASSERT_UEQ(revoking_deadline(T.bus, S->r3, HU_UID_B), 0);
        ASSERT_UEQ(hu_holds_of(T.bus, S->r3, HU_UID_B), 1);        /* restored, for uid 2 */
        hu_as_uid(HU_UID_A, owner_revokes_after_restart, NULL);
        ASSERT_UEQ(hu_holds_of(T.bus, S->r3, HU_UID_B), 0);
        S->restart_exit = 1;
        hu_wait(b);

        test_teardown(&T);
        return 0;
}
