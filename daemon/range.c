/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bus-util.h"
#include "client.h"
#include "context.h"
#include "gpu.h"
#include "health.h"
#include "kfd-ioctl.h"
#include "kfd-uapi.h"
#include "log.h"
#include "manager.h"
#include "persist.h"
#include "range-svm.h"
#include "range.h"
#include "size-util.h"
#include "slab.h"
#include "str-table.h"
#include "svmd-protocol.h"
#include "transaction.h"

static const char *const domain_table[_RANGE_DOMAIN_MAX] = {
        [RANGE_DOMAIN_VRAM] = SVMD_DOMAIN_VRAM,
        [RANGE_DOMAIN_GTT] = SVMD_DOMAIN_GTT,
        [RANGE_DOMAIN_HOST] = SVMD_DOMAIN_HOST,
        [RANGE_DOMAIN_SVM] = SVMD_DOMAIN_SVM,
};

static const char *const state_table[_RANGE_STATE_MAX] = {
        [RANGE_STATE_ACTIVE] = "active",
        [RANGE_STATE_DEGRADED] = "degraded",
};

static const struct {
        RangeFlag flag;
        const char *name;
        uint32_t kfd;
} flag_table[] = {
        { RANGE_FLAG_WRITABLE,      SVMD_FLAG_WRITABLE,      KFD_IOC_ALLOC_MEM_FLAGS_WRITABLE },
        { RANGE_FLAG_EXECUTABLE,    SVMD_FLAG_EXECUTABLE,    KFD_IOC_ALLOC_MEM_FLAGS_EXECUTABLE },
        { RANGE_FLAG_PUBLIC,        SVMD_FLAG_PUBLIC,        KFD_IOC_ALLOC_MEM_FLAGS_PUBLIC },
        { RANGE_FLAG_COHERENT,      SVMD_FLAG_COHERENT,      KFD_IOC_ALLOC_MEM_FLAGS_COHERENT },
        { RANGE_FLAG_UNCACHED,      SVMD_FLAG_UNCACHED,      KFD_IOC_ALLOC_MEM_FLAGS_UNCACHED },
        { RANGE_FLAG_EXT_COHERENT,  SVMD_FLAG_EXT_COHERENT,  KFD_IOC_ALLOC_MEM_FLAGS_EXT_COHERENT },
        { RANGE_FLAG_CONTIGUOUS,    SVMD_FLAG_CONTIGUOUS,    KFD_IOC_ALLOC_MEM_FLAGS_CONTIGUOUS },
        { RANGE_FLAG_NO_SUBSTITUTE, SVMD_FLAG_NO_SUBSTITUTE, KFD_IOC_ALLOC_MEM_FLAGS_NO_SUBSTITUTE },
};

const char *range_domain_to_string(RangeDomain d) {
        if (d < 0 || d >= _RANGE_DOMAIN_MAX)
                return NULL;
        return domain_table[d];
}

RangeDomain range_domain_from_string(const char *s) {
        for (int i = 0; i < _RANGE_DOMAIN_MAX; i++)
                if (streq(domain_table[i], s))
                        return i;
        return _RANGE_DOMAIN_INVALID;
}

bool range_accounted(const Range *range) {
        return range_piece_allocated(&range->pieces[0]) || range->svm_accounted;
}

bool range_domain_is_memfd(RangeDomain d) {
        return d == RANGE_DOMAIN_HOST || d == RANGE_DOMAIN_SVM;
}

const char *range_state_to_string(RangeState s) {
        if (s >= _RANGE_STATE_MAX)
                return NULL;
        return state_table[s];
}

int range_flag_from_string(const char *s) {
        for (size_t i = 0; i < ELEMENTSOF(flag_table); i++)
                if (streq(flag_table[i].name, s))
                        return flag_table[i].flag;
        return -EINVAL;
}

const char *range_flag_to_string(RangeFlag f) {
        for (size_t i = 0; i < ELEMENTSOF(flag_table); i++)
                if (flag_table[i].flag == f)
                        return flag_table[i].name;
        return NULL;
}

int range_path(uint64_t id, char **ret) {
        return bus_path_from_id(SVMD_RANGE_PATH_PREFIX, id, ret);
}

void range_emit_changed(Range *range, const char *const *properties) {
        _cleanup_free_ char *path = NULL;

        if (!range->registered || range->manager->exiting || range_path(range->id, &path) < 0)
                return;
        manager_emit_range_properties_changed(range->manager, range, path, properties);
}

uint64_t range_mapped(const Range *range) {
        uint64_t m = UINT64_MAX;

        for (uint32_t i = 0; i < range->n_pieces; i++)
                m &= range->pieces[i].mapped;
        return range->n_pieces > 0 ? m : 0;
}

