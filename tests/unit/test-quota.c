/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* Quota scopes: which rule applies to whom, and when a request is refused. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "gpu.h"
#include "manager.h"
#include "quota.h"
#include "svmd-protocol.h"
#include "unit-assert.h"

#define GiB (UINT64_C(1) << 30)

static Config config(const char *text) {
        Config c;
        char *error = NULL;

        if (config_parse(text, "t", &c, &error) < 0) {
                fprintf(stderr, "%s\n", error);
                abort();
        }
        return c;
}

static const char rules[] =
        "{ \"quotas\": ["
        "  { \"match\": { \"uid\": 1000 }, \"vram\": \"8G\", \"ranges\": 2 },"
        "  { \"match\": { \"unit\": \"docker-*.scope\" }, \"vram\": \"16G\" },"
        "  { \"match\": { \"cgroup\": \"/machine.slice/\" }, \"vram-per-gpu\": \"1G\" },"
        "  { \"match\": { \"uid\": 0 }, \"ranges\": 0 }"
        "], \"default-quota\": { \"host\": \"1G\" } }";

static void test_first_match_wins(void) {
        Config c = config(rules);
        QuotaTable *t;
        Scope *s;

        ASSERT_OK(quota_table_new(&t));

        /* uid 1000 in a docker scope: the uid rule comes first. */
        ASSERT_OK(quota_scope_for(t, &c, 1000, "docker-1.scope", "/system.slice/docker-1.scope", &s));
        ASSERT_STREQ(s->key, "uid:1000");
        ASSERT_UEQ(s->limits.vram, 8 * GiB);
        scope_unref(t, s);

        /* Another uid in a docker scope: limited per unit. */
        ASSERT_OK(quota_scope_for(t, &c, 1001, "docker-1.scope", "/system.slice/docker-1.scope", &s));
        ASSERT_STREQ(s->key, "unit:docker-1.scope");
        ASSERT_UEQ(s->limits.vram, 16 * GiB);
        scope_unref(t, s);

        /* A container cgroup below the prefix: limited per cgroup. */
        ASSERT_OK(quota_scope_for(t, &c, 1001, "", "/machine.slice/machine-a.scope/payload", &s));
        ASSERT_STREQ(s->key, "cgroup:/machine.slice/machine-a.scope/payload");
        ASSERT_UEQ(s->limits.vram_per_gpu, 1 * GiB);
        scope_unref(t, s);

        /* A sibling whose name merely starts like the prefix is not below it. */
        ASSERT_OK(quota_scope_for(t, &c, 1001, "", "/machine.slice2/payload", &s));
        ASSERT_STREQ(s->key, "uid:1001");
        scope_unref(t, s);

        /* Nobody matches: the default quota, per uid. */
        ASSERT_OK(quota_scope_for(t, &c, 1002, "user@1002.service", "/user.slice/x", &s));
        ASSERT_STREQ(s->key, "uid:1002");
        ASSERT_TRUE(s->limited);
        ASSERT_UEQ(s->limits.host, 1 * GiB);
        scope_unref(t, s);

        /* Root: limited only because a rule names uid 0. */
        ASSERT_OK(quota_scope_for(t, &c, 0, "", "/", &s));
        ASSERT_TRUE(s->limited);
        ASSERT_UEQ(s->limits.ranges, 0);
        scope_unref(t, s);

        quota_table_free(t);
        config_done(&c);
}

static void test_root_unlimited_by_default(void) {
        Config c = config("{ \"default-quota\": { \"ranges\": 1 },"
                          "  \"quotas\": [ { \"match\": { \"unit\": \"*.service\" }, \"ranges\": 1 },"
                          "                { \"match\": { \"cgroup\": \"/\" }, \"ranges\": 1 } ] }");
        QuotaTable *t;
        Scope *s;

        ASSERT_OK(quota_table_new(&t));
        ASSERT_OK(quota_scope_for(t, &c, 0, "", "", &s));
        ASSERT_FALSE(s->limited);
        scope_unref(t, s);
        /* Not by the unit or cgroup it runs in either: only a rule naming uid 0 limits root. */
        ASSERT_OK(quota_scope_for(t, &c, 0, "svmctl.service", "/system.slice/svmctl.service", &s));
        ASSERT_FALSE(s->limited);
        ASSERT_STREQ(s->key, "uid:0");
        scope_unref(t, s);
        ASSERT_OK(quota_scope_for(t, &c, 5, "svmctl.service", "/system.slice/svmctl.service", &s));
        ASSERT_TRUE(s->limited);
        scope_unref(t, s);
        quota_table_free(t);
        config_done(&c);
}

