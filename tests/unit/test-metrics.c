/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * metrics.c: the wrapped vtable counts each call once, by the error name the
 * caller gets (set in the error, or made by sd-bus from the errno), not a
 * run that defers its answer; label values are escaped for both text formats.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <systemd/sd-bus.h>

#include "manager.h"
#include "metrics.h"
#include "svmd-protocol.h"
#include "unit-assert.h"

static Manager M;
static int handler_runs;

static int method_ok(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        handler_runs++;
        ASSERT_TRUE(userdata == &M);
        return 1;
}

static int method_named_error(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        handler_runs++;
        return sd_bus_error_set(error, SVMD_ERROR_NO_SUCH_RANGE, "Range 1 does not exist.");
}

static int method_errno(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        handler_runs++;
        return -EINVAL; /* sd-bus answers org.freedesktop.DBus.Error.InvalidArgs */
}

static int method_odd_errno(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        handler_runs++;
        return -EDQUOT; /* System.Error.EDQUOT: error maps only map names to errnos; "other" */
}

static int method_deferred(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        handler_runs++;
        if (handler_runs % 2 == 1) {
                metrics_call_deferred(M.metrics); /* as polkit_check() does */
                return 1;
        }
        return 1;
}

static const sd_bus_vtable test_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Version", "s", NULL, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_METHOD_WITH_ARGS("Ok", SD_BUS_NO_ARGS, SD_BUS_NO_RESULT, method_ok, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Named", SD_BUS_NO_ARGS, SD_BUS_NO_RESULT, method_named_error,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Errno", SD_BUS_NO_ARGS, SD_BUS_NO_RESULT, method_errno, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Odd", SD_BUS_NO_ARGS, SD_BUS_NO_RESULT, method_odd_errno,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Deferred", SD_BUS_NO_ARGS, SD_BUS_NO_RESULT, method_deferred,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_SIGNAL_WITH_ARGS("Happened", SD_BUS_ARGS("t", id), 0),
        SD_BUS_VTABLE_END,
};

static sd_bus *bus;

/* Call member through the wrapped vtable, as sd-bus would dispatch it. */
static int call(const char *member) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *msg = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        const sd_bus_vtable *v = metrics_vtable(M.metrics);
        int r = -ENOENT;

        ASSERT_OK(sd_bus_message_new_method_call(bus, &msg, "org.svmd1", "/org/svmd1", "org.svmd1.Test", member));
        for (; v->type != _SD_BUS_VTABLE_END; v++)
                if (v->type == _SD_BUS_VTABLE_METHOD && streq(v->x.method.member, member))
                        r = v->x.method.handler(msg, &M, &error);
        sd_bus_error_free(&error);
        return r;
}

static uint64_t count(const char *method, const char *error) {
        uint64_t n = UINT64_MAX;

        ASSERT_OK(metrics_method_count(M.metrics, method, error, &n));
        return n;
}

static void test_vtable_wrapped(void) {
        const sd_bus_vtable *v = metrics_vtable(M.metrics);
        size_t n = 0;

        /* The same entries, in the same order; only the methods' handlers differ. */
        for (; v[n].type != _SD_BUS_VTABLE_END; n++) {
                ASSERT_EQ(v[n].type, test_vtable[n].type);
                if (v[n].type == _SD_BUS_VTABLE_METHOD) {
                        ASSERT_STREQ(v[n].x.method.member, test_vtable[n].x.method.member);
                        ASSERT_TRUE(v[n].x.method.handler != test_vtable[n].x.method.handler);
                }
        }
        ASSERT_EQ(n, ELEMENTSOF(test_vtable) - 1);
        ASSERT_TRUE(metrics_method_count(M.metrics, "Happened", NULL, &(uint64_t) { 0 }) == -ENOENT);
}

static void test_counting(void) {
        handler_runs = 0;
        ASSERT_EQ(call("Ok"), 1);
        ASSERT_EQ(call("Ok"), 1);
        ASSERT_TRUE(call("Named") < 0);
        ASSERT_EQ(call("Errno"), -EINVAL);
        ASSERT_EQ(call("Odd"), -EDQUOT);
        /* Deferred, then answered: one call. */
        ASSERT_EQ(call("Deferred"), 1);
        ASSERT_EQ(call("Deferred"), 1);
        ASSERT_EQ(handler_runs, 7);

        ASSERT_UEQ(count("Ok", NULL), 2);
        ASSERT_UEQ(count("Ok", SD_BUS_ERROR_INVALID_ARGS), 0);
        ASSERT_UEQ(count("Named", NULL), 1);
        ASSERT_UEQ(count("Named", SVMD_ERROR_NO_SUCH_RANGE), 1);
        ASSERT_UEQ(count("Errno", SD_BUS_ERROR_INVALID_ARGS), 1);
        ASSERT_UEQ(count("Odd", "other"), 1);
        ASSERT_UEQ(count("Odd", SVMD_ERROR_QUOTA_EXCEEDED), 0);
        ASSERT_UEQ(count("Deferred", NULL), 1);
}

static char *escaped(const char *s) {
        char *buf = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&buf, &size);

        ASSERT_TRUE(f);
        metrics_put_label_value(f, s);
        ASSERT_TRUE(fclose(f) == 0);
        return buf;
}

static void test_label_values(void) {
        static const struct {
                const char *in, *out;
        } cases[] = {
                { "uid:1000", "uid:1000" },
                { "unit:a\"b", "unit:a\\\"b" },
                { "back\\slash", "back\\\\slash" },
                { "new\nline", "new\\nline" },
                { "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x9a\x80", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x9a\x80" },
                { "bad\xff", "bad\\\\xff" },
                { "cut\xc3", "cut\\\\xc3" },
                { "cont\xc3(", "cont\\\\xc3(" },
                { "overlong\xc0\xaf", "overlong\\\\xc0\\\\xaf" },
                { "surrogate\xed\xa0\x80", "surrogate\\\\xed\\\\xa0\\\\x80" },
                { "big\xf4\x90\x80\x80", "big\\\\xf4\\\\x90\\\\x80\\\\x80" },
                { "", "" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *out = escaped(cases[i].in);

                ASSERT_STREQ(out, cases[i].out);
        }
}

static void test_formats(void) {
        ASSERT_EQ(metrics_format_from_string("openmetrics"), METRICS_FORMAT_OPENMETRICS);
        ASSERT_EQ(metrics_format_from_string("prometheus"), METRICS_FORMAT_PROMETHEUS);
        ASSERT_EQ(metrics_format_from_string("json"), -EINVAL);
        for (int f = 0; f < _METRICS_FORMAT_MAX; f++)
                ASSERT_EQ(metrics_format_from_string(metrics_format_to_string(f)), f);
        ASSERT_TRUE(!metrics_format_to_string(_METRICS_FORMAT_MAX));
}

int main(void) {
        int fds[2];

        ASSERT_OK(sd_bus_error_add_map(svmd_error_map));
        /* A started bus (never authenticated) makes messages like a real one. */
        ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0 ? -errno : 0);
        ASSERT_OK(sd_bus_new(&bus));
        ASSERT_OK(sd_bus_set_fd(bus, fds[0], fds[0]));
        ASSERT_OK(sd_bus_start(bus));
        ASSERT_OK(metrics_new(&M.metrics, test_vtable));

        test_vtable_wrapped();
        test_counting();
        test_label_values();
        test_formats();

        M.metrics = metrics_free(M.metrics);
        sd_bus_close_unref(bus);
        close(fds[1]);
        printf("ok\n");
        return 0;
}
