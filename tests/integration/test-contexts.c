/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * KFD contexts (docs/architecture.md, "KFD contexts"), checked in the
 * emulator's kernel state: which KFD context holds the buffer at each range's
 * VA.
 *
 *   test-contexts spread N   svmd runs N contexts (interface 1.19, "kfd-contexts": N ≥ 3):
 *                            two tenants' VRAM/GTT ranges live in two different secondary
 *                            contexts, each tenant's in one; host ranges in the primary;
 *                            map, unmap, export, share and free work across contexts; after
 *                            a kill -9 every persistent range is back, again placed by
 *                            tenant; then, restarted with "kfd-contexts": 1, every range is
 *                            back in the primary context with its bytes; after freeing, no
 *                            buffer is left in any context. The KfdContext(s) properties
 *                            agree with the kernel's state.
 *   test-contexts fallback   svmd restarted while the second CREATE_PROCESS fails: it runs
 *                            with the primary and one secondary context ("kfd-contexts": 3),
 *                            and both tenants' ranges share that one; nothing is left over.
 *   test-contexts one        svmd runs one context (below 1.19, or "kfd-contexts": 1):
 *                            everything in the primary, no secondary context exists.
 */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "svmd-protocol.h"
#include "svmd-test.h"

#define KiB (UINT64_C(1) << 10)
#define MiB (UINT64_C(1) << 20)
#define PRIMARY 0xFFFF
#define TENANT_UID 1000

static TestContext T;

typedef struct Tenant {
        uint64_t vram, gtt, host;       /* range ids */
        uint64_t vram_va, gtt_va, host_va;
} Tenant;

/* The context_id of the KFD context holding a buffer at va (PRIMARY for the primary), -1: none. */
static int context_of_va(uint64_t va) {
        json_t *d = NULL, *p, *h;
        size_t i, j;
        int ret = -1, found = 0;

        ASSERT_OK(emu_kernel_dump(T.emu, &d));
        json_array_foreach(json_object_get(d, "processes"), i, p)
                json_array_foreach(json_object_get(p, "handles"), j, h)
                        if ((uint64_t) json_integer_value(json_object_get(h, "va")) == va) {
                                ret = (int) json_integer_value(json_object_get(p, "context_id"));
                                found++;
                        }
        json_decref(d);
        /* One range, one buffer, one context: never two handles at one VA. */
        ASSERT_TRUE(found <= 1);
        return ret;
}

/* The secondary contexts of the running svmd. */
static size_t n_secondary(void) {
        json_t *d = NULL, *p;
        size_t i, n = 0;

        ASSERT_OK(emu_kernel_dump(T.emu, &d));
        json_array_foreach(json_object_get(d, "processes"), i, p)
                if (json_is_true(json_object_get(p, "secondary")))
                        n++;
        json_decref(d);
        return n;
}

static uint32_t manager_contexts(void) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        uint32_t n = 0;

        ASSERT_OK(sd_bus_get_property_trivial(T.bus, SVMD_BUS_NAME, SVMD_MANAGER_PATH, SVMD_MANAGER_INTERFACE,
                                              "KfdContexts", &error, 'u', &n));
        return n;
}

static uint32_t range_context(uint64_t id) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        char path[64];
        uint32_t c = UINT32_MAX;

        snprintf(path, sizeof(path), "/org/svmd1/range/%" PRIu64, id);
        ASSERT_OK(sd_bus_get_property_trivial(T.bus, SVMD_BUS_NAME, path, SVMD_RANGE_INTERFACE, "KfdContext", &error,
                                              'u', &c));
        return c;
}

/* Handles in every context and live buffers, once svmd and the fd store let go (≤ 5 s). */
static void assert_kernel_empty(void) {
        size_t handles = 0, buffers = 0;

        for (int tries = 0; tries < 500; tries++) {
                json_t *d = NULL, *p;
                size_t i;

                ASSERT_OK(emu_kernel_dump(T.emu, &d));
                handles = 0;
                json_array_foreach(json_object_get(d, "processes"), i, p)
                        handles += json_array_size(json_object_get(p, "handles"));
                buffers = json_array_size(json_object_get(d, "buffers"));
                json_decref(d);
                if (handles == 0 && buffers == 0)
                        return;
                nanosleep(&(struct timespec) { 0, 10 * 1000 * 1000 }, NULL);
        }
        fprintf(stderr, "left in the kernel: %zu handles, %zu buffers\n", handles, buffers);
        abort();
}

static void allocate_set(sd_bus *bus, Tenant *t) {
        t->vram = test_allocate(bus, 2 * MiB, T.gpus[0], "vram", true, &t->vram_va);
        t->gtt = test_allocate(bus, 64 * KiB, T.gpus[1 % T.n_gpus], "gtt", true, &t->gtt_va);
        t->host = test_allocate(bus, 64 * KiB, T.gpus[0], "host", true, &t->host_va);
}

