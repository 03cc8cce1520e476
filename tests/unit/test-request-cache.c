/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <systemd/sd-bus.h>

#include "bus-util.h"
#include "request-cache.h"
#include "unit-assert.h"

/* A bus on one end of a socketpair: enough to build, seal and answer messages. */
static sd_bus *bus;
static int peer_fd = -1;

static void bus_setup(void) {
        int sv[2];

        ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv), 0);
        ASSERT_EQ(sd_bus_new(&bus), 0);
        ASSERT_EQ(sd_bus_set_fd(bus, sv[0], sv[0]), 0);
        ASSERT_EQ(sd_bus_start(bus), 0);
        peer_fd = sv[1];
}

static uint64_t cookie = 1;

static sd_bus_message *call_new(const char *member) {
        sd_bus_message *m = NULL;

        ASSERT_EQ(sd_bus_message_new_method_call(bus, &m, NULL, "/org/svmd1", "org.svmd1.Manager", member), 0);
        return m;
}

static sd_bus_message *sealed(sd_bus_message *m) {
        ASSERT_EQ(sd_bus_message_seal(m, cookie++, 0), 0);
        return m;
}

static uint64_t digest_of(sd_bus_message *m) {
        uint64_t d = 0;

        ASSERT_EQ(request_digest(m, &d), 0);
        ASSERT_TRUE(d != 0);
        return d;
}

static sd_bus_message *free_call(uint64_t id) {
        sd_bus_message *m = call_new("Free");

        ASSERT_CMP_INT(sd_bus_message_append(m, "t", id), >=, 0);
        return sealed(m);
}

static sd_bus_message *allocate_call(uint64_t size, const char *request_id, const char *label) {
        sd_bus_message *m = call_new("Allocate");

        ASSERT_CMP_INT(sd_bus_message_append(m, "tus", size, UINT32_C(0x3a1f), "gtt"), >=, 0);
        ASSERT_CMP_INT(sd_bus_message_append(m, "a{sv}", 4, "request-id", "s", request_id, "map", "au", 2,
                                             UINT32_C(1), UINT32_C(2), "persistent", "b", 1, "label", "s", label),
                       >=, 0);
        return sealed(m);
}

/*
 * Digests are stored in the journal with persistent ranges and compared after a restart
 * (range.h): the value for given arguments must never change. These are the values of
 * the first implementation; a faster one must give the same.
 */
static void test_digest_stable(void) {
        char label[1001];
        sd_bus_message *m;

        memset(label, 'x', sizeof(label) - 1);
        label[sizeof(label) - 1] = '\0';

        m = free_call(42);
        ASSERT_UEQ(digest_of(m), UINT64_C(0xd32ed0ca218f9cbf));
        sd_bus_message_unref(m);

        m = allocate_call(65536, "job-1", "weights");
        ASSERT_UEQ(digest_of(m), UINT64_C(0x7a15e02042ce1902));
        sd_bus_message_unref(m);

        /* Longer than any inline buffer. */
        m = allocate_call(65536, "job-1", label);
        ASSERT_UEQ(digest_of(m), UINT64_C(0x908d95396b55c78f));
        sd_bus_message_unref(m);
}

/* Every argument counts, and the message is rewound: the same digest twice. */
static void test_digest_arguments(void) {
        sd_bus_message *a = allocate_call(65536, "job-1", "weights"), *b = allocate_call(65536, "job-1", "weightz"),
                       *c = allocate_call(131072, "job-1", "weights"), *f1 = free_call(1), *f2 = free_call(2);
        uint64_t da = digest_of(a);

        ASSERT_UEQ(digest_of(a), da);
        ASSERT_TRUE(digest_of(b) != da);
        ASSERT_TRUE(digest_of(c) != da);
        ASSERT_TRUE(digest_of(f1) != digest_of(f2));
        sd_bus_message_unref(a);
        sd_bus_message_unref(b);
        sd_bus_message_unref(c);
        sd_bus_message_unref(f1);
        sd_bus_message_unref(f2);
}

