/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * libsvmd's public API against a running svmd (under svmd-harness): every
 * call, over the bus and over the direct socket, the errno and error name of
 * each failure class, async calls through the pollable fd, and signals.
 * Only <svmd/svmd.h> is used, as an application would.
 */

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <svmd/svmd.h>

#include "macro.h"
#include "svmd-assert.h"
#include "unit-assert.h"

#define MiB (UINT64_C(1) << 20)

static uint32_t gpus[SVMD_MAX_GPUS];
static size_t n_gpus;

#define ASSERT_SVMD_ERROR(r, e, err, ename)                                                     \
        do {                                                                                    \
                ASSERT_EQ((r), -(err));                                                         \
                ASSERT_STREQ((e)->name, (ename));                                               \
                ASSERT_TRUE((e)->message && strlen((e)->message) > 0);                          \
                fprintf(stderr, "   expected failure: %s: %s\n", (e)->name, (e)->message);      \
                svmd_error_free(e);                                                             \
        } while (0)

static svmd_client *connect_client(uint32_t flags) {
        svmd_error e = SVMD_ERROR_NULL;
        svmd_client *c = NULL;
        int r;

        r = svmd_client_new(&c, NULL, NULL, flags, &e);
        ASSERT_SVMD_OK(r, &e);
        return c;
}

static bool range_listed(svmd_client *c, uint64_t id, svmd_range *ret) {
        _cleanup_free_ svmd_range *ranges = NULL;
        svmd_error e = SVMD_ERROR_NULL;
        size_t n;
        int r;

        r = svmd_list_ranges(c, NULL, &ranges, &n, &e);
        ASSERT_SVMD_OK(r, &e);
        for (size_t i = 0; i < n; i++)
                if (ranges[i].id == id) {
                        if (ret)
                                *ret = ranges[i];
                        return true;
                }
        return false;
}

static void test_connect(void) {
        svmd_error e = SVMD_ERROR_NULL;
        svmd_client *c;
        int r;

        c = connect_client(0);
        ASSERT_TRUE(svmd_client_is_direct(c));
        ASSERT_TRUE(svmd_client_get_fd(c) >= 0);
        svmd_client_free(c);

        c = connect_client(SVMD_CLIENT_NO_DIRECT);
        ASSERT_FALSE(svmd_client_is_direct(c));
        svmd_client_free(c);

        c = connect_client(SVMD_CLIENT_DIRECT_ONLY);
        ASSERT_TRUE(svmd_client_is_direct(c));
        svmd_client_free(c);

        /* A socket that is not there: the bus serves everything. */
        r = svmd_client_new(&c, NULL, "/nonexistent/io.socket", 0, &e);
        ASSERT_SVMD_OK(r, &e);
        ASSERT_FALSE(svmd_client_is_direct(c));
        {
                _cleanup_free_ svmd_gpu *g = NULL;
                size_t n;

                r = svmd_list_gpus(c, &g, &n, &e);
                ASSERT_SVMD_OK(r, &e);
                ASSERT_UEQ(n, n_gpus);
        }
        svmd_client_free(c);

        r = svmd_client_new(&c, NULL, "/nonexistent/io.socket", SVMD_CLIENT_DIRECT_ONLY, &e);
        ASSERT_TRUE(r < 0);
        ASSERT_TRUE(e.name && e.message && strstr(e.message, "/nonexistent/io.socket"));
        svmd_error_free(&e);

        r = svmd_client_new(&c, "unix:path=/nonexistent/bus", NULL, SVMD_CLIENT_NO_DIRECT, &e);
        ASSERT_TRUE(r < 0);
        ASSERT_TRUE(e.message && strstr(e.message, "/nonexistent/bus"));
        svmd_error_free(&e);

        r = svmd_client_new(&c, NULL, NULL, SVMD_CLIENT_NO_DIRECT | SVMD_CLIENT_DIRECT_ONLY, &e);
        ASSERT_SVMD_ERROR(r, &e, EINVAL, "org.freedesktop.DBus.Error.InvalidArgs");

        ASSERT_EQ(svmd_error_name_to_errno("org.svmd1.Error.NoSuchRange"), ENOENT);
        ASSERT_EQ(svmd_error_name_to_errno("org.svmd1.Error.QuotaExceeded"), EDQUOT);
        ASSERT_EQ(svmd_error_name_to_errno("org.freedesktop.DBus.Error.AccessDenied"), EACCES);
        ASSERT_EQ(svmd_error_name_to_errno("no.such.Name"), EIO);
        ASSERT_STREQ(svmd_range_flag_to_string(SVMD_RANGE_FLAG_PUBLIC), "public");
        ASSERT_NULL(svmd_range_flag_to_string(3));
        ASSERT_STREQ(svmd_svm_flag_to_string(SVMD_SVM_FLAG_HOST_ACCESS), "host-access");
        ASSERT_STREQ(svmd_svm_flag_to_string(SVMD_SVM_FLAG_GPU_READ_MOSTLY), "gpu-read-mostly");
        ASSERT_STREQ(svmd_svm_flag_to_string(SVMD_SVM_FLAG_EXT_COHERENT), "ext-coherent");
        ASSERT_NULL(svmd_svm_flag_to_string(SVMD_SVM_FLAG_COHERENT | SVMD_SVM_FLAG_GPU_RO));
        ASSERT_NULL(svmd_svm_flag_to_string(0));
        ASSERT_NULL(svmd_svm_flag_to_string(UINT32_C(1) << 20));
}

static void test_queries(svmd_client *c) {
        _cleanup_free_ svmd_gpu *g = NULL;
        svmd_error e = SVMD_ERROR_NULL;
        svmd_status s;
        size_t n;
        int r;

        r = svmd_list_gpus(c, &g, &n, &e);
        ASSERT_SVMD_OK(r, &e);
        ASSERT_UEQ(n, n_gpus);
        for (size_t i = 0; i < n; i++) {
                ASSERT_UEQ(g[i].gpu_id, gpus[i]);
                ASSERT_STREQ(g[i].target, "gfx942");
                ASSERT_TRUE(g[i].vram_total > 0);
                ASSERT_UEQ(g[i].vram_used + g[i].vram_free, g[i].vram_total);
                /* Nothing is allocated yet: used and free are not each other. */
                ASSERT_TRUE(g[i].vram_free > g[i].vram_used);
        }

        r = svmd_get_status(c, &s, &e);
        ASSERT_SVMD_OK(r, &e);
        ASSERT_STREQ(s.version, "0.1.0");
        ASSERT_TRUE(strlen(s.kfd_version) >= 3);
        ASSERT_UEQ(s.n_gpus, n_gpus);
        /* The emulated KFD process starts with XNACK off, and svmd does not turn it on. */
        ASSERT_FALSE(s.xnack);
}

