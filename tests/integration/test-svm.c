/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * svm ranges on mi300x-8: attributes set at Allocate, by SetAttributes, Map
 * and Unmap arrive in the kernel exactly (the emulator's GET_ATTR and dump);
 * bad arguments change nothing; and a SET_ATTR that fails after k of its
 * attributes were applied, for every k, leaves the kernel's attributes and
 * svmd's tables exactly as before the call — also inside a Commit whose later
 * operation fails, and when the restore itself fails (RollbackFailed, then
 * repair). A persistent svm range comes back with its attributes after svmd
 * is killed.
 */

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <linux/kfd_ioctl.h>

#include "svmd-protocol.h"
#include "svmd-test.h"

#define MiB (UINT64_C(1) << 20)

static TestContext T;

static char *range_path(uint64_t id) {
        char *p;

        ASSERT_TRUE(asprintf(&p, "%s/%" PRIu64, SVMD_RANGE_PATH_PREFIX, id) > 0);
        return p;
}

static char *range_property_string(uint64_t id, const char *property) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_free_ char *path = range_path(id);
        const char *s;
        char *ret;
        int r;

        r = sd_bus_get_property(T.bus, SVMD_BUS_NAME, path, SVMD_RANGE_INTERFACE, property, &error, &reply, "s");
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_read(reply, "s", &s));
        ret = strdup(s);
        ASSERT_TRUE(ret);
        sd_bus_error_free(&error);
        return ret;
}

/* The SvmAttributes property as one line: "preferred prefetch granularity flags… | access… | in-place…". */
static char *svm_attrs(uint64_t id) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_free_ char *path = range_path(id);
        char *buf = NULL;
        size_t len = 0;
        FILE *f;
        const char *key;
        int r;

        r = sd_bus_get_property(T.bus, SVMD_BUS_NAME, path, SVMD_RANGE_INTERFACE, "SvmAttributes", &error, &reply,
                                "a{sv}");
        ASSERT_BUS_OK(r, &error);
        f = open_memstream(&buf, &len);
        ASSERT_TRUE(f);
        ASSERT_OK(sd_bus_message_enter_container(reply, 'a', "{sv}"));
        while ((r = sd_bus_message_enter_container(reply, 'e', "sv")) > 0) {
                char type;
                const char *contents;

                ASSERT_OK(sd_bus_message_read(reply, "s", &key));
                ASSERT_OK(sd_bus_message_peek_type(reply, &type, &contents));
                ASSERT_OK(sd_bus_message_enter_container(reply, 'v', contents));
                fprintf(f, "%s=", key);
                if (streq(contents, "u")) {
                        uint32_t v;
                        ASSERT_OK(sd_bus_message_read(reply, "u", &v));
                        fprintf(f, "%" PRIu32, v);
                } else if (streq(contents, "as")) {
                        const char *s;
                        ASSERT_OK(sd_bus_message_enter_container(reply, 'a', "s"));
                        while ((r = sd_bus_message_read(reply, "s", &s)) > 0)
                                fprintf(f, "%s,", s);
                        ASSERT_OK(r);
                        ASSERT_OK(sd_bus_message_exit_container(reply));
                } else if (streq(contents, "au")) {
                        uint32_t v;
                        ASSERT_OK(sd_bus_message_enter_container(reply, 'a', "u"));
                        while ((r = sd_bus_message_read(reply, "u", &v)) > 0)
                                fprintf(f, "%" PRIu32 ",", v);
                        ASSERT_OK(r);
                        ASSERT_OK(sd_bus_message_exit_container(reply));
                } else
                        ASSERT_TRUE(!"unexpected type in SvmAttributes");
                fputc(' ', f);
                ASSERT_OK(sd_bus_message_exit_container(reply));
                ASSERT_OK(sd_bus_message_exit_container(reply));
        }
        ASSERT_OK(r);
        ASSERT_OK(sd_bus_message_exit_container(reply));
        ASSERT_OK(fclose(f));
        sd_bus_error_free(&error);
        return buf;
}