uint64_t range_mapped_any(const Range *range) {
        uint64_t m = 0;

        for (uint32_t i = 0; i < range->n_pieces; i++)
                m |= range->pieces[i].mapped;
        return m;
}

static uint32_t kfd_flags(RangeDomain domain, uint16_t flags) {
        uint32_t f = 0;

        switch (domain) {
        case RANGE_DOMAIN_VRAM:
                f = KFD_IOC_ALLOC_MEM_FLAGS_VRAM;
                break;
        case RANGE_DOMAIN_GTT:
                f = KFD_IOC_ALLOC_MEM_FLAGS_GTT;
                break;
        case RANGE_DOMAIN_HOST:
                f = KFD_IOC_ALLOC_MEM_FLAGS_USERPTR;
                break;
        default:
                break;
        }
        for (size_t i = 0; i < ELEMENTSOF(flag_table); i++)
                if (flags & flag_table[i].flag)
                        f |= flag_table[i].kfd;
        return f;
}

static size_t mask_to_ids(Manager *m, uint64_t mask, uint32_t *ids) {
        size_t n = 0;
        Gpu *g;

        FOREACH_GPU_IN_MASK(g, m, mask)
                ids[n++] = g->gpu_id;
        return n;
}

/* The first `done` ids as a mask: what the kernel completed of a MAP/UNMAP. */
static uint64_t done_mask(Manager *m, const uint32_t *ids, uint32_t done) {
        uint64_t mask = 0;

        for (uint32_t i = 0; i < done; i++) {
                Gpu *g = manager_find_gpu(m, ids[i]);
                if (g)
                        mask |= UINT64_C(1) << g->index;
        }
        return mask;
}

/* A batch range keeps the host ranges under its pieces from being freed. */
static void batch_pin_sources(Range *range, int sign) {
        for (uint32_t i = 0; i < range->n_pieces; i++) {
                Range *src = range_piece_source(range, i);
                if (!src)
                        continue;
                /* A plain host range: its extra holds its memfd (range_create()). */
                assert(src->extra);
                if (sign > 0)
                        src->extra->n_batch_users++;
                else if (src->extra->n_batch_users > 0)
                        src->extra->n_batch_users--;
        }
}

/* ---- tables ---- */

static void request_key(const Range *range, char *buf, size_t len) {
        snprintf(buf, len, "%u\x1f%s", (unsigned) range->owner->uid, range_request_id(range));
}

static int range_register(Range *range) {
        Manager *m = range->manager;
        char key[32 + SVMD_MAX_REQUEST_ID_LEN];
        int r;

        r = id_index_put(m->ranges, range);
        if (r < 0)
                return r;

        if (range_request_id(range) && range->owner) {
                request_key(range, key, sizeof(key));
                (void) str_table_put(m->range_requests, key, range); /* a duplicate keeps the first */
        }

        range->registered = true;
        return 0;
}

static void range_unregister(Range *range) {
        Manager *m = range->manager;

        if (!range->registered)
                return;
        if (range_request_id(range) && range->owner) {
                char key[32 + SVMD_MAX_REQUEST_ID_LEN];

                request_key(range, key, sizeof(key));
                if (str_table_get(m->range_requests, key) == range)
                        (void) str_table_remove(m->range_requests, key);
        }
        (void) id_index_remove(m->ranges, range->id);
        range->registered = false;
}