static void test_allocate_map_free(svmd_client *c) {
        const char *flags[] = { "writable", "public", NULL };
        uint32_t map[] = { gpus[0], gpus[1] };
        svmd_allocate_options o = { .flags = flags, .map = map, .n_map = 2, .label = "libsvmd-test" };
        svmd_range_filter f = { .label = "libsvmd-test" };
        _cleanup_free_ svmd_range *ranges = NULL;
        svmd_error e = SVMD_ERROR_NULL;
        svmd_allocation a, b;
        svmd_range rg;
        size_t n;
        int r;

        r = svmd_allocate(c, 3 * MiB, gpus[0], "vram", &o, &a, &e);
        ASSERT_SVMD_OK(r, &e);
        ASSERT_TRUE(a.id > 0 && a.va >= UINT64_C(0x400000000000));
        /* 2 MiB alignment for ranges of 2 MiB or more (docs/architecture.md, "The SVM address space"). */
        ASSERT_UEQ(a.va % (2 * MiB), 0);

        ASSERT_TRUE(range_listed(c, a.id, &rg));
        ASSERT_UEQ(rg.size, 3 * MiB);
        ASSERT_STREQ(rg.domain, "vram");
        ASSERT_STREQ(rg.label, "libsvmd-test");
        ASSERT_STREQ(rg.state, "active");
        ASSERT_UEQ(rg.home_gpu, gpus[0]);
        ASSERT_UEQ(rg.flags, SVMD_RANGE_FLAG_WRITABLE | SVMD_RANGE_FLAG_PUBLIC);
        ASSERT_UEQ(rg.n_mapped, 2);

        r = svmd_list_ranges(c, &f, &ranges, &n, &e);
        ASSERT_SVMD_OK(r, &e);
        ASSERT_UEQ(n, 1);
        ASSERT_UEQ(ranges[0].id, a.id);
        /* A cursor at the range: nothing after it; just before it: the range. */
        ranges = mfree(ranges);
        f.has_after = true;
        f.after = a.id;
        r = svmd_list_ranges(c, &f, &ranges, &n, &e);
        ASSERT_SVMD_OK(r, &e);
        ASSERT_UEQ(n, 0);
        ranges = mfree(ranges);
        f.after = a.id - 1;
        r = svmd_list_ranges(c, &f, &ranges, &n, &e);
        ASSERT_SVMD_OK(r, &e);
        ASSERT_UEQ(n, 1);
        ASSERT_UEQ(ranges[0].id, a.id);

        r = svmd_map(c, a.id, &gpus[2], 1, NULL, &e);
        ASSERT_SVMD_OK(r, &e);
        ASSERT_TRUE(range_listed(c, a.id, &rg));
        ASSERT_UEQ(rg.n_mapped, 3);
        r = svmd_unmap(c, a.id, &gpus[2], 1, &e);
        ASSERT_SVMD_OK(r, &e);
        ASSERT_TRUE(range_listed(c, a.id, &rg));
        ASSERT_UEQ(rg.n_mapped, 2);

        /* Dry runs change nothing. */
        r = svmd_map(c, a.id, &gpus[3], 1, &(svmd_change_options) { .dry_run = true }, &e);
        ASSERT_SVMD_OK(r, &e);
        ASSERT_TRUE(range_listed(c, a.id, &rg));
        ASSERT_UEQ(rg.n_mapped, 2);
        r = svmd_allocate(c, MiB, gpus[0], "vram", &(svmd_allocate_options) { .dry_run = true }, &b, &e);
        ASSERT_SVMD_OK(r, &e);
        ASSERT_UEQ(b.id, 0);

        /* The same request-id twice: one range. */
        r = svmd_allocate(c, MiB, gpus[1], "vram", &(svmd_allocate_options) { .request_id = "claim-1234" }, &b, &e);
        ASSERT_SVMD_OK(r, &e);
        {
                svmd_allocation b2;

                r = svmd_allocate(c, MiB, gpus[1], "vram", &(svmd_allocate_options) { .request_id = "claim-1234" },
                                  &b2, &e);
                ASSERT_SVMD_OK(r, &e);
                ASSERT_UEQ(b2.id, b.id);
                ASSERT_UEQ(b2.va, b.va);
        }

        r = svmd_free(c, a.id, &e);
        ASSERT_SVMD_OK(r, &e);
        r = svmd_free(c, b.id, &e);
        ASSERT_SVMD_OK(r, &e);
        ASSERT_FALSE(range_listed(c, a.id, NULL));
}

static void test_errors(svmd_client *c) {
        svmd_error e = SVMD_ERROR_NULL;
        uint32_t many[SVMD_MAX_GPUS + 1] = {};
        svmd_allocation a;
        int r;

        r = svmd_free(c, UINT64_C(999999), &e);
        ASSERT_SVMD_ERROR(r, &e, ENOENT, "org.svmd1.Error.NoSuchRange");
        r = svmd_map(c, UINT64_C(999999), gpus, 1, NULL, &e);
        ASSERT_SVMD_ERROR(r, &e, ENOENT, "org.svmd1.Error.NoSuchRange");
        r = svmd_allocate(c, MiB, 0x1, "vram", NULL, &a, &e);
        ASSERT_SVMD_ERROR(r, &e, ENXIO, "org.svmd1.Error.NoSuchGpu");
        r = svmd_allocate(c, MiB, gpus[0], "doorbell", NULL, &a, &e);
        ASSERT_SVMD_ERROR(r, &e, EINVAL, "org.freedesktop.DBus.Error.InvalidArgs");
        r = svmd_allocate(c, 0, gpus[0], "vram", NULL, &a, &e);
        ASSERT_SVMD_ERROR(r, &e, EINVAL, "org.freedesktop.DBus.Error.InvalidArgs");
        /* More than the GPU has (192 GiB). */
        r = svmd_allocate(c, UINT64_C(1) << 40, gpus[0], "vram", NULL, &a, &e);
        fprintf(stderr, "   expected failure: %d %s: %s\n", r, e.name, e.message);
        ASSERT_TRUE(r == -ENOMEM || r == -EDQUOT);
        svmd_error_free(&e);
        /* Checked before anything travels. */
        r = svmd_map(c, 1, many, ELEMENTSOF(many), NULL, &e);
        ASSERT_SVMD_ERROR(r, &e, E2BIG, "org.freedesktop.DBus.Error.InvalidArgs");
        r = svmd_map(c, 1, NULL, 2, NULL, &e);
        ASSERT_SVMD_ERROR(r, &e, EINVAL, "org.freedesktop.DBus.Error.InvalidArgs");
        /* NULL error out-parameters are fine. */
        ASSERT_EQ(svmd_free(c, UINT64_C(999999), NULL), -ENOENT);
}

/* Tokens listed and revoked, holds revoked (the caller owns the range, so it may). */
static void test_revoke(svmd_client *c) {
        svmd_allocate_options o = { .persistent = true };
        _cleanup_free_ svmd_token_info *tokens = NULL;
        _cleanup_free_ char *token = NULL;
        svmd_error e = SVMD_ERROR_NULL;
        svmd_grant g = { .has_uid = true, .uid = (uint32_t) getuid() };
        svmd_attachment at;
        svmd_allocation a;
        size_t n = 0;
        int r;

        r = svmd_allocate(c, 64 * 1024, gpus[0], "host", &o, &a, &e);
        ASSERT_SVMD_OK(r, &e);
        r = svmd_share(c, a.id, &g, &token, &e);
        ASSERT_SVMD_OK(r, &e);
        r = svmd_list_tokens(c, a.id, &tokens, &n, &e);
        ASSERT_SVMD_OK(r, &e);
        ASSERT_EQ(n, 1);
        ASSERT_STREQ(tokens[0].token, token);
        ASSERT_TRUE(tokens[0].has_uid && tokens[0].uid == (uint32_t) getuid());
        ASSERT_TRUE(!tokens[0].read_only && tokens[0].expires_usec == 0 && !tokens[0].unit[0]);

        r = svmd_attach(c, token, &at, &e);
        ASSERT_SVMD_OK(r, &e);
        close(at.fd);
        r = svmd_revoke_hold(c, a.id, (uint32_t) getuid(), &e);
        ASSERT_SVMD_OK(r, &e);
        r = svmd_release(c, a.id, &e);
        ASSERT_SVMD_ERROR(r, &e, ENOENT, "org.svmd1.Error.NoSuchRange");
        r = svmd_revoke_hold(c, a.id, (uint32_t) getuid(), &e);
        ASSERT_SVMD_ERROR(r, &e, ENOENT, "org.svmd1.Error.NoSuchRange");

        r = svmd_revoke_token(c, token, &e);
        ASSERT_SVMD_OK(r, &e);
        r = svmd_attach(c, token, &at, &e);
        ASSERT_SVMD_ERROR(r, &e, ENOKEY, "org.svmd1.Error.NoSuchToken");
        r = svmd_revoke_token(c, token, &e);
        ASSERT_SVMD_ERROR(r, &e, ENOKEY, "org.svmd1.Error.NoSuchToken");
        free(tokens);
        r = svmd_list_tokens(c, a.id, &tokens, &n, &e);
        ASSERT_SVMD_OK(r, &e);
        ASSERT_EQ(n, 0);
        ASSERT_OK(svmd_free(c, a.id, NULL));
}

