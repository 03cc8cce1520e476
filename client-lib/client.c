/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * svmd_client: the two connections to svmd and the fd a caller's event loop
 * polls. The bus carries discovery, queries and signals; io.socket (a
 * peer-to-peer sd-bus connection to the same objects, docs/architecture.md "The direct socket") carries the
 * per-allocation calls whenever it can be reached.
 */

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>

#include "client.h"
#include "config.h"
#include "svmd-protocol.h"

/* How long a sync call may take before the caller gets -ETIMEDOUT. */
#define CALL_TIMEOUT_USEC (120ULL * 1000 * 1000)

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000ULL;
}

static int connect_bus(const char *address, sd_bus **ret, svmd_error *error) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        const char *unique;
        int r;

        if (!address)
                address = getenv("SVMD_BUS_ADDRESS");
        if (!address || !*address) {
                r = sd_bus_open_system(&bus);
                if (r < 0)
                        return error_setf(error, r, NULL,
                                          "Connecting to the system bus failed: %s; is D-Bus running?", strerror(-r));
        } else {
                r = sd_bus_new(&bus);
                if (r < 0)
                        return error_setf(error, r, NULL, "Creating a bus connection failed: %s.", strerror(-r));
                r = sd_bus_set_address(bus, address);
                if (r >= 0)
                        r = sd_bus_set_bus_client(bus, 1);
                if (r >= 0)
                        r = sd_bus_negotiate_fds(bus, 1);
                if (r >= 0)
                        r = sd_bus_start(bus);
                if (r < 0)
                        return error_setf(error, r, NULL, "Connecting to the bus at %s failed: %s.", address,
                                          strerror(-r));
        }

        /*
         * Finish the handshake now (authentication, Hello). sd-bus would do it at the first
         * call over the bus; a client whose calls all go over the direct socket would not
         * get there, and dbus-daemon closes connections that have not said Hello within
         * its auth_timeout (30 s unless configured).
         */
        r = sd_bus_get_unique_name(bus, &unique);
        if (r < 0)
                return error_setf(error, r, NULL, "Saying Hello to %s failed: %s; is D-Bus running?",
                                  address && *address ? address : "the system bus", strerror(-r));
        *ret = TAKE_PTR(bus);
        return 0;
}

static int connect_direct(const char *path, sd_bus **ret) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_free_ char *address = NULL;
        int r;

        if (asprintf(&address, "unix:path=%s", path) < 0)
                return -ENOMEM;
        r = sd_bus_new(&bus);
        if (r < 0)
                return r;
        r = sd_bus_set_address(bus, address);
        if (r < 0)
                return r;
        r = sd_bus_set_bus_client(bus, 0);
        if (r < 0)
                return r;
        /* Export and Attach hand over dma-buf fds. */
        r = sd_bus_negotiate_fds(bus, 1);
        if (r < 0)
                return r;
        r = sd_bus_start(bus);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(bus);
        return 0;
}

void client_drop_direct(svmd_client *c) {
        if (!c->direct)
                return;
        if (c->epoll_fd >= 0)
                (void) epoll_ctl(c->epoll_fd, EPOLL_CTL_DEL, sd_bus_get_fd(c->direct), NULL);
        /* Deliver the synthetic error replies of calls still waiting, so their callbacks run. */
        while (sd_bus_process(c->direct, NULL) > 0)
                ;
        c->direct = sd_bus_flush_close_unref(c->direct);
}

static int direct_path_default(const char *path, char **ret) {
        const char *dir;

        if (path)
                *ret = strdup(path);
        else {
                dir = getenv("SVMD_RUNTIME_DIR");
                if (!dir || !*dir)
                        dir = SVMD_RUNTIME_DIR;
                if (asprintf(ret, "%s/%s", dir, SVMD_IO_SOCKET_NAME) < 0)
                        *ret = NULL;
        }
        return *ret ? 0 : -ENOMEM;
}

_public_ int svmd_client_new(svmd_client **ret, const char *bus_address, const char *direct_path, uint32_t flags,
                             svmd_error *error) {
        svmd_client *c;
        int r;

        if (!ret)
                return error_setf(error, -EINVAL, SD_BUS_ERROR_INVALID_ARGS, "ret must not be NULL.");
        if ((flags & ~(uint32_t) (SVMD_CLIENT_NO_DIRECT | SVMD_CLIENT_DIRECT_ONLY)) ||
            (flags & SVMD_CLIENT_NO_DIRECT && flags & SVMD_CLIENT_DIRECT_ONLY))
                return error_setf(error, -EINVAL, SD_BUS_ERROR_INVALID_ARGS,
                                  "Unknown or contradictory flags 0x%x.", flags);
        error_register_map();

        /* A container given GPUs through CDI has no system bus (docs/containers.md). */
        if (flags == 0 && !bus_address && (!getenv("SVMD_BUS_ADDRESS") || !*getenv("SVMD_BUS_ADDRESS")) && environment_direct_only())
                flags = SVMD_CLIENT_DIRECT_ONLY;

        c = calloc(1, sizeof(svmd_client));
        if (!c)
                return error_setf(error, -ENOMEM, NULL, "Out of memory.");
        c->flags = flags;
        c->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
        if (c->epoll_fd < 0) {
                r = error_setf(error, negative_errno(), NULL, "Creating an epoll fd failed: %m.");
                goto fail;
        }
        r = direct_path_default(direct_path, &c->direct_path);
        if (r < 0) {
                r = error_setf(error, r, NULL, "Out of memory.");
                goto fail;
        }

        if (!(flags & SVMD_CLIENT_DIRECT_ONLY)) {
                r = connect_bus(bus_address, &c->bus, error);
                if (r < 0)
                        goto fail;
        }
        if (!(flags & SVMD_CLIENT_NO_DIRECT)) {
                r = connect_direct(c->direct_path, &c->direct);
                if (r < 0 && (flags & SVMD_CLIENT_DIRECT_ONLY)) {
                        r = error_setf(error, r, NULL, "Connecting to svmd's socket %s failed: %s; is svmd running?",
                                       c->direct_path, strerror(-r));
                        goto fail;
                }
                /* Otherwise the bus serves everything until the socket can be reached. */
        }
        r = client_update_epoll(c);
        if (r < 0) {
                r = error_setf(error, r, NULL, "Watching the connections failed: %s.", strerror(-r));
                goto fail;
        }

        *ret = c;
        return 0;

fail:
        svmd_client_free(c);
        return r;
}

