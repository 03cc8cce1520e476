/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * libsvmd: the client library of svmd, the node's GPU memory manager.
 *
 * Every call returns 0 (or a documented positive value) on success and a
 * negative errno on failure. Where a call takes an svmd_error *, it may be NULL;
 * otherwise it must be initialized with SVMD_ERROR_NULL and is filled on failure
 * with the D-Bus error name ("org.svmd1.Error.NoSuchRange") and a sentence a
 * person can act on. Release it with svmd_error_free().
 *
 * Sizes and virtual addresses are uint64_t, GPU ids uint32_t. A client handle
 * is not thread-safe: use one per thread, or serialize calls on it.
 *
 * The ABI is versioned (LIBSVMD_0.1 … LIBSVMD_0.4) and documented in libsvmd(3).
 * Structs only grow at the end; calls that read or write the new fields have
 * a new symbol version, and binaries built against the old structs keep the
 * old one.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SVMD_LIBRARY_VERSION "0.4"

/* ---- errors ---- */

typedef struct svmd_error {
        char *name;             /* D-Bus error name, or "System.Error.E…" for local failures */
        char *message;          /* one sentence */
} svmd_error;

#define SVMD_ERROR_NULL ((svmd_error) { NULL, NULL })

void svmd_error_free(svmd_error *e);
/* True if e holds an error of that name. */
bool svmd_error_has_name(const svmd_error *e, const char *name);
/* The errno an error name stands for (NoSuchRange → ENOENT, …); EIO when unknown. Positive. */
int svmd_error_name_to_errno(const char *name);

/* ---- connection ---- */

typedef struct svmd_client svmd_client;

enum {
        SVMD_CLIENT_NO_DIRECT   = 1U << 0,  /* never use io.socket: everything over the bus */
        SVMD_CLIENT_DIRECT_ONLY = 1U << 1,  /* everything over io.socket, no bus connection */
};

/*
 * Connect. bus_address: NULL for $SVMD_BUS_ADDRESS if set, else the system bus;
 * a D-Bus address otherwise ("unix:path=/run/dbus/system_bus_socket").
 * direct_path: NULL for $SVMD_RUNTIME_DIR/io.socket if set, else /run/svmd/io.socket.
 * Per-allocation calls (Allocate, AllocateBatch, Free, Map, Unmap, SetAttributes,
 * Commit, Export, Attach, Release, Share) use the direct socket when it is
 * reachable and fall back to the bus when it is not.
 */
int svmd_client_new(svmd_client **ret, const char *bus_address, const char *direct_path, uint32_t flags,
                    svmd_error *error);
/* Detaches what svmd_attach_local() attached through this client, closes, frees. Returns NULL. */
svmd_client *svmd_client_free(svmd_client *c);
/* True if per-allocation calls currently travel over the direct socket. */
bool svmd_client_is_direct(const svmd_client *c);

/* ---- event loop integration (async calls and signals) ---- */

/* One fd to poll for POLLIN; it stays the same for the life of the client. */
int svmd_client_get_fd(svmd_client *c);
/* CLOCK_MONOTONIC µs at which svmd_client_process() must run even without input; UINT64_MAX: none. */
int svmd_client_get_timeout(svmd_client *c, uint64_t *ret_usec);
/* Dispatch what is ready: completions and signal callbacks run from here. >0: did something. */
int svmd_client_process(svmd_client *c);
/* Block until something is ready or timeout_usec passed (UINT64_MAX: forever). */
int svmd_client_wait(svmd_client *c, uint64_t timeout_usec);
/* Number of async calls still waiting for their reply. */
size_t svmd_client_pending(const svmd_client *c);

/* ---- queries ---- */

typedef struct svmd_gpu {
        uint32_t gpu_id;
        uint32_t node_id;
        char target[16];        /* "gfx942" */
        char name[64];
        uint64_t vram_total;
        uint64_t vram_used;
        uint64_t vram_free;
        uint16_t render_minor;
} svmd_gpu;

/* *ret is a malloc()ed array of *ret_n entries; free() it. */
int svmd_list_gpus(svmd_client *c, svmd_gpu **ret, size_t *ret_n, svmd_error *error);