static void test_batch(svmd_client *c) {
        svmd_error e = SVMD_ERROR_NULL;
        svmd_allocation host, batch;
        svmd_host_range pieces[2];
        svmd_range rg;
        int r;

        r = svmd_allocate(c, 4 * MiB, 0, "host", NULL, &host, &e);
        ASSERT_SVMD_OK(r, &e);
        pieces[0] = (svmd_host_range) { host.va, MiB };
        pieces[1] = (svmd_host_range) { host.va + 2 * MiB, MiB };
        r = svmd_allocate_batch(c, pieces, 2, gpus[0],
                                &(svmd_allocate_options) { .map = gpus, .n_map = 2 }, &batch, &e);
        ASSERT_SVMD_OK(r, &e);
        ASSERT_TRUE(range_listed(c, batch.id, &rg));
        ASSERT_UEQ(rg.size, 2 * MiB);
        ASSERT_UEQ(rg.n_mapped, 2);
        r = svmd_free(c, host.id, &e);
        ASSERT_SVMD_ERROR(r, &e, EBUSY, "org.svmd1.Error.Busy");
        r = svmd_free(c, batch.id, &e);
        ASSERT_SVMD_OK(r, &e);
        r = svmd_free(c, host.id, &e);
        ASSERT_SVMD_OK(r, &e);
}

static void test_commit(svmd_client *c) {
        svmd_error e = SVMD_ERROR_NULL;
        svmd_op_result res[4];
        svmd_range rg;
        int r;
        svmd_op ops[] = {
                { .kind = SVMD_OP_ALLOCATE, .size = 2 * MiB, .gpu_id = gpus[0], .domain = "vram", .label = "c0" },
                { .kind = SVMD_OP_ALLOCATE, .size = MiB, .gpu_id = gpus[1], .domain = "gtt", .gpus = gpus, .n_gpus = 1 },
                { .kind = SVMD_OP_MAP, .by_ref = true, .ref = 0, .gpus = &gpus[1], .n_gpus = 2 },
                { .kind = SVMD_OP_UNMAP, .by_ref = true, .ref = 0, .gpus = &gpus[2], .n_gpus = 1 },
        };

        r = svmd_commit(c, ops, ELEMENTSOF(ops), NULL, res, &e);
        ASSERT_SVMD_OK(r, &e);
        ASSERT_TRUE(res[0].id > 0 && res[0].va > 0);
        ASSERT_TRUE(res[1].id > 0 && res[1].va > 0);
        ASSERT_UEQ(res[2].id, res[0].id);
        ASSERT_TRUE(range_listed(c, res[0].id, &rg));
        ASSERT_UEQ(rg.n_mapped, 1);
        ASSERT_UEQ(rg.mapped[0], gpus[1]);

        /* A failing commit changes nothing: the first op would succeed alone. */
        {
                svmd_op bad[] = {
                        { .kind = SVMD_OP_FREE, .id = res[1].id },
                        { .kind = SVMD_OP_FREE, .id = UINT64_C(999999) },
                };

                r = svmd_commit(c, bad, 2, NULL, NULL, &e);
                ASSERT_SVMD_ERROR(r, &e, ENOENT, "org.svmd1.Error.NoSuchRange");
                ASSERT_TRUE(range_listed(c, res[1].id, NULL));
        }

        {
                svmd_op done[] = {
                        { .kind = SVMD_OP_FREE, .id = res[0].id },
                        { .kind = SVMD_OP_FREE, .id = res[1].id },
                };

                r = svmd_commit(c, done, 2, &(svmd_change_options) { .dry_run = true }, NULL, &e);
                ASSERT_SVMD_OK(r, &e);
                ASSERT_TRUE(range_listed(c, res[0].id, NULL));
                r = svmd_commit(c, done, 2, NULL, NULL, &e);
                ASSERT_SVMD_OK(r, &e);
                ASSERT_FALSE(range_listed(c, res[0].id, NULL));
                ASSERT_FALSE(range_listed(c, res[1].id, NULL));
        }

        r = svmd_commit(c, (svmd_op[]) { { .kind = 42 } }, 1, NULL, NULL, &e);
        ASSERT_SVMD_ERROR(r, &e, EINVAL, "org.freedesktop.DBus.Error.InvalidArgs");
}

/* ---- svm ranges ---- */

static bool has_gpu(const uint32_t *ids, size_t n, uint32_t gpu) {
        for (size_t i = 0; i < n; i++)
                if (ids[i] == gpu)
                        return true;
        return false;
}

static void get_svm(svmd_client *c, uint64_t id, svmd_svm_state *st) {
        svmd_error e = SVMD_ERROR_NULL;
        int r;

        r = svmd_get_svm_attributes(c, id, st, &e);
        ASSERT_SVMD_OK(r, &e);
}