_public_ svmd_client *svmd_client_free(svmd_client *c) {
        if (!c)
                return NULL;
        attach_local_detach_all(c);
        for (size_t i = 0; i < ELEMENTSOF(c->signal_slots); i++)
                c->signal_slots[i] = sd_bus_slot_unref(c->signal_slots[i]);
        client_drop_direct(c);
        sd_bus_flush_close_unref(c->bus);
        safe_close(c->epoll_fd);
        free(c->direct_path);
        free(c);
        return NULL;
}

_public_ bool svmd_client_is_direct(const svmd_client *c) {
        return c && c->direct && sd_bus_is_open(c->direct) > 0;
}

sd_bus *client_pick(svmd_client *c, bool hot) {
        if (c->direct && sd_bus_is_open(c->direct) <= 0)
                client_drop_direct(c); /* svmd restarted, or the socket went away */
        if (!c->direct && !(c->flags & SVMD_CLIENT_NO_DIRECT) && (hot || !c->bus)) {
                uint64_t now = now_usec();

                /* Try again at most once a second, so a node without io.socket costs nothing. */
                if (now - c->direct_retry_usec >= 1000000ULL || (c->flags & SVMD_CLIENT_DIRECT_ONLY)) {
                        c->direct_retry_usec = now;
                        if (connect_direct(c->direct_path, &c->direct) >= 0)
                                (void) client_update_epoll(c);
                }
        }
        if (c->direct && (hot || !c->bus))
                return c->direct;
        return c->bus;
}

int client_new_call(svmd_client *c, bool hot, const char *member, sd_bus_message **ret, svmd_error *error) {
        sd_bus *bus = client_pick(c, hot);
        int r;

        if (!bus)
                return error_setf(error, -ENOTCONN, NULL,
                                  "svmd's socket %s cannot be reached; is svmd running?", c->direct_path);
        r = sd_bus_message_new_method_call(bus, ret, SVMD_BUS_NAME, SVMD_MANAGER_PATH, SVMD_MANAGER_INTERFACE,
                                           member);
        if (r < 0)
                return error_setf(error, r, NULL, "Building the %s call failed: %s.", member, strerror(-r));
        return 0;
}

int client_call(svmd_client *c, sd_bus_message *m, sd_bus_message **ret_reply, svmd_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error be = SD_BUS_ERROR_NULL;
        int r;

        r = sd_bus_call(sd_bus_message_get_bus(m), m, CALL_TIMEOUT_USEC, &be, &reply);
        if (r < 0) {
                if (!sd_bus_error_is_set(&be) && (r == -ENOENT || r == -ECONNREFUSED))
                        r = error_setf(error, -ECONNREFUSED, NULL, "svmd cannot be reached: %s.", strerror(-r));
                else
                        r = error_from_bus(error, &be, r);
                sd_bus_error_free(&be);
                return r;
        }
        if (ret_reply)
                *ret_reply = TAKE_PTR(reply);
        return 0;
}

static int watch(svmd_client *c, sd_bus *bus) {
        struct epoll_event ev = {};
        int fd, events;

        if (!bus || sd_bus_is_open(bus) <= 0)
                return 0;
        fd = sd_bus_get_fd(bus);
        if (fd < 0)
                return fd;
        events = sd_bus_get_events(bus);
        if (events < 0)
                return events;
        ev.events = (events & POLLIN ? EPOLLIN : 0) | (events & POLLOUT ? EPOLLOUT : 0);
        ev.data.ptr = bus;
        if (epoll_ctl(c->epoll_fd, EPOLL_CTL_MOD, fd, &ev) < 0) {
                if (errno != ENOENT)
                        return negative_errno();
                if (epoll_ctl(c->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0)
                        return negative_errno();
        }
        return 0;
}

int client_update_epoll(svmd_client *c) {
        int r;

        r = watch(c, c->bus);
        if (r < 0)
                return r;
        return watch(c, c->direct);
}
