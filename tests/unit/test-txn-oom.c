/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * Every step of range and transaction code against a failing allocation, on the emulated kernel:
 *   kfdemu-run --topology tests/kfd-emu/topologies/mi300x-8.json -- test-txn-oom
 * For each operation (create a range of every domain and a batch range and map it, map, unmap,
 * free, change SVM attributes) the Nth allocation fails, for N = 1, 2, … until the operation succeeds without reaching
 * the Nth. After every failure the kernel holds exactly what it held before (the emulator's dump) and
 * so do svmd's tables, counters and VA space (docs/architecture.md, "Transactions": a step that
 * succeeded always has its undo recorded).
 *
 * The allocator is the linker's: the binary is linked with --wrap for malloc and its relatives, so
 * every allocation of the daemon's code goes through fail_now() below; production code is unchanged.
 */

#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "client.h"
#include "emu-kernel.h"
#include "gpu.h"
#include "manager.h"
#include "range-svm.h"
#include "range.h"
#include "str-table.h"
#include "transaction.h"
#include "unit-assert.h"

#define MIB (1024ULL * 1024ULL)

/* ---- the failing allocator ---- */

static unsigned countdown;      /* 0: disarmed; else the allocation that fails */
static bool fired;

static bool fail_now(void) {
        if (countdown == 0)
                return false;
        if (--countdown > 0)
                return false;
        fired = true;
        errno = ENOMEM;
        return true;
}

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void *__real_reallocarray(void *p, size_t n, size_t size);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
int __real_vasprintf(char **ret, const char *format, va_list ap);

void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
void *__wrap_reallocarray(void *p, size_t n, size_t size);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);
int __wrap_vasprintf(char **ret, const char *format, va_list ap);
int __wrap_asprintf(char **ret, const char *format, ...);

void *__wrap_malloc(size_t n) {
        return fail_now() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t size) {
        return fail_now() ? NULL : __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t n) {
        return fail_now() ? NULL : __real_realloc(p, n);
}

void *__wrap_reallocarray(void *p, size_t n, size_t size) {
        return fail_now() ? NULL : __real_reallocarray(p, n, size);
}

char *__wrap_strdup(const char *s) {
        return fail_now() ? NULL : __real_strdup(s);
}

char *__wrap_strndup(const char *s, size_t n) {
        return fail_now() ? NULL : __real_strndup(s, n);
}

int __wrap_vasprintf(char **ret, const char *format, va_list ap) {
        return fail_now() ? -1 : __real_vasprintf(ret, format, ap);
}

int __wrap_asprintf(char **ret, const char *format, ...) {
        va_list ap;
        int r;

        va_start(ap, format);
        r = __wrap_vasprintf(ret, format, ap);
        va_end(ap);
        return r;
}

/* ---- svmd over the emulated kernel ---- */

static Manager *m;
static EmuKernel *emu;

/* What must be back after a failed operation: the kernel's state and svmd's. */
typedef struct State {
        char *dump;
        size_t n_ranges;
        uint64_t bytes_allocated, n_persistent;
        uint64_t batch_users;   /* pins of host ranges by batch ranges, over every range */
        VaSpaceStats va;
        uint64_t gpu[64][3];
        Range *first;           /* in id order */
} State;

static void state_get(State *ret) {
        json_t *v = NULL;

        ASSERT_OK(emu_kernel_dump(emu, &v));
        json_object_del(v, "ioctls");
        json_object_del(v, "ioctls_unknown");
        json_object_del(v, "faults");
        *ret = (State) {
                .dump = json_dumps(v, JSON_SORT_KEYS | JSON_INDENT(1)),
                .n_ranges = id_index_size(m->ranges),
                .bytes_allocated = m->bytes_allocated,
                .n_persistent = m->n_persistent,
                .first = manager_ranges_from(m, 0),
        };
        json_decref(v);
        ASSERT_NOT_NULL(ret->dump);
        for (Range *range = manager_ranges_from(m, 0); range; range = manager_ranges_next(m, range))
                ret->batch_users += range_n_batch_users(range);
        va_space_get_stats(m->va, &ret->va);
        for (size_t i = 0; i < m->n_gpus; i++) {
                ret->gpu[i][0] = m->gpus[i]->vram_allocated;
                ret->gpu[i][1] = m->gpus[i]->gtt_allocated;
                ret->gpu[i][2] = m->gpus[i]->bytes_mapped;
        }
}