typedef struct svmd_lost_range {
        uint64_t id;
        char reason[160];
} svmd_lost_range;

#define SVMD_MAX_LOST_REPORTED 16

typedef struct svmd_status {
        char version[32];       /* svmd's version */
        char kfd_version[16];   /* "1.16" */
        uint32_t n_gpus;
        uint64_t n_ranges;
        uint64_t bytes_allocated;
        uint32_t n_clients;     /* UINT32_MAX where the daemon does not report it */
        /* Persistent ranges the last start could not restore (first SVMD_MAX_LOST_REPORTED of n_lost). */
        uint32_t n_lost;
        svmd_lost_range lost[SVMD_MAX_LOST_REPORTED];
        /* LIBSVMD_0.2: */
        bool xnack;             /* XNACK (GPU page-fault retry) is on in svmd's KFD process; false for older svmds */
} svmd_status;

int svmd_get_status(svmd_client *c, svmd_status *ret, svmd_error *error);

/*
 * What persistent ranges depend on (LIBSVMD_0.3): the free space of svmd's runtime directory, where
 * its journal lives, and the fds svmd keeps in the service manager's fd store. When either runs
 * out, svmd refuses new persistent ranges (QuotaExceeded).
 */
typedef struct svmd_durability {
        uint64_t runtime_free;          /* bytes free in svmd's runtime directory */
        uint64_t runtime_size;          /* the size of its filesystem */
        uint64_t stored_fds;            /* fds of persistent ranges in the fd store */
        uint64_t fd_store_max;          /* how many the fd store takes (limits.fd-store-max) */
} svmd_durability;

int svmd_get_durability(svmd_client *c, svmd_durability *ret, svmd_error *error);

/* Range flag bits (svmd_range.flags), as ListRanges reports them. */
#define SVMD_RANGE_FLAG_WRITABLE      (UINT64_C(1) << 0)
#define SVMD_RANGE_FLAG_EXECUTABLE    (UINT64_C(1) << 1)
#define SVMD_RANGE_FLAG_PUBLIC        (UINT64_C(1) << 2)
#define SVMD_RANGE_FLAG_COHERENT      (UINT64_C(1) << 3)
#define SVMD_RANGE_FLAG_UNCACHED      (UINT64_C(1) << 4)
#define SVMD_RANGE_FLAG_EXT_COHERENT  (UINT64_C(1) << 5)
#define SVMD_RANGE_FLAG_CONTIGUOUS    (UINT64_C(1) << 6)
#define SVMD_RANGE_FLAG_NO_SUBSTITUTE (UINT64_C(1) << 7)
#define SVMD_MAX_GPUS 64

/* The flag's name ("public") for a single bit, or NULL. */
const char *svmd_range_flag_to_string(uint64_t flag);

typedef struct svmd_range {
        uint64_t id;
        uint64_t va;
        uint64_t size;
        uint64_t flags;         /* SVMD_RANGE_FLAG_* */
        char domain[8];         /* "vram", "gtt", "host", "svm" */
        uint32_t home_gpu;
        uint32_t n_mapped;
        uint32_t mapped[SVMD_MAX_GPUS];
        char label[257];
        uint32_t owner_uid;
        /* "active", "degraded", "freeing" (its owner's connection closed), "contents-lost" (its GPU
         * was reset: the bytes are undefined until the owner calls svmd_reuse() or frees it) */
        char state[16];
} svmd_range;

typedef struct svmd_range_filter {
        bool has_owner;
        uint32_t owner;
        bool has_gpu;
        uint32_t gpu;
        const char *label;      /* NULL: any */
        uint64_t offset;
        uint64_t limit;         /* 0: the daemon's default (1000); at most 4096 */
        bool all;               /* every user's ranges, not only the caller's (administrators) */
        /* LIBSVMD_0.2: only ranges with an id above `after`. Page with after = the last id of the
         * previous page: each page then costs the same, and none is skipped when ranges are freed
         * between pages (offset counts the ranges that remain). */
        uint64_t after;
        bool has_after;
} svmd_range_filter;

