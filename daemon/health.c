/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * GPU health (health.h): one SMI listener per GPU on the event loop, the
 * reset and VM fault handling, and Reuse. What the kernel reports and what
 * survives a reset: docs/architecture.md, "GPU health".
 */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client.h"
#include "gpu.h"
#include "health.h"
#include "kfd-ioctl.h"
#include "kfd-uapi.h"
#include "log.h"
#include "manager.h"
#include "method-util.h"
#include "range-svm.h"
#include "range.h"
#include "svmd-protocol.h"

#define SMI_MASK(i) (UINT64_C(1) << ((i) - 1))
#define SMI_LINE_MAX 96                 /* KFD_SMI_EVENT_MSG_SIZE */
#define SMI_BUF_SIZE 1024               /* MAX_KFIFO_SIZE of the first kernels */

typedef struct HealthGpu {
        Health *health;
        Gpu *gpu;
        int fd;
        sd_event_source *source;
        char buf[SMI_BUF_SIZE + SMI_LINE_MAX];
        size_t len;                     /* bytes of an unfinished line at the start of buf */
        uint32_t last_pre_seq;          /* the reset sequence number of the last pre-reset seen */
} HealthGpu;

struct Health {
        Manager *manager;
        HealthGpu *gpus;
        size_t n_gpus;
};

/* ---- the kernel's lines ---- */

int smi_event_parse(const char *line, SmiEvent *ret) {
        SmiEvent ev = {};
        unsigned long v;
        char *end;

        errno = 0;
        v = strtoul(line, &end, 16);
        if (errno != 0 || end == line || *end != ' ' || v == 0 || v > 64)
                return -EINVAL;
        ev.event = (unsigned) v;
        line = end + 1;

        switch (ev.event) {
        case HEALTH_SMI_GPU_PRE_RESET:
        case HEALTH_SMI_GPU_POST_RESET:
                /* "%x\n" (before the cause was added), "%x %s\n" since: KFD_EVENT_FMT_UPDATE_GPU_RESET. */
                v = strtoul(line, &end, 16);
                if (errno != 0 || end == line || v > UINT32_MAX || (*end != '\0' && *end != ' '))
                        return -EINVAL;
                ev.seq = (uint32_t) v;
                if (*end == ' ')
                        snprintf(ev.text, sizeof(ev.text), "%s", end + 1);
                break;
        case HEALTH_SMI_VMFAULT:
                /* "%x:%s\n": KFD_EVENT_FMT_VMFAULT(pid, task_name). */
                v = strtoul(line, &end, 16);
                if (errno != 0 || end == line || *end != ':' || v == 0 || v > INT32_MAX)
                        return -EINVAL;
                ev.pid = (pid_t) v;
                snprintf(ev.text, sizeof(ev.text), "%s", end + 1);
                break;
        case HEALTH_SMI_THERMAL_THROTTLE: {
                /* "%llx:%llx\n": bitmask, counter. */
                unsigned long long a, b;

                a = strtoull(line, &end, 16);
                if (errno != 0 || end == line || *end != ':')
                        return -EINVAL;
                line = end + 1;
                b = strtoull(line, &end, 16);
                if (errno != 0 || end == line || *end != '\0')
                        return -EINVAL;
                ev.a = a;
                ev.b = b;
                break;
        }
        default:
                return -EOPNOTSUPP;
        }
        *ret = ev;
        return 0;
}

/* ---- resets ---- */

bool range_contents_lost(const Range *range) {
        return range_lost_reason(range) != NULL;
}

/* Where a range's bytes may sit in g's VRAM: VRAM ranges homed there, svm ranges preferring it. */
static bool range_in_vram_of(const Range *range, const Gpu *g) {
        if (range->domain == RANGE_DOMAIN_VRAM)
                return range->home == g->index;
        if (range->domain == RANGE_DOMAIN_SVM && range_svm(range))
                return range_svm(range)->attrs.preferred_loc == g->gpu_id || range_svm(range)->attrs.prefetch_loc == g->gpu_id;
        return false;
}

typedef struct LostSignal {
        uint64_t id;
        uint32_t gpu_id;
        const char *reason;
} LostSignal;

static int append_lost(sd_bus_message *msg, void *userdata) {
        LostSignal *s = userdata;
        return sd_bus_message_append(msg, "tus", s->id, s->gpu_id, s->reason);
}