static void test_svm(svmd_client *c) {
        static const char *const flags[] = { "coherent", "gpu-exec", NULL };
        svmd_svm_attributes attrs = {
                .set = SVMD_SVM_SET_PREFERRED | SVMD_SVM_SET_PREFETCH | SVMD_SVM_SET_FLAGS | SVMD_SVM_SET_GRANULARITY,
                .preferred = gpus[0],
                .prefetch = SVMD_SVM_LOCATION_SYSTEM,
                .flags = flags,
                .granularity = 4,
                .access = &gpus[1],
                .n_access = 1,
                .access_in_place = &gpus[2],
                .n_access_in_place = 1,
        };
        svmd_allocate_options o = { .map = &gpus[3], .n_map = 1, .label = "svm-test", .svm = &attrs };
        svmd_error e = SVMD_ERROR_NULL;
        svmd_allocation a, v;
        svmd_svm_state st, st2;
        svmd_range rg;
        int r;

        r = svmd_allocate(c, 4 * MiB, 0, "svm", &o, &a, &e);
        ASSERT_SVMD_OK(r, &e);
        ASSERT_TRUE(range_listed(c, a.id, &rg));
        ASSERT_STREQ(rg.domain, "svm");
        ASSERT_STREQ(rg.label, "svm-test");
        /* Mapped: access or access in place. */
        ASSERT_UEQ(rg.n_mapped, 3);
        ASSERT_TRUE(has_gpu(rg.mapped, rg.n_mapped, gpus[1]));
        ASSERT_TRUE(has_gpu(rg.mapped, rg.n_mapped, gpus[2]));
        ASSERT_TRUE(has_gpu(rg.mapped, rg.n_mapped, gpus[3]));

        get_svm(c, a.id, &st);
        /* The same over the direct socket alone. */
        {
                svmd_client *d = connect_client(SVMD_CLIENT_DIRECT_ONLY);

                get_svm(d, a.id, &st2);
                ASSERT_TRUE(memcmp(&st, &st2, sizeof(st)) == 0);
                svmd_client_free(d);
        }
        ASSERT_UEQ(st.preferred, gpus[0]);
        ASSERT_UEQ(st.prefetch, SVMD_SVM_LOCATION_SYSTEM);
        ASSERT_UEQ(st.flags, SVMD_SVM_FLAG_COHERENT | SVMD_SVM_FLAG_GPU_EXEC);
        ASSERT_STREQ(st.flag_names, "coherent,gpu-exec");
        ASSERT_UEQ(st.granularity, 4);
        ASSERT_UEQ(st.n_access, 2);
        ASSERT_TRUE(has_gpu(st.access, st.n_access, gpus[1]));
        ASSERT_TRUE(has_gpu(st.access, st.n_access, gpus[3]));
        ASSERT_UEQ(st.n_access_in_place, 1);
        ASSERT_UEQ(st.access_in_place[0], gpus[2]);

        /* A dry run changes nothing. */
        r = svmd_set_attributes(c, a.id,
                                &(svmd_svm_attributes) { .set = SVMD_SVM_SET_PREFERRED,
                                                         .preferred = SVMD_SVM_LOCATION_NONE },
                                &(svmd_change_options) { .dry_run = true }, &e);
        ASSERT_SVMD_OK(r, &e);
        get_svm(c, a.id, &st2);
        ASSERT_UEQ(st2.preferred, gpus[0]);

        /* The empty flag set, no preferred location, one GPU's access taken. */
        r = svmd_set_attributes(c, a.id,
                                &(svmd_svm_attributes) { .set = SVMD_SVM_SET_PREFERRED | SVMD_SVM_SET_FLAGS |
                                                                SVMD_SVM_SET_GRANULARITY,
                                                         .preferred = SVMD_SVM_LOCATION_NONE,
                                                         .granularity = 9,
                                                         .no_access = &gpus[1],
                                                         .n_no_access = 1 },
                                NULL, &e);
        ASSERT_SVMD_OK(r, &e);
        get_svm(c, a.id, &st);
        ASSERT_UEQ(st.preferred, SVMD_SVM_LOCATION_NONE);
        ASSERT_UEQ(st.flags, 0);
        ASSERT_STREQ(st.flag_names, "");
        ASSERT_UEQ(st.granularity, 9);
        ASSERT_UEQ(st.n_access, 1);
        ASSERT_UEQ(st.access[0], gpus[3]);
        ASSERT_TRUE(range_listed(c, a.id, &rg));
        ASSERT_UEQ(rg.n_mapped, 2);

        /* A change the daemon refuses leaves everything as it was. */
        r = svmd_set_attributes(c, a.id,
                                &(svmd_svm_attributes) { .set = SVMD_SVM_SET_FLAGS | SVMD_SVM_SET_GRANULARITY,
                                                         .flags = (const char *const[]) { "shiny", NULL },
                                                         .granularity = 2 },
                                NULL, &e);
        ASSERT_SVMD_ERROR(r, &e, EINVAL, "org.freedesktop.DBus.Error.InvalidArgs");
        get_svm(c, a.id, &st2);
        ASSERT_UEQ(st2.granularity, 9);
        r = svmd_set_attributes(c, a.id, &(svmd_svm_attributes) { .access = (uint32_t[]) { 0x1 }, .n_access = 1 },
                                NULL, &e);
        ASSERT_SVMD_ERROR(r, &e, ENXIO, "org.svmd1.Error.NoSuchGpu");

        /* Map and unmap give and take access. */
        r = svmd_map(c, a.id, &gpus[4], 1, NULL, &e);
        ASSERT_SVMD_OK(r, &e);
        get_svm(c, a.id, &st);
        ASSERT_TRUE(has_gpu(st.access, st.n_access, gpus[4]));
        r = svmd_unmap(c, a.id, &gpus[4], 1, &e);
        ASSERT_SVMD_OK(r, &e);
        get_svm(c, a.id, &st);
        ASSERT_FALSE(has_gpu(st.access, st.n_access, gpus[4]));

        /* Other domains have no SVM attributes; a missing range is not found. */
        r = svmd_allocate(c, MiB, gpus[0], "vram", NULL, &v, &e);
        ASSERT_SVMD_OK(r, &e);
        r = svmd_get_svm_attributes(c, v.id, &st, &e);
        ASSERT_TRUE(e.message && strstr(e.message, "vram range"));
        ASSERT_SVMD_ERROR(r, &e, EINVAL, "org.freedesktop.DBus.Error.InvalidArgs");
        r = svmd_set_attributes(c, v.id, &(svmd_svm_attributes) { .set = SVMD_SVM_SET_GRANULARITY }, NULL, &e);
        ASSERT_SVMD_ERROR(r, &e, EINVAL, "org.freedesktop.DBus.Error.InvalidArgs");
        r = svmd_get_svm_attributes(c, UINT64_C(999999), &st, &e);
        ASSERT_SVMD_ERROR(r, &e, ENOENT, "org.svmd1.Error.NoSuchRange");
        r = svmd_set_attributes(c, UINT64_C(999999), &(svmd_svm_attributes) { .set = SVMD_SVM_SET_GRANULARITY },
                                NULL, &e);
        ASSERT_SVMD_ERROR(r, &e, ENOENT, "org.svmd1.Error.NoSuchRange");

        /* Commit: an svm Allocate and a SetAttributes of it, as one transaction. */
        {
                svmd_svm_attributes first = { .access = &gpus[0], .n_access = 1 };
                svmd_svm_attributes then = { .set = SVMD_SVM_SET_PREFERRED | SVMD_SVM_SET_GRANULARITY,
                                             .preferred = gpus[1], .granularity = 5 };
                svmd_op ops[] = {
                        { .kind = SVMD_OP_ALLOCATE, .size = 2 * MiB, .domain = "svm", .svm = &first },
                        { .kind = SVMD_OP_SET_ATTRIBUTES, .by_ref = true, .ref = 0, .svm = &then },
                        { .kind = SVMD_OP_SET_ATTRIBUTES, .id = a.id, .svm = &then },
                };
                svmd_op_result res[3];

                r = svmd_commit(c, ops, ELEMENTSOF(ops), NULL, res, &e);
                ASSERT_SVMD_OK(r, &e);
                ASSERT_TRUE(res[0].id > 0);
                get_svm(c, res[0].id, &st);
                ASSERT_UEQ(st.preferred, gpus[1]);
                ASSERT_UEQ(st.granularity, 5);
                ASSERT_UEQ(st.n_access, 1);
                ASSERT_UEQ(st.access[0], gpus[0]);
                get_svm(c, a.id, &st);
                ASSERT_UEQ(st.preferred, gpus[1]);

                /* All or nothing: the second operation fails, the first is undone. */
                then.granularity = 6;
                r = svmd_commit(c,
                                (svmd_op[]) { { .kind = SVMD_OP_SET_ATTRIBUTES, .id = res[0].id, .svm = &then },
                                              { .kind = SVMD_OP_SET_ATTRIBUTES, .id = UINT64_C(999999),
                                                .svm = &then } },
                                2, NULL, NULL, &e);
                ASSERT_SVMD_ERROR(r, &e, ENOENT, "org.svmd1.Error.NoSuchRange");
                get_svm(c, res[0].id, &st);
                ASSERT_UEQ(st.granularity, 5);

                r = svmd_free(c, res[0].id, &e);
                ASSERT_SVMD_OK(r, &e);
        }

        r = svmd_free(c, v.id, &e);
        ASSERT_SVMD_OK(r, &e);
        r = svmd_free(c, a.id, &e);
        ASSERT_SVMD_OK(r, &e);
}

