/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * Every method of org.svmd1.Manager over the private bus and the direct
 * socket: what it does, each error it gives for bad input, and that bad input
 * changes nothing (the emulator's kernel state and the range table are
 * compared before and after). Runs under svmd-harness on mi300x-8.
 */

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "svmd-protocol.h"
#include "svmd-test.h"

#define MiB (UINT64_C(1) << 20)
#define GiB (UINT64_C(1) << 30)
#define WINDOW_BASE UINT64_C(0x400000000000)
#define WINDOW_SIZE (UINT64_C(16) << 40)

static TestContext T;

/* Allocate with an optional map list; returns the id (asserts success). */
static uint64_t allocate(sd_bus *bus, uint64_t size, uint32_t gpu, const char *domain, size_t n_map,
                         const uint32_t *map, uint64_t *ret_va) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        uint64_t id, va;
        const char *path;
        int r;

        if (n_map == 0)
                r = test_call(bus, "Allocate", &error, &reply, "tusa{sv}", size, gpu, domain, 0);
        else {
                _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;

                ASSERT_OK(sd_bus_message_new_method_call(bus, &m, SVMD_BUS_NAME, SVMD_MANAGER_PATH,
                                                         SVMD_MANAGER_INTERFACE, "Allocate"));
                ASSERT_OK(sd_bus_message_append(m, "tus", size, gpu, domain));
                ASSERT_OK(sd_bus_message_open_container(m, 'a', "{sv}"));
                ASSERT_OK(sd_bus_message_open_container(m, 'e', "sv"));
                ASSERT_OK(sd_bus_message_append(m, "s", "map"));
                ASSERT_OK(sd_bus_message_open_container(m, 'v', "au"));
                ASSERT_OK(sd_bus_message_append_array(m, 'u', map, n_map * sizeof(uint32_t)));
                ASSERT_OK(sd_bus_message_close_container(m));
                ASSERT_OK(sd_bus_message_close_container(m));
                ASSERT_OK(sd_bus_message_close_container(m));
                r = sd_bus_call(bus, m, 0, &error, &reply);
        }
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_read(reply, "tto", &id, &va, &path));
        ASSERT_TRUE(id > 0);
        ASSERT_TRUE(va >= WINDOW_BASE && va < WINDOW_BASE + WINDOW_SIZE);
        if (ret_va)
                *ret_va = va;
        sd_bus_error_free(&error);
        return id;
}

static void range_mapped(uint64_t id, size_t *ret_n) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        char path[128];
        const uint32_t *ids;
        size_t n;
        int r;

        snprintf(path, sizeof(path), "/org/svmd1/range/%" PRIu64, id);
        r = sd_bus_get_property(T.bus, SVMD_BUS_NAME, path, SVMD_RANGE_INTERFACE, "MappedGpus", &error, &reply, "au");
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_read_array(reply, 'u', (const void **) &ids, &n));
        *ret_n = n / sizeof(uint32_t);
        sd_bus_error_free(&error);
}

/* A bad call must fail with `name` and leave kernel and tables exactly as they were. */
#define EXPECT_UNCHANGED_ERROR(ename, member, types, ...)                                        \
        do {                                                                                    \
                _cleanup_free_ char *_before = test_dump(&T), *_rb = test_list_ranges(T.bus);   \
                sd_bus_error _e = SD_BUS_ERROR_NULL;                                            \
                int _r = test_call(T.bus, member, &_e, NULL, types, __VA_ARGS__);               \
                ASSERT_BUS_ERROR(_r, &_e, ename);                                                \
                ASSERT_TRUE(_e.message && _e.message[0]);                                       \
                _cleanup_free_ char *_after = test_dump(&T), *_ra = test_list_ranges(T.bus);    \
                ASSERT_STREQ(_before, _after);                                                  \
                ASSERT_STREQ(_rb, _ra);                                                         \
                sd_bus_error_free(&_e);                                                         \
        } while (0)

/* A GPU's record of ListGpus says what its object's properties say. */
static void assert_gpu_record(uint32_t id, uint32_t node, const char *target, const char *name, uint64_t total,
                              uint64_t used, uint64_t avail, uint16_t minor) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_free_ char *p_target = NULL, *p_name = NULL;
        uint64_t p_total, p_used, p_free;
        uint32_t p_id, p_node, p_minor;
        char path[64];

        snprintf(path, sizeof(path), SVMD_GPU_PATH_PREFIX "/%u", id);
#define GET(prop, type, ptr) \
        ASSERT_OK(sd_bus_get_property_trivial(T.bus, SVMD_BUS_NAME, path, SVMD_GPU_INTERFACE, prop, &error, type, ptr))
        GET("GpuId", 'u', &p_id);
        GET("NodeId", 'u', &p_node);
        GET("RenderMinor", 'u', &p_minor);
        GET("VramTotal", 't', &p_total);
        GET("VramUsed", 't', &p_used);
        GET("VramFree", 't', &p_free);