/* Everything a refused or rolled-back call must leave as it was: the kernel, range id's attributes, the table. */
typedef struct Snapshot {
        char *dump, *attrs, *ranges;
} Snapshot;

static void snapshot_take(Snapshot *s, uint64_t id) {
        *s = (Snapshot) { test_dump(&T), svm_attrs(id), test_list_ranges(T.bus) };
}

static void snapshot_done(Snapshot *s) {
        free(s->dump);
        free(s->attrs);
        free(s->ranges);
        *s = (Snapshot) {};
}

static void assert_unchanged(const Snapshot *before, uint64_t id) {
        Snapshot now;

        snapshot_take(&now, id);
        ASSERT_STREQ(now.dump, before->dump);
        ASSERT_STREQ(now.attrs, before->attrs);
        ASSERT_STREQ(now.ranges, before->ranges);
        snapshot_done(&now);
}

/* The kernel's SVM interval starting at va, in any process, as compact sorted JSON; NULL if none. */
static char *kernel_svm(uint64_t va) {
        _cleanup_free_ char *dump = test_dump(&T);
        json_t *root, *procs, *p, *r;
        char *ret = NULL;
        size_t i, j;

        root = json_loads(dump, 0, NULL);
        ASSERT_TRUE(root);
        procs = json_object_get(root, "processes");
        json_array_foreach(procs, i, p)
                json_array_foreach(json_object_get(p, "svm"), j, r)
                        if (!ret && (uint64_t) json_integer_value(json_object_get(r, "start")) == va)
                                ret = json_dumps(r, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(root);
        return ret;
}

static uint64_t alloc_svm(uint64_t size, uint32_t gpu, bool persistent, uint64_t *ret_va) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        const char *path;
        uint64_t id, va;
        int r;

        r = test_call(T.bus, "Allocate", &error, &reply, "tusa{sv}", size, gpu, SVMD_DOMAIN_SVM, 2,
                      SVMD_OPT_PERSISTENT, "b", persistent, SVMD_OPT_LABEL, "s", "svm-test");
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_read(reply, "tto", &id, &va, &path));
        if (ret_va)
                *ret_va = va;
        sd_bus_error_free(&error);
        return id;
}

/* Attributes given at Allocate are what the property and the kernel show. */
static void test_allocate_round_trip(void) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_free_ char *attrs = NULL, *expect = NULL, *mapped = NULL, *domain = NULL, *dump = NULL;
        const char *path;
        uint64_t id, va;
        int r;

        r = test_call(T.bus, "Allocate", &error, &reply, "tusa{sv}", 4 * MiB, T.gpus[0], SVMD_DOMAIN_SVM, 6,
                      SVMD_OPT_MAP, "au", 1, T.gpus[1],
                      SVMD_OPT_SVM_PREFETCH, "u", T.gpus[2],
                      SVMD_OPT_SVM_ACCESS_IN_PLACE, "au", 2, T.gpus[3], T.gpus[4],
                      SVMD_OPT_SVM_FLAGS, "as", 2, "coherent", "gpu-read-mostly",
                      SVMD_OPT_SVM_GRANULARITY, "u", 5,
                      SVMD_OPT_SVM_NO_ACCESS, "au", 1, T.gpus[5]);
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_read(reply, "tto", &id, &va, &path));

        domain = range_property_string(id, "Domain");
        ASSERT_STREQ(domain, "svm");
        attrs = svm_attrs(id);
        ASSERT_TRUE(asprintf(&expect,
                             "svm-preferred=%u svm-prefetch=%u svm-granularity=5 svm-flags=coherent,gpu-read-mostly, "
                             "svm-access=%u, svm-access-in-place=%u,%u, ",
                             T.gpus[0], T.gpus[2], T.gpus[1], T.gpus[3], T.gpus[4]) > 0);
        ASSERT_STREQ(attrs, expect);

        /* The kernel has exactly that registered at va, in svmd's process. */
        dump = kernel_svm(va);
        free(expect);
        ASSERT_TRUE(asprintf(&expect,
                             "{\"access\":[%u],\"access_in_place\":[%u,%u],\"flags\":%u,\"granularity\":5,"
                             "\"preferred_loc\":%u,\"prefetch_loc\":%u,\"size\":%" PRIu64 ",\"start\":%" PRIu64 "}",
                             T.gpus[1], T.gpus[3], T.gpus[4],
                             KFD_IOCTL_SVM_FLAG_COHERENT | KFD_IOCTL_SVM_FLAG_GPU_READ_MOSTLY, T.gpus[0], T.gpus[2],
                             4 * MiB, va) > 0);
        ASSERT_STREQ(dump, expect);
        test_free(T.bus, id);

        /* Freed: the kernel forgot the range with the daemon's mapping of it. */
        free(dump);
        dump = kernel_svm(va);
        ASSERT_NULL(dump);
        sd_bus_error_free(&error);
}