/* What libsvmd refuses before anything travels (range 999999 does not exist: svmd would say so). */
static void test_svm_validation(svmd_client *c) {
        uint32_t many[SVMD_MAX_GPUS + 1] = {};
        svmd_error e = SVMD_ERROR_NULL;
        svmd_allocation a;
        uint64_t id = UINT64_C(999999);
        int r;

        r = svmd_set_attributes(c, id, NULL, NULL, &e);
        ASSERT_SVMD_ERROR(r, &e, EINVAL, "org.freedesktop.DBus.Error.InvalidArgs");
        r = svmd_get_svm_attributes(c, id, NULL, &e);
        ASSERT_SVMD_ERROR(r, &e, EINVAL, "org.freedesktop.DBus.Error.InvalidArgs");
        r = svmd_set_attributes(c, id, &(svmd_svm_attributes) { .n_access = 2 }, NULL, &e);
        ASSERT_SVMD_ERROR(r, &e, EINVAL, "org.freedesktop.DBus.Error.InvalidArgs");
        for (size_t i = 0; i < ELEMENTSOF(many); i++)
                many[i] = (uint32_t) i + 1;
        r = svmd_set_attributes(c, id, &(svmd_svm_attributes) { .no_access = many, .n_no_access = ELEMENTSOF(many) },
                                NULL, &e);
        ASSERT_SVMD_ERROR(r, &e, E2BIG, "org.freedesktop.DBus.Error.InvalidArgs");
        r = svmd_set_attributes(c, id,
                                &(svmd_svm_attributes) { .access = (uint32_t[]) { gpus[0], gpus[1], gpus[0] },
                                                         .n_access = 3 },
                                NULL, &e);
        ASSERT_TRUE(e.message && strstr(e.message, "listed twice in svm-access"));
        ASSERT_SVMD_ERROR(r, &e, EINVAL, "org.freedesktop.DBus.Error.InvalidArgs");
        r = svmd_set_attributes(c, id,
                                &(svmd_svm_attributes) { .access = &gpus[0], .n_access = 1,
                                                         .no_access = (uint32_t[]) { gpus[1], gpus[0] },
                                                         .n_no_access = 2 },
                                NULL, &e);
        ASSERT_TRUE(e.message && strstr(e.message, "both svm-access and svm-no-access"));
        ASSERT_SVMD_ERROR(r, &e, EINVAL, "org.freedesktop.DBus.Error.InvalidArgs");
        r = svmd_set_attributes(c, id, &(svmd_svm_attributes) { .set = SVMD_SVM_SET_GRANULARITY, .granularity = 64 },
                                NULL, &e);
        ASSERT_SVMD_ERROR(r, &e, EINVAL, "org.freedesktop.DBus.Error.InvalidArgs");
        r = svmd_set_attributes(c, id,
                                &(svmd_svm_attributes) { .set = SVMD_SVM_SET_PREFETCH,
                                                         .prefetch = SVMD_SVM_LOCATION_NONE },
                                NULL, &e);
        ASSERT_SVMD_ERROR(r, &e, EINVAL, "org.freedesktop.DBus.Error.InvalidArgs");
        r = svmd_set_attributes(c, id, &(svmd_svm_attributes) { .set = UINT32_C(1) << 7 }, NULL, &e);
        ASSERT_SVMD_ERROR(r, &e, EINVAL, "org.freedesktop.DBus.Error.InvalidArgs");

        /* SVM attributes belong to svm ranges, allocation flags to the others. */
        r = svmd_allocate(c, MiB, gpus[0], "vram", &(svmd_allocate_options) { .svm = &(svmd_svm_attributes) {} }, &a,
                          &e);
        ASSERT_SVMD_ERROR(r, &e, EINVAL, "org.freedesktop.DBus.Error.InvalidArgs");
        r = svmd_allocate(c, MiB, 0, "svm", &(svmd_allocate_options) { .flags = (const char *const[]) { NULL } }, &a,
                          &e);
        ASSERT_SVMD_ERROR(r, &e, EINVAL, "org.freedesktop.DBus.Error.InvalidArgs");
        r = svmd_allocate(c, MiB, 0, "svm",
                          &(svmd_allocate_options) { .svm = &(svmd_svm_attributes) { .access = &gpus[0],
                                                                                     .n_access = 1,
                                                                                     .access_in_place = &gpus[0],
                                                                                     .n_access_in_place = 1 } },
                          &a, &e);
        ASSERT_SVMD_ERROR(r, &e, EINVAL, "org.freedesktop.DBus.Error.InvalidArgs");

        r = svmd_commit(c, (svmd_op[]) { { .kind = SVMD_OP_SET_ATTRIBUTES, .id = id } }, 1, NULL, NULL, &e);
        ASSERT_TRUE(e.message && strncmp(e.message, "Operation 0 (SetAttributes): ", 29) == 0);
        ASSERT_SVMD_ERROR(r, &e, EINVAL, "org.freedesktop.DBus.Error.InvalidArgs");
        r = svmd_commit(c,
                        (svmd_op[]) { { .kind = SVMD_OP_FREE, .id = id },
                                      { .kind = SVMD_OP_MAP, .id = id, .gpus = gpus, .n_gpus = 1,
                                        .svm = &(svmd_svm_attributes) {} } },
                        2, NULL, NULL, &e);
        ASSERT_TRUE(e.message && strncmp(e.message, "Operation 1 (Map): ", 19) == 0);
        ASSERT_SVMD_ERROR(r, &e, EINVAL, "org.freedesktop.DBus.Error.InvalidArgs");
        r = svmd_commit(c,
                        (svmd_op[]) { { .kind = SVMD_OP_ALLOCATE, .size = MiB, .domain = "svm",
                                        .svm = &(svmd_svm_attributes) { .set = SVMD_SVM_SET_GRANULARITY,
                                                                        .granularity = 100 } } },
                        1, NULL, NULL, &e);
        ASSERT_TRUE(e.message && strncmp(e.message, "Operation 0 (Allocate): SVM granularity 100", 43) == 0);
        ASSERT_SVMD_ERROR(r, &e, EINVAL, "org.freedesktop.DBus.Error.InvalidArgs");
}

/*
 * A binary built against LIBSVMD_0.1 calls the 0.1 versions with the 0.1
 * structs, which ended where the 0.2 fields start: those entry points must
 * neither read nor write past them.
 */
int svmd_get_status_0_1(svmd_client *c, void *ret, svmd_error *error);
int svmd_allocate_0_1(svmd_client *c, uint64_t size, uint32_t gpu_id, const char *domain, const void *options,
                      svmd_allocation *ret, svmd_error *error);