#undef GET
        ASSERT_OK(sd_bus_get_property_string(T.bus, SVMD_BUS_NAME, path, SVMD_GPU_INTERFACE, "Target", &error,
                                             &p_target));
        ASSERT_OK(sd_bus_get_property_string(T.bus, SVMD_BUS_NAME, path, SVMD_GPU_INTERFACE, "Name", &error,
                                             &p_name));
        ASSERT_UEQ(p_id, id);
        ASSERT_UEQ(p_node, node);
        ASSERT_UEQ(p_minor, minor);
        ASSERT_UEQ(p_total, total);
        ASSERT_UEQ(p_used, used);
        ASSERT_UEQ(p_free, avail);
        ASSERT_STREQ(p_target, target);
        ASSERT_STREQ(p_name, name);
        ASSERT_TRUE(name[0]);
        sd_bus_error_free(&error);
}

static void test_list_gpus(void) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        const char *target, *name;
        uint64_t total, used, avail;
        uint32_t id, node;
        uint16_t minor;
        size_t n = 0;
        int r;

        r = test_call(T.bus, "ListGpus", &error, &reply, "");
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_enter_container(reply, 'a', "(uusstttq)"));
        while ((r = sd_bus_message_read(reply, "(uusstttq)", &id, &node, &target, &name, &total, &used, &avail,
                                        &minor)) > 0) {
                ASSERT_STREQ(target, "gfx942");
                ASSERT_UEQ(total, UINT64_C(192) * GiB);
                ASSERT_TRUE(avail <= total);
                ASSERT_UEQ(used + avail, total);
                ASSERT_TRUE(minor >= 128);
                ASSERT_TRUE(node >= 1);
                assert_gpu_record(id, node, target, name, total, used, avail, minor);
                n++;
        }
        ASSERT_OK(r);
        ASSERT_EQ(n, 8);
        sd_bus_error_free(&error);
}

static void test_allocate_map_free_vram(void) {
        _cleanup_free_ char *before = test_dump(&T), *after = NULL;
        uint64_t id, va;
        size_t n;

        id = allocate(T.bus, 64 * MiB, T.gpus[0], "vram", T.n_gpus, T.gpus, &va);
        ASSERT_UEQ(va % (2 * MiB), 0);          /* ≥ 2 MiB: 2 MiB aligned */
        range_mapped(id, &n);
        ASSERT_EQ(n, 8);
        after = test_dump(&T);
        ASSERT_TRUE(strcmp(before, after) != 0); /* the kernel has it */
        free(after);

        test_free(T.bus, id);
        after = test_dump(&T);
        ASSERT_STREQ(before, after);
}

static void test_allocate_domains(void) {
        _cleanup_free_ char *before = test_dump(&T), *after = NULL;
        uint64_t a, b, c, va;

        a = allocate(T.bus, 4096, 0, "gtt", 2, T.gpus, &va);
        b = allocate(T.bus, 3 * 4096 + 1, 0, "host", 1, &T.gpus[3], &va);
        ASSERT_UEQ(va % 4096, 0);
        c = allocate(T.bus, 2 * MiB, T.gpus[7], "vram", 0, NULL, &va);
        test_free(T.bus, b);
        test_free(T.bus, a);
        test_free(T.bus, c);
        after = test_dump(&T);
        ASSERT_STREQ(before, after);
}

