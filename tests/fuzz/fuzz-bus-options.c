/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * Request decoding: the input is a small program that builds a method call
 * with the body (a{sv} options, au gpu_ids, a(tt) host_ranges) as a hostile
 * client could send it: known and unknown keys, every D-Bus type including
 * the wrong ones, variants nested in variants, long strings and arrays past
 * the limits. The sealed message goes through the daemon's own readers with
 * the real option tables of daemon/method-util.c: bus_read_options(),
 * bus_read_u32_array() and bus_read_pairs(). They must accept or refuse with
 * InvalidArgs, never crash, leak or read past the message; what they accept
 * must respect the table's limits.
 */

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <systemd/sd-bus.h>

#include "bus-util.h"
#include "fuzz.h"
#include "method-util.h"
#include "svmd-protocol.h"

typedef struct Input {
        const uint8_t *p;
        size_t left;
} Input;

static uint8_t next_u8(Input *in) {
        if (in->left == 0)
                return 0;
        in->left--;
        return *in->p++;
}

static uint64_t next_u64(Input *in) {
        uint64_t v = 0;
        for (int i = 0; i < 8; i++)
                v = v << 8 | next_u8(in);
        return v;
}

/* A string of up to `max` bytes from the input (sd-bus refuses invalid UTF-8: the caller drops the case). */
static char *next_string(Input *in, size_t max) {
        size_t n = next_u8(in);
        char *s;

        if (n == 255) /* a long one */
                n = (size_t) next_u8(in) * 64;
        n = n < max ? n : max;
        s = malloc(n + 1);
        if (!s)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                uint8_t c = in->left > 0 ? next_u8(in) : 'x';
                s[i] = c == 0 ? 'z' : (char) c;
        }
        s[n] = '\0';
        return s;
}

static const struct {
        const char *name;
        const BusOption *table;
} tables[] = {
        { "allocate", allocate_options },
        { "change", change_options },
        { "commit-allocate", commit_allocate_options },
        { "commit-batch", commit_batch_options },
        { "commit-map", commit_map_options },
        { "commit-free", commit_free_options },
        { "filter", filter_options },
        { "grant", grant_options },
        { "set-attributes", set_attributes_options },
        { "commit-set-attributes", commit_set_attributes_options },
};

static sd_bus *bus;

static sd_bus *get_bus(void) {
        int fds[2];

        if (bus)
                return bus;
        /* A bus object only to make messages with; it never talks to anyone. */
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, fds) < 0 || sd_bus_new(&bus) < 0 ||
            sd_bus_set_fd(bus, fds[0], fds[0]) < 0 || sd_bus_start(bus) < 0)
                abort();
        return bus;
}

static int append_value(sd_bus_message *m, Input *in, unsigned depth);

static int append_array_u32(sd_bus_message *m, Input *in) {
        size_t n = next_u8(in);
        uint32_t *v;
        int r;

        if (n >= 200)
                n = (n - 199) * 1000;   /* up to 56000 entries: past every limit */
        v = calloc(n ? n : 1, sizeof(uint32_t));
        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i < n && in->left > 0; i++)
                v[i] = next_u8(in) | (uint32_t) next_u8(in) << 8;
        r = sd_bus_message_append_array(m, 'u', v, n * sizeof(uint32_t));
        free(v);
        return r;
}

static int append_pairs(sd_bus_message *m, Input *in) {
        size_t n = next_u8(in);
        int r;

        if (n >= 200)
                n = (n - 199) * 100;
        r = sd_bus_message_open_container(m, 'a', "(tt)");
        for (size_t i = 0; r >= 0 && i < n; i++)
                r = sd_bus_message_append(m, "(tt)", next_u64(in), next_u64(in));
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        return r;
}

/* One value inside a variant: the type chosen by the input. */
static int append_value(sd_bus_message *m, Input *in, unsigned depth) {
        uint8_t t = next_u8(in) % 14;
        char *s = NULL;
        int r;

        switch (t) {
        case 0:
                return sd_bus_message_append(m, "v", "b", (int) (next_u8(in) & 1));
        case 1:
                return sd_bus_message_append(m, "v", "u", (uint32_t) next_u64(in));
        case 2:
                return sd_bus_message_append(m, "v", "t", next_u64(in));
        case 3:
                s = next_string(in, 8192);
                r = s ? sd_bus_message_append(m, "v", "s", s) : -ENOMEM;
                free(s);
                return r;
        case 4: { /* as */
                size_t n = next_u8(in) % 40;
                r = sd_bus_message_open_container(m, 'v', "as");
                if (r >= 0)
                        r = sd_bus_message_open_container(m, 'a', "s");
                for (size_t i = 0; r >= 0 && i < n; i++) {
                        s = next_string(in, 300);
                        r = s ? sd_bus_message_append(m, "s", s) : -ENOMEM;
                        free(s);
                }
                if (r >= 0)
                        r = sd_bus_message_close_container(m);
                if (r >= 0)
                        r = sd_bus_message_close_container(m);
                return r;
        }
        case 5:
                r = sd_bus_message_open_container(m, 'v', "au");
                if (r >= 0)
                        r = append_array_u32(m, in);
                if (r >= 0)
                        r = sd_bus_message_close_container(m);
                return r;
        case 6:
                r = sd_bus_message_open_container(m, 'v', "a(tt)");
                if (r >= 0)
                        r = append_pairs(m, in);
                if (r >= 0)
                        r = sd_bus_message_close_container(m);
                return r;
        case 7: /* a variant in a variant in … */
                if (depth >= 60)
                        return sd_bus_message_append(m, "v", "y", next_u8(in));
                r = sd_bus_message_open_container(m, 'v', "v");
                if (r >= 0)
                        r = append_value(m, in, depth + 1);
                if (r >= 0)
                        r = sd_bus_message_close_container(m);
                return r;
        case 8:
                return sd_bus_message_append(m, "v", "i", (int32_t) next_u64(in));
        case 9:
                return sd_bus_message_append(m, "v", "d", (double) next_u64(in));
        case 10:
                return sd_bus_message_append(m, "v", "o", "/org/svmd1/range/1");
        case 11: /* a{sv} inside */
                r = sd_bus_message_open_container(m, 'v', "a{sv}");
                if (r >= 0)
                        r = sd_bus_message_append(m, "a{sv}", 1, "size", "t", next_u64(in));
                if (r >= 0)
                        r = sd_bus_message_close_container(m);
                return r;
        case 12:
                return sd_bus_message_append(m, "v", "(tt)", next_u64(in), next_u64(in));
        default:
                return sd_bus_message_append(m, "v", "ay", 3, 1, 2, 3);
        }
}