static void free_set(sd_bus *bus, const Tenant *t) {
        test_free(bus, t->vram);
        test_free(bus, t->gtt);
        test_free(bus, t->host);
}

/* ---- the second tenant, a child of uid TENANT_UID driven over a pipe ---- */

static void child_main(int in, int out) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = test_connect(false);
        Tenant t = {};
        char cmd;

        allocate_set(bus, &t);
        ASSERT_TRUE(write(out, &t, sizeof(t)) == (ssize_t) sizeof(t));
        while (read(in, &cmd, 1) == 1) {
                if (cmd == 'f')
                        free_set(bus, &t);
                ASSERT_TRUE(write(out, &cmd, 1) == 1);
        }
}

static TestChild spawn_tenant(Tenant *ret) {
        TestChild c = test_spawn(TENANT_UID, child_main);

        ASSERT_TRUE(read(c.from_child, ret, sizeof(*ret)) == (ssize_t) sizeof(*ret));
        return c;
}

static void tell(TestChild *c, char cmd) {
        char ack;

        ASSERT_TRUE(write(c->to_child, &cmd, 1) == 1);
        ASSERT_TRUE(read(c->from_child, &ack, 1) == 1 && ack == cmd);
}

static void finish(TestChild *c) {
        int status;

        close(c->to_child);
        close(c->from_child);
        ASSERT_TRUE(waitpid(c->pid, &status, 0) == c->pid);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* Each tenant's VRAM and GTT in one secondary context, the two tenants in different ones; host in the primary. */
static void assert_placement(const Tenant *a, const Tenant *b, bool spread) {
        int ca = context_of_va(a->vram_va), cb = context_of_va(b->vram_va);

        ASSERT_TRUE(ca >= 0 && cb >= 0);
        ASSERT_EQ(context_of_va(a->gtt_va), ca);
        ASSERT_EQ(context_of_va(b->gtt_va), cb);
        ASSERT_EQ(context_of_va(a->host_va), PRIMARY);
        ASSERT_EQ(context_of_va(b->host_va), PRIMARY);
        /* The property names svmd's index of the context: 0 is the primary, the others differ like the kernel's. */
        ASSERT_EQ(range_context(a->host), 0);
        ASSERT_EQ(range_context(b->host), 0);
        ASSERT_EQ(range_context(a->vram), range_context(a->gtt));
        ASSERT_EQ(range_context(b->vram), range_context(b->gtt));
        ASSERT_EQ(range_context(a->vram) == 0, ca == PRIMARY);
        ASSERT_EQ(range_context(b->vram) == 0, cb == PRIMARY);
        ASSERT_EQ(range_context(a->vram) == range_context(b->vram), ca == cb);
        if (spread) {
                ASSERT_TRUE(ca != PRIMARY && cb != PRIMARY);
                ASSERT_TRUE(ca != cb);
        } else {
                ASSERT_EQ(ca, PRIMARY);
                ASSERT_EQ(cb, PRIMARY);
        }
}

static void map_unmap(const Tenant *t) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_free_ char *mapped = NULL, *unmapped = NULL;
        uint32_t ids[2] = { T.gpus[0], T.gpus[1] };
        char want[128], unwant[128];
        int r;

        /* test_kernel_mappings(): "va size [gpu …]", gpus in ascending order. */
        snprintf(want, sizeof(want), "0x%" PRIx64 " %" PRIu64 " [ %" PRIu32 " %" PRIu32 " ]", t->vram_va, 2 * MiB,
                 MIN(ids[0], ids[1]), MAX(ids[0], ids[1]));
        snprintf(unwant, sizeof(unwant), "0x%" PRIx64 " %" PRIu64 " [ ]", t->vram_va, 2 * MiB);
        r = test_call(T.bus, "Map", &error, NULL, "taua{sv}", t->vram, 2, ids[0], ids[1], 0);
        ASSERT_BUS_OK(r, &error);
        mapped = test_kernel_mappings(&T);
        ASSERT_TRUE(strstr(mapped, want));
        r = test_call(T.bus, "Unmap", &error, NULL, "tau", t->vram, 2, ids[0], ids[1]);
        ASSERT_BUS_OK(r, &error);
        unmapped = test_kernel_mappings(&T);
        ASSERT_TRUE(strstr(unmapped, unwant));
        sd_bus_error_free(&error);
}

/* Export reads the bytes of a secondary context's buffer through its dma-buf. */
static void export_bytes(const Tenant *t) {
        uint64_t size = 0;
        int fd = test_export(T.bus, t->vram, &size);
        uint8_t *p;

        ASSERT_TRUE(fd >= 0);
        ASSERT_EQ(size, 2 * MiB);
        p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        ASSERT_TRUE(p != MAP_FAILED);
        memcpy(p, "contexts", 8);
        ASSERT_OK(munmap(p, size));
        close(fd);
}