static void test_bad_input(void) {
        uint32_t g = T.gpus[0];

        EXPECT_UNCHANGED_ERROR(SD_BUS_ERROR_INVALID_ARGS, "Allocate", "tusa{sv}", UINT64_C(0), g, "vram", 0);
        EXPECT_UNCHANGED_ERROR(SD_BUS_ERROR_INVALID_ARGS, "Allocate", "tusa{sv}", UINT64_MAX, g, "vram", 0);
        EXPECT_UNCHANGED_ERROR(SD_BUS_ERROR_INVALID_ARGS, "Allocate", "tusa{sv}", UINT64_MAX - 4000, g, "gtt", 0);
        EXPECT_UNCHANGED_ERROR(SD_BUS_ERROR_INVALID_ARGS, "Allocate", "tusa{sv}", WINDOW_SIZE + 4096, g, "gtt", 0);
        EXPECT_UNCHANGED_ERROR(SVMD_ERROR_NO_SUCH_GPU, "Allocate", "tusa{sv}", 4096 * UINT64_C(1), 0xdeadu, "vram", 0);
        EXPECT_UNCHANGED_ERROR(SD_BUS_ERROR_INVALID_ARGS, "Allocate", "tusa{sv}", 4096 * UINT64_C(1), 0u, "vram", 0);
        EXPECT_UNCHANGED_ERROR(SD_BUS_ERROR_INVALID_ARGS, "Allocate", "tusa{sv}", 4096 * UINT64_C(1), g, "bogus", 0);
        EXPECT_UNCHANGED_ERROR(SD_BUS_ERROR_INVALID_ARGS, "Allocate", "tusa{sv}", 4096 * UINT64_C(1), g, "svm", 1,
                               "flags", "as", 1, "executable");
        EXPECT_UNCHANGED_ERROR(SD_BUS_ERROR_INVALID_ARGS, "Allocate", "tusa{sv}", 4096 * UINT64_C(1), g, "vram", 1,
                               "flags", "as", 1, "sticky");
        EXPECT_UNCHANGED_ERROR(SD_BUS_ERROR_INVALID_ARGS, "Allocate", "tusa{sv}", 4096 * UINT64_C(1), g, "gtt", 1,
                               "flags", "as", 1, "public");
        EXPECT_UNCHANGED_ERROR(SD_BUS_ERROR_INVALID_ARGS, "Allocate", "tusa{sv}", 4096 * UINT64_C(1), g, "host", 1,
                               "flags", "as", 1, "contiguous");
        EXPECT_UNCHANGED_ERROR(SD_BUS_ERROR_INVALID_ARGS, "Allocate", "tusa{sv}", 4096 * UINT64_C(1), g, "vram", 1,
                               "map", "au", 2, g, g);
        EXPECT_UNCHANGED_ERROR(SVMD_ERROR_NO_SUCH_GPU, "Allocate", "tusa{sv}", 4096 * UINT64_C(1), g, "vram", 1,
                               "map", "au", 1, 0x1u);
        EXPECT_UNCHANGED_ERROR(SD_BUS_ERROR_INVALID_ARGS, "Allocate", "tusa{sv}", 4096 * UINT64_C(1), g, "vram", 1,
                               "colour", "s", "blue");
        EXPECT_UNCHANGED_ERROR(SD_BUS_ERROR_INVALID_ARGS, "Allocate", "tusa{sv}", 4096 * UINT64_C(1), g, "vram", 1,
                               "map", "s", "all");
        EXPECT_UNCHANGED_ERROR(SD_BUS_ERROR_INVALID_ARGS, "Allocate", "tusa{sv}", 4096 * UINT64_C(1), g, "vram", 1,
                               "alignment", "t", UINT64_C(12345));
        EXPECT_UNCHANGED_ERROR(SD_BUS_ERROR_INVALID_ARGS, "Allocate", "tusa{sv}", 4096 * UINT64_C(1), g, "vram", 2,
                               "dry-run", "b", 1, "dry-run", "b", 1);
        EXPECT_UNCHANGED_ERROR(SVMD_ERROR_OUT_OF_MEMORY, "Allocate", "tusa{sv}", UINT64_C(193) * GiB, g, "vram", 0);
        /* Wrong signature: sd-bus refuses before the handler. */
        EXPECT_UNCHANGED_ERROR(SD_BUS_ERROR_INVALID_ARGS, "Allocate", "us", 4096u, "vram");
        EXPECT_UNCHANGED_ERROR(SVMD_ERROR_NO_SUCH_RANGE, "Free", "t", UINT64_C(999999));
        EXPECT_UNCHANGED_ERROR(SVMD_ERROR_NO_SUCH_RANGE, "Map", "taua{sv}", UINT64_C(999999), 1, g, 0);
        EXPECT_UNCHANGED_ERROR(SVMD_ERROR_NO_SUCH_RANGE, "Unmap", "tau", UINT64_C(999999), 1, g);
}

static void test_label_and_huge_arrays(void) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        _cleanup_free_ char *before = test_dump(&T), *after = NULL;
        _cleanup_free_ uint32_t *ids = calloc(100000, sizeof(uint32_t));
        _cleanup_free_ char *label = malloc(1000);
        sd_bus_error error = SD_BUS_ERROR_NULL;
        uint64_t id;
        int r;

        ASSERT_TRUE(ids && label);
        memset(label, 'x', 999);
        label[999] = '\0';
        EXPECT_UNCHANGED_ERROR(SD_BUS_ERROR_INVALID_ARGS, "Allocate", "tusa{sv}", UINT64_C(4096), T.gpus[0], "gtt", 1,
                               "label", "s", label);

        id = allocate(T.bus, 4096, 0, "gtt", 0, NULL, NULL);
        for (size_t i = 0; i < 100000; i++)
                ids[i] = T.gpus[i % T.n_gpus];
        ASSERT_OK(sd_bus_message_new_method_call(T.bus, &m, SVMD_BUS_NAME, SVMD_MANAGER_PATH, SVMD_MANAGER_INTERFACE,
                                                 "Map"));
        ASSERT_OK(sd_bus_message_append(m, "t", id));
        ASSERT_OK(sd_bus_message_append_array(m, 'u', ids, 100000 * sizeof(uint32_t)));
        ASSERT_OK(sd_bus_message_append(m, "a{sv}", 0));
        r = sd_bus_call(T.bus, m, 0, &error, NULL);
        ASSERT_BUS_ERROR(r, &error, SD_BUS_ERROR_INVALID_ARGS);
        sd_bus_error_free(&error);
        test_free(T.bus, id);
        after = test_dump(&T);
        ASSERT_STREQ(before, after);
}

