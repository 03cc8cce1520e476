/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * svmd_error: the D-Bus error name and sentence of a failed call, and the one
 * errno ↔ name table (protocol/svmd-errors.c) that the daemon uses too.
 */

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "svmd-protocol.h"

static pthread_once_t map_once = PTHREAD_ONCE_INIT;

static void register_map(void) {
        /* Fails only on OOM; names then map to EIO, which callers still see as failures. */
        (void) sd_bus_error_add_map(svmd_error_map);
}

void error_register_map(void) {
        (void) pthread_once(&map_once, register_map);
}

_public_ void svmd_error_free(svmd_error *e) {
        if (!e)
                return;
        free(e->name);
        free(e->message);
        *e = SVMD_ERROR_NULL;
}

_public_ bool svmd_error_has_name(const svmd_error *e, const char *name) {
        return e && e->name && name && streq(e->name, name);
}

_public_ int svmd_error_name_to_errno(const char *name) {
        sd_bus_error be = SD_BUS_ERROR_NULL;
        int r;

        if (!name)
                return EIO;
        error_register_map();
        /* sd-bus knows the freedesktop names, "System.Error.E…" and the registered map. */
        be.name = name;
        be.message = NULL;
        r = sd_bus_error_get_errno(&be);
        return r > 0 ? r : EIO;
}

static int error_set(svmd_error *e, const char *name, const char *message) {
        char *n, *m;

        if (!e)
                return 0;
        n = strdup(name);
        m = strdup(message ?: "");
        if (!n || !m) {
                free(n);
                free(m);
                return -ENOMEM;
        }
        svmd_error_free(e);
        e->name = n;
        e->message = m;
        return 0;
}

int error_from_bus(svmd_error *e, const sd_bus_error *be, int r) {
        if (be && sd_bus_error_is_set(be)) {
                int k = sd_bus_error_get_errno(be);

                if (k > 0)
                        r = -k;
                if (r >= 0)
                        r = -EIO;
                (void) error_set(e, be->name, be->message);
                return r;
        }
        if (r >= 0)
                r = -EIO;
        return error_setf(e, r, NULL, "%s.", strerror(-r));
}

int error_setf(svmd_error *e, int r, const char *name, const char *format, ...) {
        _cleanup_free_ char *message = NULL;
        char buf[64];
        va_list ap;

        assert(r < 0);
        if (!e)
                return r;
        if (!name) {
                const char *en = strerrorname_np(-r);

                snprintf(buf, sizeof(buf), "System.Error.%s", en ?: "EIO");
                name = buf;
        }
        va_start(ap, format);
        if (vasprintf(&message, format, ap) < 0)
                message = NULL;
        va_end(ap);
        (void) error_set(e, name, message ?: strerror(-r));
        return r;
}