/* filter may be NULL. *ret is malloc()ed; free() it. */
int svmd_list_ranges(svmd_client *c, const svmd_range_filter *filter, svmd_range **ret, size_t *ret_n,
                     svmd_error *error);

#define SVMD_NO_LIMIT UINT64_MAX

typedef struct svmd_gpu_bytes {
        uint32_t gpu_id;
        uint64_t bytes;
} svmd_gpu_bytes;

typedef struct svmd_usage {
        char scope[256];        /* "uid:1000", "unit:foo.service", "cgroup:/machine.slice/…" */
        uint64_t ranges;
        uint64_t vram;
        uint64_t host;
        size_t n_vram_per_gpu;
        svmd_gpu_bytes vram_per_gpu[SVMD_MAX_GPUS];
        /* SVMD_NO_LIMIT where no limit applies. */
        uint64_t quota_ranges;
        uint64_t quota_vram;
        uint64_t quota_vram_per_gpu;
        uint64_t quota_host;
} svmd_usage;

/* scope: NULL or "" for the caller's own, else "uid:N", "unit:NAME", "cgroup:PATH". */
int svmd_get_usage(svmd_client *c, const char *scope, svmd_usage *ret, svmd_error *error);
/*
 * svmd's Prometheus metrics as text (docs/metrics.md); *ret is the caller's to free().
 * format: NULL or "openmetrics", or "prometheus" (text format 0.0.4). Quota scopes other
 * than the caller's are in it for administrators only.
 */
int svmd_get_metrics(svmd_client *c, const char *format, char **ret, svmd_error *error);
/* Re-read the daemon's configuration (administrators). */
int svmd_reload(svmd_client *c, svmd_error *error);

/* ---- svm ranges ---- */

/*
 * A range of domain "svm" is host memory (a memfd of svmd's) at the range's
 * address, registered with the kernel's shared-virtual-memory attributes
 * (AMDKFD_IOC_SVM, KFD interface 1.5) instead of being a KFD buffer: a
 * preferred and a prefetch location, access per GPU, flags and the migration
 * granularity. Mapping it to a GPU gives that GPU access; unmapping takes it.
 */

/* Locations: a gpu_id, system memory, or (the preferred location only) none. */
#define SVMD_SVM_LOCATION_SYSTEM 0U
#define SVMD_SVM_LOCATION_NONE   0xFFFFFFFFU

/* SVM flags (svmd_svm_state.flags): the kernel's KFD_IOCTL_SVM_FLAG_* bits. */
#define SVMD_SVM_FLAG_HOST_ACCESS       (UINT32_C(1) << 0)
#define SVMD_SVM_FLAG_COHERENT          (UINT32_C(1) << 1)
#define SVMD_SVM_FLAG_HIVE_LOCAL        (UINT32_C(1) << 2)
#define SVMD_SVM_FLAG_GPU_RO            (UINT32_C(1) << 3)
#define SVMD_SVM_FLAG_GPU_EXEC          (UINT32_C(1) << 4)
#define SVMD_SVM_FLAG_GPU_READ_MOSTLY   (UINT32_C(1) << 5)
#define SVMD_SVM_FLAG_GPU_ALWAYS_MAPPED (UINT32_C(1) << 6)
#define SVMD_SVM_FLAG_EXT_COHERENT      (UINT32_C(1) << 7)

#define SVMD_SVM_GRANULARITY_MAX 63U

/* svmd_svm_attributes.set: which of the fields preferred, prefetch, flags, granularity are given. */
#define SVMD_SVM_SET_PREFERRED   (1U << 0)
#define SVMD_SVM_SET_PREFETCH    (1U << 1)
#define SVMD_SVM_SET_FLAGS       (1U << 2)
#define SVMD_SVM_SET_GRANULARITY (1U << 3)