static void announce_state(Manager *m, Range *range) {
        _cleanup_free_ char *path = NULL;

        if (range_path(range->id, &path) >= 0)
                manager_emit_range_properties_changed(m, range, path,
                                                      (const char *const[]) { "State", "StateReason", NULL });
}

static void lose_contents(Manager *m, Gpu *g, uint32_t seq, const char *cause) {
        _cleanup_free_ char *reason = NULL;
        uint64_t n = 0;

        if (asprintf(&reason, "GPU 0x%x was reset (reset %" PRIu32 "%s%s): VRAM contents are undefined", g->gpu_id,
                     seq, cause && *cause ? ", " : "", cause && *cause ? cause : "") < 0) {
                (void) log_error_errno(ENOMEM, "Marking ranges of a reset GPU failed: %m");
                return;
        }
        for (Range *range = manager_ranges_from(m, 0); range; range = manager_ranges_next(m, range)) {
                char *copy;

                if (!range_in_vram_of(range, g))
                        continue;
                /* A second reset before Reuse: the newest reason. */
                copy = strdup(reason);
                if (!copy) {
                        (void) log_error_errno(ENOMEM, "Marking range %" PRIu64 " failed: %m", range->id);
                        continue;
                }
                if (range_set_lost_reason(range, copy) < 0) {
                        (void) log_error_errno(ENOMEM, "Marking range %" PRIu64 " failed: %m", range->id);
                        continue;
                }
                n++;
                announce_state(m, range);
                manager_send_about_range(m, range, SVMD_MANAGER_PATH, SVMD_MANAGER_INTERFACE, "ContentsLost",
                                         append_lost,
                                         &(LostSignal) { .id = range->id, .gpu_id = g->gpu_id, .reason = reason });
        }
        log_fields(LOG_WARNING, &((LogFields) { .gpu_id = g->gpu_id }),
                   "GPU 0x%x is being reset (reset %" PRIu32 "%s%s): %" PRIu64 " ranges lost their contents; "
                   "allocations and maps on it are refused until the reset ends.",
                   g->gpu_id, seq, cause && *cause ? ", " : "", cause ?: "", n);
}

static void set_resetting(Manager *m, Gpu *g, bool on) {
        if (g->resetting == on)
                return;
        g->resetting = on;
        if (on)
                g->resets++;
        manager_emit_properties_changed(m, g->path, SVMD_GPU_INTERFACE,
                                        (const char *const[]) { "Resetting", "Resets", NULL });
        manager_update_status(m);
}

static HealthGpu *health_gpu(Manager *m, Gpu *g) {
        Health *h = m->health;

        return h && g->index < h->n_gpus ? &h->gpus[g->index] : NULL;
}

static void on_pre_reset(Manager *m, Gpu *g, const SmiEvent *ev) {
        HealthGpu *hg = health_gpu(m, g);

        if (hg)
                hg->last_pre_seq = ev->seq;
        set_resetting(m, g, true);
        lose_contents(m, g, ev->seq, ev->text);
}

static void on_post_reset(Manager *m, Gpu *g, const SmiEvent *ev) {
        HealthGpu *hg = health_gpu(m, g);

        /* The pre-reset line was dropped (a full FIFO): the reset happened all the same. */
        if (!g->resetting && (!hg || hg->last_pre_seq != ev->seq)) {
                log_fields(LOG_WARNING, &((LogFields) { .gpu_id = g->gpu_id }),
                           "GPU 0x%x: end of reset %" PRIu32 " without its start, treating it as a whole reset.",
                           g->gpu_id, ev->seq);
                set_resetting(m, g, true);
                lose_contents(m, g, ev->seq, "");
        }
        if (hg)
                hg->last_pre_seq = ev->seq;
        set_resetting(m, g, false);
        log_fields(LOG_NOTICE, &((LogFields) { .gpu_id = g->gpu_id }),
                   "GPU 0x%x finished reset %" PRIu32 "; allocations on it work again.", g->gpu_id, ev->seq);
}

/* ---- VM faults ---- */

typedef struct FaultSignal {
        uint32_t gpu_id;
        uint32_t pid;
        const char *task;
} FaultSignal;

static int append_fault(sd_bus_message *msg, void *userdata) {
        FaultSignal *s = userdata;
        return sd_bus_message_append(msg, "uus", s->gpu_id, s->pid, s->task);
}