static const char *pick_key(Input *in, const BusOption *table, char **owned) {
        uint8_t k = next_u8(in);
        size_t n = 0;

        while (table[n].key)
                n++;
        if (k < 0xc0 && n > 0)
                return table[k % n].key;
        if (k < 0xe0) {
                static const char *const others[] = {
                        "size", "gpu", "domain", "id", "ref", "gpus", "host-ranges", "owner", "label", "uid",
                        "expires-usec", "request-id", "map", "flags", "", "MAP", "map\xc3\xa9",
                };
                return others[k % (sizeof(others) / sizeof(others[0]))];
        }
        *owned = next_string(in, 600);
        return *owned;
}

static void check_limits(const BusOption *table, const OpArgs *a) {
        for (size_t i = 0; table[i].key; i++) {
                const void *field = (const uint8_t *) a + table[i].offset;
                size_t max = table[i].max;

                switch (table[i].type) {
                case BUS_OPTION_STRING: {
                        const char *s = *(char *const *) field;
                        if (s && strlen(s) > (max ?: 4096))
                                abort();
                        break;
                }
                case BUS_OPTION_STRV:
                        if (((const BusStrv *) field)->n > (max ?: 1024))
                                abort();
                        break;
                case BUS_OPTION_U32_ARRAY:
                        if (((const BusU32Array *) field)->n > (max ?: 1024))
                                abort();
                        break;
                case BUS_OPTION_PAIRS:
                        if (((const BusPairArray *) field)->n > (max ?: 1024))
                                abort();
                        break;
                default:
                        break;
                }
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        Input in = { data, size };
        sd_bus_message *m = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        const BusOption *table;
        BusU32Array gpus = {};
        BusPairArray pairs = {};
        OpArgs args = {};
        size_t n_entries;
        int r;

        if (size > 64 * 1024)
                return 0;
        table = tables[next_u8(&in) % (sizeof(tables) / sizeof(tables[0]))].table;
        n_entries = next_u8(&in) % 24;

        if (sd_bus_message_new_method_call(get_bus(), &m, SVMD_BUS_NAME, SVMD_MANAGER_PATH, SVMD_MANAGER_INTERFACE,
                                           "Allocate") < 0)
                abort();
        r = sd_bus_message_open_container(m, 'a', "{sv}");
        for (size_t i = 0; r >= 0 && i < n_entries; i++) {
                char *owned = NULL;
                const char *key = pick_key(&in, table, &owned);

                r = key ? sd_bus_message_open_container(m, 'e', "sv") : -ENOMEM;
                if (r >= 0)
                        r = sd_bus_message_append(m, "s", key);
                if (r >= 0)
                        r = append_value(m, &in, 0);
                if (r >= 0)
                        r = sd_bus_message_close_container(m);
                free(owned);
        }
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r >= 0)
                r = append_array_u32(m, &in);
        if (r >= 0)
                r = append_pairs(m, &in);
        if (r >= 0)
                r = sd_bus_message_seal(m, 1, 0);
        if (r < 0)
                goto finish; /* sd-bus itself refused to build it (e.g. invalid UTF-8): no client can send it */
        if (sd_bus_message_rewind(m, true) < 0)
                abort();

        r = bus_read_options(m, table, &args, "options", &error);
        if (r >= 0) {
                check_limits(table, &args);
                r = bus_read_u32_array(m, SVMD_MAX_GPUS_PER_CALL, "gpu_ids", &gpus, &error);
                if (r >= 0 && gpus.n > SVMD_MAX_GPUS_PER_CALL)
                        abort();
                if (r >= 0)
                        r = bus_read_pairs(m, SVMD_MAX_BATCH_PIECES, "host_ranges", &pairs, &error);
                if (r >= 0 && pairs.n > SVMD_MAX_BATCH_PIECES)
                        abort();
        }
        /* A refusal of the client's input is InvalidArgs with a sentence, or a plain errno from sd-bus. */
        if (r < 0 && sd_bus_error_is_set(&error) && !sd_bus_error_has_name(&error, SD_BUS_ERROR_INVALID_ARGS))
                abort();

finish:
        op_args_done(&args);
        bus_u32_array_done(&gpus);
        bus_pairs_done(&pairs);
        sd_bus_error_free(&error);
        sd_bus_message_unref(m);
        return 0;
}
