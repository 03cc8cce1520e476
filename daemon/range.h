/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * A range of the SVM address space: one VA, the same on every GPU, backed by
 * one KFD buffer (VRAM, GTT, or USERPTR over a daemon-owned memfd), or, for a
 * batch range, by several USERPTR buffers at consecutive VAs, or, for an svm
 * range, by a daemon-owned memfd registered with AMDKFD_IOC_SVM attributes
 * (range-svm.h) and no buffer at all.
 *
 * Every change goes through a Transaction (transaction.h): the functions here
 * do one step each and record its undo. The mapping state kept per piece is
 * the kernel's exact state at every moment, also after a failed ioctl, so that
 * undo and repair know precisely what to reverse.
 */

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <systemd/sd-bus.h>

#include "executor.h"
#include "quota.h"
#include "va-space.h"

/* The page size of ranges: sizes and VAs are multiples of it. */
#define PAGE_SIZE_4K UINT64_C(4096)

typedef struct Manager Manager;
typedef struct Transaction Transaction;
typedef struct Range Range;
typedef struct Identity Identity;
typedef struct Client Client;
typedef struct Hold Hold;
typedef struct Token Token;
typedef struct RangeSvm RangeSvm;
typedef struct KfdSvmAttrs KfdSvmAttrs;

typedef enum RangeDomain {
        RANGE_DOMAIN_VRAM,
        RANGE_DOMAIN_GTT,
        RANGE_DOMAIN_HOST,
        RANGE_DOMAIN_SVM,       /* memfd at the VA, AMDKFD_IOC_SVM attributes instead of a KFD buffer */
        _RANGE_DOMAIN_MAX,
        _RANGE_DOMAIN_INVALID = -EINVAL,
} RangeDomain;

typedef enum RangeState {
        RANGE_STATE_ACTIVE,
        RANGE_STATE_DEGRADED,   /* an undo failed; the repair timer drives it to its wanted state */
        _RANGE_STATE_MAX,
} RangeState;

/* svmd's allocation flags (names on the wire: protocol/svmd-protocol.h). */
typedef enum RangeFlag {
        RANGE_FLAG_WRITABLE      = 1 << 0,
        RANGE_FLAG_EXECUTABLE    = 1 << 1,
        RANGE_FLAG_PUBLIC        = 1 << 2,
        RANGE_FLAG_COHERENT      = 1 << 3,
        RANGE_FLAG_UNCACHED      = 1 << 4,
        RANGE_FLAG_EXT_COHERENT  = 1 << 5,
        RANGE_FLAG_CONTIGUOUS    = 1 << 6,
        RANGE_FLAG_NO_SUBSTITUTE = 1 << 7,
        _RANGE_FLAG_ALL          = (1 << 8) - 1,
} RangeFlag;

/*
 * One KFD buffer of a range. Its VA and CPU address matter only while it is created (range_create());
 * its size is the range's, or for batch ranges in its RangeBatchPiece (range_piece_size()).
 */
typedef struct RangePiece {
        uint64_t handle;        /* KFD handle, never shown to clients; 0: not allocated (a KFD handle
                                 * carries the GPU id, never 0, in its upper half) */
        uint64_t mapped;        /* GPUs (bit = Gpu.index) this piece is mapped on, exactly */
} RangePiece;

/* What a piece of a batch range has besides: after the pieces, in the same allocation. */
typedef struct RangeBatchPiece {
        uint64_t size;
        Range *source;          /* the host range whose pages back this piece */
} RangeBatchPiece;

/* A piece of a batch range as a request asks for it. */
typedef struct RangeSpecPiece {
        uint64_t userptr;       /* the CPU address registered: inside source */
        uint64_t size;
        Range *source;          /* the host range whose pages back this piece */
} RangeSpecPiece;

/*
 * What most ranges never have: a label, a request id, holders or share tokens, SVM attributes,
 * host memory, lost contents. Allocated on first use (range_extra()) and kept until the range is
 * freed, so that the Range every live range pays for stays small (docs/architecture.md, "Memory
 * per range"). Read through the accessors below, which answer for a range without one.
 */
typedef struct RangeExtra {
        char *label;
        char *request_id;       /* persistent ranges: the request id that created it */
        uint64_t request_digest;        /* and request_digest() of that call; 0: not recorded */
        char *lost_reason;      /* its VRAM contents went with a GPU reset (health.c); NULL otherwise */
        RangeSvm *svm;          /* svm: its attributes (range-svm.h); NULL otherwise */
        Hold *holds;            /* Attach references */
        Token *tokens;          /* Share tokens */
        int memfd;              /* host, svm: the backing; -EBADF otherwise */
        uint32_t n_batch_users; /* batch ranges whose pieces use this range's pages */
        uint64_t want_mapped;   /* degraded: where repair is heading */
} RangeExtra;