/* A change of SVM attributes (Allocate of an svm range, svmd_set_attributes(), a Commit operation). */
typedef struct svmd_svm_attributes {
        uint32_t set;                   /* SVMD_SVM_SET_*; fields whose bit is clear stay as they are */
        uint32_t preferred;             /* gpu_id, SVMD_SVM_LOCATION_SYSTEM or SVMD_SVM_LOCATION_NONE */
        uint32_t prefetch;              /* gpu_id or SVMD_SVM_LOCATION_SYSTEM: migrate there now */
        const char *const *flags;       /* the exact set: NULL-terminated names ("coherent"); NULL: none */
        uint32_t granularity;           /* log2 of the migration unit in pages, 0–63 */
        /* Access per GPU; a GPU may be in one list only. GPUs in no list keep their access. */
        const uint32_t *access;         /* may access it; pages migrate to the GPU on demand */
        size_t n_access;
        const uint32_t *access_in_place; /* may access it where it is, without migrating it */
        size_t n_access_in_place;
        const uint32_t *no_access;      /* may not access it */
        size_t n_no_access;
} svmd_svm_attributes;

/* The SVM attributes of an svm range, as svmd keeps them (svmd_get_svm_attributes()). */
typedef struct svmd_svm_state {
        uint32_t preferred;             /* gpu_id, SVMD_SVM_LOCATION_SYSTEM or SVMD_SVM_LOCATION_NONE */
        uint32_t prefetch;              /* gpu_id, SVMD_SVM_LOCATION_SYSTEM or SVMD_SVM_LOCATION_NONE */
        uint32_t flags;                 /* SVMD_SVM_FLAG_* */
        char flag_names[192];           /* the flags as svmd names them, ","-separated; "" for none */
        uint32_t granularity;
        uint32_t n_access;
        uint32_t access[SVMD_MAX_GPUS];             /* GPUs with access */
        uint32_t n_access_in_place;
        uint32_t access_in_place[SVMD_MAX_GPUS];    /* GPUs with access in place */
} svmd_svm_state;

/* The name ("gpu-read-mostly") of a single SVMD_SVM_FLAG_* bit, or NULL. */
const char *svmd_svm_flag_to_string(uint32_t flag);

/* ---- changes ---- */

typedef struct svmd_allocate_options {
        const char *const *flags;       /* NULL-terminated names; NULL: writable */
        const uint32_t *map;            /* GPUs to map to atomically with the allocation */
        size_t n_map;
        uint64_t alignment;             /* 0: default */
        const char *label;
        bool persistent;                /* survives the client's disconnect */
        bool dry_run;                   /* validate only; the result is {0, 0} */
        const char *request_id;         /* idempotent retries */
        /* LIBSVMD_0.2: */
        const svmd_svm_attributes *svm; /* domain "svm": its attributes (NULL: the defaults); ignored by
                                         * svmd_allocate_batch() */
} svmd_allocate_options;

typedef struct svmd_allocation {
        uint64_t id;
        uint64_t va;
} svmd_allocation;

typedef struct svmd_change_options {
        bool dry_run;
        const char *request_id;
} svmd_change_options;

typedef struct svmd_host_range {
        uint64_t address;
        uint64_t size;
} svmd_host_range;

/*
 * domain: "vram" (on gpu_id), "gtt", "host" or "svm" (gpu_id: its preferred
 * location unless options->svm says otherwise; 0 for none). options may be NULL.
 */
int svmd_allocate(svmd_client *c, uint64_t size, uint32_t gpu_id, const char *domain,
                  const svmd_allocate_options *options, svmd_allocation *ret, svmd_error *error);
int svmd_allocate_batch(svmd_client *c, const svmd_host_range *ranges, size_t n_ranges, uint32_t gpu_id,
                        const svmd_allocate_options *options, svmd_allocation *ret, svmd_error *error);
int svmd_free(svmd_client *c, uint64_t id, svmd_error *error);
/* The owner will overwrite a "contents-lost" range: it becomes "active" again (no-op otherwise). */
int svmd_reuse(svmd_client *c, uint64_t id, svmd_error *error);
int svmd_map(svmd_client *c, uint64_t id, const uint32_t *gpu_ids, size_t n, const svmd_change_options *options,
             svmd_error *error);
int svmd_unmap(svmd_client *c, uint64_t id, const uint32_t *gpu_ids, size_t n, svmd_error *error);