/* SetAttributes, Map and Unmap: each key lands, MappedGpus follows access. */
static void test_set_attributes(void) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_free_ char *attrs = NULL, *expect = NULL;
        uint64_t id;
        int r;

        id = alloc_svm(2 * MiB, 0, false, NULL);
        attrs = svm_attrs(id);
        /* gpu 0 at Allocate: no preferred GPU, prefetch to system memory, the kernel's default flags. */
        ASSERT_STREQ(attrs, "svm-preferred=4294967295 svm-prefetch=0 svm-granularity=9 "
                            "svm-flags=host-access,coherent, svm-access= svm-access-in-place= ");
        free(attrs);

        r = test_call(T.bus, "SetAttributes", &error, NULL, "ta{sv}", id, 4,
                      SVMD_OPT_SVM_PREFERRED, "u", T.gpus[7],
                      SVMD_OPT_SVM_FLAGS, "as", 1, "gpu-exec",
                      SVMD_OPT_SVM_GRANULARITY, "u", 0,
                      SVMD_OPT_SVM_ACCESS_IN_PLACE, "au", 1, T.gpus[6]);
        ASSERT_BUS_OK(r, &error);
        r = test_call(T.bus, "Map", &error, NULL, "taua{sv}", id, 2, T.gpus[0], T.gpus[1], 0);
        ASSERT_BUS_OK(r, &error);
        attrs = svm_attrs(id);
        ASSERT_TRUE(asprintf(&expect, "svm-preferred=%u svm-prefetch=0 svm-granularity=0 svm-flags=gpu-exec, "
                                      "svm-access=%u,%u, svm-access-in-place=%u, ",
                             T.gpus[7], T.gpus[0], T.gpus[1], T.gpus[6]) > 0);
        ASSERT_STREQ(attrs, expect);

        /* Unmap takes access away whatever kind it was. */
        r = test_call(T.bus, "Unmap", &error, NULL, "tau", id, 2, T.gpus[1], T.gpus[6]);
        ASSERT_BUS_OK(r, &error);
        free(attrs);
        free(expect);
        attrs = svm_attrs(id);
        ASSERT_TRUE(asprintf(&expect, "svm-preferred=%u svm-prefetch=0 svm-granularity=0 svm-flags=gpu-exec, "
                                      "svm-access=%u, svm-access-in-place= ",
                             T.gpus[7], T.gpus[0]) > 0);
        ASSERT_STREQ(attrs, expect);

        /* Unmapping a GPU without access is refused like for any range. */
        r = test_call(T.bus, "Unmap", &error, NULL, "tau", id, 1, T.gpus[1]);
        ASSERT_BUS_ERROR(r, &error, SD_BUS_ERROR_INVALID_ARGS);
        sd_bus_error_free(&error);

        /* A dry run changes nothing. */
        r = test_call(T.bus, "SetAttributes", &error, NULL, "ta{sv}", id, 2, SVMD_OPT_SVM_GRANULARITY, "u", 7,
                      SVMD_OPT_DRY_RUN, "b", true);
        ASSERT_BUS_OK(r, &error);
        free(expect);
        expect = svm_attrs(id);
        ASSERT_STREQ(attrs, expect);

        test_free(T.bus, id);
        sd_bus_error_free(&error);
}