/* Put the window's PROT_NONE reservation back over [va, va+size). */
static int restore_window(uint64_t va, uint64_t size) {
        void *p = mmap((void *) (uintptr_t) va, size, PROT_NONE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
        return p == MAP_FAILED ? negative_errno() : 0;
}

static void host_unmap_window(Range *range) {
        if (range->window_mapped) {
                int r = restore_window(range_va(range), range_size(range));
                if (r < 0)
                        log_warning_errno(r, "Restoring the window reservation over range %" PRIu64 " failed, ignoring: %m",
                                          range->id);
                range->window_mapped = false;
        }
        if (range->extra)
                range->extra->memfd = safe_close(range->extra->memfd);
}

RangeExtra *range_extra_new(void) {
        RangeExtra *x = calloc(1, sizeof(RangeExtra));

        if (x)
                x->memfd = -EBADF;
        return x;
}

RangeExtra *range_extra(Range *range) {
        if (!range->extra)
                range->extra = range_extra_new();
        return range->extra;
}

void range_extra_adopt(Range *range, RangeExtra *x) {
        if (range->extra)
                free(x);
        else
                range->extra = x;
}

void range_set_want_mapped(Range *range, uint64_t mask) {
        assert(range->extra || mask == 0);
        if (range->extra)
                range->extra->want_mapped = mask;
}

int range_set_lost_reason(Range *range, char *reason) {
        RangeExtra *x = reason ? range_extra(range) : range->extra;

        if (!x) {
                free(reason);
                return reason ? -ENOMEM : 0;
        }
        free(x->lost_reason);
        x->lost_reason = reason;
        return 0;
}

static RangeExtra *range_extra_free(Range *range) {
        RangeExtra *x = range->extra;

        if (!x)
                return NULL;
        safe_close(x->memfd);
        free(x->svm);
        free(x->label);
        free(x->lost_reason);
        free(x->request_id);
        free(x);
        return NULL;
}

Range *range_free_struct(Range *range) {
        if (!range)
                return NULL;
        job_claim_drop(&range->claim);
        while (range_tokens(range))
                token_free(range->manager, range_tokens(range));
        while (range_holds(range))
                hold_free(range_holds(range));
        client_remove_range(range);
        identity_unref(range->manager, range->owner);
        range->extra = range_extra_free(range);
        if (range->batch)
                free(range);
        else
                slab_put(range->manager->range_slab, range);
        return NULL;
}

void range_destroy(Range *range) {
        Manager *m = range->manager;
        bool announced = range->registered;

        persist_range_gone(m, range);

        host_unmap_window(range);
        batch_pin_sources(range, -1);
        if (range->state == RANGE_STATE_DEGRADED)
                m->n_degraded--;
        range_unregister(range);
        (void) va_space_release(m->va, &range->va_node);
        /* While its owner and holders are known: they are who hear of it. */
        if (announced)
                manager_emit_range_freed(m, range);
        range_free_struct(range);
}

/* ---- undo steps ---- */

typedef struct RangeUndo {
        Transaction *t;         /* whose rollback runs it */
        Range *range;
        uint32_t piece;
        uint64_t mask;
} RangeUndo;

/*
 * The undo record of a step exists before the step (docs/architecture.md, "The undo log"): a step
 * that succeeded is then always recorded, as txn_add_undo() keeps a slot free. Reserve, do the
 * step, then add_undo(); a step that did not happen drops the record (_cleanup_free_).
 */
static RangeUndo *undo_new(Range *range, uint32_t piece) {
        RangeUndo *u = malloc(sizeof(RangeUndo));

        if (u)
                *u = (RangeUndo) { .range = range, .piece = piece };
        return u;
}

/* Records the reserved u (taken over in every case). -ENOMEM: recorded, but the next step has no slot. */
_printf_(5, 0)
static int add_undo(Transaction *t, TxnUndoFunc f, RangeUndo *u, uint64_t mask, const char *format) {
        assert(u);

        u->t = t;
        u->mask = mask;
        return txn_add_undo(t->txn, f, u, free, format, u->range->id);
}

static int undo_unregister(void *userdata) {
        RangeUndo *u = userdata;
        Range *range = u->range;

        if (range->rollback_failed)
                return 0; /* the repair timer keeps it registered and finishes the job */
        range_unregister(range);
        (void) va_space_release(range->manager->va, &range->va_node);
        return 0;
}

static int undo_window(void *userdata) {
        RangeUndo *u = userdata;

        if (u->range->rollback_failed)
                return 0;
        host_unmap_window(u->range);
        return 0;
}

static int piece_free(Range *range, RangePiece *p) {
        int r;

        if (!range_piece_allocated(p))
                return 0;
        r = kfd_free(range_kfd_fd(range), p->handle);
        if (r < 0)
                return r;
        p->handle = 0;
        return 0;
}

static int undo_alloc(void *userdata) {
        RangeUndo *u = userdata;
        Range *range = u->range;
        int r;

        if (range->rollback_failed)
                return 0;
        r = piece_free(range, &range->pieces[u->piece]);
        if (r < 0) {
                transaction_rollback_failed(u->t, range, r, range->manager->gpus[range->home]->gpu_id);
                return r;
        }
        if (u->piece == 0)
                range_account(range, -1);
        return 0;
}

/* Unmap piece from mask; the exact state is kept whatever happens. */
static int piece_unmap(Range *range, RangePiece *p, uint64_t mask, uint32_t *ret_failed_gpu) {
        Manager *m = range->manager;
        uint32_t ids[64], done = 0;
        size_t n;
        int r;

        mask &= p->mapped;
        n = mask_to_ids(m, mask, ids);
        if (n == 0)
                return 0;
        r = kfd_unmap(range_kfd_fd(range), p->handle, ids, (uint32_t) n, &done);
        uint64_t gone = done_mask(m, ids, done);
        p->mapped &= ~gone;
        range_account_piece_mapping(range, p, gone, -1);
        if (r < 0 && ret_failed_gpu)
                *ret_failed_gpu = done < n ? ids[done] : 0;
        return r;
}

static int piece_map(Range *range, RangePiece *p, uint64_t mask, uint32_t *ret_failed_gpu, uint64_t *ret_done) {
        Manager *m = range->manager;
        uint32_t ids[64], done = 0;
        size_t n;
        int r;

        mask &= ~p->mapped;
        n = mask_to_ids(m, mask, ids);
        if (ret_done)
                *ret_done = 0;
        if (n == 0)
                return 0;
        r = kfd_map(range_kfd_fd(range), p->handle, ids, (uint32_t) n, &done);
        uint64_t added = done_mask(m, ids, done);
        p->mapped |= added;
        range_account_piece_mapping(range, p, added, +1);
        if (ret_done)
                *ret_done = added;
        if (r < 0 && ret_failed_gpu)
                *ret_failed_gpu = done < n ? ids[done] : 0;
        return r;
}

static int undo_map(void *userdata) {
        RangeUndo *u = userdata;
        Range *range = u->range;
        int r;

        if (range->rollback_failed)
                return 0;
        uint32_t gpu = 0;

        r = piece_unmap(range, &range->pieces[u->piece], u->mask, &gpu);
        if (r < 0 && r != -EINTR && r != -EAGAIN)
                transaction_rollback_failed(u->t, range, r, gpu);
        return r;
}

static int undo_unmap(void *userdata) {
        RangeUndo *u = userdata;
        Range *range = u->range;
        int r;

        if (range->rollback_failed)
                return 0;
        uint32_t gpu = 0;

        r = piece_map(range, &range->pieces[u->piece], u->mask, &gpu, NULL);
        if (r < 0 && r != -EINTR && r != -EAGAIN)
                transaction_rollback_failed(u->t, range, r, gpu);
        return r;
}

static int undo_batch_pin(void *userdata) {
        RangeUndo *u = userdata;

        if (u->range->rollback_failed)
                return 0; /* range_destroy() unpins when the repair is done */
        batch_pin_sources(u->range, -1);
        return 0;
}

/* ---- forward steps ---- */

/*
 * What only svmd may do to a range's memfd (docs/dbus-api.md, "Export"): change its size, which the
 * seals forbid through every fd, root's too (so holders can neither take the owner's pages away nor
 * grow the memory past the quota that was charged); and open it again through /proc/PID/fd, which
 * mode 0600 leaves to svmd's own uid (and to root), so that a read-only fd stays read-only.
 */
#define RANGE_MEMFD_SEALS (F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL)
#define RANGE_MEMFD_MODE 0600

/* -EPERM for a memfd made without MFD_ALLOW_SEALING. */
static int memfd_seal(int fd) {
        int seals = fcntl(fd, F_GET_SEALS);

        if (seals < 0)
                return negative_errno();
        if ((seals & RANGE_MEMFD_SEALS) == RANGE_MEMFD_SEALS)
                return 0;
        if (fcntl(fd, F_ADD_SEALS, RANGE_MEMFD_SEALS) < 0)
                return negative_errno();
        return 0;
}

static int host_map_window(Transaction *t, Range *range, int restore_fd) {
        _cleanup_free_ RangeUndo *u = NULL;
        _cleanup_close_ int fd = -EBADF;
        char name[64];
        void *p;
        int r;

        if (restore_fd >= 0) {
                /* After a restart: the memfd from the fd store, with the bytes clients wrote. */
                fd = fcntl(restore_fd, F_DUPFD_CLOEXEC, 3);
                if (fd < 0)
                        return txn_fail(t->txn, negative_errno(), 0, "taking the host memory of range %" PRIu64, range->id);
                /* Kept by an svmd that did not protect it yet: protected now as far as the memfd allows. */
                r = memfd_seal(fd);
                if (r < 0)
                        log_fields(LOG_WARNING, &((LogFields) { .range_id = range->id }),
                                   "The host memory of range %" PRIu64 " cannot be sealed (%s), ignoring: "
                                   "holders with write access may change its size until the range is freed.",
                                   range->id, r == -EPERM ? "an svmd without seals created it" : strerror(-r));
                if (fchmod(fd, RANGE_MEMFD_MODE) < 0)
                        log_fields(LOG_WARNING, &((LogFields) { .range_id = range->id }),
                                   "The host memory of range %" PRIu64 " cannot be made svmd's alone (%m), "
                                   "ignoring: holders of read-only grants may open it again writable.", range->id);
        } else {
                snprintf(name, sizeof(name), "svmd-range-%" PRIu64, range->id);
                fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
                if (fd < 0)
                        return txn_fail(t->txn, negative_errno(), 0, "creating the host memory of range %" PRIu64, range->id);
                if (ftruncate(fd, (off_t) range_size(range)) < 0)
                        return txn_fail(t->txn, negative_errno(), 0, "sizing the host memory of range %" PRIu64, range->id);
                r = memfd_seal(fd);
                if (r >= 0 && fchmod(fd, RANGE_MEMFD_MODE) < 0)
                        r = negative_errno();
                if (r < 0)
                        return txn_fail(t->txn, r, 0, "sealing the host memory of range %" PRIu64, range->id);
        }

        u = undo_new(range, 0);
        if (!u)
                return -ENOMEM;
        /* Replace the window's PROT_NONE reservation by the memfd: the kernel's userptr needs the pages
         * mapped in our address space, at the VA the GPUs use too. */
        p = mmap((void *) (uintptr_t) range_va(range), range_size(range), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
        if (p == MAP_FAILED)
                return txn_fail(t->txn, negative_errno(), 0, "mapping the host memory of range %" PRIu64, range->id);

        range->extra->memfd = TAKE_FD(fd); /* memfd ranges have one from the start (range_create()) */
        range->window_mapped = true;
        return add_undo(t, undo_window, TAKE_PTR(u), 0, "unmap host memory of range %" PRIu64);
}

static int undo_svm_account(void *userdata) {
        RangeUndo *u = userdata;

        if (u->range->rollback_failed)
                return 0; /* range_release_kernel() does it once the repair got rid of the range */
        range_account(u->range, -1);
        u->range->svm_accounted = false;
        return 0;
}

/* An svm range has no KFD buffer: its memfd is mapped at va; the kernel learns of it through its attributes. */
static int svm_create(Transaction *t, Range *range, const KfdSvmAttrs *initial, sd_bus_error *error) {
        _cleanup_free_ RangeUndo *u = NULL;
        int r;

        assert(initial);

        range->extra->svm = range_svm_new(); /* as memfd ranges, it has an extra (range_create()) */
        if (!range->extra->svm)
                return -ENOMEM;
        range->pieces[0] = (RangePiece) {};
        u = undo_new(range, 0);
        if (!u)
                return -ENOMEM;
        range_account(range, +1);
        range->svm_accounted = true;
        r = add_undo(t, undo_svm_account, TAKE_PTR(u), 0, "unaccount range %" PRIu64);
        if (r < 0)
                return r;
        return range_svm_setup(t, range, initial, error);
}

int range_create(Transaction *t, const RangeSpec *spec, Range **ret, sd_bus_error *error) {
        _cleanup_free_ RangeUndo *u = NULL;
        Manager *m = t->manager;
        Gpu *home = m->gpus[spec->home];
        uint32_t flags;
        Range *range;
        uint64_t size, offset;
        int r;

        size = ALIGN_POW2(spec->size, PAGE_SIZE_4K);

        if (!spec->restore_id)
                persist_reserve_id(m, m->next_range_id);

        /* The pieces come with the struct: one, from the manager's slab (no malloc header, no holes
         * between ranges), or a batch range's n_pieces (bounded by validation), each with its
         * RangeBatchPiece. */
        if (spec->n_pieces > 0)
                range = calloc(1, offsetof(Range, pieces) +
                                          spec->n_pieces * (sizeof(RangePiece) + sizeof(RangeBatchPiece)));
        else
                range = slab_alloc0(m->range_slab);
        if (!range)
                return -ENOMEM;
        range->batch = spec->n_pieces > 0;
        range->manager = m;
        range->id = spec->restore_id ?: m->next_range_id++;
        range->va_node.size = size;       /* va_space_alloc() sets it again, to the same */
        range->home = (uint8_t) spec->home;
        range->flags = spec->flags;
        range->domain = (uint8_t) spec->domain;
        range->persistent = spec->persistent;
        range->owner = identity_ref(spec->owner);
        range->n_pieces = MAX(spec->n_pieces, 1U);
        if (spec->restore_id >= m->next_range_id)
                m->next_range_id = spec->restore_id + 1;
        /* Host and svm ranges keep their memfd there, batch sources their pins: from the start,
         * so that nothing later needs an allocation that could fail. */
        if ((spec->label || (spec->persistent && spec->request_id) || range_domain_is_memfd(spec->domain)) &&
            !range_extra(range)) {
                range_free_struct(range);
                return -ENOMEM;
        }
        if (spec->label) {
                range->extra->label = strdup(spec->label);
                if (!range->extra->label) {
                        range_free_struct(range);
                        return -ENOMEM;
                }
        }
        if (spec->persistent && spec->request_id) {
                range->extra->request_id = strdup(spec->request_id);
                if (!range->extra->request_id) {
                        range_free_struct(range);
                        return -ENOMEM;
                }
                range->extra->request_digest = spec->request_digest;
        }
        /* Also after a restart the context is chosen again: the dma-buf imports into any context. */
        range->context = (uint8_t) context_pick(m, spec->owner ? spec->owner->scope : NULL, spec->domain,
                                                spec->n_pieces > 0);

        /* The transaction owns the struct from here: abort frees it once its undos ran. */
        r = transaction_touch(t, range, true);
        if (r < 0) {
                range_free_struct(range);
                return r;
        }
        /* Nobody else may change it until this request is over (a new range: never refused). */
        (void) job_claim(&range->claim);

        if (spec->restore_va) {
                r = va_space_reserve(m->va, &range->va_node, spec->restore_va, size);
                if (r < 0)
                        return sd_bus_error_setf(error, SVMD_ERROR_BUSY,
                                                 "The recorded VA 0x%" PRIx64 "+%s of range %" PRIu64 " is not free: %s.",
                                                 spec->restore_va, FORMAT_BYTES(size), range->id, strerror(-r));
        } else
                r = va_space_alloc(m->va, &range->va_node, size, spec->alignment);
        if (r < 0) {
                if (r == -ENOMEM)
                        return sd_bus_error_setf(error, SVMD_ERROR_OUT_OF_MEMORY,
                                                 "The SVM window has no free range of %s.", FORMAT_BYTES(size));
                return r;
        }
        u = undo_new(range, 0);
        if (!u) {
                (void) va_space_release(m->va, &range->va_node);
                return -ENOMEM;
        }
        r = range_register(range);
        if (r < 0) {
                (void) va_space_release(m->va, &range->va_node);
                return r;
        }
        if (spec->client)
                client_add_range(spec->client, range); /* undone with the struct: range_free_struct() */
        r = add_undo(t, undo_unregister, TAKE_PTR(u), 0, "unregister range %" PRIu64);
        if (r < 0)
                return r;

        if (range_domain_is_memfd(spec->domain) && spec->n_pieces == 0) {
                r = host_map_window(t, range, spec->restore_fd);
                if (r < 0)
                        return transaction_set_kernel_error(t, r, error);
        }
        if (spec->domain == RANGE_DOMAIN_SVM) {
                r = svm_create(t, range, spec->svm, error);
                if (r < 0)
                        return r;
                *ret = range;
                return 0;
        }

        /* A batch piece pins its host range until the batch range is gone; one this transaction frees
         * would be destroyed under it at commit. Validation refuses this first (commit.c). */
        for (uint32_t i = 0; i < spec->n_pieces; i++)
                if (transaction_frees(t, spec->pieces[i].source))
                        return sd_bus_error_setf(error, SVMD_ERROR_BUSY,
                                                 "Host range %" PRIu32 " lies in range %" PRIu64 ", which is being "
                                                 "freed.", i, spec->pieces[i].source->id);

        flags = kfd_flags(spec->domain, spec->flags);
        offset = 0;
        for (uint32_t i = 0; i < range->n_pieces; i++) {
                RangePiece *p = &range->pieces[i];
                RangeBatchPiece *b = range_batch_piece(range, i);
                uint64_t va = range_va(range) + offset, userptr;

                if (b) {
                        b->size = ALIGN_POW2(spec->pieces[i].size, PAGE_SIZE_4K);
                        b->source = spec->pieces[i].source;
                        userptr = spec->pieces[i].userptr;
                } else
                        userptr = spec->domain == RANGE_DOMAIN_HOST ? range_va(range) : 0;
                offset += range_piece_size(range, i);

                u = undo_new(range, i);
                if (!u)
                        return -ENOMEM;
                /* Charged before the ioctl: while it runs (executor.h) other requests are validated,
                 * and they must see this one's quota and VRAM as taken. */
                if (i == 0)
                        range_account(range, +1);
                if (spec->restore_fd >= 0 && spec->domain != RANGE_DOMAIN_HOST)
                        /* After a restart: the same buffer, alive through the dma-buf in the fd store. */
                        r = kfd_import_dmabuf(range_kfd_fd(range), spec->restore_fd, home->gpu_id, va,
                                              &p->handle);
                else
                        r = kfd_alloc(range_kfd_fd(range), va, range_piece_size(range, i), home->gpu_id, flags, userptr,
                                      &p->handle, NULL);
                if (r < 0) {
                        if (i == 0)
                                range_account(range, -1);
                        (void) txn_fail(t->txn, r, home->gpu_id, "%s %s of %s memory on GPU 0x%x",
                                        spec->restore_fd >= 0 ? "importing" : "allocating", FORMAT_BYTES(range_piece_size(range, i)),
                                        range_domain_to_string(spec->domain), home->gpu_id);
                        return transaction_set_kernel_error(t, r, error);
                }
                r = add_undo(t, undo_alloc, TAKE_PTR(u), 0, "free range %" PRIu64);
                if (r < 0)
                        return r;
        }

        if (range->batch) {
                u = undo_new(range, 0);
                if (!u)
                        return -ENOMEM;
                batch_pin_sources(range, +1);
                r = add_undo(t, undo_batch_pin, TAKE_PTR(u), 0, "unpin the sources of range %" PRIu64);
                if (r < 0)
                        return r;
        }

        *ret = range;
        return 0;
}

int range_map(Transaction *t, Range *range, uint64_t mask, sd_bus_error *error) {
        Manager *m = t->manager;
        int r;

        if ((mask & ~range_mapped(range)) == 0)
                return 0;
        if (range_svm(range)) {
                struct kfd_ioctl_svm_attribute list[KFD_SVM_MAX_GPUS];
                uint32_t n = svm_access_list(m, mask & ~range_mapped(range), KFD_IOCTL_SVM_ATTR_ACCESS, list);
                return range_svm_change(t, range, list, n, error);
        }

        r = transaction_touch(t, range, false);
        if (r < 0)
                return r;

        for (uint32_t i = 0; i < range->n_pieces; i++) {
                _cleanup_free_ RangeUndo *u = NULL;
                uint32_t failed_gpu = 0;
                uint64_t done = 0;

                u = undo_new(range, i);
                if (!u)
                        return -ENOMEM;
                r = piece_map(range, &range->pieces[i], mask, &failed_gpu, &done);
                if (done != 0) {
                        int q = add_undo(t, undo_map, TAKE_PTR(u), done, "unmap range %" PRIu64);
                        if (q < 0)
                                return q;
                }
                if (r < 0) {
                        if (failed_gpu != 0)
                                (void) txn_fail(t->txn, r, failed_gpu, "mapping range %" PRIu64 " to GPU 0x%x",
                                                range->id, failed_gpu);
                        else
                                (void) txn_fail(t->txn, r, 0,
                                                "waiting for the page-table updates of range %" PRIu64, range->id);
                        return transaction_set_kernel_error(t, r, error);
                }
        }
        (void) m;
        return 0;
}

int range_unmap(Transaction *t, Range *range, uint64_t mask, sd_bus_error *error) {
        int r;

        if ((mask & range_mapped_any(range)) == 0)
                return 0;
        if (range_svm(range)) {
                struct kfd_ioctl_svm_attribute list[KFD_SVM_MAX_GPUS];
                uint32_t n = svm_access_list(range->manager, mask & range_mapped_any(range), KFD_IOCTL_SVM_ATTR_NO_ACCESS, list);
                return range_svm_change(t, range, list, n, error);
        }

        r = transaction_touch(t, range, false);
        if (r < 0)
                return r;

        for (uint32_t i = 0; i < range->n_pieces; i++) {
                _cleanup_free_ RangeUndo *u = NULL;
                RangePiece *p = &range->pieces[i];
                uint64_t before = p->mapped;
                uint32_t failed_gpu = 0;

                u = undo_new(range, i);
                if (!u)
                        return -ENOMEM;
                r = piece_unmap(range, p, mask, &failed_gpu);
                uint64_t gone = before & ~p->mapped;
                if (gone != 0) {
                        int q = add_undo(t, undo_unmap, TAKE_PTR(u), gone, "remap range %" PRIu64);
                        if (q < 0)
                                return q;
                }
                if (r < 0) {
                        if (failed_gpu != 0)
                                (void) txn_fail(t->txn, r, failed_gpu, "unmapping range %" PRIu64 " from GPU 0x%x",
                                                range->id, failed_gpu);
                        else
                                (void) txn_fail(t->txn, r, 0, "waiting for the TLB flush of range %" PRIu64, range->id);
                        return transaction_set_kernel_error(t, r, error);
                }
        }
        return 0;
}

int range_free(Transaction *t, Range *range, sd_bus_error *error) {
        int r;

        r = range_validate_free(range, error);
        if (r < 0)
                return r;
        /* svm: no NO_ACCESS first; the kernel forgets the range, access and all, with its window mapping. */
        if (range_svm(range)) {
                r = transaction_touch(t, range, false); /* the GPUs it was mapped on are announced */
                if (r < 0)
                        return r;
                return transaction_queue_free(t, range);
        }
        r = range_unmap(t, range, range_mapped_any(range), error);
        if (r < 0)
                return r;
        return transaction_queue_free(t, range);
}

int range_release_kernel(Range *range, uint32_t *ret_failed_gpu) {
        int r;

        if (range_svm(range)) {
                /* Nothing to free: the kernel drops the range, with every GPU's access, together with the
                 * window mapping (range_destroy). */
                range_account_mapping(range, range->pieces[0].mapped, -1);
                range->pieces[0].mapped = 0;
                if (range->svm_accounted)
                        range_account(range, -1);
                range->svm_accounted = false;
                return 0;
        }

        for (uint32_t i = 0; i < range->n_pieces; i++) {
                bool was = range_piece_allocated(&range->pieces[i]);

                r = piece_free(range, &range->pieces[i]);
                if (r < 0) {
                        if (ret_failed_gpu)
                                *ret_failed_gpu = range->manager->gpus[range->home]->gpu_id;
                        return r;
                }
                if (was && i == 0)
                        range_account(range, -1);
        }
        return 0;
}

int range_export_fd(Range *range, bool read_only, int *ret_fd, sd_bus_error *error) {
        Manager *m = range->manager;
        const char *needed;
        char path[64];
        bool offload;
        int fd, r;

        if (range->batch)
                return sd_bus_error_setf(error, SVMD_ERROR_NOT_SUPPORTED,
                                         "Range %" PRIu64 " is a batch range; share its host ranges instead.", range->id);

        if (range_domain_is_memfd(range->domain)) {
                /* A new open file description: read-only where asked, independent of ours. */
                snprintf(path, sizeof(path), "/proc/self/fd/%d", range_memfd(range));
                fd = open(path, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
                if (fd < 0)
                        return sd_bus_error_setf(error, SVMD_ERROR_KERNEL,
                                                 "Opening the memory of range %" PRIu64 " failed: %m.", range->id);
                *ret_fd = fd;
                return 0;
        }

        if (read_only)
                return sd_bus_error_setf(error, SVMD_ERROR_NOT_SUPPORTED,
                                         "The kernel exports %s buffers read-write only; read-only sharing needs a host range.",
                                         range_domain_to_string(range->domain));
        if (kfd_device_require_feature(m->kfd, KFD_FEATURE_EXPORT_DMABUF, &needed) < 0)
                return sd_bus_error_setf(error, SVMD_ERROR_NOT_SUPPORTED,
                                         "Exporting VRAM and GTT needs KFD interface %s; this kernel has %u.%u.", needed,
                                         m->kfd_major, m->kfd_minor);
        offload = job_set_offload(true); /* the caller's job holds the range's claim */
        r = kfd_export_dmabuf(range_kfd_fd(range), range->pieces[0].handle, O_RDWR, &fd);
        (void) job_set_offload(offload);
        if (r < 0)
                return sd_bus_error_setf(error, r == -EMFILE || r == -ENFILE ? SVMD_ERROR_OUT_OF_MEMORY : SVMD_ERROR_KERNEL,
                                         "Exporting range %" PRIu64 " failed: %s.", range->id, strerror(-r));
        *ret_fd = fd;
        return 0;
}

int range_repair(Range *range) {
        uint64_t want = range->want_gone ? 0 : range_want_mapped(range);
        int r;

        /* Batch pieces still use its pages: the window must stay mapped until they are gone. */
        if (range->want_gone && range_n_batch_users(range) > 0)
                return -EBUSY;

        if (range_svm(range) && !range->want_gone) {
                r = range_svm_repair(range);
                if (r < 0)
                        return r;
        }

        for (uint32_t i = 0; i < range->n_pieces; i++) {
                RangePiece *p = &range->pieces[i];

                if (!range_piece_allocated(p))
                        continue;
                r = piece_unmap(range, p, p->mapped & ~want, NULL);
                if (r < 0)
                        return r;
                r = piece_map(range, p, want & ~p->mapped, NULL, NULL);
                if (r < 0)
                        return r;
        }

        if (range->want_gone) {
                r = range_release_kernel(range, NULL);
                if (r < 0)
                        return r;
                range_destroy(range);
                return 0;
        }

        range->state = RANGE_STATE_ACTIVE;
        range->manager->n_degraded--;
        persist_range(range->manager, range);
        range_emit_changed(range, (const char *const[]) { "State", "MappedGpus", range_svm(range) ? "SvmAttributes" : NULL, NULL });
        return 0;
}
