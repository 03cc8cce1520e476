/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * Async Allocate, Map and Commit, and the event-loop side of the client: one
 * epoll fd over both connections that any loop can poll, and
 * svmd_client_process() to run completions and signal callbacks.
 */

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>

#include "client.h"

#define ASYNC_TIMEOUT_USEC (120ULL * 1000 * 1000)

typedef enum AsyncKind {
        ASYNC_ALLOCATE,
        ASYNC_DONE,
        ASYNC_COMMIT,
} AsyncKind;

typedef struct AsyncCall {
        svmd_client *client;
        AsyncKind kind;
        union {
                svmd_allocate_callback allocate;
                svmd_done_callback done;
                svmd_commit_callback commit;
        } callback;
        void *userdata;
} AsyncCall;

static void async_call_destroy(void *userdata) {
        AsyncCall *a = userdata;

        a->client->n_pending--;
        free(a);
}

static int on_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        AsyncCall *a = userdata;
        svmd_client *c = a->client;
        svmd_error e = SVMD_ERROR_NULL;
        int r = 0;

        if (sd_bus_message_is_method_error(reply, NULL))
                r = error_from_bus(&e, sd_bus_message_get_error(reply), -EIO);

        switch (a->kind) {
        case ASYNC_ALLOCATE: {
                svmd_allocation alloc = {};

                if (r >= 0) {
                        r = reply_read_allocation(reply, &alloc);
                        if (r < 0)
                                r = error_setf(&e, r, NULL, "svmd's reply to Allocate cannot be read: %s.",
                                               strerror(-r));
                }
                a->callback.allocate(c, r, r >= 0 ? &alloc : NULL, r < 0 ? &e : NULL, a->userdata);
                break;
        }
        case ASYNC_DONE:
                a->callback.done(c, r, r < 0 ? &e : NULL, a->userdata);
                break;
        case ASYNC_COMMIT: {
                _cleanup_free_ svmd_op_result *results = NULL;
                size_t n = 0;

                if (r >= 0) {
                        r = reply_read_commit_results(reply, &results, &n);
                        if (r < 0)
                                r = error_setf(&e, r, NULL, "svmd's reply to Commit cannot be read: %s.",
                                               strerror(-r));
                }
                a->callback.commit(c, r, results, n, r < 0 ? &e : NULL, a->userdata);
                break;
        }
        }
        svmd_error_free(&e);
        return 1;
}

static int send_async(svmd_client *c, sd_bus_message *m, AsyncKind kind, void *callback, void *userdata,
                      svmd_error *error) {
        sd_bus_slot *slot = NULL;
        AsyncCall *a;
        int r;

        a = calloc(1, sizeof(AsyncCall));
        if (!a)
                return error_setf(error, -ENOMEM, NULL, "Out of memory.");
        *a = (AsyncCall) { .client = c, .kind = kind, .userdata = userdata };
        switch (kind) {
        case ASYNC_ALLOCATE:
                a->callback.allocate = (svmd_allocate_callback) callback;
                break;
        case ASYNC_DONE:
                a->callback.done = (svmd_done_callback) callback;
                break;
        case ASYNC_COMMIT:
                a->callback.commit = (svmd_commit_callback) callback;
                break;
        }

        r = sd_bus_call_async(sd_bus_message_get_bus(m), &slot, m, on_reply, a, ASYNC_TIMEOUT_USEC);
        if (r < 0) {
                free(a);
                return error_setf(error, r, NULL, "Sending the call failed: %s.", strerror(-r));
        }
        /* The slot frees the call when the reply came, or when the connection goes away unanswered. */
        (void) sd_bus_slot_set_destroy_callback(slot, async_call_destroy);
        (void) sd_bus_slot_set_floating(slot, 1);
        sd_bus_slot_unref(slot);
        c->n_pending++;

        (void) client_update_epoll(c);
        return 0;
}

SYMVER(svmd_allocate_async_v0_2, "svmd_allocate_async@@LIBSVMD_0.2")
_public_ int svmd_allocate_async_v0_2(svmd_client *c, uint64_t size, uint32_t gpu_id, const char *domain,
                                      const svmd_allocate_options *o, svmd_allocate_callback callback,
                                      void *userdata, svmd_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        if (!c || !domain || !callback)
                return error_setf(error, -EINVAL, SD_BUS_ERROR_INVALID_ARGS, "Invalid NULL argument.");
        r = request_build_allocate(c, size, gpu_id, domain, o, &m, error);
        if (r < 0)
                return r;
        return send_async(c, m, ASYNC_ALLOCATE, (void *) callback, userdata, error);
}
ASSERT_SAME_TYPE(svmd_allocate_async, svmd_allocate_async_v0_2);