static void test_map_unmap(void) {
        _cleanup_free_ char *before = test_dump(&T), *after = NULL, *mapped_dump = NULL, *again = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        uint64_t id;
        size_t n;
        int r;

        id = allocate(T.bus, 2 * MiB, T.gpus[1], "vram", 0, NULL, NULL);
        r = test_call(T.bus, "Map", &error, NULL, "taua{sv}", id, 3, T.gpus[0], T.gpus[1], T.gpus[2], 0);
        ASSERT_BUS_OK(r, &error);
        range_mapped(id, &n);
        ASSERT_EQ(n, 3);

        /* Mapping again where it is mapped is a no-op. */
        mapped_dump = test_dump(&T);
        r = test_call(T.bus, "Map", &error, NULL, "taua{sv}", id, 2, T.gpus[2], T.gpus[0], 0);
        ASSERT_BUS_OK(r, &error);
        again = test_dump(&T);
        ASSERT_STREQ(mapped_dump, again);

        /* Unmap of a GPU it is not mapped to is refused and changes nothing. */
        EXPECT_UNCHANGED_ERROR(SD_BUS_ERROR_INVALID_ARGS, "Unmap", "tau", id, 2, T.gpus[0], T.gpus[5]);
        EXPECT_UNCHANGED_ERROR(SD_BUS_ERROR_INVALID_ARGS, "Unmap", "tau", id, 0);
        EXPECT_UNCHANGED_ERROR(SD_BUS_ERROR_INVALID_ARGS, "Map", "taua{sv}", id, 0, 0);

        r = test_call(T.bus, "Unmap", &error, NULL, "tau", id, 2, T.gpus[0], T.gpus[2]);
        ASSERT_BUS_OK(r, &error);
        range_mapped(id, &n);
        ASSERT_EQ(n, 1);

        test_free(T.bus, id); /* unmaps the rest itself */
        after = test_dump(&T);
        ASSERT_STREQ(before, after);
        sd_bus_error_free(&error);
}

static void test_dry_run(void) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_free_ char *before = test_dump(&T), *after = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        uint64_t id = 1, va = 1;
        const char *path;
        int r;

        r = test_call(T.bus, "Allocate", &error, &reply, "tusa{sv}", 64 * MiB, T.gpus[0], "vram", 2, "dry-run", "b", 1,
                      "map", "au", 2, T.gpus[0], T.gpus[1]);
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_read(reply, "tto", &id, &va, &path));
        ASSERT_UEQ(id, 0);
        after = test_dump(&T);
        ASSERT_STREQ(before, after);

        /* A dry run reports the error the real call would give. */
        EXPECT_UNCHANGED_ERROR(SVMD_ERROR_OUT_OF_MEMORY, "Allocate", "tusa{sv}", UINT64_C(500) * GiB, T.gpus[0], "vram",
                               1, "dry-run", "b", 1);
        sd_bus_error_free(&error);
}

static void test_request_id(void) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *r1 = NULL, *r2 = NULL;
        _cleanup_free_ char *before = test_dump(&T), *after = NULL, *once = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        uint64_t id1, id2, va1, va2;
        const char *p1, *p2;
        int r;

        r = test_call(T.bus, "Allocate", &error, &r1, "tusa{sv}", 4 * MiB, T.gpus[0], "vram", 1, "request-id", "s",
                      "claim-1234");
        ASSERT_BUS_OK(r, &error);
        once = test_dump(&T);
        r = test_call(T.bus, "Allocate", &error, &r2, "tusa{sv}", 4 * MiB, T.gpus[0], "vram", 1, "request-id", "s",
                      "claim-1234");
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_read(r1, "tto", &id1, &va1, &p1));
        ASSERT_OK(sd_bus_message_read(r2, "tto", &id2, &va2, &p2));
        ASSERT_UEQ(id1, id2);
        ASSERT_UEQ(va1, va2);
        after = test_dump(&T);
        ASSERT_STREQ(once, after); /* the retry did no work */
        free(after);

        /* Ids are printable; svmd's own (idempotent Free) cannot be hit. */
        EXPECT_UNCHANGED_ERROR(SD_BUS_ERROR_INVALID_ARGS, "Allocate", "tusa{sv}", 4 * MiB, T.gpus[0], "vram", 1,
                               "request-id", "s", "\001free:1");
        EXPECT_UNCHANGED_ERROR(SD_BUS_ERROR_INVALID_ARGS, "Allocate", "tusa{sv}", 4 * MiB, T.gpus[0], "vram", 1,
                               "request-id", "s", "");

        /* The same id for another method is refused. */
        EXPECT_UNCHANGED_ERROR(SVMD_ERROR_REQUEST_ID_REUSED, "Map", "taua{sv}", id1, 1, T.gpus[0], 1, "request-id", "s",
                               "claim-1234");

        test_free(T.bus, id1);
        /* A retried Free (its reply was lost) answers like the first, and does nothing. */
        test_free(T.bus, id1);
        after = test_dump(&T);
        ASSERT_STREQ(before, after);
        sd_bus_error_free(&error);
}