static void state_assert_equal(const State *a, const State *b, const char *what, unsigned n) {
        if (strcmp(a->dump, b->dump) != 0) {
                fprintf(stderr, "%s, allocation %u failing: the kernel's state changed.\nbefore: %s\nafter: %s\n",
                        what, n, a->dump, b->dump);
                abort();
        }
        if (a->n_ranges != b->n_ranges ||
            a->bytes_allocated != b->bytes_allocated || a->n_persistent != b->n_persistent ||
            a->batch_users != b->batch_users ||
            a->first != b->first || memcmp(&a->va, &b->va, sizeof(a->va)) != 0 ||
            memcmp(a->gpu, b->gpu, sizeof(a->gpu)) != 0) {
                fprintf(stderr, "%s, allocation %u failing: svmd's tables changed (ranges %zu → %zu, "
                        "bytes %" PRIu64 " → %" PRIu64 ", VA used %" PRIu64 " → %" PRIu64 ", batch pins %" PRIu64
                        " → %" PRIu64 ").\n",
                        what, n, a->n_ranges, b->n_ranges, a->bytes_allocated, b->bytes_allocated,
                        a->va.bytes_used, b->va.bytes_used, a->batch_users, b->batch_users);
                abort();
        }
        ASSERT_OK(va_space_verify(m->va));
        ASSERT_OK(id_index_verify(m->ranges));
}

static void state_done(State *s) {
        free(s->dump);
        *s = (State) {};
}

static uint64_t all_gpus(void) {
        return m->n_gpus == 64 ? UINT64_MAX : (UINT64_C(1) << m->n_gpus) - 1;
}

/* ---- operations, each one transaction ---- */

typedef struct Op {
        const char *name;
        RangeDomain domain;     /* of the range the operation creates or works on */
        int (*setup)(const struct Op *op, Range **ret);        /* unarmed; may be NULL */
        int (*run)(const struct Op *op, Range *range, sd_bus_error *error);
        int (*step)(Transaction *t, Range *range, sd_bus_error *error);        /* for run_step */
        const char *label;      /* of the range run_create_and_map() creates: its RangeExtra (range.h) */
} Op;

static int create_range(const Op *op, Range **ret, Transaction *t, sd_bus_error *error) {
        KfdSvmAttrs svm;
        RangeSpec spec = {
                .size = 2 * MIB,
                .home = 0,
                .domain = op->domain,
                .flags = RANGE_FLAG_WRITABLE,
                .label = op->label,
                .restore_fd = -1,
        };
        int r;

        if (op->domain == RANGE_DOMAIN_SVM) {
                svm_attrs_initial(m, KFD_IOCTL_SVM_LOCATION_SYSMEM, &svm);
                spec.svm = &svm;
        }
        r = range_create(t, &spec, ret, error);
        if (r >= 0)
                ASSERT_TRUE(streq_ptr(range_label(*ret), op->label));
        return r;
}

static int run_create_and_map(const Op *op, Range *unused, sd_bus_error *error) {
        _cleanup_(transaction_freep) Transaction *t = NULL;
        Range *range = NULL;
        int r;

        r = transaction_new(&t, m);
        if (r < 0)
                return r;
        r = create_range(op, &range, t, error);
        if (r >= 0)
                r = range_map(t, range, all_gpus(), error);
        return transaction_finish(t, r, error);
}

static int setup_range(const Op *op, Range **ret) {
        _cleanup_(transaction_freep) Transaction *t = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        ASSERT_OK(transaction_new(&t, m));
        r = create_range(op, ret, t, &error);
        ASSERT_OK(transaction_finish(t, r, &error));
        sd_bus_error_free(&error);
        return 0;
}

static int setup_mapped_range(const Op *op, Range **ret) {
        _cleanup_(transaction_freep) Transaction *t = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        ASSERT_OK(transaction_new(&t, m));
        r = create_range(op, ret, t, &error);
        if (r >= 0)
                r = range_map(t, *ret, all_gpus(), &error);
        ASSERT_OK(transaction_finish(t, r, &error));
        sd_bus_error_free(&error);
        return 0;
}