_public_ int svmd_map_async(svmd_client *c, uint64_t id, const uint32_t *gpu_ids, size_t n,
                            const svmd_change_options *o, svmd_done_callback callback, void *userdata,
                            svmd_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        if (!c || !callback)
                return error_setf(error, -EINVAL, SD_BUS_ERROR_INVALID_ARGS, "Invalid NULL argument.");
        r = request_build_map(c, id, gpu_ids, n, o, &m, error);
        if (r < 0)
                return r;
        return send_async(c, m, ASYNC_DONE, (void *) callback, userdata, error);
}

_public_ int svmd_unmap_async(svmd_client *c, uint64_t id, const uint32_t *gpu_ids, size_t n,
                              svmd_done_callback callback, void *userdata, svmd_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        if (!c || !callback)
                return error_setf(error, -EINVAL, SD_BUS_ERROR_INVALID_ARGS, "Invalid NULL argument.");
        r = request_build_unmap(c, id, gpu_ids, n, &m, error);
        if (r < 0)
                return r;
        return send_async(c, m, ASYNC_DONE, (void *) callback, userdata, error);
}

_public_ int svmd_free_async(svmd_client *c, uint64_t id, svmd_done_callback callback, void *userdata,
                             svmd_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        if (!c || !callback)
                return error_setf(error, -EINVAL, SD_BUS_ERROR_INVALID_ARGS, "Invalid NULL argument.");
        r = request_build_id(c, "Free", id, &m, error);
        if (r < 0)
                return r;
        return send_async(c, m, ASYNC_DONE, (void *) callback, userdata, error);
}

SYMVER(svmd_commit_async_v0_2, "svmd_commit_async@@LIBSVMD_0.2")
_public_ int svmd_commit_async_v0_2(svmd_client *c, const svmd_op *ops, size_t n_ops, const svmd_change_options *o,
                                    svmd_commit_callback callback, void *userdata, svmd_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        if (!c || !callback)
                return error_setf(error, -EINVAL, SD_BUS_ERROR_INVALID_ARGS, "Invalid NULL argument.");
        r = request_build_commit(c, ops, n_ops, o, &m, error);
        if (r < 0)
                return r;
        return send_async(c, m, ASYNC_COMMIT, (void *) callback, userdata, error);
}
ASSERT_SAME_TYPE(svmd_commit_async, svmd_commit_async_v0_2);

/* ---- the event loop side ---- */

_public_ int svmd_client_get_fd(svmd_client *c) {
        if (!c)
                return -EINVAL;
        return c->epoll_fd;
}

_public_ int svmd_client_get_timeout(svmd_client *c, uint64_t *ret_usec) {
        uint64_t t = UINT64_MAX, u;

        if (!c || !ret_usec)
                return -EINVAL;
        if (c->bus && sd_bus_get_timeout(c->bus, &u) > 0)
                t = MIN(t, u);
        if (c->direct && sd_bus_get_timeout(c->direct, &u) > 0)
                t = MIN(t, u);
        *ret_usec = t;
        return 0;
}

_public_ size_t svmd_client_pending(const svmd_client *c) {
        return c ? c->n_pending : 0;
}

_public_ int svmd_client_process(svmd_client *c) {
        int total = 0, r;

        if (!c)
                return -EINVAL;
        for (;;) {
                int did = 0;

                if (c->direct) {
                        r = sd_bus_process(c->direct, NULL);
                        if (r < 0)
                                client_drop_direct(c); /* the bus serves from now on; see client_pick() */
                        else
                                did += r > 0;
                }
                if (c->bus) {
                        r = sd_bus_process(c->bus, NULL);
                        if (r < 0)
                                return r;
                        did += r > 0;
                }
                if (did == 0)
                        break;
                total += did;
        }
        r = client_update_epoll(c);
        if (r < 0)
                return r;
        return total > 0;
}

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000ULL;
}

_public_ int svmd_client_wait(svmd_client *c, uint64_t timeout_usec) {
        struct pollfd p;
        uint64_t until, now;
        int r, ms;

        if (!c)
                return -EINVAL;
        r = client_update_epoll(c);
        if (r < 0)
                return r;
        r = svmd_client_get_timeout(c, &until);
        if (r < 0)
                return r;
        now = now_usec();
        if (timeout_usec != UINT64_MAX && (until == UINT64_MAX || now + timeout_usec < until))
                until = now + timeout_usec;
        if (until == UINT64_MAX)
                ms = -1;
        else
                ms = until <= now ? 0 : (int) MIN((until - now + 999) / 1000, (uint64_t) INT32_MAX);

        p = (struct pollfd) { .fd = c->epoll_fd, .events = POLLIN };
        r = poll(&p, 1, ms);
        if (r < 0)
                return errno == EINTR ? 0 : negative_errno();
        return r > 0;
}