static void test_commit(void) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_free_ char *before = test_dump(&T), *after = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        uint64_t id = 0;
        size_t n;
        int r;

        /* Allocate, map it further by reference, unmap one GPU: one transaction. */
        r = test_call(T.bus, "Commit", &error, &reply, "a(sa{sv})a{sv}", 3,
                      "Allocate", 4, "size", "t", 8 * MiB, "gpu", "u", T.gpus[0], "domain", "s", "vram", "map", "au", 2,
                      T.gpus[0], T.gpus[1],
                      "Map", 2, "ref", "u", 0u, "gpus", "au", 2, T.gpus[2], T.gpus[3],
                      "Unmap", 2, "ref", "u", 0u, "gpus", "au", 1, T.gpus[1],
                      0);
        ASSERT_BUS_OK(r, &error);
        id = test_commit_first_id(reply);
        range_mapped(id, &n);
        ASSERT_EQ(n, 3);
        test_free(T.bus, id);

        /* A failing third operation undoes the first two. */
        EXPECT_UNCHANGED_ERROR(SVMD_ERROR_NO_SUCH_GPU, "Commit", "a(sa{sv})a{sv}", 3,
                               "Allocate", 3, "size", "t", 8 * MiB, "gpu", "u", T.gpus[0], "domain", "s", "vram",
                               "Map", 2, "ref", "u", 0u, "gpus", "au", 1, T.gpus[2],
                               "Map", 2, "ref", "u", 0u, "gpus", "au", 1, 0x77u,
                               0);
        EXPECT_UNCHANGED_ERROR(SD_BUS_ERROR_INVALID_ARGS, "Commit", "a(sa{sv})a{sv}", 1,
                               "Map", 2, "ref", "u", 0u, "gpus", "au", 1, T.gpus[2], 0);
        EXPECT_UNCHANGED_ERROR(SD_BUS_ERROR_INVALID_ARGS, "Commit", "a(sa{sv})a{sv}", 1, "Explode", 0, 0);
        EXPECT_UNCHANGED_ERROR(SD_BUS_ERROR_INVALID_ARGS, "Commit", "a(sa{sv})a{sv}", 0, 0);
        EXPECT_UNCHANGED_ERROR(SVMD_ERROR_NO_SUCH_RANGE, "Commit", "a(sa{sv})a{sv}", 2,
                               "Allocate", 2, "size", "t", 4 * MiB, "domain", "s", "gtt",
                               "Free", 1, "id", "t", UINT64_C(123456), 0);

        /* Dry run: validated, nothing done. */
        r = test_call(T.bus, "Commit", &error, NULL, "a(sa{sv})a{sv}", 1,
                      "Allocate", 3, "size", "t", 8 * MiB, "gpu", "u", T.gpus[0], "domain", "s", "vram",
                      1, "dry-run", "b", 1);
        ASSERT_BUS_OK(r, &error);
        after = test_dump(&T);
        ASSERT_STREQ(before, after);
        sd_bus_error_free(&error);
}

/* A Commit of n Maps of range id to GPU gpu, the last one's "id" given as type bad_type ('s' or 't'). */
static int commit_maps(size_t n, uint64_t id, uint32_t gpu, char bad_type, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;

        ASSERT_OK(sd_bus_message_new_method_call(T.bus, &m, SVMD_BUS_NAME, SVMD_MANAGER_PATH, SVMD_MANAGER_INTERFACE,
                                                 "Commit"));
        ASSERT_OK(sd_bus_message_open_container(m, 'a', "(sa{sv})"));
        for (size_t i = 0; i < n; i++) {
                if (i + 1 == n && bad_type == 's')
                        ASSERT_OK(sd_bus_message_append(m, "(sa{sv})", "Map", 2, "id", "s", "7", "gpus", "au", 1, gpu));
                else if (i + 1 == n && bad_type == 'k')
                        ASSERT_OK(sd_bus_message_append(m, "(sa{sv})", "Unmap", 2, "id", "t", id, "bogus", "u", 1u));
                else
                        ASSERT_OK(sd_bus_message_append(m, "(sa{sv})", "Map", 2, "id", "t", id, "gpus", "au", 1, gpu));
        }
        ASSERT_OK(sd_bus_message_close_container(m));
        ASSERT_OK(sd_bus_message_append(m, "a{sv}", 0));
        return sd_bus_call(T.bus, m, 0, error, &reply);
}

