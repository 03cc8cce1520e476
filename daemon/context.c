/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <stdlib.h>

#include "client.h"
#include "context.h"
#include "kfd-device.h"
#include "log.h"
#include "macro.h"
#include "manager.h"
#include "quota.h"

static Context *context_free(Context *c) {
        if (!c)
                return NULL;
        kfd_context_free(c->kfd);
        return mfree(c);
}

int manager_open_contexts(Manager *m) {
        unsigned want = (unsigned) m->config.limit_kfd_contexts;

        if (want > 1 && !kfd_device_has_feature(m->kfd, KFD_FEATURE_CREATE_PROCESS)) {
                log_info("KFD interface %u.%u has no secondary contexts (1.19): one KFD context.",
                         m->kfd_major, m->kfd_minor);
                want = 1;
        }
        want = MAX(want, 1U);

        m->contexts = new0(Context *, want);
        if (!m->contexts)
                return -ENOMEM;
        m->contexts[0] = new0(Context, 1);
        if (!m->contexts[0])
                return -ENOMEM;
        m->contexts[0]->fd = kfd_device_get_fd(m->kfd);
        m->n_contexts = 1;

        while (m->n_contexts < want) {
                _cleanup_free_ Context *c = NULL;
                int r;

                c = new0(Context, 1);
                if (!c)
                        return -ENOMEM;
                r = kfd_context_new(&c->kfd, m->kfd);
                if (r < 0) {
                        /* Logged by the kfd layer. Serve with the contexts there are; say why not more. */
                        log_warning("Running with %u of %u KFD contexts (\"kfd-contexts\" in %s).",
                                    m->n_contexts, want, m->config_path);
                        break;
                }
                c->index = m->n_contexts;
                c->fd = kfd_context_get_fd(c->kfd);
                m->contexts[m->n_contexts++] = TAKE_PTR(c);
        }
        if (m->n_contexts > 1)
                log_info("%u KFD contexts: the primary and %u secondary.", m->n_contexts, m->n_contexts - 1);
        return 0;
}

void manager_close_contexts(Manager *m) {
        /* Secondary contexts die with their fd: only at the end, after every range is gone or handed over
         * to the fd store (exported dma-bufs keep their buffers). */
        for (unsigned i = 0; i < m->n_contexts; i++)
                context_free(m->contexts[i]);
        m->contexts = mfree(m->contexts);
        m->n_contexts = 0;
}

unsigned context_pick(Manager *m, const Scope *owner_scope, RangeDomain domain, bool batch) {
        unsigned best = 0;

        /* USERPTR (host, batch) and SVM: the kernel refuses them in secondary contexts. */
        if (m->n_contexts <= 1 || !owner_scope || batch ||
            (domain != RANGE_DOMAIN_VRAM && domain != RANGE_DOMAIN_GTT))
                return 0;
        if (owner_scope->context_ranges > 0 && owner_scope->context < m->n_contexts)
                return owner_scope->context;
        for (unsigned i = 1; i < m->n_contexts; i++)
                if (best == 0 || m->contexts[i]->n_scopes < m->contexts[best]->n_scopes)
                        best = i;
        return best;
}

void context_account(Manager *m, Scope *scope, unsigned index, int sign) {
        Context *c = m->contexts[index];

        c->n_ranges = sign > 0 ? c->n_ranges + 1 : c->n_ranges - 1;
        if (index == 0 || !scope)
                return;
        if (sign > 0) {
                if (scope->context_ranges++ == 0) {
                        scope->context = (uint8_t) index;
                        c->n_scopes++;
                }
        } else if (scope->context_ranges > 0 && --scope->context_ranges == 0)
                m->contexts[scope->context]->n_scopes--;
}

void context_recount(Manager *m) {
        for (unsigned i = 0; i < m->n_contexts; i++)
                m->contexts[i]->n_ranges = m->contexts[i]->n_scopes = 0;
        for (Range *range = manager_ranges_from(m, 0); range; range = manager_ranges_next(m, range))
                if (range_accounted(range))
                        context_account(m, range->owner ? range->owner->scope : NULL, range->context, +1);
}

int range_kfd_fd(const Range *range) {
        return range->manager->contexts[range->context]->fd;
}