typedef struct BadCase {
        const char *what;
        const char *error;
} BadCase;

/* Every refusal names the problem and changes nothing in svmd or the kernel. */
static void test_bad_arguments(void) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        Snapshot before;
        uint64_t id, vram;
        int r;

        id = alloc_svm(2 * MiB, T.gpus[0], false, NULL);
        {
                _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
                const char *path;
                uint64_t va;
                r = test_call(T.bus, "Allocate", &error, &reply, "tusa{sv}", 2 * MiB, T.gpus[0], "vram", 0);
                ASSERT_BUS_OK(r, &error);
                ASSERT_OK(sd_bus_message_read(reply, "tto", &vram, &va, &path));
        }
        snapshot_take(&before, id);

#define CHECK_REFUSED(ename, ...)                                                       \
        do {                                                                            \
                r = test_call(T.bus, __VA_ARGS__);                                      \
                ASSERT_BUS_ERROR(r, &error, ename);                                     \
                sd_bus_error_free(&error);                                              \
                assert_unchanged(&before, id);                                          \
        } while (0)

        CHECK_REFUSED(SD_BUS_ERROR_INVALID_ARGS, "SetAttributes", &error, NULL, "ta{sv}", id, 1,
                      SVMD_OPT_SVM_FLAGS, "as", 1, "sparkly");
        CHECK_REFUSED(SD_BUS_ERROR_INVALID_ARGS, "SetAttributes", &error, NULL, "ta{sv}", id, 1,
                      SVMD_OPT_SVM_GRANULARITY, "u", 64);
        CHECK_REFUSED(SD_BUS_ERROR_INVALID_ARGS, "SetAttributes", &error, NULL, "ta{sv}", id, 1,
                      SVMD_OPT_SVM_PREFETCH, "u", SVMD_SVM_LOCATION_NONE);
        CHECK_REFUSED(SVMD_ERROR_NO_SUCH_GPU, "SetAttributes", &error, NULL, "ta{sv}", id, 1,
                      SVMD_OPT_SVM_PREFERRED, "u", 0xdead);
        CHECK_REFUSED(SVMD_ERROR_NO_SUCH_GPU, "SetAttributes", &error, NULL, "ta{sv}", id, 1,
                      SVMD_OPT_SVM_ACCESS, "au", 1, 0xdead);
        CHECK_REFUSED(SD_BUS_ERROR_INVALID_ARGS, "SetAttributes", &error, NULL, "ta{sv}", id, 2,
                      SVMD_OPT_SVM_ACCESS, "au", 1, T.gpus[1], SVMD_OPT_SVM_NO_ACCESS, "au", 1, T.gpus[1]);
        CHECK_REFUSED(SD_BUS_ERROR_INVALID_ARGS, "SetAttributes", &error, NULL, "ta{sv}", id, 1,
                      SVMD_OPT_SVM_ACCESS, "au", 2, T.gpus[1], T.gpus[1]);
        CHECK_REFUSED(SD_BUS_ERROR_INVALID_ARGS, "SetAttributes", &error, NULL, "ta{sv}", id, 0);
        CHECK_REFUSED(SD_BUS_ERROR_INVALID_ARGS, "SetAttributes", &error, NULL, "ta{sv}", id, 1,
                      "svm-colour", "s", "blue");
        CHECK_REFUSED(SD_BUS_ERROR_INVALID_ARGS, "SetAttributes", &error, NULL, "ta{sv}", id, 1,
                      SVMD_OPT_SVM_GRANULARITY, "t", UINT64_C(3));
        CHECK_REFUSED(SD_BUS_ERROR_INVALID_ARGS, "SetAttributes", &error, NULL, "ta{sv}", vram, 1,
                      SVMD_OPT_SVM_GRANULARITY, "u", 3);
        CHECK_REFUSED(SVMD_ERROR_NO_SUCH_RANGE, "SetAttributes", &error, NULL, "ta{sv}", UINT64_C(999999), 1,
                      SVMD_OPT_SVM_GRANULARITY, "u", 3);
        /* XNACK is off in the emulator's default process mode: the flag would be a lie. */
        CHECK_REFUSED(SVMD_ERROR_NOT_SUPPORTED, "SetAttributes", &error, NULL, "ta{sv}", id, 1,
                      SVMD_OPT_SVM_FLAGS, "as", 1, "gpu-always-mapped");

        /* Allocate: svm-* options elsewhere, "flags" on svm, contradictions. */
        CHECK_REFUSED(SD_BUS_ERROR_INVALID_ARGS, "Allocate", &error, NULL, "tusa{sv}", 2 * MiB, T.gpus[0], "host", 1,
                      SVMD_OPT_SVM_GRANULARITY, "u", 3);
        CHECK_REFUSED(SD_BUS_ERROR_INVALID_ARGS, "Allocate", &error, NULL, "tusa{sv}", 2 * MiB, T.gpus[0], "svm", 1,
                      SVMD_OPT_FLAGS, "as", 1, "executable");
        CHECK_REFUSED(SD_BUS_ERROR_INVALID_ARGS, "Allocate", &error, NULL, "tusa{sv}", 2 * MiB, T.gpus[0], "svm", 2,
                      SVMD_OPT_MAP, "au", 1, T.gpus[2], SVMD_OPT_SVM_NO_ACCESS, "au", 1, T.gpus[2]);
        CHECK_REFUSED(SD_BUS_ERROR_INVALID_ARGS, "Allocate", &error, NULL, "tusa{sv}", UINT64_C(0), T.gpus[0], "svm", 0);
        CHECK_REFUSED(SD_BUS_ERROR_INVALID_ARGS, "Allocate", &error, NULL, "tusa{sv}", UINT64_MAX, T.gpus[0], "svm", 0);
        CHECK_REFUSED(SVMD_ERROR_NO_SUCH_GPU, "Allocate", &error, NULL, "tusa{sv}", 2 * MiB, 0xdead, "svm", 0);
        /* Commit: a SetAttributes op on a non-svm range fails the whole Commit up front. */
        CHECK_REFUSED(SD_BUS_ERROR_INVALID_ARGS, "Commit", &error, NULL, "a(sa{sv})a{sv}", 2,
                      "SetAttributes", 2, SVMD_OPT_ID, "t", id, SVMD_OPT_SVM_GRANULARITY, "u", 2,
                      "SetAttributes", 2, SVMD_OPT_ID, "t", vram, SVMD_OPT_SVM_GRANULARITY, "u", 2, 0);