/* The words of a Commit's decoding errors name the operation and key; the results name each range. */
static void test_commit_decoding(void) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_free_ char *before = NULL, *after = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        uint64_t id, va, rid, ref_id;
        const char *path, *k[4];
        char want[64];
        int r;

        /* Allocate and Map by ref: {id, va, path} then {id}. */
        r = test_call(T.bus, "Commit", &error, &reply, "a(sa{sv})a{sv}", 2,
                      "Allocate", 3, "size", "t", 4 * MiB, "gpu", "u", T.gpus[0], "domain", "s", "gtt",
                      "Map", 2, "ref", "u", 0u, "gpus", "au", 1, T.gpus[1], 0);
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_read(reply, "a(a{sv})", 2, 3, &k[0], "t", &id, &k[1], "t", &va, &k[2], "o", &path,
                                      1, &k[3], "t", &ref_id));
        ASSERT_STREQ(k[0], "id");
        ASSERT_STREQ(k[1], "va");
        ASSERT_STREQ(k[2], "path");
        ASSERT_STREQ(k[3], "id");
        snprintf(want, sizeof(want), "/org/svmd1/range/%" PRIu64, id);
        ASSERT_STREQ(path, want);
        ASSERT_UEQ(ref_id, id);
        ASSERT_TRUE(va != 0);
        rid = id;

        before = test_dump(&T);
        r = commit_maps(12, rid, T.gpus[2], 's', &error);
        ASSERT_BUS_ERROR(r, &error, SD_BUS_ERROR_INVALID_ARGS);
        ASSERT_STREQ(error.message, "\"id\" in operation 11 (Map) must be of type t, not s");
        sd_bus_error_free(&error);
        r = commit_maps(101, rid, T.gpus[2], 'k', &error);
        ASSERT_BUS_ERROR(r, &error, SD_BUS_ERROR_INVALID_ARGS);
        ASSERT_STREQ(error.message, "unknown key \"bogus\" in operation 100 (Unmap)");
        sd_bus_error_free(&error);
        after = test_dump(&T);
        ASSERT_STREQ(before, after);

        /* The same Maps, well typed, go through. */
        r = commit_maps(3, rid, T.gpus[2], 't', &error);
        ASSERT_BUS_OK(r, &error);
        test_free(T.bus, rid);
}

static void test_batch(void) {
        _cleanup_free_ char *before = test_dump(&T), *after = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        uint64_t host, hva, batch, bva;
        const char *path;
        int r;

        host = allocate(T.bus, 8 * 4096, 0, "host", 0, NULL, &hva);
        /* Pages 1-2 and 5 of the host range, as one contiguous GPU range mapped on 2 GPUs. */
        r = test_call(T.bus, "AllocateBatch", &error, &reply, "a(tt)ua{sv}", 2, hva + 4096, UINT64_C(8192),
                      hva + 5 * 4096, UINT64_C(4096), T.gpus[2], 1, "map", "au", 2, T.gpus[2], T.gpus[4]);
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_read(reply, "tto", &batch, &bva, &path));
        ASSERT_TRUE(bva != hva);

        /* Pieces must lie inside svmd host ranges. */
        EXPECT_UNCHANGED_ERROR(SD_BUS_ERROR_INVALID_ARGS, "AllocateBatch", "a(tt)ua{sv}", 1, hva + 7 * 4096,
                               UINT64_C(8192), T.gpus[0], 0);
        EXPECT_UNCHANGED_ERROR(SD_BUS_ERROR_INVALID_ARGS, "AllocateBatch", "a(tt)ua{sv}", 1, UINT64_C(0x1000),
                               UINT64_C(4096), T.gpus[0], 0);
        EXPECT_UNCHANGED_ERROR(SD_BUS_ERROR_INVALID_ARGS, "AllocateBatch", "a(tt)ua{sv}", 0, T.gpus[0], 0);
        /* The host range backs the batch: it cannot go first. */
        EXPECT_UNCHANGED_ERROR(SVMD_ERROR_BUSY, "Free", "t", host);

        test_free(T.bus, batch);
        test_free(T.bus, host);
        after = test_dump(&T);
        ASSERT_STREQ(before, after);
        sd_bus_error_free(&error);
}

/* The ids of a ListRanges page, in order: the filter key `key` ("after" or "offset") = value, and a limit. */
static size_t list_page(const char *key, uint64_t value, uint64_t limit, uint64_t *ids, size_t max) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        size_t n = 0;
        int r;

        r = test_call(T.bus, "ListRanges", &error, &reply, "a{sv}", 2, key, "t", value, "limit", "t", limit);
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_enter_container(reply, 'a', "(ttttsuausus)"));
        while ((r = sd_bus_message_enter_container(reply, 'r', "ttttsuausus")) > 0) {
                ASSERT_TRUE(n < max);
                ASSERT_OK(sd_bus_message_read(reply, "t", &ids[n++]));
                ASSERT_OK(sd_bus_message_skip(reply, "tttsuausus"));
                ASSERT_OK(sd_bus_message_exit_container(reply));
        }
        ASSERT_OK(r);
        return n;
}