/* What was stored under (uid, id) is found by that uid alone, for the same member and arguments. */
static void test_store_replay(void) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        RequestCache *c = NULL;
        sd_bus_message *call = free_call(7), *other = free_call(8), *alloc = allocate_call(4096, "job-1", "x"),
                       *reply = NULL, *full = NULL;
        char id[64];

        snprintf(id, sizeof(id), REQUEST_ID_FREE_PREFIX "%u", 7);
        ASSERT_EQ(request_cache_new(&c, 4), 0);
        ASSERT_EQ(request_cache_replay(c, call, 1000, id, &error), 0);

        ASSERT_EQ(sd_bus_message_new_method_return(call, &reply), 0);
        ASSERT_EQ(sd_bus_message_seal(reply, cookie++, 0), 0);
        ASSERT_EQ(request_cache_store(c, call, "uid:1000", 1000, id, reply), 0);
        ASSERT_EQ(request_cache_store(c, call, "uid:4294967294", 4294967294U, "job-1", reply), 0);

        /* An answer with arguments is kept and copied; an empty one is made anew. */
        ASSERT_EQ(sd_bus_message_new_method_return(alloc, &full), 0);
        ASSERT_CMP_INT(sd_bus_message_append(full, "tto", UINT64_C(5), UINT64_C(0x7f0000000000),
                                             "/org/svmd1/range/5"), >=, 0);
        ASSERT_EQ(sd_bus_message_seal(full, cookie++, 0), 0);
        ASSERT_EQ(request_cache_store(c, alloc, "uid:1000", 1000, "alloc-5", full), 0);
        ASSERT_EQ(request_cache_replay(c, alloc, 1000, "alloc-5", &error), 1);
        ASSERT_EQ(request_cache_replay(c, call, 1000, id, &error), 1);
        ASSERT_EQ(request_cache_replay(c, call, 4294967294U, "job-1", &error), 1);
        /* Another uid, another id, a prefix of the id: nothing. */
        ASSERT_EQ(request_cache_replay(c, call, 1001, id, &error), 0);
        ASSERT_EQ(request_cache_replay(c, call, 100, id, &error), 0);
        ASSERT_EQ(request_cache_replay(c, call, 4294967294U, "job-", &error), 0);
        ASSERT_EQ(request_cache_replay(c, call, 429496729U, "4job-1", &error), 0);
        /* A client's id with other arguments, or for another method, is refused. */
        ASSERT_CMP_INT(request_cache_replay(c, other, 4294967294U, "job-1", &error), <, 0);
        ASSERT_TRUE(sd_bus_error_has_name(&error, "org.svmd1.Error.RequestIdReused"));
        sd_bus_error_free(&error);
        ASSERT_CMP_INT(request_cache_replay(c, alloc, 4294967294U, "job-1", &error), <, 0);
        ASSERT_TRUE(sd_bus_error_has_name(&error, "org.svmd1.Error.RequestIdReused"));
        sd_bus_error_free(&error);
        /* svmd's own id of a Free is checked by its member (its id is the key). */
        ASSERT_CMP_INT(request_cache_replay(c, alloc, 1000, id, &error), <, 0);
        ASSERT_TRUE(sd_bus_error_has_name(&error, "org.svmd1.Error.RequestIdReused"));
        sd_bus_error_free(&error);

        request_cache_free(c);
        sd_bus_message_unref(reply);
        sd_bus_message_unref(call);
        sd_bus_message_unref(other);
        sd_bus_message_unref(alloc);
        sd_bus_message_unref(full);
}

static void test_path_from_id(void) {
        static const struct {
                uint64_t id;
                const char *path;
        } cases[] = {
                { 1, "/org/svmd1/range/1" },
                { 9, "/org/svmd1/range/9" },
                { 10, "/org/svmd1/range/10" },
                { 1234567890, "/org/svmd1/range/1234567890" },
                { UINT64_MAX, "/org/svmd1/range/18446744073709551615" },
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                char *p = NULL;
                uint64_t back = 0;

                ASSERT_EQ(bus_path_from_id("/org/svmd1/range", cases[i].id, &p), 0);
                ASSERT_STREQ(p, cases[i].path);
                ASSERT_EQ(bus_path_to_id("/org/svmd1/range", p, &back), 0);
                ASSERT_UEQ(back, cases[i].id);
                free(p);
        }
}

int main(void) {
        bus_setup();
        test_digest_stable();
        test_digest_arguments();
        test_store_replay();
        test_path_from_id();
        sd_bus_close_unref(bus); /* nobody answers the handshake: nothing to flush */
        close(peer_fd);
        return 0;
}