#undef CHECK_REFUSED

        snapshot_done(&before);
        test_free(T.bus, id);
        test_free(T.bus, vram);
        sd_bus_error_free(&error);
}

static int set_many(uint64_t id, sd_bus_error *error) {
        /* 11 attributes in one SET: preferred, prefetch, 2 for flags, granularity, 4 in place, 2 none. */
        return test_call(T.bus, "SetAttributes", error, NULL, "ta{sv}", id, 6,
                         SVMD_OPT_SVM_PREFERRED, "u", T.gpus[1],
                         SVMD_OPT_SVM_PREFETCH, "u", T.gpus[2],
                         SVMD_OPT_SVM_FLAGS, "as", 2, "gpu-ro", "hive-local",
                         SVMD_OPT_SVM_GRANULARITY, "u", 3,
                         SVMD_OPT_SVM_ACCESS_IN_PLACE, "au", 4, T.gpus[0], T.gpus[1], T.gpus[2], T.gpus[3],
                         SVMD_OPT_SVM_NO_ACCESS, "au", 2, T.gpus[4], T.gpus[5]);
}
#define SET_MANY_ATTRS 11U

/*
 * The kernel applies k of the 11 attributes and fails: for every k the
 * attributes in the kernel, the property and the range table are as before.
 */
static void test_fault_after_k(void) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_free_ char *clean = NULL;
        Snapshot before;
        uint64_t id;
        int r;

        id = alloc_svm(2 * MiB, T.gpus[0], false, NULL);
        r = test_call(T.bus, "Map", &error, NULL, "taua{sv}", id, 2, T.gpus[4], T.gpus[6], 0);
        ASSERT_BUS_OK(r, &error);
        snapshot_take(&before, id);

        for (unsigned k = 0; k <= SET_MANY_ATTRS; k++) {
                const char *errnames[] = { "EIO", "ENOMEM", "EFAULT" };
                const char *expected[] = { SVMD_ERROR_KERNEL, SVMD_ERROR_OUT_OF_MEMORY, SVMD_ERROR_KERNEL };
                unsigned e = k % 3;

                test_fault(&T, "ioctl=SVM op=set after=%u errno=%s", k, errnames[e]);
                r = set_many(id, &error);
                ASSERT_BUS_ERROR(r, &error, expected[e]);
                ASSERT_TRUE(strstr(error.message, "SVM attributes of range"));
                sd_bus_error_free(&error);
                ASSERT_UEQ(test_faults_fired(&T), 1U);
                test_fault_clear(&T);
                assert_unchanged(&before, id);
        }

        /* The GET_ATTR that records the prior state fails: no SET is made at all. */
        {
                uint64_t sets = test_ioctl_count(&T, "SVM");

                test_fault(&T, "ioctl=SVM op=get errno=EIO");
                r = set_many(id, &error);
                ASSERT_BUS_ERROR(r, &error, SVMD_ERROR_KERNEL);
                ASSERT_TRUE(strstr(error.message, "reading the SVM attributes") ||
                            strstr(error.message, "Reading the SVM attributes"));
                sd_bus_error_free(&error);
                test_fault_clear(&T);
                ASSERT_UEQ(test_ioctl_count(&T, "SVM"), sets + 1);
                assert_unchanged(&before, id);
        }

        /* Interrupted: restarted, and then it all applies. */
        test_fault(&T, "ioctl=SVM op=set errno=EINTR count=3");
        r = set_many(id, &error);
        ASSERT_BUS_OK(r, &error);
        test_fault_clear(&T);
        clean = svm_attrs(id);
        ASSERT_TRUE(strstr(clean, "svm-granularity=3 svm-flags=hive-local,gpu-ro, "));
        snapshot_done(&before);
        test_free(T.bus, id);
        sd_bus_error_free(&error);
}

