/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "context.h"
#include "identity.h"
#include "macro.h"
#include "manager.h"
#include "quota.h"
#include "sharing.h"
#include "str-table.h"

/* ---- identities ---- */

Identity *identity_ref(Identity *i) {
        if (i)
                i->n_ref++;
        return i;
}

void identity_unref(Manager *m, Identity *i) {
        if (!i || --i->n_ref > 0)
                return;
        (void) str_table_remove(m->identities, i->key);
        scope_unref(m->quotas, i->scope);
        free(i->unit);
        free(i->cgroup);
        free(i->key);
        free(i);
}

int manager_get_identity(Manager *m, uid_t uid, const char *unit, const char *cgroup, Identity **ret) {
        _cleanup_free_ char *key = NULL;
        Identity *i;
        int r;

        /* \x1f cannot appear in unit names or cgroup paths we accept */
        if (asprintf(&key, "%u\x1f%s\x1f%s", (unsigned) uid, unit, cgroup) < 0)
                return -ENOMEM;
        i = str_table_get(m->identities, key);
        if (i) {
                *ret = identity_ref(i);
                return 0;
        }

        i = calloc(1, sizeof(Identity));
        if (!i)
                return -ENOMEM;
        *i = (Identity) { .n_ref = 1, .uid = uid, .unit = strdup(unit), .cgroup = strdup(cgroup) };
        if (!i->unit || !i->cgroup)
                goto oom;
        r = quota_scope_for(m->quotas, &m->config, uid, unit, cgroup, &i->scope);
        if (r < 0)
                goto fail;
        i->key = TAKE_PTR(key);
        r = str_table_put(m->identities, i->key, i);
        if (r < 0)
                goto fail;
        *ret = i;
        return 0;

oom:
        r = -ENOMEM;
fail:
        scope_unref(m->quotas, i->scope);
        free(i->unit);
        free(i->cgroup);
        free(i->key);
        free(i);
        return r;
}

int manager_rescope(Manager *m) {
        StrTableIter it = {};
        void *v;
        int r;

        /* New scopes first (old ones stay referenced until swapped), then recompute usage from the ranges. */
        while (str_table_iterate(m->identities, &it, NULL, &v)) {
                Identity *i = v;
                Scope *s;

                r = quota_scope_for(m->quotas, &m->config, i->uid, i->unit, i->cgroup, &s);
                if (r < 0)
                        return r;
                scope_unref(m->quotas, i->scope);
                i->scope = s;
        }
        quota_reset_usage(m->quotas);
        for (Range *rg = manager_ranges_from(m, 0); rg; rg = manager_ranges_next(m, rg)) {
                if (rg->owner && range_accounted(rg))
                        usage_add(&rg->owner->scope->usage, rg->domain == RANGE_DOMAIN_VRAM, rg->home, range_size(rg), +1);
                for (Token *t = range_tokens(rg); t; t = t->range_next)
                        if (t->charged)
                                t->charged->scope->usage.tokens++;
        }
        context_recount(m);
        return 0;
}
