/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* svmd.conf: config_parse() over arbitrary text, then freeing what it built. */

#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *text, *error = NULL;
        Config c;
        int r;

        if (size > 64 * 1024)
                return 0;
        text = strndup((const char *) data, size);
        if (!text)
                return 0;
        config_init_defaults(&c);
        r = config_parse(text, "fuzz.conf", &c, &error);
        if (r >= 0) {
                /* What the daemon relies on after a successful parse. */
                if (c.va_size == 0 || c.va_base + c.va_size < c.va_base)
                        abort();
                for (size_t i = 0; i < c.n_quotas; i++)
                        if (c.quotas[i].match != QUOTA_MATCH_UID && !c.quotas[i].pattern)
                                abort();
                config_done(&c);
        } else if (!error)
                abort(); /* every failure names the key and the reason */
        free(error);
        free(text);
        return 0;
}