/*
 * Change the SVM attributes of svm range id, all or nothing: svmd reads the
 * attributes first and sets them back if the kernel fails half-way.
 * options may be NULL. -EOPNOTSUPP where the kernel has no SVM (KFD < 1.5).
 */
int svmd_set_attributes(svmd_client *c, uint64_t id, const svmd_svm_attributes *attrs,
                        const svmd_change_options *options, svmd_error *error);
/* The SVM attributes of svm range id (its SvmAttributes property). -EINVAL for ranges of other domains. */
int svmd_get_svm_attributes(svmd_client *c, uint64_t id, svmd_svm_state *ret, svmd_error *error);

typedef enum svmd_op_kind {
        SVMD_OP_ALLOCATE,
        SVMD_OP_ALLOCATE_BATCH,
        SVMD_OP_MAP,
        SVMD_OP_UNMAP,
        SVMD_OP_FREE,
        SVMD_OP_SET_ATTRIBUTES,         /* LIBSVMD_0.2 */
} svmd_op_kind;

typedef struct svmd_op {
        svmd_op_kind kind;
        /* SVMD_OP_ALLOCATE / SVMD_OP_ALLOCATE_BATCH */
        uint64_t size;
        uint32_t gpu_id;
        const char *domain;
        const svmd_host_range *host_ranges;
        size_t n_host_ranges;
        const char *const *flags;
        uint64_t alignment;
        const char *label;
        bool persistent;
        /* GPUs: "map" of an allocation, "gpus" of Map/Unmap */
        const uint32_t *gpus;
        size_t n_gpus;
        /* SVMD_OP_MAP / SVMD_OP_UNMAP / SVMD_OP_FREE: the range, by id or as the
         * result of the earlier Allocate at index ref of the same commit */
        uint64_t id;
        bool by_ref;
        uint32_t ref;
        /* LIBSVMD_0.2: SVMD_OP_ALLOCATE of domain "svm": its attributes (NULL: the defaults);
         * SVMD_OP_SET_ATTRIBUTES (a range as for SVMD_OP_MAP): what to set */
        const svmd_svm_attributes *svm;
} svmd_op;

typedef struct svmd_op_result {
        uint64_t id;
        uint64_t va;            /* allocations only */
} svmd_op_result;

/* All operations or none. results: n_ops entries or NULL. */
int svmd_commit(svmd_client *c, const svmd_op *ops, size_t n_ops, const svmd_change_options *options,
                svmd_op_result *results, svmd_error *error);

/* ---- sharing ---- */

/* A dma-buf fd of the range (the backing memfd for host and svm ranges), O_CLOEXEC; the caller closes it. */
int svmd_export(svmd_client *c, uint64_t id, int *ret_fd, uint64_t *ret_va, uint64_t *ret_size,
                svmd_error *error);

typedef struct svmd_grant {
        bool has_uid;
        uint32_t uid;
        const char *unit;       /* glob */
        const char *cgroup;     /* prefix */
        bool read_only;
        uint64_t expires_usec;  /* CLOCK_REALTIME µs; 0: never */
} svmd_grant;

/* *ret_token is malloc()ed. */
int svmd_share(svmd_client *c, uint64_t id, const svmd_grant *grant, char **ret_token, svmd_error *error);

typedef struct svmd_attachment {
        uint64_t id;
        uint64_t va;
        uint64_t size;
        int fd;                 /* dma-buf or memfd; the caller closes it */
} svmd_attachment;

int svmd_attach(svmd_client *c, const char *token, svmd_attachment *ret, svmd_error *error);
int svmd_release(svmd_client *c, uint64_t id, svmd_error *error);

/* LIBSVMD_0.3: one range as its object's properties describe it. */
typedef struct svmd_holder {
        uint32_t uid;
        char unit[257];         /* "": a hold restored after a restart that no connection has used yet */
} svmd_holder;

typedef struct svmd_range_info {
        svmd_range range;       /* as svmd_list_ranges() has it; range.owner_uid is the owner's */
        char owner_unit[257];   /* "": none */
        bool persistent;        /* survives its owner's disconnect and svmd's restart */
        bool detached;          /* its owner freed it while holders remain; it goes with the last hold */
        uint32_t n_holders;
        svmd_svm_state svm;     /* svm ranges only */
} svmd_range_info;