/* The step of an operation on an existing range, in a transaction of its own. */
static int step_map(Transaction *t, Range *range, sd_bus_error *error) {
        return range_map(t, range, all_gpus(), error);
}

static int step_unmap(Transaction *t, Range *range, sd_bus_error *error) {
        return range_unmap(t, range, all_gpus(), error);
}

static int step_svm_preferred(Transaction *t, Range *range, sd_bus_error *error) {
        struct kfd_ioctl_svm_attribute a = {
                .type = KFD_IOCTL_SVM_ATTR_PREFERRED_LOC,
                .value = m->gpus[0]->gpu_id,
        };

        return range_svm_change(t, range, &a, 1, error);
}

static int run_step(const Op *op, Range *range, sd_bus_error *error) {
        _cleanup_(transaction_freep) Transaction *t = NULL;
        int r;

        r = transaction_new(&t, m);
        if (r < 0)
                return r;
        return transaction_finish(t, op->step(t, range, error), error);
}

/* A batch range over two pieces of a host range made unarmed (its setup), mapped to every GPU. */
static int setup_host_range(const Op *op, Range **ret) {
        return setup_range(&(const Op) { .domain = RANGE_DOMAIN_HOST }, ret);
}

static int run_create_batch(const Op *op, Range *host, sd_bus_error *error) {
        _cleanup_(transaction_freep) Transaction *t = NULL;
        const RangeSpecPiece pieces[2] = {
                { .userptr = range_va(host), .size = 64 * 1024, .source = host },
                { .userptr = range_va(host) + MIB, .size = 128 * 1024, .source = host },
        };
        RangeSpec spec = {
                .size = 192 * 1024,
                .home = 0,
                .domain = RANGE_DOMAIN_HOST,
                .flags = RANGE_FLAG_WRITABLE,
                .pieces = pieces,
                .n_pieces = 2,
                .restore_fd = -1,
        };
        Range *range = NULL;
        int r;

        r = transaction_new(&t, m);
        if (r < 0)
                return r;
        r = range_create(t, &spec, &range, error);
        if (r >= 0)
                r = range_map(t, range, all_gpus(), error);
        return transaction_finish(t, r, error);
}

/*
 * The rare fields of a range live in a RangeExtra allocated on first use (range.h): each first use
 * on a range without one fails cleanly when that allocation does, and leaves the range as it was
 * (a label's: create+map labelled gtt).
 */
static int run_hold(const Op *op, Range *range, sd_bus_error *error) {
        Hold *h = NULL;
        int r;

        r = hold_new_orphan(range, 4242, true, &h);
        if (r < 0)
                ASSERT_TRUE(!range_holds(range));
        else
                ASSERT_TRUE(range_holds(range) == h);
        return r;
}

static int run_token(const Op *op, Range *range, sd_bus_error *error) {
        Token *tk = NULL;
        int r;

        r = token_restore(m, range, "0123456789abcdef0123456789abcdef", &tk);
        if (r < 0)
                ASSERT_TRUE(!range_tokens(range) && !str_table_get(m->tokens, "0123456789abcdef0123456789abcdef"));
        else
                ASSERT_TRUE(range_tokens(range) == tk);
        return r;
}

static int run_lose_contents(const Op *op, Range *range, sd_bus_error *error) {
        char *reason = strdup("GPU 0x1 was reset");
        int r;

        r = reason ? range_set_lost_reason(range, reason) : -ENOMEM;
        if (r < 0)
                ASSERT_TRUE(!range_lost_reason(range));
        else
                ASSERT_TRUE(streq_ptr(range_lost_reason(range), "GPU 0x1 was reset"));
        return r;
}

/* Free every range (unarmed), so that each attempt starts from nothing. */
static void free_all(void) {
        _cleanup_(transaction_freep) Transaction *t = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r = 0;

        /* Batch ranges first: they pin the host ranges under them until they are gone. */
        for (int batch = 1; batch >= 0; batch--) {
                ASSERT_OK(transaction_new(&t, m));
                for (Range *range = manager_ranges_from(m, 0); range && r >= 0; range = manager_ranges_next(m, range))
                        if ((range->n_pieces > 1) == batch)
                                r = range_free(t, range, &error);
                ASSERT_OK(transaction_finish(t, r, &error));
                t = transaction_free(t);
        }
        sd_bus_error_free(&error);
}

