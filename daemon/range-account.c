/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * What a range counts against (the allocation totals, its owner's quota scope and KFD context,
 * the GPUs' mapped bytes) and whether a request fits: validation changes no state.
 */

#include <errno.h>
#include <inttypes.h>
#include <systemd/sd-bus.h>

#include "client.h"
#include "context.h"
#include "fd-slots.h"
#include "gpu.h"
#include "health.h"
#include "identity.h"
#include "kfd-device.h"
#include "kfd-topology.h"
#include "macro.h"
#include "manager.h"
#include "persist.h"
#include "quota.h"
#include "range-svm.h"
#include "range.h"
#include "size-util.h"
#include "svmd-protocol.h"
#include "transaction.h"
#include "va-space.h"

void range_account(Range *range, int sign) {
        Manager *m = range->manager;
        Gpu *g = m->gpus[range->home];
        uint64_t *counter = range->domain == RANGE_DOMAIN_VRAM ? &g->vram_allocated : &g->gtt_allocated;

        if (range->owner)
                usage_add(&range->owner->scope->usage, range->domain == RANGE_DOMAIN_VRAM, range->home, range_size(range), sign);
        context_account(m, range->owner ? range->owner->scope : NULL, range->context, sign);
        if (range->persistent)
                m->n_persistent = sign > 0 ? m->n_persistent + 1 : m->n_persistent - 1;

        if (sign > 0) {
                *counter += range_size(range);
                m->bytes_allocated += range_size(range);
        } else {
                *counter -= range_size(range);
                m->bytes_allocated -= range_size(range);
        }
}

void range_account_piece_mapping(Range *range, const RangePiece *p, uint64_t mask, int sign) {
        Manager *m = range->manager;
        Gpu *g;

        uint64_t size = range_piece_size(range, (uint32_t) (p - range->pieces));

        FOREACH_GPU_IN_MASK(g, m, mask) {
                if (sign > 0)
                        g->bytes_mapped += size;
                else
                        g->bytes_mapped -= size;
        }
}

void range_account_mapping(Range *range, uint64_t mask, int sign) {
        for (uint32_t i = 0; i < range->n_pieces; i++)
                range_account_piece_mapping(range, &range->pieces[i], mask, sign);
}

/* ---- validation: nothing here changes state ---- */

static int check_quota(Manager *m, const RangeSpec *spec, uint64_t size, QuotaRequest *pending,
                       sd_bus_error *error) {
        QuotaRequest req = *pending;
        const char *resource = NULL;
        const char *scope = spec->owner ? spec->owner->scope->key : "?";
        int r;

        req.ranges++;
        req.window += size;
        if (spec->persistent)
                req.persistent++;
        if (spec->domain == RANGE_DOMAIN_VRAM) {
                req.vram += size;
                req.vram_per_gpu[spec->home] += size;
        } else
                req.host += size;

        if (spec->owner) {
                r = quota_check(m, spec->owner->scope, &req, &resource, error);
                if (r < 0) {
                        manager_emit_quota_exceeded(m, scope, resource);
                        return r;
                }
        }
        if (spec->client && spec->client->n_ranges + req.ranges > m->config.limit_ranges_per_client) {
                manager_emit_quota_exceeded(m, scope, "ranges-per-client");
                return sd_bus_error_setf(error, SVMD_ERROR_QUOTA_EXCEEDED,
                                         "This connection owns %" PRIu64 " ranges; at most %" PRIu64 " are allowed per client.",
                                         spec->client->n_ranges, m->config.limit_ranges_per_client);
        }
        /* A service manager passes the fd store back in one environment string, LISTEN_FDNAMES, which
         * the kernel caps: past it svmd could not be started again at all (fd-slots.h). */
        if (req.persistent > 0 && m->fdstore &&
            (m->n_stored_fds + req.persistent > FD_SLOTS_MAX ||
             m->fdnames_bytes + req.persistent * FD_SLOT_NAME_MAX > FD_STORE_NAMES_BYTES_MAX)) {
                manager_emit_quota_exceeded(m, scope, "persistent-ranges");
                return sd_bus_error_setf(error, SVMD_ERROR_QUOTA_EXCEEDED,
                                         "The node keeps %" PRIu64 " persistent ranges, as many as the service manager can "
                                         "hand back at a restart (their fd names fill LISTEN_FDNAMES); free some or "
                                         "allocate without \"persistent\".", m->n_persistent);
        }
        if (req.persistent > 0 && m->fdstore && m->n_stored_fds + req.persistent > m->config.limit_fd_store_max) {
                manager_emit_quota_exceeded(m, scope, "fd-store");
                return sd_bus_error_setf(error, SVMD_ERROR_QUOTA_EXCEEDED,
                                         "The service manager's fd store holds %" PRIu64 " fds of persistent ranges, "
                                         "its capacity (limits.fd-store-max, the unit's FileDescriptorStoreMax=) is %"
                                         PRIu64 "; free a persistent range or allocate without \"persistent\".",
                                         m->n_stored_fds, m->config.limit_fd_store_max);
        }
        if (req.persistent > 0) {
                r = persist_wait_compaction(m);
                if (r < 0)
                        return r;
                r = persist_check_room(m, error);
                if (r < 0)
                        return r;
        }
        if (req.persistent > 0 && m->n_persistent + req.persistent > m->config.limit_persistent_ranges) {
                manager_emit_quota_exceeded(m, scope, "persistent-ranges");
                return sd_bus_error_setf(error, SVMD_ERROR_QUOTA_EXCEEDED,
                                         "The node keeps %" PRIu64 " persistent ranges, the configured maximum is %" PRIu64
                                         " (limits.persistent-ranges); free some or allocate without \"persistent\".",
                                         m->n_persistent, m->config.limit_persistent_ranges);
        }

        *pending = req;
        return 0;
}

int range_validate_spec(Manager *m, const RangeSpec *spec, QuotaRequest *pending, sd_bus_error *error) {
        Gpu *home = m->gpus[spec->home];
        QuotaRequest none = {};
        VaSpaceStats stats;
        uint64_t size, need;
        int r;

        if (!pending)
                pending = &none;

        r = health_check_gpus(m, UINT64_C(1) << spec->home, "allocations", error);
        if (r < 0)
                return r;
        if (spec->size == 0)
                return sd_bus_error_set(error, SD_BUS_ERROR_INVALID_ARGS, "The size must not be 0.");
        if (!align_up_ok(spec->size, PAGE_SIZE_4K, &size))
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "A size of %" PRIu64 " bytes overflows the address space.", spec->size);
        if (size > m->config.va_size)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "%s is larger than the whole SVM window (%s).", FORMAT_BYTES(size),
                                         FORMAT_BYTES(m->config.va_size));
        if (spec->alignment != 0 &&
            (spec->alignment < PAGE_SIZE_4K || (spec->alignment & (spec->alignment - 1)) != 0 ||
             spec->alignment > (UINT64_C(1) << 30)))
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "Alignment %" PRIu64 " must be a power of two between 4 KiB and 1 GiB.",
                                         spec->alignment);

        if ((spec->flags & RANGE_FLAG_PUBLIC) && spec->domain != RANGE_DOMAIN_VRAM)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "Flag \"public\" applies to VRAM only; %s memory is host memory already.",
                                         range_domain_to_string(spec->domain));
        if ((spec->flags & RANGE_FLAG_CONTIGUOUS) && spec->domain != RANGE_DOMAIN_VRAM)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "Flag \"contiguous\" applies to VRAM only.");
        if ((spec->flags & RANGE_FLAG_COHERENT) && (spec->flags & RANGE_FLAG_UNCACHED) &&
            spec->domain == RANGE_DOMAIN_VRAM)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "Flags \"coherent\" and \"uncached\" together apply to host and GTT memory, not VRAM.");
        if ((spec->flags & RANGE_FLAG_PUBLIC) && !home->kfd->large_bar)
                return sd_bus_error_setf(error, SVMD_ERROR_NOT_SUPPORTED,
                                         "GPU 0x%x has a small BAR, so its VRAM cannot be host-visible; drop \"public\" or use GTT.",
                                         home->gpu_id);
        if (spec->persistent && spec->n_pieces > 0)
                return sd_bus_error_set(error, SVMD_ERROR_NOT_SUPPORTED,
                                        "Batch ranges cannot be persistent; make their host ranges persistent instead.");
        if (spec->domain == RANGE_DOMAIN_SVM) {
                const char *needed;
                if (kfd_device_require_feature(m->kfd, KFD_FEATURE_SVM, &needed) < 0)
                        return sd_bus_error_setf(error, SVMD_ERROR_NOT_SUPPORTED,
                                                 "svm ranges need KFD interface %s (AMDKFD_IOC_SVM); this kernel has %u.%u.",
                                                 needed, m->kfd_major, m->kfd_minor);
                bool any = false;
                for (size_t i = 0; i < m->n_gpus; i++)
                        any = any || gpu_svm_capable(m, i);
                if (!any)
                        return sd_bus_error_set(error, SVMD_ERROR_NOT_SUPPORTED,
                                                "No GPU of this node supports SVM (HSA_CAP_SVMAPI_SUPPORTED); "
                                                "use host ranges instead.");
                if (spec->flags & ~RANGE_FLAG_WRITABLE)
                        return sd_bus_error_set(error, SD_BUS_ERROR_INVALID_ARGS,
                                                "svm ranges take their flags as \"svm-flags\", not \"flags\".");
        }
        if (spec->persistent && !range_domain_is_memfd(spec->domain) && spec->restore_fd < 0) {
                const char *needed;
                /* It survives a restart through a dma-buf kept in the fd store. */
                if (kfd_device_require_feature(m->kfd, KFD_FEATURE_EXPORT_DMABUF, &needed) < 0)
                        return sd_bus_error_setf(error, SVMD_ERROR_NOT_SUPPORTED,
                                                 "Persistent VRAM and GTT need KFD interface %s (dma-buf export); "
                                                 "this kernel has %u.%u.", needed, m->kfd_major, m->kfd_minor);
        }
        if (spec->flags & RANGE_FLAG_CONTIGUOUS) {
                const char *needed;
                if (kfd_device_require_feature(m->kfd, KFD_FEATURE_CONTIGUOUS, &needed) < 0)
                        return sd_bus_error_setf(error, SVMD_ERROR_NOT_SUPPORTED,
                                                 "Flag \"contiguous\" needs KFD interface %s; this kernel has %u.%u.",
                                                 needed, m->kfd_major, m->kfd_minor);
        }

        if (spec->domain == RANGE_DOMAIN_VRAM) {
                uint64_t avail;

                /* svmd's estimate first; only when it says no is the kernel asked again, so that a
                 * refusal is never based on a stale figure. The kernel has the last word at ALLOC. */
                need = size + pending->vram_per_gpu[spec->home];
                r = gpu_vram_available(home, UINT64_MAX, &avail);
                if (r >= 0 && need > avail)
                        r = gpu_vram_available(home, 0, &avail);
                if (r < 0)
                        return sd_bus_error_setf(error, transaction_kernel_error_name(r),
                                                 "Querying free VRAM of GPU 0x%x failed: %s.", home->gpu_id,
                                                 strerror(-r));
                if (need > avail)
                        return sd_bus_error_setf(error, SVMD_ERROR_OUT_OF_MEMORY,
                                                 "GPU 0x%x has %s of VRAM free; %s requested.", home->gpu_id,
                                                 FORMAT_BYTES(avail), FORMAT_BYTES(need));
        }

        /* Window space: no hole of the size means no chance, and neither does less free space than
         * this and the earlier allocations of the same Commit take together. Whether they fit the
         * holes, alignment included, is for va_space_alloc() to say: it fails before this range's
         * first ioctl, and the transaction rolls back (docs/architecture.md, "Transactions"). */
        va_space_get_stats(m->va, &stats);
        if (stats.largest_hole < size)
                return sd_bus_error_setf(error, SVMD_ERROR_OUT_OF_MEMORY,
                                         "The SVM window has no free range of %s (largest free range: %s).",
                                         FORMAT_BYTES(size), FORMAT_BYTES(stats.largest_hole));
        if (pending->window > 0 && size + pending->window > stats.size - stats.bytes_used)
                return sd_bus_error_setf(error, SVMD_ERROR_OUT_OF_MEMORY,
                                         "The SVM window has %s free; %s requested with the earlier allocations.",
                                         FORMAT_BYTES(stats.size - stats.bytes_used),
                                         FORMAT_BYTES(size + pending->window));

        /* Last, so that a refusal for another reason does not count as a quota event. */
        r = check_quota(m, spec, size, pending, error);
        if (r < 0)
                return r;
        return 0;
}