/*
 * Range id: for its owner (also once detached), its holders and administrators;
 * -ENOENT (NoSuchRange) for anyone else, as for an id that does not exist.
 * ret_holders (may be NULL): the holds, malloc()ed, *ret_n_holders of them.
 */
int svmd_get_range(svmd_client *c, uint64_t id, svmd_range_info *ret, svmd_holder **ret_holders,
                   size_t *ret_n_holders, svmd_error *error);

/*
 * LIBSVMD_0.2. The range's owner (by uid, also of a range it freed while
 * holders keep it) or an administrator (org.svmd1.manage) lists and revokes
 * tokens and holds. A revoked token no longer attaches; holds taken with it
 * stay until revoked too. Revoking uid's holds drops every reference of that
 * uid to the range (the fds it has keep their memory); a range its owner freed
 * goes with its last hold.
 */
typedef struct svmd_token_info {
        char token[33];
        bool has_uid;
        uint32_t uid;
        char unit[257];         /* "": any unit */
        char cgroup[1025];      /* "": any cgroup */
        bool read_only;
        uint64_t expires_usec;  /* CLOCK_REALTIME µs; 0: never */
} svmd_token_info;

/* *ret is malloc()ed; free() it. */
int svmd_list_tokens(svmd_client *c, uint64_t id, svmd_token_info **ret, size_t *ret_n, svmd_error *error);
int svmd_revoke_token(svmd_client *c, const char *token, svmd_error *error);
int svmd_revoke_hold(svmd_client *c, uint64_t id, uint32_t uid, svmd_error *error);

/*
 * LIBSVMD_0.4: revocation with a deadline (docs/dbus-api.md, "Revoke"). The owner of
 * range id or an administrator asks uid's holders (every holder, and every token
 * removed at once, with SVMD_REVOKE_ALL_HOLDERS) to release it within timeout_usec
 * (1 µs to a week). Each holder connection gets SVMD_SIGNAL_REVOKE_REQUESTED and
 * acknowledges with svmd_release() (or by disconnecting); at the deadline svmd takes
 * what is left, and that holder's later calls on the range fail with -EKEYREVOKED
 * (org.svmd1.Error.Revoked). The revoker's connection gets SVMD_SIGNAL_REVOKE_FINISHED
 * (svmd_client_watch()). *ret_holders (may be NULL): the holds now waited for; 0: none.
 * *ret_deadline_usec (may be NULL): the deadline svmd set, CLOCK_REALTIME µs.
 * The owner keeps the range. The fds holders already have keep the memory alive:
 * revocation takes svmd's references, not the kernel's (libsvmd(3)).
 */
#define SVMD_REVOKE_ALL_HOLDERS UINT32_MAX
int svmd_revoke(svmd_client *c, uint64_t id, uint32_t uid, uint64_t timeout_usec, unsigned *ret_holders,
                uint64_t *ret_deadline_usec, svmd_error *error);

/* A hold being revoked, as the range's Revoking property lists it. */
typedef struct svmd_revoking {
        uint32_t uid;
        uint64_t deadline_usec; /* CLOCK_REALTIME µs */
} svmd_revoking;

/* The holds of range id being revoked; *ret is malloc()ed (free() it). Who may see the range. */
int svmd_get_revoking(svmd_client *c, uint64_t id, svmd_revoking **ret, size_t *ret_n, svmd_error *error);

/*
 * Make a range usable in this process at its SVM address: id_or_token is a range
 * id the caller owns (decimal, Export) or a token (Attach). Opens this process's
 * own KFD context on first use, reserves [va, va+size) (fails with -EEXIST if
 * anything is mapped there), imports the buffer at va and maps it to gpus[0..n)
 * (n may be 0: CPU access only, where the range is host-visible), and maps
 * host-visible ranges (host, svm, gtt, public vram) for the CPU at the same
 * address. An svm range is not imported: its pages are mapped at va and
 * registered in this process's KFD context with the range's SVM attributes
 * and access for gpus[0..n). All or nothing. *ret_va is the address.
 */