/* Paging by cursor: a page starts after the id given, also when that range is gone by then. */
static void test_list_ranges_after(void) {
        uint64_t ids[100], got[100];
        size_t n;

        for (size_t i = 0; i < 100; i++)
                ids[i] = allocate(T.bus, 4096, 0, "gtt", 0, NULL, NULL);

        n = list_page(SVMD_FILTER_AFTER, ids[9], 3, got, 100);
        ASSERT_EQ(n, 3);
        for (size_t i = 0; i < 3; i++)
                ASSERT_UEQ(got[i], ids[10 + i]);

        /* The cursor's range was freed between pages: the page starts at the next one left. */
        test_free(T.bus, ids[20]);
        test_free(T.bus, ids[21]);
        n = list_page(SVMD_FILTER_AFTER, ids[20], 2, got, 100);
        ASSERT_EQ(n, 2);
        ASSERT_UEQ(got[0], ids[22]);
        ASSERT_UEQ(got[1], ids[23]);

        /* ... also when more than the next 64 ids are gone (the list is walked then). */
        for (size_t i = 22; i < 90; i++)
                test_free(T.bus, ids[i]);
        n = list_page(SVMD_FILTER_AFTER, ids[19] + 1, 100, got, 100);
        ASSERT_EQ(n, 10);
        for (size_t i = 0; i < 10; i++)
                ASSERT_UEQ(got[i], ids[90 + i]);

        /* Past the last range: an empty page. From 0: everything, in id order. */
        ASSERT_EQ(list_page(SVMD_FILTER_AFTER, ids[99], 100, got, 100), 0);
        ASSERT_EQ(list_page(SVMD_FILTER_AFTER, UINT64_MAX, 100, got, 100), 0);
        n = list_page(SVMD_FILTER_AFTER, 0, 100, got, 100);
        ASSERT_TRUE(n >= 30);
        for (size_t i = 1; i < n; i++)
                ASSERT_TRUE(got[i] > got[i - 1]);

        EXPECT_UNCHANGED_ERROR(SD_BUS_ERROR_INVALID_ARGS, "ListRanges", "a{sv}", 1, SVMD_FILTER_AFTER, "u", 1u);

        for (size_t i = 0; i < 100; i++)
                if (i < 20 || i >= 90)
                        test_free(T.bus, ids[i]);
}

static void test_list_ranges_paging(void) {
        uint64_t ids[5], got[5];

        for (size_t i = 0; i < 5; i++)
                ids[i] = allocate(T.bus, 4096, 0, "gtt", 0, NULL, NULL);

        ASSERT_EQ(list_page(SVMD_FILTER_OFFSET, 2, 2, got, 5), 2);
        ASSERT_UEQ(got[0], ids[2]);
        ASSERT_UEQ(got[1], ids[3]);

        EXPECT_UNCHANGED_ERROR(SD_BUS_ERROR_INVALID_ARGS, "ListRanges", "a{sv}", 1, "limit", "t", UINT64_C(0));
        EXPECT_UNCHANGED_ERROR(SD_BUS_ERROR_INVALID_ARGS, "ListRanges", "a{sv}", 1, "limit", "t", UINT64_C(1) << 40);
        EXPECT_UNCHANGED_ERROR(SVMD_ERROR_NO_SUCH_GPU, "ListRanges", "a{sv}", 1, "gpu", "u", 0x1u);

        for (size_t i = 0; i < 5; i++)
                test_free(T.bus, ids[i]);
}

static int on_signal(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        int *count = userdata;
        (*count)++;
        return 0;
}

static void test_signals_and_properties(void) {
        _cleanup_(sd_bus_slot_unrefp) sd_bus_slot *s1 = NULL, *s2 = NULL;
        int created = 0, freed = 0;
        uint64_t id, ranges;
        sd_bus_error error = SD_BUS_ERROR_NULL;

        ASSERT_OK(sd_bus_match_signal(T.bus, &s1, SVMD_BUS_NAME, SVMD_MANAGER_PATH, SVMD_MANAGER_INTERFACE,
                                      "RangeCreated", on_signal, &created));
        ASSERT_OK(sd_bus_match_signal(T.bus, &s2, SVMD_BUS_NAME, SVMD_MANAGER_PATH, SVMD_MANAGER_INTERFACE,
                                      "RangeFreed", on_signal, &freed));
        /* Signals about ranges go to subscribers only (unicast on the bus). */
        ASSERT_OK(sd_bus_call_method(T.bus, SVMD_BUS_NAME, SVMD_MANAGER_PATH, SVMD_MANAGER_INTERFACE, "Subscribe", NULL,
                                     NULL, ""));
        id = allocate(T.bus, 4096, 0, "gtt", 0, NULL, NULL);
        ASSERT_OK(sd_bus_get_property_trivial(T.bus, SVMD_BUS_NAME, SVMD_MANAGER_PATH, SVMD_MANAGER_INTERFACE,
                                              "Ranges", &error, 't', &ranges));
        ASSERT_UEQ(ranges, 1);
        test_free(T.bus, id);
        for (int i = 0; i < 100 && (created < 1 || freed < 1); i++) {
                ASSERT_OK(sd_bus_process(T.bus, NULL));
                if (created < 1 || freed < 1)
                        ASSERT_OK(sd_bus_wait(T.bus, 100 * 1000));
        }
        ASSERT_EQ(created, 1);
        ASSERT_EQ(freed, 1);
        sd_bus_error_free(&error);
}