static void on_vm_fault(Manager *m, Gpu *g, const SmiEvent *ev) {
        FaultSignal s = { .gpu_id = g->gpu_id, .pid = (uint32_t) ev->pid, .task = ev->text };
        unsigned told = 0;

        if (ev->pid == getpid()) {
                log_fields(LOG_ERR, &((LogFields) { .gpu_id = g->gpu_id }),
                           "GPU 0x%x reported a VM fault in svmd's own VM.", g->gpu_id);
                return;
        }
        /* The kernel names the faulting process, not the address: only that process's own
         * connections hear of it, so no tenant learns about another's faults. */
        for (Client *c = m->subscribers; c; c = c->subscriber_next)
                if (c->pid == ev->pid && !c->gone) {
                        manager_send_to_client(m, c, SVMD_MANAGER_PATH, SVMD_MANAGER_INTERFACE, "VmFault",
                                               append_fault, &s);
                        told++;
                }
        log_fields(LOG_WARNING, &((LogFields) { .gpu_id = g->gpu_id }),
                   "GPU 0x%x: VM fault in process %d (%s)%s.", g->gpu_id, (int) ev->pid, ev->text,
                   told > 0 ? ", told its svmd connections" : ", which has no subscribed svmd connection");
}

void health_handle_event(Manager *m, Gpu *g, const SmiEvent *ev) {
        switch (ev->event) {
        case HEALTH_SMI_GPU_PRE_RESET:
                on_pre_reset(m, g, ev);
                break;
        case HEALTH_SMI_GPU_POST_RESET:
                on_post_reset(m, g, ev);
                break;
        case HEALTH_SMI_VMFAULT:
                on_vm_fault(m, g, ev);
                break;
        case HEALTH_SMI_THERMAL_THROTTLE:
                log_fields(LOG_NOTICE, &((LogFields) { .gpu_id = g->gpu_id }),
                           "GPU 0x%x is throttled (reasons 0x%" PRIx64 ", %" PRIu64 " throttle interrupts so far).",
                           g->gpu_id, ev->a, ev->b);
                break;
        default:
                break;
        }
}

/* ---- the listeners ---- */

static void stop_watching(HealthGpu *hg) {
        hg->source = sd_event_source_disable_unref(hg->source);
        hg->fd = safe_close(hg->fd);
}

static void handle_line(HealthGpu *hg, const char *line) {
        SmiEvent ev;
        int r;

        r = smi_event_parse(line, &ev);
        if (r == -EOPNOTSUPP)
                return;
        if (r < 0) {
                log_fields(LOG_WARNING, &((LogFields) { .gpu_id = hg->gpu->gpu_id }),
                           "GPU 0x%x: SMI event '%s' is not in a format svmd knows, ignoring.", hg->gpu->gpu_id,
                           line);
                return;
        }
        health_handle_event(hg->health->manager, hg->gpu, &ev);
}

static int on_smi(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        HealthGpu *hg = userdata;
        Gpu *g = hg->gpu;

        for (;;) {
                ssize_t n = read(fd, hg->buf + hg->len, sizeof(hg->buf) - 1 - hg->len);
                char *start, *nl;

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        break;
                if (n <= 0) {
                        int err = n < 0 ? errno : EPIPE;

                        log_fields(LOG_ERR, &((LogFields) { .gpu_id = g->gpu_id }),
                                   "GPU 0x%x: reading its SMI events failed (%s); no longer watching its health.",
                                   g->gpu_id, strerror(err));
                        stop_watching(hg);
                        if (err == ENODEV)
                                manager_emit_gpu_lost(hg->health->manager, g->gpu_id);
                        return 0;
                }
                hg->len += (size_t) n;
                hg->buf[hg->len] = '\0';
                start = hg->buf;
                while ((nl = strchr(start, '\n'))) {
                        *nl = '\0';
                        handle_line(hg, start);
                        start = nl + 1;
                }
                hg->len = strlen(start);
                if (hg->len >= SMI_LINE_MAX)
                        /* No line is that long: not the kernel's stream, start over. */
                        hg->len = 0;
                memmove(hg->buf, start, hg->len);
        }
        if (revents & (EPOLLHUP | EPOLLERR)) {
                log_fields(LOG_ERR, &((LogFields) { .gpu_id = g->gpu_id }),
                           "GPU 0x%x: its SMI event file was closed by the kernel; no longer watching its health.",
                           g->gpu_id);
                stop_watching(hg);
        }
        return 0;
}