/* A Commit whose last operation fails takes back the attributes an earlier one set. */
static void test_commit_rollback(void) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        Snapshot before;
        uint64_t id;
        int r;

        id = alloc_svm(2 * MiB, T.gpus[0], false, NULL);
        snapshot_take(&before, id);

        test_fault(&T, "ioctl=ALLOC_MEMORY_OF_GPU errno=ENOMEM");
        r = test_call(T.bus, "Commit", &error, NULL, "a(sa{sv})a{sv}", 3,
                      "SetAttributes", 3, SVMD_OPT_ID, "t", id, SVMD_OPT_SVM_GRANULARITY, "u", 1,
                      SVMD_OPT_SVM_ACCESS, "au", 3, T.gpus[1], T.gpus[2], T.gpus[3],
                      "Map", 2, SVMD_OPT_ID, "t", id, SVMD_OPT_GPUS, "au", 1, T.gpus[7],
                      "Allocate", 3, SVMD_OPT_SIZE, "t", 2 * MiB, SVMD_OPT_GPU, "u", T.gpus[0],
                      SVMD_OPT_DOMAIN, "s", "vram",
                      0);
        ASSERT_BUS_ERROR(r, &error, SVMD_ERROR_OUT_OF_MEMORY);
        ASSERT_TRUE(strstr(error.message, "Operation 2"));
        sd_bus_error_free(&error);
        test_fault_clear(&T);
        assert_unchanged(&before, id);
        snapshot_done(&before);

        /* Without the fault the same Commit goes through, an svm Allocate by ref included. */
        r = test_call(T.bus, "Commit", &error, NULL, "a(sa{sv})a{sv}", 2,
                      "Allocate", 3, SVMD_OPT_SIZE, "t", 2 * MiB, SVMD_OPT_GPU, "u", T.gpus[0],
                      SVMD_OPT_DOMAIN, "s", "svm",
                      "SetAttributes", 2, SVMD_OPT_REF, "u", 0, SVMD_OPT_SVM_ACCESS, "au", 1, T.gpus[5],
                      0);
        ASSERT_BUS_OK(r, &error);
        test_free(T.bus, id);
        sd_bus_error_free(&error);
}