static void test_check(void) {
        Config c = config(rules);
        Manager m = { .n_gpus = 2 };
        Gpu g0 = { .gpu_id = 0x1111 }, g1 = { .gpu_id = 0x2222 };
        Gpu *gpus[] = { &g0, &g1 };
        sd_bus_error error = SD_BUS_ERROR_NULL;
        const char *resource = NULL;
        QuotaRequest req = {};
        QuotaTable *t;
        Scope *s;

        m.gpus = gpus;
        ASSERT_OK(quota_table_new(&t));
        ASSERT_OK(quota_scope_for(t, &c, 1000, "", "", &s));

        req.ranges = 1;
        req.vram = 8 * GiB;
        ASSERT_OK(quota_check(&m, s, &req, &resource, &error));      /* exactly the limit: fine */
        usage_add(&s->usage, true, 0, 8 * GiB, +1);
        req.vram = 1;
        ASSERT_EQ(quota_check(&m, s, &req, &resource, &error), -EDQUOT);
        ASSERT_STREQ(resource, "vram");
        ASSERT_TRUE(strstr(error.message, "uid:1000") && strstr(error.message, "8.0 GiB"));
        sd_bus_error_free(&error);

        req = (QuotaRequest) { .ranges = 2 };
        ASSERT_EQ(quota_check(&m, s, &req, &resource, &error), -EDQUOT);     /* 1 + 2 > 2 */
        ASSERT_STREQ(resource, "ranges");
        sd_bus_error_free(&error);
        usage_add(&s->usage, true, 0, 8 * GiB, -1);
        ASSERT_UEQ(s->usage.ranges, 0);
        scope_unref(t, s);

        /* Per GPU. */
        ASSERT_OK(quota_scope_for(t, &c, 1001, "", "/machine.slice/m", &s));
        req = (QuotaRequest) { .ranges = 1, .vram = GiB };
        req.vram_per_gpu[1] = GiB;
        ASSERT_OK(quota_check(&m, s, &req, &resource, &error));
        req.vram_per_gpu[1] = GiB + 1;
        ASSERT_EQ(quota_check(&m, s, &req, &resource, &error), -EDQUOT);
        ASSERT_STREQ(resource, "vram-per-gpu");
        ASSERT_TRUE(strstr(error.message, "0x2222") != NULL);
        sd_bus_error_free(&error);
        scope_unref(t, s);

        /* Host and GTT memory: the default quota's 1 GiB. */
        ASSERT_OK(quota_scope_for(t, &c, 1002, "", "", &s));
        req = (QuotaRequest) { .ranges = 1, .host = GiB };
        ASSERT_OK(quota_check(&m, s, &req, &resource, &error));
        usage_add(&s->usage, false, 0, GiB / 2, +1);
        ASSERT_UEQ(s->usage.host, GiB / 2);
        req.host = GiB / 2 + 1;
        ASSERT_EQ(quota_check(&m, s, &req, &resource, &error), -EDQUOT);
        ASSERT_STREQ(resource, "host");
        ASSERT_TRUE(strstr(error.message, "uid:1002") && strstr(error.message, "1.0 GiB"));
        sd_bus_error_free(&error);
        usage_add(&s->usage, false, 0, GiB / 2, -1);
        scope_unref(t, s);

        quota_table_free(t);
        config_done(&c);
}

static void test_limits_for_key(void) {
        Config c = config(rules);
        QuotaLimits l;
        bool limited;

        ASSERT_OK(quota_limits_for_key(&c, "uid:1000", &limited, &l));
        ASSERT_TRUE(limited);
        ASSERT_UEQ(l.ranges, 2);
        ASSERT_OK(quota_limits_for_key(&c, "unit:docker-9.scope", &limited, &l));
        ASSERT_UEQ(l.vram, 16 * GiB);
        ASSERT_OK(quota_limits_for_key(&c, "uid:5", &limited, &l));
        ASSERT_UEQ(l.host, 1 * GiB);
        ASSERT_EQ(quota_limits_for_key(&c, "unit:foo.service", &limited, &l), -EINVAL);
        ASSERT_EQ(quota_limits_for_key(&c, "uid:x", &limited, &l), -EINVAL);
        ASSERT_EQ(quota_limits_for_key(&c, "pid:1", &limited, &l), -EINVAL);
        config_done(&c);
}

int main(void) {
        /* As svmd does at start: error names map to errnos (QuotaExceeded ↔ EDQUOT). */
        ASSERT_OK(sd_bus_error_add_map(svmd_error_map));
        test_first_match_wins();
        test_root_unlimited_by_default();
        test_check();
        test_limits_for_key();
        printf("quota: ok\n");
        return 0;
}