static void test_op(const Op *op, const State *empty) {
        unsigned n;

        for (n = 1;; n++) {
                sd_bus_error error = SD_BUS_ERROR_NULL;
                Range *range = NULL;
                State before, after;
                int r;

                if (op->setup)
                        ASSERT_OK(op->setup(op, &range));
                state_get(&before);

                fired = false;
                countdown = n;
                r = op->run(op, range, &error);
                countdown = 0;

                if (r < 0) {
                        ASSERT_TRUE(fired);
                        state_get(&after);
                        state_assert_equal(&before, &after, op->name, n);
                        state_done(&after);
                } else
                        ASSERT_TRUE(sd_bus_error_is_set(&error) == 0);
                sd_bus_error_free(&error);
                state_done(&before);

                free_all();
                state_get(&before);
                state_assert_equal(empty, &before, op->name, n);
                state_done(&before);

                if (r >= 0 && !fired)
                        break;
        }
        fprintf(stderr, "%s: %u allocations, each failing in turn: nothing leaked.\n", op->name, n - 1);
        ASSERT_TRUE(n > 1);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        (void) remove(path);
        return 0;
}

int main(int argc, char *argv[]) {
        char dir[] = "/tmp/test-txn-oom-XXXXXX";
        State empty;
        const Op ops[] = {
                { "create+map vram",    RANGE_DOMAIN_VRAM, NULL,               run_create_and_map },
                { "create+map gtt",     RANGE_DOMAIN_GTT,  NULL,               run_create_and_map },
                { "create+map host",    RANGE_DOMAIN_HOST, NULL,               run_create_and_map },
                { "create+map svm",     RANGE_DOMAIN_SVM,  NULL,               run_create_and_map },
                { "create+map batch",   RANGE_DOMAIN_HOST, setup_host_range,   run_create_batch },
                { "map vram",           RANGE_DOMAIN_VRAM, setup_range,        run_step, step_map },
                { "map host",           RANGE_DOMAIN_HOST, setup_range,        run_step, step_map },
                { "map svm",            RANGE_DOMAIN_SVM,  setup_range,        run_step, step_map },
                { "unmap vram",         RANGE_DOMAIN_VRAM, setup_mapped_range, run_step, step_unmap },
                { "unmap svm",          RANGE_DOMAIN_SVM,  setup_mapped_range, run_step, step_unmap },
                { "free vram",          RANGE_DOMAIN_VRAM, setup_mapped_range, run_step, range_free },
                { "free host",          RANGE_DOMAIN_HOST, setup_mapped_range, run_step, range_free },
                { "free svm",           RANGE_DOMAIN_SVM,  setup_mapped_range, run_step, range_free },
                { "set svm attributes", RANGE_DOMAIN_SVM,  setup_mapped_range, run_step, step_svm_preferred },
                { "create+map labelled gtt", RANGE_DOMAIN_GTT, NULL,           run_create_and_map, .label = "weights" },
                { "hold on gtt",        RANGE_DOMAIN_GTT,  setup_range,        run_hold },
                { "token on gtt",       RANGE_DOMAIN_GTT,  setup_range,        run_token },
                { "contents lost vram", RANGE_DOMAIN_VRAM, setup_range,        run_lose_contents },
        };
        ManagerOptions o = {
                .config_path = "/nonexistent/svmd.conf",
                .bus_kind = BUS_KIND_NONE,
                .runtime_dir = dir,
        };

        ASSERT_NOT_NULL(getenv("KFDEMU_DIR"));
        ASSERT_NOT_NULL(mkdtemp(dir));
        ASSERT_OK(emu_kernel_attach(getenv("KFDEMU_DIR"), &emu));
        ASSERT_OK(manager_new(&m, &o));
        ASSERT_OK(manager_start(m));
        state_get(&empty);

        for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
                if (ops[i].domain == RANGE_DOMAIN_SVM && !gpu_svm_capable(m, 0)) {
                        fprintf(stderr, "%s: skipped, GPU 0 has no SVM.\n", ops[i].name);
                        continue;
                }
                test_op(&ops[i], &empty);
        }

        state_done(&empty);
        manager_free(m);
        emu_kernel_detach(emu);
        (void) nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS); /* the runtime directory: socket, journal */
        return 0;
}