int range_validate_map(Manager *m, uint32_t home, RangeDomain domain, uint64_t mask, sd_bus_error *error) {
        const KfdTopology *topo = kfd_device_get_topology(m->kfd);
        Gpu *h = m->gpus[home], *g;
        int r;

        r = health_check_gpus(m, mask, "maps", error);
        if (r < 0)
                return r;
        if (domain == RANGE_DOMAIN_SVM) {
                FOREACH_GPU_IN_MASK(g, m, mask)
                        if (!gpu_svm_capable(m, g->index))
                                return sd_bus_error_setf(error, SVMD_ERROR_NOT_SUPPORTED,
                                                         "GPU 0x%x does not support SVM (no HSA_CAP_SVMAPI_SUPPORTED).",
                                                         g->gpu_id);
                return 0;
        }
        if (domain != RANGE_DOMAIN_VRAM)
                return 0; /* system memory is reachable from every GPU */

        FOREACH_GPU_IN_MASK(g, m, mask)
                if (!kfd_topology_can_map(topo, h->gpu_id, g->gpu_id))
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                 "GPU 0x%x cannot map VRAM of GPU 0x%x: they share no XGMI hive "
                                                 "and no PCIe peer-to-peer link.",
                                                 g->gpu_id, h->gpu_id);
        return 0;
}

int range_validate_unmap(const Range *range, uint64_t mapped, uint64_t mask, sd_bus_error *error) {
        uint64_t missing = mask & ~mapped;
        char buf[256];

        if (missing != 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "Range %" PRIu64 " is not mapped to GPU %s.", range->id,
                                         gpu_mask_to_string(range->manager, missing, buf, sizeof(buf)));
        return 0;
}

int range_validate_free(const Range *range, sd_bus_error *error) {
        if (range_n_batch_users(range) > 0)
                return sd_bus_error_setf(error, SVMD_ERROR_BUSY,
                                         "Range %" PRIu64 " backs pieces of batch ranges; free those first.", range->id);
        return 0;
}

int range_validate_set_attributes(const Range *range, sd_bus_error *error) {
        if (!range_svm(range))
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "Range %" PRIu64 " is a %s range; SVM attributes apply to svm ranges only.", range->id,
                                         range_domain_to_string(range->domain));
        return 0;
}
