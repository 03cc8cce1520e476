/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The journal's recovery: the input is written as a journal directory (the
 * part before a line "#snapshot" as journal, the part after it, if any, as
 * snapshot.json), then journal_open() replays it through callbacks that apply
 * the changes the way persist.c's recovery does (put/del/next-id into a table
 * of records). A committed journal must then take one more line and a
 * compaction, and reopen to the same state.
 */

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "fuzz.h"
#include "journal.h"

typedef struct State {
        json_t *ranges;
        uint64_t next_id;
        unsigned snapshots, lines;
} State;

static int on_snapshot(json_t *state, void *userdata) {
        State *s = userdata;
        json_t *ranges = json_object_get(state, "ranges"), *r;
        size_t i;

        s->snapshots++;
        if (!json_is_array(ranges))
                return 0;
        json_array_foreach(ranges, i, r) {
                json_t *id = json_object_get(r, "id");
                char key[32];

                if (!json_is_integer(id))
                        continue;
                snprintf(key, sizeof(key), "%" JSON_INTEGER_FORMAT, json_integer_value(id));
                json_object_set(s->ranges, key, r);
        }
        return 0;
}

static int on_replay(json_t *changes, void *userdata) {
        State *s = userdata;
        json_t *c;
        size_t i;

        s->lines++;
        /* Like persist.c: a line with any malformed change applies none of them. */
        json_array_foreach(changes, i, c) {
                const char *op = json_string_value(json_object_get(c, "op"));
                json_t *id = json_object_get(strcmp(op ?: "", "put") == 0 ? json_object_get(c, "range") : c,
                                             strcmp(op ?: "", "next-id") == 0 ? "value" : "id");

                if (!op || !json_is_integer(id) || json_integer_value(id) < 0)
                        return -EBADMSG;
        }
        json_array_foreach(changes, i, c) {
                const char *op = json_string_value(json_object_get(c, "op"));
                char key[32];

                if (!op)
                        return -EBADMSG;
                if (strcmp(op, "put") == 0) {
                        json_t *id = json_object_get(json_object_get(c, "range"), "id");
                        if (!json_is_integer(id))
                                return -EBADMSG;
                        snprintf(key, sizeof(key), "%" JSON_INTEGER_FORMAT, json_integer_value(id));
                        json_object_set(s->ranges, key, json_object_get(c, "range"));
                } else if (strcmp(op, "del") == 0) {
                        json_t *id = json_object_get(c, "id");
                        if (!json_is_integer(id))
                                return -EBADMSG;
                        snprintf(key, sizeof(key), "%" JSON_INTEGER_FORMAT, json_integer_value(id));
                        json_object_del(s->ranges, key);
                } else if (strcmp(op, "next-id") == 0) {
                        json_t *v = json_object_get(c, "value");
                        if (!json_is_integer(v) || json_integer_value(v) < 0)
                                return -EBADMSG;
                        if ((uint64_t) json_integer_value(v) > s->next_id)
                                s->next_id = (uint64_t) json_integer_value(v);
                } else
                        return -EBADMSG;
        }
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const char *dir = fuzz_scratch_dir();
        static const char sep[] = "\n#snapshot\n";
        const uint8_t *snap = memmem(data, size, sep, strlen(sep));
        size_t journal_size = snap ? (size_t) (snap - data) + 1 : size;
        State s = { .ranges = json_object() }, again = { .ranges = json_object() };
        Journal *j = NULL;
        char *warning = NULL;
        json_t *changes, *state;
        int r;

        if (size > 256 * 1024 || !s.ranges || !again.ranges)
                goto finish;
        fuzz_clear_dir(dir);
        if (fuzz_write_file(dir, "journal", data, journal_size) < 0)
                goto finish;
        if (snap && fuzz_write_file(dir, "snapshot.json", snap + strlen(sep), size - journal_size - strlen(sep) + 1) < 0)
                goto finish;

        r = journal_open(&j, dir, on_snapshot, on_replay, &s, &warning);
        free(warning);
        warning = NULL;
        if (r < 0)
                goto finish;

        /* The cut-off journal takes a new line, a compaction, and reopens. */
        changes = json_pack("[{sss{sI}}]", "op", "put", "range", "id", (json_int_t) 4242);
        r = changes ? journal_append(j, changes, JOURNAL_APPEND_KEEP_RESERVE) : 0;
        if (r < 0 && r != -EOVERFLOW) /* a journal claiming seq INT64_MAX takes no more lines */
                abort();
        json_decref(changes);
        state = json_pack("{sIs[]}", "next-id", (json_int_t) s.next_id, "ranges");
        if (state && journal_compact(j, state) < 0)
                abort();
        json_decref(state);
        j = journal_free(j);

        r = journal_open(&j, dir, on_snapshot, on_replay, &again, &warning);
        if (r < 0 || warning)
                abort(); /* what we wrote ourselves must read back cleanly */
        if (again.snapshots != 1 || again.lines != 0)
                abort();

finish:
        free(warning);
        journal_free(j);
        json_decref(s.ranges);
        json_decref(again.ranges);
        return 0;
}