static void check_bytes(const Tenant *t) {
        uint64_t size = 0;
        int fd = test_export(T.bus, t->vram, &size);
        uint8_t *p;

        ASSERT_TRUE(fd >= 0);
        p = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
        ASSERT_TRUE(p != MAP_FAILED);
        ASSERT_TRUE(memcmp(p, "contexts", 8) == 0);
        ASSERT_OK(munmap(p, size));
        close(fd);
}

static void fallback(void) {
        Tenant a = {}, b = {};
        TestChild c;
        int ca;

        ASSERT_EQ(manager_contexts(), 3);
        test_fault(&T, "ioctl=CREATE_PROCESS nth=2 errno=ENOMEM");
        test_kill_and_wait_restart(&T);
        ASSERT_EQ(test_faults_fired(&T), 1);
        test_fault_clear(&T);
        /* The context that failed half-way is gone with its fd. */
        ASSERT_EQ(manager_contexts(), 2);
        ASSERT_EQ(n_secondary(), 1);

        allocate_set(T.bus, &a);
        c = spawn_tenant(&b);
        ca = context_of_va(a.vram_va);
        ASSERT_TRUE(ca >= 0 && ca != PRIMARY);
        ASSERT_EQ(context_of_va(b.vram_va), ca);
        ASSERT_EQ(context_of_va(b.gtt_va), ca);
        ASSERT_EQ(range_context(a.vram), 1);
        ASSERT_EQ(range_context(b.vram), 1);
        map_unmap(&b);
        free_set(T.bus, &a);
        tell(&c, 'f');
        finish(&c);
        assert_kernel_empty();
}

int main(int argc, char *argv[]) {
        bool spread = argc >= 2 && strcmp(argv[1], "spread") == 0;
        unsigned n = argc >= 3 ? (unsigned) strtoul(argv[2], NULL, 10) : 1;
        _cleanup_free_ char *before = NULL, *after = NULL;
        Tenant a = {}, b = {};
        TestChild c;

        ASSERT_TRUE(argc >= 2);
        test_setup(&T);
        if (strcmp(argv[1], "fallback") == 0) {
                fallback();
                test_teardown(&T);
                printf("contexts: ok\n");
                return 0;
        }
        ASSERT_TRUE(spread || strcmp(argv[1], "one") == 0);
        ASSERT_TRUE(T.n_gpus >= 2);
        ASSERT_EQ(n_secondary(), spread ? n - 1 : 0);
        ASSERT_EQ(manager_contexts(), spread ? n : 1);

        allocate_set(T.bus, &a);
        c = spawn_tenant(&b);
        assert_placement(&a, &b, spread);
        printf("placement: tenant 0 in context 0x%x, tenant %u in context 0x%x\n",
               (unsigned) context_of_va(a.vram_va), TENANT_UID, (unsigned) context_of_va(b.vram_va));

        map_unmap(&a);
        map_unmap(&b);
        export_bytes(&a);

        before = test_list_ranges(T.bus);
        test_kill_and_wait_restart(&T);
        after = test_list_ranges(T.bus);
        ASSERT_STREQ(after, before);
        ASSERT_EQ(n_secondary(), spread ? n - 1 : 0);
        assert_placement(&a, &b, spread);
        check_bytes(&a);
        map_unmap(&b);
        printf("after the restart: tenant 0 in context 0x%x, tenant %u in context 0x%x\n",
               (unsigned) context_of_va(a.vram_va), TENANT_UID, (unsigned) context_of_va(b.vram_va));

        if (spread) {
                /* The journal does not record contexts: with one context, everything comes back in the primary. */
                const char *path = getenv("SVMD_TEST_CONFIG");
                FILE *f;

                ASSERT_TRUE(path);
                ASSERT_TRUE((f = fopen(path, "we")));
                ASSERT_TRUE(fputs("{ \"limits\": { \"kfd-contexts\": 1 } }\n", f) >= 0);
                ASSERT_OK(fclose(f));
                test_kill_and_wait_restart(&T);
                free(after);
                after = test_list_ranges(T.bus);
                ASSERT_STREQ(after, before);
                ASSERT_EQ(n_secondary(), 0);
                ASSERT_EQ(manager_contexts(), 1);
                assert_placement(&a, &b, false);
                check_bytes(&a);
                map_unmap(&b);
        }

        free_set(T.bus, &a);
        tell(&c, 'f');
        finish(&c);
        assert_kernel_empty();
        test_teardown(&T);
        printf("contexts: ok\n");
        return 0;
}