static void test_gpu_objects(void) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        uint64_t used0, used1, mapped, id;
        char path[64];

        snprintf(path, sizeof(path), "/org/svmd1/gpu/%u", T.gpus[5]);
        ASSERT_OK(sd_bus_get_property_trivial(T.bus, SVMD_BUS_NAME, path, SVMD_GPU_INTERFACE, "VramUsed", &error, 't',
                                              &used0));
        id = allocate(T.bus, 256 * MiB, T.gpus[5], "vram", 1, &T.gpus[5], NULL);
        ASSERT_OK(sd_bus_get_property_trivial(T.bus, SVMD_BUS_NAME, path, SVMD_GPU_INTERFACE, "VramUsed", &error, 't',
                                              &used1));
        ASSERT_UEQ(used1 - used0, 256 * MiB);
        test_list_gpus(); /* ListGpus moved with the properties */
        ASSERT_OK(sd_bus_get_property_trivial(T.bus, SVMD_BUS_NAME, path, SVMD_GPU_INTERFACE, "Mapped", &error, 't',
                                              &mapped));
        ASSERT_UEQ(mapped, 256 * MiB);
        test_free(T.bus, id);
        sd_bus_error_free(&error);
}

static int count_signal(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        (*(int *) userdata)++;
        return 0;
}

static void drain(sd_bus *bus) {
        /* The direct connection carries replies and signals in order: after a round trip every
         * signal sent before it has arrived. */
        ASSERT_OK(sd_bus_call_method(bus, SVMD_BUS_NAME, SVMD_MANAGER_PATH, "org.freedesktop.DBus.Peer", "Ping",
                                     NULL, NULL, ""));
        while (sd_bus_process(bus, NULL) > 0)
                ;
}

static void test_direct_socket(void) {
        _cleanup_(sd_bus_slot_unrefp) sd_bus_slot *slot = NULL;
        _cleanup_free_ char *before = test_dump(&T), *after = NULL;
        sd_bus *d = test_direct(&T);
        int created = 0;
        uint64_t id;

        ASSERT_OK(sd_bus_match_signal(d, &slot, NULL, SVMD_MANAGER_PATH, SVMD_MANAGER_INTERFACE, "RangeCreated",
                                      count_signal, &created));

        id = allocate(d, 2 * MiB, T.gpus[0], "vram", 2, T.gpus, NULL);
        /* The same table: the bus sees what the direct connection made. */
        test_free(T.bus, id);
        after = test_dump(&T);
        ASSERT_STREQ(before, after);

        /* No signals on the hot path unless the peer asks for them. */
        drain(d);
        ASSERT_EQ(created, 0);
        ASSERT_OK(sd_bus_call_method(d, SVMD_BUS_NAME, SVMD_MANAGER_PATH, SVMD_MANAGER_INTERFACE, "Subscribe", NULL,
                                     NULL, ""));
        id = allocate(T.bus, 4096, 0, "gtt", 0, NULL, NULL);
        test_free(T.bus, id);
        drain(d);
        ASSERT_EQ(created, 1);
}

static void test_log_control(void) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        char *level = NULL;
        int r;

        r = sd_bus_set_property(T.bus, SVMD_BUS_NAME, "/org/freedesktop/LogControl1", "org.freedesktop.LogControl1",
                                "LogLevel", &error, "s", "notice");
        ASSERT_BUS_OK(r, &error);
        r = sd_bus_get_property_string(T.bus, SVMD_BUS_NAME, "/org/freedesktop/LogControl1",
                                       "org.freedesktop.LogControl1", "LogLevel", &error, &level);
        ASSERT_BUS_OK(r, &error);
        ASSERT_STREQ(level, "notice");
        free(level);
        r = sd_bus_set_property(T.bus, SVMD_BUS_NAME, "/org/freedesktop/LogControl1", "org.freedesktop.LogControl1",
                                "LogLevel", &error, "s", "loud");
        ASSERT_BUS_ERROR(r, &error, SD_BUS_ERROR_INVALID_ARGS);
        sd_bus_error_free(&error);
        r = sd_bus_set_property(T.bus, SVMD_BUS_NAME, "/org/freedesktop/LogControl1", "org.freedesktop.LogControl1",
                                "LogLevel", &error, "s", "debug");
        ASSERT_BUS_OK(r, &error);
}

int main(void) {
        static const struct {
                const char *name;
                void (*fn)(void);
        } tests[] = {
                { "list_gpus", test_list_gpus },
                { "allocate_map_free_vram", test_allocate_map_free_vram },
                { "allocate_domains", test_allocate_domains },
                { "bad_input", test_bad_input },
                { "label_and_huge_arrays", test_label_and_huge_arrays },
                { "map_unmap", test_map_unmap },
                { "dry_run", test_dry_run },
                { "request_id", test_request_id },
                { "commit", test_commit },
                { "commit_decoding", test_commit_decoding },
                { "batch", test_batch },
                { "list_ranges_paging", test_list_ranges_paging },
                { "list_ranges_after", test_list_ranges_after },
                { "signals_and_properties", test_signals_and_properties },
                { "gpu_objects", test_gpu_objects },
                { "direct_socket", test_direct_socket },
                { "log_control", test_log_control },
        };

        test_setup(&T);
        for (size_t i = 0; i < ELEMENTSOF(tests); i++) {
                printf("test %s ... ", tests[i].name);
                fflush(stdout);
                tests[i].fn();
                printf("ok\n");
        }
        test_teardown(&T);
        return 0;
}