int svmd_commit_0_1(svmd_client *c, const void *ops, size_t n_ops, const svmd_change_options *options,
                    svmd_op_result *results, svmd_error *error);
__asm__(".symver svmd_get_status_0_1, svmd_get_status@LIBSVMD_0.1");
__asm__(".symver svmd_allocate_0_1, svmd_allocate@LIBSVMD_0.1");
__asm__(".symver svmd_commit_0_1, svmd_commit@LIBSVMD_0.1");
int svmd_list_ranges_0_1(svmd_client *c, const void *filter, svmd_range **ret, size_t *ret_n, svmd_error *error);
__asm__(".symver svmd_list_ranges_0_1, svmd_list_ranges@LIBSVMD_0.1");

#define STATUS_SIZE_0_1 offsetof(svmd_status, xnack)
#define OPTIONS_SIZE_0_1 offsetof(svmd_allocate_options, svm)
#define OP_SIZE_0_1 offsetof(svmd_op, svm)
#define FILTER_SIZE_0_1 offsetof(svmd_range_filter, after)

static void test_compat_0_1(svmd_client *c) {
        uint8_t status[STATUS_SIZE_0_1 + 64], options[OPTIONS_SIZE_0_1 + 64], ops[2 * OP_SIZE_0_1 + 64];
        uint8_t filter[FILTER_SIZE_0_1 + 64];
        _cleanup_free_ svmd_range *listed = NULL;
        size_t n_listed = 0;
        svmd_error e = SVMD_ERROR_NULL;
        svmd_op_result res[2];
        svmd_allocation a;
        svmd_range rg;
        int r;

        memset(status, 0xa5, sizeof(status));
        r = svmd_get_status_0_1(c, status, &e);
        ASSERT_SVMD_OK(r, &e);
        ASSERT_UEQ(((svmd_status *) status)->n_gpus, n_gpus);
        for (size_t i = STATUS_SIZE_0_1; i < sizeof(status); i++)
                ASSERT_UEQ(status[i], 0xa5);

        /* Whatever follows the old struct (here: a wild "svm" pointer) is not read. */
        memset(options, 0xff, sizeof(options));
        memcpy(options, &(svmd_allocate_options) { .label = "compat-0.1" }, OPTIONS_SIZE_0_1);
        r = svmd_allocate_0_1(c, MiB, gpus[0], "vram", options, &a, &e);
        ASSERT_SVMD_OK(r, &e);
        ASSERT_TRUE(range_listed(c, a.id, &rg));
        ASSERT_STREQ(rg.label, "compat-0.1");

        /* The bytes after a 0.1 filter would be a cursor past every id: they are not read. */
        memset(filter, 0xff, sizeof(filter));
        memcpy(filter, &(svmd_range_filter) { .label = "compat-0.1" }, FILTER_SIZE_0_1);
        r = svmd_list_ranges_0_1(c, filter, &listed, &n_listed, &e);
        ASSERT_SVMD_OK(r, &e);
        ASSERT_UEQ(n_listed, 1);
        ASSERT_UEQ(listed[0].id, a.id);

        memset(ops, 0xff, sizeof(ops));
        memcpy(ops, &(svmd_op) { .kind = SVMD_OP_MAP, .id = a.id, .gpus = &gpus[1], .n_gpus = 1 }, OP_SIZE_0_1);
        memcpy(ops + OP_SIZE_0_1, &(svmd_op) { .kind = SVMD_OP_UNMAP, .id = a.id, .gpus = &gpus[1], .n_gpus = 1 },
               OP_SIZE_0_1);
        r = svmd_commit_0_1(c, ops, 1, NULL, res, &e);
        ASSERT_SVMD_OK(r, &e);
        ASSERT_TRUE(range_listed(c, a.id, &rg));
        ASSERT_UEQ(rg.n_mapped, 1);
        r = svmd_commit_0_1(c, ops + OP_SIZE_0_1, 1, NULL, res, &e);
        ASSERT_SVMD_OK(r, &e);
        ASSERT_TRUE(range_listed(c, a.id, &rg));
        ASSERT_UEQ(rg.n_mapped, 0);
        /* 0.1 knew no SetAttributes. */
        memcpy(ops, &(svmd_op) { .kind = SVMD_OP_SET_ATTRIBUTES, .id = a.id }, OP_SIZE_0_1);
        r = svmd_commit_0_1(c, ops, 1, NULL, NULL, &e);
        ASSERT_SVMD_ERROR(r, &e, EINVAL, "org.freedesktop.DBus.Error.InvalidArgs");

        r = svmd_free(c, a.id, &e);
        ASSERT_SVMD_OK(r, &e);
}

/* ---- async ---- */

typedef struct AsyncState {
        unsigned allocated, mapped, committed, failed, done, done_failed;
        uint64_t ids[8];
        size_t n_ids;
        uint64_t commit_id;
} AsyncState;

static void on_allocated(svmd_client *c, int result, const svmd_allocation *a, const svmd_error *error,
                         void *userdata) {
        AsyncState *s = userdata;

        ASSERT_OK(result);
        ASSERT_NULL(error);
        ASSERT_TRUE(a && a->id > 0);
        s->ids[s->n_ids++] = a->id;
        s->allocated++;
}

static void on_mapped(svmd_client *c, int result, const svmd_error *error, void *userdata) {
        AsyncState *s = userdata;

        if (result < 0) {
                ASSERT_EQ(result, -ENOENT);
                ASSERT_STREQ(error->name, "org.svmd1.Error.NoSuchRange");
                s->failed++;
        } else
                s->mapped++;
}

/* Unmap and Free: count successes, and failures that are NoSuchRange. */
static void on_done(svmd_client *c, int result, const svmd_error *error, void *userdata) {
        AsyncState *s = userdata;

        if (result < 0) {
                ASSERT_EQ(result, -ENOENT);
                ASSERT_STREQ(error->name, "org.svmd1.Error.NoSuchRange");
                s->done_failed++;
        } else {
                ASSERT_NULL(error);
                s->done++;
        }
}

static void on_committed(svmd_client *c, int result, const svmd_op_result *results, size_t n,
                         const svmd_error *error, void *userdata) {
        AsyncState *s = userdata;

        ASSERT_OK(result);
        ASSERT_UEQ(n, 1);
        s->commit_id = results[0].id;
        s->committed++;
}

/* The way an application's own loop would drive it: poll the fd, then process. */
static void run_until_idle(svmd_client *c) {
        while (svmd_client_pending(c) > 0) {
                struct pollfd p = { .fd = svmd_client_get_fd(c), .events = POLLIN };
                uint64_t t;

                ASSERT_OK(svmd_client_get_timeout(c, &t));
                ASSERT_OK(svmd_client_process(c));
                if (svmd_client_pending(c) == 0)
                        break;
                ASSERT_TRUE(poll(&p, 1, 30000) >= 0);
        }
}