static int watch_gpu(Manager *m, HealthGpu *hg) {
        uint64_t mask = SMI_MASK(HEALTH_SMI_VMFAULT) | SMI_MASK(HEALTH_SMI_THERMAL_THROTTLE) |
                        SMI_MASK(HEALTH_SMI_GPU_PRE_RESET) | SMI_MASK(HEALTH_SMI_GPU_POST_RESET);
        int r;

        r = kfd_smi_events_open(m->kfd_fd, hg->gpu->gpu_id, &hg->fd);
        if (r < 0)
                return r;
        if (write(hg->fd, &mask, sizeof(mask)) != (ssize_t) sizeof(mask))
                return errno > 0 ? -errno : -EIO;
        return sd_event_add_io(m->event, &hg->source, hg->fd, EPOLLIN, on_smi, hg);
}

int health_start(Manager *m) {
        _cleanup_(health_freep) Health *h = NULL;
        size_t watched = 0;

        h = calloc(1, sizeof(Health));
        if (!h)
                return -ENOMEM;
        h->manager = m;
        h->gpus = calloc(m->n_gpus ?: 1, sizeof(HealthGpu));
        if (!h->gpus)
                return -ENOMEM;
        h->n_gpus = m->n_gpus;
        for (size_t i = 0; i < m->n_gpus; i++)
                h->gpus[i] = (HealthGpu) { .health = h, .gpu = m->gpus[i], .fd = -EBADF };

        if (m->kfd_major != 1 || m->kfd_minor < SVMD_KFD_MINOR_SMI_EVENTS) {
                log_notice("KFD interface %" PRIu32 ".%" PRIu32 " has no SMI events: GPU resets and VM faults "
                           "are not watched.", m->kfd_major, m->kfd_minor);
                m->health = TAKE_PTR(h);
                return 0;
        }
        for (size_t i = 0; i < h->n_gpus; i++) {
                int r = watch_gpu(m, &h->gpus[i]);

                if (r < 0) {
                        (void) log_internal(LOG_WARNING, r, &((LogFields) { .gpu_id = h->gpus[i].gpu->gpu_id }),
                                            "GPU 0x%x: cannot listen to its SMI events, its resets and VM faults "
                                            "are not watched: %m", h->gpus[i].gpu->gpu_id);
                        stop_watching(&h->gpus[i]);
                        continue;
                }
                watched++;
        }
        log_debug("Watching the health of %zu of %zu GPUs.", watched, h->n_gpus);
        m->health = TAKE_PTR(h);
        return 0;
}

Health *health_free(Health *h) {
        if (!h)
                return NULL;
        for (size_t i = 0; i < h->n_gpus; i++)
                stop_watching(&h->gpus[i]);
        free(h->gpus);
        free(h);
        return NULL;
}

int health_check_gpus(Manager *m, uint64_t mask, const char *what, sd_bus_error *error) {
        Gpu *g;

        FOREACH_GPU_IN_MASK(g, m, mask)
                if (g->resetting)
                        return sd_bus_error_setf(error, SVMD_ERROR_GPU_RESETTING,
                                                 "GPU 0x%x is being reset; %s on it can start when its Resetting "
                                                 "property is false again: retry then.", g->gpu_id, what);
        return 0;
}

/* ---- Reuse ---- */

int method_reuse(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        RangeCall call = { .verb = "Reusing" };
        Range *range;
        Client *c;
        int r;

        r = sd_bus_message_read(msg, "t", &call.id);
        if (r < 0)
                return r;
        r = method_prologue(m, msg, &call, &c, &range, error);
        if (r <= 0)
                return r == 0 ? 1 : r;
        if (!range_contents_lost(range))
                return sd_bus_reply_method_return(msg, NULL);
        for (size_t i = 0; i < m->n_gpus; i++)
                if (m->gpus[i]->resetting && range_in_vram_of(range, m->gpus[i]))
                        return sd_bus_error_setf(error, SVMD_ERROR_GPU_RESETTING,
                                                 "GPU 0x%x is still being reset; reuse range %" PRIu64 " once its "
                                                 "Resetting property is false.", m->gpus[i]->gpu_id, range->id);

        (void) range_set_lost_reason(range, NULL);
        log_fields(LOG_INFO, &((LogFields) { .range_id = range->id }),
                   "Range %" PRIu64 " reused by its owner after losing its contents.", range->id);
        announce_state(m, range);
        return sd_bus_reply_method_return(msg, NULL);
}