static char *range_state(uint64_t id) {
        return range_property_string(id, "State");
}

/* The restore fails too: RollbackFailed, degraded, and repair brings back the prior attributes. */
static void test_rollback_failed(void) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_free_ char *state = NULL;
        Snapshot before;
        uint64_t id;
        int r;

        id = alloc_svm(2 * MiB, T.gpus[0], false, NULL);
        r = test_call(T.bus, "Map", &error, NULL, "taua{sv}", id, 1, T.gpus[3], 0);
        ASSERT_BUS_OK(r, &error);
        snapshot_take(&before, id);

        /* Every SET applies two attributes and fails: the change, the restore and its retries. */
        test_fault(&T, "ioctl=SVM op=set after=2 errno=EIO count=0");
        r = set_many(id, &error);
        ASSERT_BUS_ERROR(r, &error, SVMD_ERROR_ROLLBACK_FAILED);
        sd_bus_error_free(&error);
        state = range_state(id);
        ASSERT_STREQ(state, "degraded");
        /* A degraded range takes no further changes. */
        r = test_call(T.bus, "SetAttributes", &error, NULL, "ta{sv}", id, 1, SVMD_OPT_SVM_GRANULARITY, "u", 2);
        ASSERT_BUS_ERROR(r, &error, SVMD_ERROR_BUSY);
        sd_bus_error_free(&error);

        test_fault_clear(&T);
        for (int i = 0; i < 400; i++) {
                free(state);
                state = range_state(id);
                if (streq(state, "active"))
                        break;
                nanosleep(&(struct timespec) { 0, 25 * 1000 * 1000 }, NULL);
        }
        ASSERT_STREQ(state, "active");
        assert_unchanged(&before, id);
        snapshot_done(&before);
        test_free(T.bus, id);
}

static uint64_t gpu_mapped(uint32_t gpu) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        char path[64];
        uint64_t v = 0;
        int r;

        snprintf(path, sizeof(path), SVMD_GPU_PATH_PREFIX "/%u", gpu);
        r = sd_bus_get_property_trivial(T.bus, SVMD_BUS_NAME, path, SVMD_GPU_INTERFACE, "Mapped", &error, 't', &v);
        ASSERT_BUS_OK(r, &error);
        return v;
}

static size_t n_ranges(void) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        uint64_t n = 0;
        int r;

        r = sd_bus_get_property_trivial(T.bus, SVMD_BUS_NAME, SVMD_MANAGER_PATH, SVMD_MANAGER_INTERFACE, "Ranges",
                                        &error, 't', &n);
        ASSERT_BUS_OK(r, &error);
        return (size_t) n;
}

/*
 * The books: quota usage survives a Reload (which recounts it from the ranges), and a range that
 * repair frees after a failed rollback gives back what it had mapped.
 */