int svmd_attach_local(svmd_client *c, const char *id_or_token, const uint32_t *gpus, size_t n, uint64_t *ret_va,
                      svmd_error *error);
/* Undo svmd_attach_local() of the range at va (and Release it if it was attached by token). */
int svmd_detach_local(svmd_client *c, uint64_t va, svmd_error *error);

/* ---- async ---- */

/* result: 0 or -errno; error: the failure, or NULL. Pointers are valid during the call only. */
typedef void (*svmd_allocate_callback)(svmd_client *c, int result, const svmd_allocation *allocation,
                                       const svmd_error *error, void *userdata);
typedef void (*svmd_done_callback)(svmd_client *c, int result, const svmd_error *error, void *userdata);
typedef void (*svmd_commit_callback)(svmd_client *c, int result, const svmd_op_result *results, size_t n_results,
                                     const svmd_error *error, void *userdata);

/* Queue the call and return; the callback runs from svmd_client_process(). */
int svmd_allocate_async(svmd_client *c, uint64_t size, uint32_t gpu_id, const char *domain,
                        const svmd_allocate_options *options, svmd_allocate_callback callback, void *userdata,
                        svmd_error *error);
int svmd_map_async(svmd_client *c, uint64_t id, const uint32_t *gpu_ids, size_t n,
                   const svmd_change_options *options, svmd_done_callback callback, void *userdata,
                   svmd_error *error);
int svmd_commit_async(svmd_client *c, const svmd_op *ops, size_t n_ops, const svmd_change_options *options,
                      svmd_commit_callback callback, void *userdata, svmd_error *error);
/*
 * LIBSVMD_0.4. Several calls may be in flight on one client, so a program can pipeline: free
 * the last range while the next one is being allocated, without waiting for either.
 */
int svmd_unmap_async(svmd_client *c, uint64_t id, const uint32_t *gpu_ids, size_t n,
                     svmd_done_callback callback, void *userdata, svmd_error *error);
int svmd_free_async(svmd_client *c, uint64_t id, svmd_done_callback callback, void *userdata, svmd_error *error);

/* ---- signals ---- */

typedef enum svmd_signal_kind {
        SVMD_SIGNAL_RANGE_CREATED,      /* id */
        SVMD_SIGNAL_RANGE_FREED,        /* id */
        SVMD_SIGNAL_QUOTA_EXCEEDED,     /* scope, resource */
        SVMD_SIGNAL_GPU_LOST,           /* gpu_id */
        /* LIBSVMD_0.4; callbacks should ignore kinds they do not know. */
        SVMD_SIGNAL_CONTENTS_LOST,      /* id, gpu_id, reason: a reset of gpu_id took the range's contents */
        SVMD_SIGNAL_VM_FAULT,           /* gpu_id, pid, task: a VM fault of the caller's process pid */
        SVMD_SIGNAL_REVOKE_REQUESTED,   /* id, uid, deadline_usec: release range id by then */
        SVMD_SIGNAL_REVOKE_FINISHED,    /* id, acknowledged, forced: a revocation this client started is over */
} svmd_signal_kind;

typedef struct svmd_signal {
        svmd_signal_kind kind;
        const char *name;               /* "RangeCreated", … */
        uint64_t id;
        uint32_t gpu_id;
        const char *scope;
        const char *resource;
        /* LIBSVMD_0.4 */
        const char *reason;             /* ContentsLost */
        uint32_t pid;                   /* VmFault */
        const char *task;               /* VmFault: the kernel's task name */
        uint32_t uid;
        uint64_t deadline_usec;         /* CLOCK_REALTIME µs */
        uint32_t acknowledged;          /* holds released (or disconnected) before the deadline */
        uint32_t forced;                /* holds taken at the deadline */
} svmd_signal;

typedef void (*svmd_signal_callback)(svmd_client *c, const svmd_signal *signal, void *userdata);

/* Subscribe to the manager's signals; callbacks run from svmd_client_process(). One subscription per client. */
int svmd_client_watch(svmd_client *c, svmd_signal_callback callback, void *userdata, svmd_error *error);