static void test_async(svmd_client *c) {
        svmd_error e = SVMD_ERROR_NULL;
        AsyncState s = {};
        svmd_range rg;
        int r;

        for (int i = 0; i < 3; i++) {
                r = svmd_allocate_async(c, MiB, gpus[i], "vram", NULL, on_allocated, &s, &e);
                ASSERT_SVMD_OK(r, &e);
        }
        ASSERT_UEQ(svmd_client_pending(c), 3);
        r = svmd_map_async(c, UINT64_C(999999), gpus, 1, NULL, on_mapped, &s, &e);
        ASSERT_SVMD_OK(r, &e);
        {
                svmd_op op = { .kind = SVMD_OP_ALLOCATE, .size = MiB, .gpu_id = gpus[0], .domain = "gtt" };

                r = svmd_commit_async(c, &op, 1, NULL, on_committed, &s, &e);
                ASSERT_SVMD_OK(r, &e);
        }
        run_until_idle(c);
        ASSERT_UEQ(s.allocated, 3);
        ASSERT_UEQ(s.failed, 1);
        ASSERT_UEQ(s.committed, 1);

        for (size_t i = 0; i < s.n_ids; i++) {
                r = svmd_map_async(c, s.ids[i], &gpus[4], 2, NULL, on_mapped, &s, &e);
                ASSERT_SVMD_OK(r, &e);
        }
        /* svmd_client_wait() is the blocking alternative to an own poll(). */
        while (svmd_client_pending(c) > 0) {
                ASSERT_OK(svmd_client_process(c));
                if (svmd_client_pending(c) > 0)
                        ASSERT_TRUE(svmd_client_wait(c, 30 * 1000 * 1000) >= 0);
        }
        ASSERT_UEQ(s.mapped, 3);
        for (size_t i = 0; i < s.n_ids; i++) {
                ASSERT_TRUE(range_listed(c, s.ids[i], &rg));
                ASSERT_UEQ(rg.n_mapped, 2);
        }
        /* Pipelined: every Unmap and Free in flight at once, one of them for a range that is not there. */
        for (size_t i = 0; i < s.n_ids; i++) {
                ASSERT_SVMD_OK(svmd_unmap_async(c, s.ids[i], &gpus[5], 1, on_done, &s, &e), &e);
                ASSERT_SVMD_OK(svmd_free_async(c, s.ids[i], on_done, &s, &e), &e);
        }
        ASSERT_SVMD_OK(svmd_free_async(c, s.commit_id, on_done, &s, &e), &e);
        ASSERT_SVMD_OK(svmd_free_async(c, UINT64_C(999999), on_done, &s, &e), &e);
        ASSERT_UEQ(svmd_client_pending(c), 2 * s.n_ids + 2);
        run_until_idle(c);
        ASSERT_UEQ(s.done, 2 * s.n_ids + 1);
        ASSERT_UEQ(s.done_failed, 1);
        for (size_t i = 0; i < s.n_ids; i++)
                ASSERT_FALSE(range_listed(c, s.ids[i], NULL));
        ASSERT_FALSE(range_listed(c, s.commit_id, NULL));
        r = svmd_free_async(c, 1, NULL, NULL, &e);
        ASSERT_SVMD_ERROR(r, &e, EINVAL, "org.freedesktop.DBus.Error.InvalidArgs");
        r = svmd_unmap_async(c, 1, gpus, SVMD_MAX_GPUS + 1, on_done, &s, &e);
        ASSERT_SVMD_ERROR(r, &e, E2BIG, "org.freedesktop.DBus.Error.InvalidArgs");
        ASSERT_UEQ(svmd_client_pending(c), 0);

        r = svmd_allocate_async(c, MiB, gpus[0], "vram", NULL, NULL, NULL, &e);
        ASSERT_SVMD_ERROR(r, &e, EINVAL, "org.freedesktop.DBus.Error.InvalidArgs");
}

/* ---- signals ---- */

typedef struct SignalState {
        uint64_t created, freed;
} SignalState;

static void on_signal(svmd_client *c, const svmd_signal *sig, void *userdata) {
        SignalState *s = userdata;

        if (sig->kind == SVMD_SIGNAL_RANGE_CREATED) {
                ASSERT_STREQ(sig->name, "RangeCreated");
                s->created = sig->id;
        } else if (sig->kind == SVMD_SIGNAL_RANGE_FREED)
                s->freed = sig->id;
}

static void test_signals(svmd_client *watcher, svmd_client *actor) {
        svmd_error e = SVMD_ERROR_NULL;
        SignalState s = {};
        svmd_allocation a;
        int r;

        r = svmd_client_watch(watcher, on_signal, &s, &e);
        ASSERT_SVMD_OK(r, &e);
        r = svmd_client_watch(watcher, on_signal, &s, &e);
        ASSERT_TRUE(r == -EALREADY);
        svmd_error_free(&e);

        r = svmd_allocate(actor, MiB, gpus[0], "vram", NULL, &a, &e);
        ASSERT_SVMD_OK(r, &e);
        ASSERT_OK(svmd_free(actor, a.id, NULL));

        for (int i = 0; i < 100 && s.freed != a.id; i++) {
                ASSERT_OK(svmd_client_process(watcher));
                if (s.freed != a.id)
                        ASSERT_TRUE(svmd_client_wait(watcher, 100 * 1000) >= 0);
        }
        ASSERT_UEQ(s.created, a.id);
        ASSERT_UEQ(s.freed, a.id);
}

/* svmd_get_range(): everything about one range, for its owner and its holders; detached once freed. */
static void test_get_range(svmd_client *c, svmd_client *holder) {
        svmd_allocate_options o = { .persistent = true, .label = "info" };
        _cleanup_free_ svmd_holder *holders = NULL;
        _cleanup_free_ char *token = NULL, *bad = NULL;
        svmd_error e = SVMD_ERROR_NULL;
        svmd_grant g = { .cgroup = "machine.slice" };
        svmd_range_info info;
        svmd_attachment at;
        svmd_allocation a;
        size_t n = 99;
        int r;

        r = svmd_allocate(c, 2 * MiB, gpus[1], "vram", &o, &a, &e);
        ASSERT_SVMD_OK(r, &e);
        r = svmd_get_range(c, a.id, &info, &holders, &n, &e);
        ASSERT_SVMD_OK(r, &e);
        ASSERT_EQ(info.range.id, a.id);
        ASSERT_EQ(info.range.va, a.va);
        ASSERT_EQ(info.range.size, 2 * MiB);
        ASSERT_STREQ(info.range.domain, "vram");
        ASSERT_EQ(info.range.home_gpu, gpus[1]);
        ASSERT_EQ(info.range.flags, SVMD_RANGE_FLAG_WRITABLE);
        ASSERT_STREQ(info.range.label, "info");
        ASSERT_STREQ(info.range.state, "active");
        ASSERT_EQ(info.range.owner_uid, (uint32_t) getuid());
        ASSERT_TRUE(info.persistent && !info.detached);
        ASSERT_EQ(info.n_holders, 0);
        ASSERT_EQ(n, 0);

        /* A grant's cgroup is an absolute path prefix: refused before anything is sent. */
        r = svmd_share(c, a.id, &g, &bad, &e);
        ASSERT_SVMD_ERROR(r, &e, EINVAL, "org.freedesktop.DBus.Error.InvalidArgs");
        ASSERT_NULL(bad);

        r = svmd_share(c, a.id, NULL, &token, &e);
        ASSERT_SVMD_OK(r, &e);
        r = svmd_attach(holder, token, &at, &e);
        ASSERT_SVMD_OK(r, &e);
        close(at.fd);
        r = svmd_free(c, a.id, &e);
        ASSERT_SVMD_OK(r, &e);
        free(holders);
        holders = NULL;
        r = svmd_get_range(c, a.id, &info, &holders, &n, &e);
        ASSERT_SVMD_OK(r, &e);
        ASSERT_TRUE(info.detached);
        ASSERT_EQ(info.n_holders, 1);
        ASSERT_EQ(n, 1);
        ASSERT_EQ(holders[0].uid, (uint32_t) getuid());
        r = svmd_get_range(holder, a.id, &info, NULL, NULL, &e);
        ASSERT_SVMD_OK(r, &e);
        ASSERT_TRUE(info.detached && info.n_holders == 1);

        r = svmd_release(holder, a.id, &e);
        ASSERT_SVMD_OK(r, &e);
        r = svmd_get_range(c, a.id, &info, NULL, NULL, &e);
        ASSERT_SVMD_ERROR(r, &e, ENOENT, "org.svmd1.Error.NoSuchRange");
        r = svmd_get_range(c, a.id, NULL, NULL, NULL, &e);
        ASSERT_SVMD_ERROR(r, &e, EINVAL, "org.freedesktop.DBus.Error.InvalidArgs");
}

