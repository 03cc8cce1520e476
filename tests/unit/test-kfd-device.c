/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* The parts of kfd-device that need no kernel: feature and memory-policy decisions. */

#include <stdlib.h>

#include "kfd-device.h"
#include "unit-assert.h"

static void test_features(void) {
        static const struct {
                KfdFeature feature;
                uint32_t minor;
                const char *version;
        } table[] = {
                { KFD_FEATURE_SVM,               5,  "1.5"  },
                { KFD_FEATURE_AVAILABLE_MEMORY,  9,  "1.9"  },
                { KFD_FEATURE_EXPORT_DMABUF,     12, "1.12" },
                { KFD_FEATURE_CONTIGUOUS,        16, "1.16" },
                { KFD_FEATURE_MISC_PROCESS_FLAG, 18, "1.18" },
                { KFD_FEATURE_CREATE_PROCESS,    19, "1.19" },
        };

        ASSERT_EQ(ELEMENTSOF(table), _KFD_FEATURE_MAX);

        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                KfdFeature f = table[i].feature;

                ASSERT_STREQ(kfd_feature_min_version(f), table[i].version);
                ASSERT_NOT_NULL(kfd_feature_to_string(f));
                ASSERT_FALSE(kfd_version_has_feature(1, table[i].minor - 1, f));
                ASSERT_TRUE(kfd_version_has_feature(1, table[i].minor, f));
                ASSERT_TRUE(kfd_version_has_feature(1, table[i].minor + 10, f));
                /* Another major version is another interface. */
                ASSERT_FALSE(kfd_version_has_feature(2, 99, f));
        }

        /* Debian's 6.1 kernel (1.11): no EXPORT_DMABUF. */
        ASSERT_TRUE(kfd_version_has_feature(1, 11, KFD_FEATURE_AVAILABLE_MEMORY));
        ASSERT_FALSE(kfd_version_has_feature(1, 11, KFD_FEATURE_EXPORT_DMABUF));

        ASSERT_FALSE(kfd_version_has_feature(1, 30, _KFD_FEATURE_MAX));
        ASSERT_NULL(kfd_feature_min_version(_KFD_FEATURE_MAX));
        ASSERT_NULL(kfd_feature_to_string(_KFD_FEATURE_INVALID));
}

static void test_memory_policy(void) {
        static const struct {
                uint32_t gfx;
                uint32_t minor;
                KfdMemoryPolicy policy;
        } table[] = {
                { 70002,  11, KFD_MEMORY_POLICY_CACHE },        /* gfx702 */
                { 80003,  11, KFD_MEMORY_POLICY_CACHE },        /* gfx803 */
                { 80003,  19, KFD_MEMORY_POLICY_CACHE },
                { 90010,  19, KFD_MEMORY_POLICY_NONE },         /* gfx90a */
                { 90402,  17, KFD_MEMORY_POLICY_NONE },         /* gfx942 before 1.18 */
                { 90402,  18, KFD_MEMORY_POLICY_MISC_FLAG },
                { 90500,  19, KFD_MEMORY_POLICY_MISC_FLAG },    /* gfx950 */
                { 110000, 19, KFD_MEMORY_POLICY_NONE },         /* gfx1100 */
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++)
                ASSERT_EQ(kfd_memory_policy_for(table[i].gfx, table[i].minor), table[i].policy);
}

int main(void) {
        TEST(test_features);
        TEST(test_memory_policy);
        return EXIT_SUCCESS;
}