struct Range {
        Manager *manager;
        JobClaim claim;         /* the request changing it now (executor.h); others wait */
        uint64_t id;
        VaNode va_node;         /* its place in the SVM window: range_va(), range_size() */

        Identity *owner;        /* charged for it; kept while the range lives */
        Client *client;         /* the connection that owns it, NULL once gone */
        Range *client_prev, *client_next;
        RangeExtra *extra;      /* NULL until a rare field is first set */

        uint32_t n_pieces;
        uint32_t fd_slot;       /* fd_stored: its name there (fd-slots.h); FD_SLOT_LEGACY: "range-<id>" */
        uint16_t flags;         /* RangeFlag */
        uint8_t home;           /* Gpu.index of the owning GPU */
        uint8_t domain;         /* RangeDomain */
        uint8_t state;          /* RangeState */
        uint8_t context;        /* Manager.contexts[] its KFD buffers live in (context.h) */
        bool persistent : 1;
        bool fd_stored : 1;     /* its fd is in the service manager's fd store (persist.c) */
        bool gone_journaled : 1;        /* the journal already says it is freed (transaction_commit()) */
        bool registered : 1;    /* in the manager's tables */
        bool window_mapped : 1; /* host: memfd mapped at va in the daemon */
        bool rollback_failed : 1;       /* an undo failed: later undos leave it to repair */
        bool want_gone : 1;     /* degraded: repair frees it */
        bool svm_accounted : 1; /* svm: counted in the allocation totals */
        bool owner_detached : 1;        /* freed by its owner while holders remain */
        bool batch : 1;         /* its pieces use host ranges' pages: a RangeBatchPiece each */

        /* One for most ranges, n_pieces for batch ranges, followed by as many RangeBatchPiece:
         * allocated with the struct. */
        RangePiece pieces[];
};

static inline bool range_piece_allocated(const RangePiece *p) {
        return p->handle != 0;
}
static inline RangeBatchPiece *range_batch_piece(const Range *range, uint32_t i) {
        return range->batch ? &((RangeBatchPiece *) (void *) &range->pieces[range->n_pieces])[i] : NULL;
}
static inline uint64_t range_piece_size(const Range *range, uint32_t i) {
        return range->batch ? range_batch_piece(range, i)->size : range->va_node.size;
}
static inline Range *range_piece_source(const Range *range, uint32_t i) {
        return range->batch ? range_batch_piece(range, i)->source : NULL;
}

/* Its VA, the same on every GPU, and its size (page-aligned): both kept in its node of the window. */
static inline uint64_t range_va(const Range *range) {
        return range->va_node.start;
}
static inline uint64_t range_size(const Range *range) {
        return range->va_node.size;
}
/* The range whose node va_space_lookup() or va_space_next() found; NULL for NULL. */
static inline Range *range_from_va_node(VaNode *n) {
        return n ? (Range *) ((char *) n - offsetof(Range, va_node)) : NULL;
}

/* The range's RangeExtra, allocated on first use; NULL if that allocation failed. */
RangeExtra *range_extra(Range *range);
/* A RangeExtra with nothing set, for range_extra_adopt(); NULL without memory. */
RangeExtra *range_extra_new(void);
/* Gives a range without a RangeExtra the spare x (taken over); frees x if the range has one. */
void range_extra_adopt(Range *range, RangeExtra *x);

static inline const char *range_label(const Range *range) {
        return range->extra ? range->extra->label : NULL;
}
static inline const char *range_request_id(const Range *range) {
        return range->extra ? range->extra->request_id : NULL;
}
static inline uint64_t range_request_digest(const Range *range) {
        return range->extra ? range->extra->request_digest : 0;
}
static inline const char *range_lost_reason(const Range *range) {
        return range->extra ? range->extra->lost_reason : NULL;
}
static inline RangeSvm *range_svm(const Range *range) {
        return range->extra ? range->extra->svm : NULL;
}
static inline Hold *range_holds(const Range *range) {
        return range->extra ? range->extra->holds : NULL;
}
static inline Token *range_tokens(const Range *range) {
        return range->extra ? range->extra->tokens : NULL;
}
static inline int range_memfd(const Range *range) {
        return range->extra ? range->extra->memfd : -EBADF;
}
static inline uint32_t range_n_batch_users(const Range *range) {
        return range->extra ? range->extra->n_batch_users : 0;
}
static inline uint64_t range_want_mapped(const Range *range) {
        return range->extra ? range->extra->want_mapped : 0;
}
/*
 * Never allocates: 0 needs no RangeExtra, and a range a rollback leaves mapped somewhere got its
 * RangeExtra from the transaction's spare first (transaction_abort()).
 */
void range_set_want_mapped(Range *range, uint64_t mask);
/* Takes reason (NULL: the contents are fine again). -ENOMEM: nothing changed, reason freed. */
int range_set_lost_reason(Range *range, char *reason);