/* ---- revocation with a deadline: a holder on the direct socket that releases ---- */

typedef struct RevokeState {
        uint64_t id;
        unsigned requested, finished;
        uint32_t uid, acknowledged, forced;
        uint64_t deadline_usec;
} RevokeState;

static void on_revoke(svmd_client *c, const svmd_signal *sig, void *userdata) {
        RevokeState *s = userdata;

        if (sig->id != s->id)
                return;
        if (sig->kind == SVMD_SIGNAL_REVOKE_REQUESTED) {
                ASSERT_STREQ(sig->name, "RevokeRequested");
                s->requested++;
                s->uid = sig->uid;
                s->deadline_usec = sig->deadline_usec;
        } else if (sig->kind == SVMD_SIGNAL_REVOKE_FINISHED) {
                ASSERT_STREQ(sig->name, "RevokeFinished");
                s->finished++;
                s->acknowledged = sig->acknowledged;
                s->forced = sig->forced;
        }
}

static void process_until(svmd_client *c, const unsigned *counter) {
        for (int i = 0; i < 100 && *counter == 0; i++) {
                ASSERT_OK(svmd_client_process(c));
                if (*counter == 0)
                        ASSERT_TRUE(svmd_client_wait(c, 100 * 1000) >= 0);
        }
        ASSERT_TRUE(*counter > 0);
}

static void test_revoke_deadline(void) {
        svmd_client *owner = connect_client(SVMD_CLIENT_NO_DIRECT), *holder = connect_client(SVMD_CLIENT_DIRECT_ONLY);
        svmd_allocate_options o = { .persistent = true };
        _cleanup_free_ svmd_revoking *revoking = NULL;
        _cleanup_free_ char *token = NULL;
        svmd_error e = SVMD_ERROR_NULL;
        RevokeState os = {}, hs = {};
        svmd_attachment at;
        svmd_allocation a;
        uint64_t deadline;
        unsigned holders = 99;
        size_t n = 99;
        int r;

        r = svmd_allocate(owner, MiB, gpus[0], "host", &o, &a, &e);
        ASSERT_SVMD_OK(r, &e);
        os.id = hs.id = a.id;
        ASSERT_OK(svmd_client_watch(owner, on_revoke, &os, NULL));
        ASSERT_OK(svmd_client_watch(holder, on_revoke, &hs, NULL));
        r = svmd_share(owner, a.id, NULL, &token, &e);
        ASSERT_SVMD_OK(r, &e);
        r = svmd_attach(holder, token, &at, &e);
        ASSERT_SVMD_OK(r, &e);
        close(at.fd);

        r = svmd_revoke(owner, a.id, SVMD_REVOKE_ALL_HOLDERS, 0, NULL, NULL, &e);
        ASSERT_SVMD_ERROR(r, &e, EINVAL, "org.freedesktop.DBus.Error.InvalidArgs");
        r = svmd_revoke(owner, a.id, SVMD_REVOKE_ALL_HOLDERS, 30 * 1000000ULL, &holders, &deadline, &e);
        ASSERT_SVMD_OK(r, &e);
        ASSERT_UEQ(holders, 1);
        r = svmd_get_revoking(owner, a.id, &revoking, &n, &e);
        ASSERT_SVMD_OK(r, &e);
        ASSERT_UEQ(n, 1);
        ASSERT_UEQ(revoking[0].uid, (uint32_t) getuid());
        ASSERT_UEQ(revoking[0].deadline_usec, deadline);

        /* The holder hears it on the direct socket, and releases. */
        process_until(holder, &hs.requested);
        ASSERT_UEQ(hs.requested, 1);
        ASSERT_UEQ(hs.uid, (uint32_t) getuid());
        ASSERT_UEQ(hs.deadline_usec, deadline);
        r = svmd_release(holder, a.id, &e);
        ASSERT_SVMD_OK(r, &e);
        process_until(owner, &os.finished);
        ASSERT_UEQ(os.finished, 1);
        ASSERT_UEQ(os.acknowledged, 1);
        ASSERT_UEQ(os.forced, 0);
        free(revoking);
        revoking = NULL;
        r = svmd_get_revoking(owner, a.id, &revoking, &n, &e);
        ASSERT_SVMD_OK(r, &e);
        ASSERT_UEQ(n, 0);
        /* The whole-range revocation removed the token. */
        r = svmd_attach(holder, token, &at, &e);
        ASSERT_SVMD_ERROR(r, &e, ENOKEY, "org.svmd1.Error.NoSuchToken");
        r = svmd_revoke(owner, a.id, SVMD_REVOKE_ALL_HOLDERS, 1000000, &holders, NULL, &e);
        ASSERT_SVMD_OK(r, &e);
        ASSERT_UEQ(holders, 0);

        ASSERT_OK(svmd_free(owner, a.id, NULL));
        svmd_client_free(holder);
        svmd_client_free(owner);
}

int main(int argc, char *argv[]) {
        svmd_client *bus, *direct;
        svmd_error e = SVMD_ERROR_NULL;
        _cleanup_free_ svmd_gpu *g = NULL;
        int r;

        if (!getenv("SVMD_BUS_ADDRESS")) {
                fprintf(stderr, "run this test under svmd-harness\n");
                return 2;
        }
        bus = connect_client(SVMD_CLIENT_NO_DIRECT);
        r = svmd_list_gpus(bus, &g, &n_gpus, &e);
        ASSERT_SVMD_OK(r, &e);
        ASSERT_TRUE(n_gpus >= 6);
        for (size_t i = 0; i < n_gpus; i++)
                gpus[i] = g[i].gpu_id;

        TEST(test_connect);
        direct = connect_client(0);
        ASSERT_TRUE(svmd_client_is_direct(direct));

        svmd_client *clients[] = { bus, direct };
        for (size_t i = 0; i < ELEMENTSOF(clients); i++) {
                fprintf(stderr, "=== over the %s\n", i == 0 ? "bus" : "direct socket");
                test_queries(clients[i]);
                test_allocate_map_free(clients[i]);
                test_errors(clients[i]);
                test_revoke(clients[i]);
                test_batch(clients[i]);
                test_commit(clients[i]);
                test_svm(clients[i]);
                test_svm_validation(clients[i]);
                test_compat_0_1(clients[i]);
                test_async(clients[i]);
        }
        fprintf(stderr, "== test_get_range\n");
        test_get_range(bus, direct);
        test_get_range(direct, bus);
        fprintf(stderr, "== test_signals\n");
        test_signals(bus, direct);
        TEST(test_revoke_deadline);

        svmd_client_free(direct);
        svmd_client_free(bus);
        ASSERT_NULL(svmd_client_free(NULL));
        return 0;
}