static void test_accounting(void) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_free_ char *usage0 = NULL, *usage1 = NULL, *usage2 = NULL, *usage3 = NULL;
        uint64_t mapped0 = gpu_mapped(T.gpus[0]);
        size_t ranges0 = n_ranges();
        uint64_t id;
        int r;

        usage0 = test_usage(T.bus);
        id = alloc_svm(2 * MiB, T.gpus[0], false, NULL);
        r = test_call(T.bus, "Map", &error, NULL, "taua{sv}", id, 1, T.gpus[0], 0);
        ASSERT_BUS_OK(r, &error);
        ASSERT_UEQ(gpu_mapped(T.gpus[0]), mapped0 + 2 * MiB);
        usage1 = test_usage(T.bus);
        ASSERT_TRUE(!streq(usage1, usage0));
        r = test_call(T.bus, "Reload", &error, NULL, "");
        ASSERT_BUS_OK(r, &error);
        usage2 = test_usage(T.bus);
        ASSERT_STREQ(usage2, usage1);

        /* A Commit creates and maps an svm range, changing it fails, and so does every restore. */
        test_fault(&T, "ioctl=SVM op=set nth=2 count=0 errno=EIO");
        r = test_call(T.bus, "Commit", &error, NULL, "a(sa{sv})a{sv}", 2,
                      "Allocate", 4, SVMD_OPT_SIZE, "t", 2 * MiB, SVMD_OPT_GPU, "u", T.gpus[0],
                      SVMD_OPT_DOMAIN, "s", "svm", SVMD_OPT_MAP, "au", 1, T.gpus[0],
                      "SetAttributes", 2, SVMD_OPT_REF, "u", 0, SVMD_OPT_SVM_GRANULARITY, "u", 2,
                      0);
        ASSERT_BUS_ERROR(r, &error, SVMD_ERROR_ROLLBACK_FAILED);
        sd_bus_error_free(&error);
        test_fault_clear(&T);
        /* Repair frees the half-made range. */
        for (int i = 0; i < 400 && n_ranges() > ranges0 + 1; i++)
                nanosleep(&(struct timespec) { 0, 25 * 1000 * 1000 }, NULL);
        ASSERT_UEQ(n_ranges(), ranges0 + 1);
        ASSERT_UEQ(gpu_mapped(T.gpus[0]), mapped0 + 2 * MiB);

        test_free(T.bus, id);
        ASSERT_UEQ(gpu_mapped(T.gpus[0]), mapped0);
        usage3 = test_usage(T.bus);
        ASSERT_STREQ(usage3, usage0);
        sd_bus_error_free(&error);
}

/* Killed and restarted: a persistent svm range is back at its VA with its attributes in the kernel. */
static void test_restart(void) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_free_ char *attrs = NULL, *after = NULL, *dump = NULL;
        char needle[128];
        uint64_t id, va;
        int r;

        id = alloc_svm(4 * MiB, T.gpus[2], true, &va);
        r = test_call(T.bus, "SetAttributes", &error, NULL, "ta{sv}", id, 3, SVMD_OPT_SVM_GRANULARITY, "u", 6,
                      SVMD_OPT_SVM_ACCESS, "au", 2, T.gpus[0], T.gpus[7], SVMD_OPT_SVM_FLAGS, "as", 1, "gpu-exec");
        ASSERT_BUS_OK(r, &error);
        attrs = svm_attrs(id);

        test_kill_and_wait_restart(&T);

        after = svm_attrs(id);
        ASSERT_STREQ(after, attrs);
        dump = kernel_svm(va);
        ASSERT_NOT_NULL(dump);
        snprintf(needle, sizeof(needle), "\"granularity\":6,\"preferred_loc\":%u,\"prefetch_loc\":0,\"size\":%" PRIu64,
                 T.gpus[2], 4 * MiB);
        if (!strstr(dump, needle)) {
                fprintf(stderr, "expected %s in the kernel's range after the restart: %s\n", needle, dump);
                abort();
        }
        test_free(T.bus, id);
        sd_bus_error_free(&error);
}

int main(void) {
        test_setup(&T);
        ASSERT_TRUE(T.n_gpus >= 8);

        test_allocate_round_trip();
        test_set_attributes();
        test_bad_arguments();
        test_fault_after_k();
        test_commit_rollback();
        test_rollback_failed();
        test_accounting();
        test_restart();

        test_teardown(&T);
        return 0;
}