/* ---- pools (LIBSVMD_0.4) ---- */

/*
 * A pool sub-allocates small blocks from chunks it takes from svmd, the way
 * hipMallocAsync pools or a caching allocator do: after the first chunk, an
 * allocation and its release are a few hundred nanoseconds in the client, with
 * no round trip to svmd. Chunks are ordinary ranges of the pool's client (label
 * "pool" unless set): svmd charges them to the caller's quota, frees them when
 * the client disconnects, and lists them. A block is not a range: it cannot be
 * freed, mapped or shared through svmd on its own. Sharing a block means sharing
 * its chunk (svmd_pool_block.range_id) and passing the offset, which also
 * exposes the chunk's other blocks: use a pool of its own, or a plain range,
 * for memory that is shared.
 *
 * Every svmd_pool_* call is thread-safe. The pool calls svmd on its client
 * (svmd_allocate, svmd_free) while it holds its own lock; as clients are not
 * thread-safe, no other thread may use that client meanwhile: give a pool
 * used from several threads a client of its own.
 */
typedef struct svmd_pool svmd_pool;

typedef struct svmd_pool_options {
        uint64_t chunk_size;            /* 0: 2 MiB; a block larger than that gets a chunk of its own */
        uint64_t max_bytes;             /* the pool never holds more in chunks; 0: only the quota limits */
        uint64_t keep_bytes;            /* svmd_pool_dealloc() returns idle chunks beyond this; UINT64_MAX: never */
        const char *label;              /* the chunks' label; NULL: "pool" */
        const char *const *flags;       /* the chunks' flags (svmd_allocate_options.flags) */
        const uint32_t *map;            /* GPUs to map each chunk to */
        size_t n_map;
} svmd_pool_options;

typedef struct svmd_pool_block {
        uint64_t va;                    /* where the block starts */
        uint64_t size;                  /* as asked, rounded up to the pool's granule (256 bytes) */
        uint64_t range_id;              /* the chunk: an svmd range */
        uint64_t offset;                /* va - the chunk's va */
} svmd_pool_block;

typedef struct svmd_pool_stats {
        uint64_t chunks;                /* ranges held */
        uint64_t chunk_bytes;           /* their size */
        uint64_t used_bytes;            /* in blocks handed out */
        uint64_t blocks;                /* blocks handed out */
        uint64_t chunk_allocations;     /* Allocate calls made, since the pool was made */
        uint64_t chunk_frees;           /* Free calls made */
} svmd_pool_stats;

/*
 * A pool on client c for domain "vram" (on gpu_id) or "gtt" (gpu_id: home GPU, 0 for
 * any). options may be NULL. Nothing is allocated until the first block.
 */
int svmd_pool_new(svmd_pool **ret, svmd_client *c, uint32_t gpu_id, const char *domain,
                  const svmd_pool_options *options, svmd_error *error);
/* Frees every chunk, blocks still handed out included, and the pool. Returns NULL. */
svmd_pool *svmd_pool_free(svmd_pool *p);
/*
 * A block of size bytes aligned to alignment (a power of two; 0: 256), from a chunk with
 * room or a new one. -EINVAL: size 0 or too large, bad alignment; -ENOSPC: max_bytes
 * reached; a new chunk's failure as svmd_allocate() reports it (QuotaExceeded, …).
 */
int svmd_pool_alloc(svmd_pool *p, uint64_t size, uint64_t alignment, svmd_pool_block *ret, svmd_error *error);
/* Give back the block at va. -ENOENT: no block starts there. A chunk left idle beyond keep_bytes is freed. */
int svmd_pool_dealloc(svmd_pool *p, uint64_t va, svmd_error *error);
/* Free idle chunks until at most keep_bytes of idle chunks remain. Returns the chunks freed. */
int svmd_pool_trim(svmd_pool *p, uint64_t keep_bytes, svmd_error *error);
int svmd_pool_get_stats(svmd_pool *p, svmd_pool_stats *ret);

#ifdef __cplusplus
}
#endif