const char *range_domain_to_string(RangeDomain d);
RangeDomain range_domain_from_string(const char *s);
const char *range_state_to_string(RangeState s);
/* Host and svm ranges: backed by a daemon-owned memfd mapped at their VA. */
bool range_domain_is_memfd(RangeDomain d);

/* "writable" etc. → RangeFlag, or -EINVAL. */
int range_flag_from_string(const char *s);
const char *range_flag_to_string(RangeFlag f);

/* The object path of a range. */
int range_path(uint64_t id, char **ret);

/* Counted in the allocation totals and quotas (range_account()). */
bool range_accounted(const Range *range);

/* Every piece's mapping mask (they agree unless a step failed between pieces). */
uint64_t range_mapped(const Range *range);
/* GPUs any piece is mapped on. */
uint64_t range_mapped_any(const Range *range);

typedef struct RangeSpec {
        uint64_t size;
        uint32_t home;          /* Gpu.index */
        RangeDomain domain;
        uint16_t flags;
        uint64_t alignment;     /* 0: default */
        const char *label;      /* may be NULL */
        bool persistent;
        Identity *owner;
        Client *client;
        /* batch: n_pieces > 0, pieces[i].userptr/.size set, .source resolved */
        const RangeSpecPiece *pieces;
        uint32_t n_pieces;
        char *request_id;       /* remembered with persistent ranges, for retries across restarts */
        uint64_t request_digest;        /* request_digest() of the call; 0: unknown */
        /* svm: the complete initial attributes (every GPU listed) */
        const KfdSvmAttrs *svm;
        /* recovery after a restart: the recorded id and VA, and the fd kept in the fd store
         * (dma-buf: imported; memfd: mapped again). 0 / -1 otherwise. */
        uint64_t restore_id;
        uint64_t restore_va;
        int restore_fd;
} RangeSpec;

/*
 * Checks a spec against the node, the quotas and the range table without
 * changing anything: size, overflow, flag combinations, features, free VRAM,
 * the owner's quota and limits, window space. *pending holds what earlier
 * steps of the same Commit already claim; on success this spec is added to it.
 * A quota failure also emits QuotaExceeded.
 */
int range_validate_spec(Manager *m, const RangeSpec *spec, QuotaRequest *pending, sd_bus_error *error);

/* Validate a set of GPUs to map the range to (peer reachability) / unmap from (must be mapped). */
int range_validate_map(Manager *m, uint32_t home, RangeDomain domain, uint64_t mask, sd_bus_error *error);
int range_validate_unmap(const Range *range, uint64_t mapped, uint64_t mask, sd_bus_error *error);
int range_validate_free(const Range *range, sd_bus_error *error);
/* SetAttributes: svm ranges only. */
int range_validate_set_attributes(const Range *range, sd_bus_error *error);

/* Steps (each records its undo in t; on failure t holds the reason). */
int range_create(Transaction *t, const RangeSpec *spec, Range **ret, sd_bus_error *error);
int range_map(Transaction *t, Range *range, uint64_t mask, sd_bus_error *error);
int range_unmap(Transaction *t, Range *range, uint64_t mask, sd_bus_error *error);
/* Unmap everywhere now (undoable) and free at commit. svm ranges lose every GPU's access only at
 * commit, with their window mapping: nothing to undo, nothing that can fail before. */
int range_free(Transaction *t, Range *range, sd_bus_error *error);

/*
 * The irreversible part of a free, run by transaction_commit(): FREE of every
 * piece. Returns 0 or the -errno of the first FREE that failed (pieces before
 * it are freed: the range then needs repair to finish).
 */
int range_release_kernel(Range *range, uint32_t *ret_failed_gpu);
/* Drop the range from the tables, the window and memory (after its kernel objects are gone). */
void range_destroy(Range *range);

/*
 * A new fd for the range's memory, for Export and Attach: the dma-buf of its
 * KFD buffer (EXPORT_DMABUF, interface 1.12+), or for host ranges the backing
 * memfd (read-only when asked: the kernel cannot export userptr buffers).
 */
int range_export_fd(Range *range, bool read_only, int *ret_fd, sd_bus_error *error);

/* Drive a degraded range to its wanted state. 0 when done (the range may be gone). */
int range_repair(Range *range);

/* PropertiesChanged for the range's object: names end with NULL. */
void range_emit_changed(Range *range, const char *const *properties);
/* The body of org.freedesktop.DBus.Properties.PropertiesChanged for these properties of range (range-dbus.c). */
int range_append_properties_changed(sd_bus_message *msg, Range *range, const char *const *properties);

/* Allocation bookkeeping (bytes per GPU, totals). */
void range_account(Range *range, int sign);
void range_account_mapping(Range *range, uint64_t mask, int sign);
/* The same for one piece (a MAP or UNMAP step that completed part of a mask). */
void range_account_piece_mapping(Range *range, const RangePiece *p, uint64_t mask, int sign);

Range *range_free_struct(Range *range);
